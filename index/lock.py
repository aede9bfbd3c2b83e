"""One writer at a time per index root.

`build`, `add` and `remove` each read the live version, write a new one and publish it. Two of
them interleaved would each publish a copy of the same old version plus their own change, and
the second rename would silently drop the first writer's entries (and both would hand out the
same new ids). Every writer therefore holds an exclusive `flock` on `<root>/.writer.lock` from
reading `current` to publishing; the kernel releases it if the process dies, so a crashed writer
never leaves the root locked. Readers (the service, `index info`) take no lock: versions are
immutable and `current` moves in one rename.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lookalike.errors import LookalikeError

LOCK_FILE = ".writer.lock"
DEFAULT_TIMEOUT_S = 300.0


class IndexBusyError(LookalikeError, TimeoutError):
    """Another writer held the index root for longer than the caller was willing to wait."""


@contextmanager
def writer_lock(root: str | Path, timeout_s: float = DEFAULT_TIMEOUT_S, poll_s: float = 0.1) -> Iterator[None]:
    """Hold the root's writer lock for the body, waiting up to `timeout_s` for another writer."""
    with (Path(root) / LOCK_FILE).open("a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusyError(
                        f"another writer ({holder(handle)}) has held {root} for over {timeout_s:g}s; "
                        "wait for it to finish, or raise --lock-timeout"
                    ) from None
                time.sleep(poll_s)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def holder(handle) -> str:
    """Who holds the lock, as its holder wrote it down (for the message only)."""
    handle.seek(0)
    try:
        owner = json.loads(handle.read() or "{}")
    except ValueError:
        return "unknown process"
    return f"pid {owner.get('pid', '?')} since {owner.get('since', '?')}"
