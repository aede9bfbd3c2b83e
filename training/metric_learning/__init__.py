"""Metric-learning pieces, composable as in pytorch-metric-learning.

- `distances`: dissimilarity matrices (smaller is closer), one per named metric.
- `synthesis`: Symmetrical Synthesis, which grows the pool of reference points.
- `pool`: the points a miner searches (the batch, then any synthetic points).
- `miners`: pick (anchor, positive, negative) index triplets from a batch and a pool.
- `losses`: score what was mined; every loss is called as `loss(embeddings, labels, mined, pool)`;
  `npair` (N-pair, angular: one pair per class) and `proxies` (Proxy-Anchor, Proxy-NCA, ArcFace,
  CosFace: learned class vectors) add to the same `LOSSES` registry.
- `criterion`: glues them together behind one `criterion(embeddings, labels)` call.

Each kind has a registry (`DISTANCES`, `MINERS`, `LOSSES`): a name in a config picks the class.
"""

from lookalike.training.metric_learning.criterion import MetricCriterion, create_criterion
from lookalike.training.metric_learning.distances import DISTANCES, Distance, create_distance
from lookalike.training.metric_learning.losses import (
    LOSSES,
    ContrastiveLoss,
    LiftedStructureLoss,
    MetricLoss,
    MultiSimilarityLoss,
    TripletMarginLoss,
)
from lookalike.training.metric_learning.miners import (
    MINERS,
    BatchAllMiner,
    BatchHardMiner,
    Mined,
    Miner,
    MultiSimilarityMiner,
    Pairs,
    SemiHardMiner,
    Triplets,
    as_pairs,
    as_triplets,
    create_miner,
    distinct_pairs,
)
from lookalike.training.metric_learning.npair import AngularLoss, NPairAngularLoss, NPairLoss
from lookalike.training.metric_learning.pool import Pool, reflect
from lookalike.training.metric_learning.proxies import (
    ArcFaceLoss,
    CosFaceLoss,
    ProxyAnchorLoss,
    ProxyLoss,
    ProxyNCALoss,
)
from lookalike.training.metric_learning.synthesis import symmetrical_synthesis

__all__ = [
    "DISTANCES",
    "LOSSES",
    "MINERS",
    "AngularLoss",
    "ArcFaceLoss",
    "BatchAllMiner",
    "BatchHardMiner",
    "ContrastiveLoss",
    "CosFaceLoss",
    "Distance",
    "LiftedStructureLoss",
    "MetricCriterion",
    "MetricLoss",
    "Mined",
    "Miner",
    "MultiSimilarityLoss",
    "MultiSimilarityMiner",
    "NPairAngularLoss",
    "NPairLoss",
    "Pairs",
    "Pool",
    "ProxyAnchorLoss",
    "ProxyLoss",
    "ProxyNCALoss",
    "SemiHardMiner",
    "TripletMarginLoss",
    "Triplets",
    "as_pairs",
    "as_triplets",
    "create_criterion",
    "create_distance",
    "create_miner",
    "distinct_pairs",
    "reflect",
    "symmetrical_synthesis",
]
