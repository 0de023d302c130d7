"""Thumbnails of the first N SynthFaces test faces in one WebP sprite sheet, for the latent
map's hover: the browser shows face i as tile i of the sheet, with no request per hover.

    sheet = face_sprite.sprite(2000)     # {"src": "data:image/webp;base64,…", "tile": 32,
                                          #  "cols": 45, "n": 2000}
    face_sprite.tile(decode(sheet), 7)   # uint8 (32, 32, 3): test face #7, halved
"""
from __future__ import annotations

import base64
import functools
import io
import math

import numpy as np

TILE = 32  # thumbnail side in pixels (the faces are 64×64: each tile averages 2×2 pixels)
QUALITY = 70  # WebP quality: 2,000 thumbnails in 0.43 MB, 6 levels of 255 off per pixel
# (JPEG at quality 85: 0.78 MB and 6.7 levels off)
RENDER_CHUNK = 500  # faces rendered at a time


def test_faces(n: int) -> np.ndarray:
    """The first `n` SynthFaces test faces → uint8 (n, 64, 64, 3) (rendered, not loaded)."""
    from playground.data import synthfaces as sf

    factors = sf.generate_factors(n, sf.SPLIT_SEEDS["test"])
    return np.concatenate([sf.render({k: v[s:s + RENDER_CHUNK] for k, v in factors.items()})
                           for s in range(0, n, RENDER_CHUNK)])


def sheet(faces: np.ndarray, tile: int = TILE) -> tuple[np.ndarray, int]:
    """Faces uint8 (N, H, W, 3) → (sheet uint8 (rows·tile, cols·tile, 3), cols): face i at
    row i // cols, column i % cols, each box-averaged down to tile × tile."""
    n, h, w, _ = faces.shape
    if h % tile or w % tile:
        raise ValueError(f"faces of {h}×{w} do not shrink evenly to {tile}×{tile} tiles")
    small = faces.reshape(n, tile, h // tile, tile, w // tile, 3).mean(axis=(2, 4))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * cols, tile, tile, 3), np.float64)
    grid[:n] = small
    grid = grid.reshape(rows, cols, tile, tile, 3).transpose(0, 2, 1, 3, 4)
    return np.rint(grid.reshape(rows * tile, cols * tile, 3)).astype(np.uint8), cols


@functools.lru_cache(maxsize=4)
def sprite(n: int, tile: int = TILE) -> dict:
    """The sheet of test faces 0 … n−1 as a WebP data URI, with what the page needs to find
    face i in it: ``{"src", "tile", "cols", "n"}``."""
    from PIL import Image

    image, cols = sheet(test_faces(n), tile)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="WEBP", quality=QUALITY)
    src = "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"src": src, "tile": tile, "cols": cols, "n": n}


def decode(sprite_info: dict) -> np.ndarray:
    """The sheet of `sprite` back as uint8 (H, W, 3) (tests; what the browser sees)."""
    from PIL import Image

    data = base64.b64decode(sprite_info["src"].split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def tile(sheet_image: np.ndarray, index: int, tile_size: int = TILE,
         cols: int | None = None) -> np.ndarray:
    """Tile `index` of a sheet (cols inferred from the width when not given)."""
    cols = cols or sheet_image.shape[1] // tile_size
    r, c = divmod(index, cols)
    return sheet_image[r * tile_size:(r + 1) * tile_size, c * tile_size:(c + 1) * tile_size]
