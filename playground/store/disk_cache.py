"""Where everything recomputable is kept on disk: SynthFaces splits, training latents, latent
maps, attribute vectors. Deleting the folder costs time, never a result."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Folder of everything recomputable (SynthFaces splits, latents, maps): ``root``,
    ``$PLAYGROUND_CACHE``, or ``$XDG_CACHE_HOME/playground`` (~/.cache/playground). Never
    trained/: that holds shipped models only, and may be read-only (a classroom share, a
    container image)."""
    if root is not None:
        return Path(root)
    if os.environ.get("PLAYGROUND_CACHE"):
        return Path(os.environ["PLAYGROUND_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "playground"
