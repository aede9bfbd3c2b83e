"""Metric-learning pieces, composable as in pytorch-metric-learning.

- `distances`: dissimilarity matrices (smaller is closer), one per named metric.
- `synthesis`: Symmetrical Synthesis, which grows the pool of reference points.
- `miners`: pick (anchor, positive, negative) index triplets from a batch and a pool.
- `losses`: score what was mined; every loss is called as `loss(embeddings, labels, mined, pool)`.
- `criterion`: glues the four together behind one `criterion(embeddings, labels)` call.
"""
