"""Gallery metadata in SQLite, keyed by the same int64 ids as the FAISS vectors.

SQLite is the embedded default: one file beside the vectors, no server, safe to copy as part
of a version directory, and indexed lookups by id or label.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    path TEXT NOT NULL,
    added REAL NOT NULL,
    metadata TEXT
);
CREATE INDEX IF NOT EXISTS entries_label ON entries(label);
"""


@dataclass(frozen=True)
class Entry:
    id: int
    label: str
    path: str
    added: float = field(default_factory=time.time)
    metadata: dict | None = None


class MetadataStore:
    """Thread-safe access to one `metadata.sqlite` (the service reads it from many threads)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.executescript(SCHEMA)

    def add(self, entries: Iterable[Entry]) -> None:
        rows = [(e.id, e.label, e.path, e.added, json.dumps(e.metadata) if e.metadata else None) for e in entries]
        with self._lock, self._db:
            self._db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", rows)

    def remove(self, ids: Iterable[int]) -> None:
        with self._lock, self._db:
            self._db.executemany("DELETE FROM entries WHERE id = ?", [(int(i),) for i in ids])

    def get(self, ids: Iterable[int]) -> dict[int, Entry]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM entries WHERE id IN ({marks})", ids).fetchall()
        return {row[0]: Entry(row[0], row[1], row[2], row[3], json.loads(row[4]) if row[4] else None) for row in rows}

    def ids_with_labels(self, labels: Iterable[str]) -> list[int]:
        labels = list(labels)
        marks = ",".join("?" * len(labels))
        with self._lock:
            return [r[0] for r in self._db.execute(f"SELECT id FROM entries WHERE label IN ({marks})", labels)]

    def existing(self, ids: Iterable[int]) -> list[int]:
        return sorted(self.get(ids))

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def max_id(self) -> int:
        with self._lock:
            value = self._db.execute("SELECT MAX(id) FROM entries").fetchone()[0]
        return -1 if value is None else value

    def label_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(DISTINCT label) FROM entries").fetchone()[0]
