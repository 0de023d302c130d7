"""A small thread-safe cache of loaded models that reloads one when its weights file changes.

The tabs keep models in memory between calls; a run that writes a new checkpoint (the Train
tab, a command-line run) must not leave a stale model there. Each entry is keyed by name and
carries a *stamp* of its weights files (path, mtime, size): a different stamp means reload.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from playground.store import checkpoints


def weights_stamp(folder: str | Path) -> tuple:
    """(folder, mtime in ns, size) of a model folder's weights file; ValueError when missing."""
    folder = Path(folder)
    weights = folder / checkpoints.WEIGHTS_FILE
    try:
        st = weights.stat()
    except FileNotFoundError:
        raise ValueError(f"model {folder.name!r} has no weights yet ({weights})") from None
    return (str(folder), st.st_mtime_ns, st.st_size)


class StampedCache:
    """At most `size` loaded objects, least recently used dropped first."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, tuple[tuple, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, stamp: tuple, load: Callable[[], Any]) -> Any:
        """The cached object for `name` if its stamp is `stamp`, else ``load()`` (cached)."""
        with self._lock:
            hit = self._items.get(name)
            if hit is not None and hit[0] == stamp:
                self._items.move_to_end(name)
                return hit[1]
        value = load()  # outside the lock: loading can take seconds
        with self._lock:
            self._items[name] = (stamp, value)
            self._items.move_to_end(name)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_sha_memo: dict[tuple, str] = {}


def weights_sha256(path: Path) -> str:
    """SHA-256 of a weights file, memoised by path, modification time and size (a cache keyed
    by it — a latent map, attribute vectors — follows a retrained model)."""
    import hashlib

    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _sha_memo:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _sha_memo[key] = digest.hexdigest()
    return _sha_memo[key]
