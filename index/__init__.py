"""Gallery index: FAISS vectors + SQLite metadata, versioned and switched atomically.

- `kinds`: named FAISS index types (flat, hnsw, ivfpq), GPU when FAISS has one.
- `metadata`: the SQLite table of labels, source paths and extra JSON beside the vectors.
- `store`: `GalleryIndex`, one immutable version on disk (vectors + metadata + manifest).
- `versions`: the `current` pointer and the atomic switch that publishes a new version.
- `gallery`: reading a gallery folder or CSV and embedding it with a bundle.
- `build`: build / add / remove, each publishing a new version.
"""
