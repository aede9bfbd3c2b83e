"""Training: learns embeddings from labelled or unlabelled folders and exports the encoder bundle.

Read it in the order a run goes: `config` (TrainConfig) -> `data` + `sampler` (P x K batches of
class-disjoint splits, or shuffled batches) -> `model` (timm backbone + head) -> `objectives`
(`metric_learning`: synthesis, miners, losses; or `self_supervised`: SimCLR, MoCo, ARB on two
views) -> `loop` (`train`, one screen) -> `evaluate` + `scoring` (held-out Recall@K, MAP@R,
verification) -> `plots`. `cli` adds `lookalike train` and `lookalike evaluate`.

The names below are the stage's public surface, used by the command line, the demo and the
benchmarks.
"""

from lookalike.training.config import TrainConfig, load_config
from lookalike.training.data import DataError, scan_folder, split_classes
from lookalike.training.evaluate import evaluate_bundle, evaluate_embeddings, read_pairs
from lookalike.training.loop import train
from lookalike.training.model import EmbeddingModel
from lookalike.training.sampler import PKSampler
from lookalike.training.scoring import retrieval_metrics, verification_metrics

__all__ = [
    "DataError",
    "EmbeddingModel",
    "PKSampler",
    "TrainConfig",
    "evaluate_bundle",
    "evaluate_embeddings",
    "load_config",
    "read_pairs",
    "retrieval_metrics",
    "scan_folder",
    "split_classes",
    "train",
    "verification_metrics",
]
