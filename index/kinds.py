"""Index kinds by name; every kind searches by inner product (= cosine on unit embeddings).

Every kind stores the caller's int64 ids, so gallery ids are stable across add/remove and the
same ids key the SQLite metadata: flat and HNSW through `IndexIDMap2`, IVF natively (an id map
over IVF would go out of step after `remove_ids`, since IVF does not renumber its entries).
"""

from __future__ import annotations

import logging
import math

import faiss
import numpy as np

from lookalike.errors import ConfigError
from lookalike.registry import Registry

log = logging.getLogger(__name__)

INDEX_KINDS: Registry[IndexKind] = Registry("index kind")


class IndexKind:
    name: str

    def create(self, dim: int, training: np.ndarray) -> faiss.Index:
        """An empty id-mapped index, trained on `training` if the kind needs it."""
        raise NotImplementedError

    def configure(self, index: faiss.Index) -> None:
        """Set search-time parameters after loading (they are not all saved with the index)."""


@INDEX_KINDS.register("flat")
class FlatKind(IndexKind):
    """Exact search. The default: fastest to build, exact, fine up to about a million vectors."""

    name = "flat"

    def create(self, dim: int, training: np.ndarray) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


@INDEX_KINDS.register("hnsw")
class HNSWKind(IndexKind):
    """Graph search: sub-millisecond queries on millions of vectors, memory of a flat index."""

    name = "hnsw"

    def __init__(self, m: int = 32, ef_construction: int = 200, ef_search: int = 128) -> None:
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search

    def create(self, dim: int, training: np.ndarray) -> faiss.Index:
        graph = faiss.IndexHNSWFlat(dim, self.m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        self.configure(graph)
        return faiss.IndexIDMap2(graph)

    def configure(self, index: faiss.Index) -> None:
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
        inner.hnsw.efSearch = self.ef_search


@INDEX_KINDS.register("ivfpq")
class IVFPQKind(IndexKind):
    """Compressed inverted lists for millions of vectors: a trained coarse quantiser and 8-bit
    product codes (at most 64 codes per vector instead of 4 x dim); approximate scores."""

    name = "ivfpq"
    min_vectors = 1000

    def __init__(self, nprobe: int = 16) -> None:
        self.nprobe = nprobe

    def create(self, dim: int, training: np.ndarray) -> faiss.Index:
        if len(training) < self.min_vectors:
            raise ConfigError(
                f"ivfpq needs at least {self.min_vectors} gallery images to train its quantiser "
                f"(got {len(training)}); use --kind flat or hnsw for small galleries"
            )
        nlist = max(1, min(int(4 * math.sqrt(len(training))), len(training) // 39))
        sub = next(m for m in (64, 32, 16, 8, 4, 2, 1) if dim % m == 0 and m <= dim)
        # 8-bit codes want ~39 x 256 training vectors per sub-quantiser; smaller galleries get fewer bits.
        bits = max(4, min(8, int(math.log2(len(training) / 39))))
        ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, sub, bits, faiss.METRIC_INNER_PRODUCT)
        ivf.train(np.ascontiguousarray(training, dtype=np.float32))
        self.configure(ivf)
        return ivf

    def configure(self, index: faiss.Index) -> None:
        faiss.extract_index_ivf(index).nprobe = self.nprobe


def create_kind(name: str, **kwargs) -> IndexKind:
    return INDEX_KINDS.create(name, **kwargs)


def to_search_device(index: faiss.Index, kind: IndexKind) -> faiss.Index:
    """Move flat and IVF indexes to every GPU FAISS sees; HNSW has no GPU form and stays."""
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if gpus == 0 or kind.name == "hnsw":
        return index
    log.info("moving %s index to %d GPU(s)", kind.name, gpus)
    return faiss.index_cpu_to_all_gpus(index)
