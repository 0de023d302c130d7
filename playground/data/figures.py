"""Pictures of SynthFaces for the README: a random grid and one sweep per factor.

    python -m playground.data.figures --out assets
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from playground.data import pictures
from playground.data import synthfaces as sf


def image_grid(images: np.ndarray, cols: int, scale: int = 1, pad: int = 0,
               pad_value: int = 255) -> Image.Image:
    """uint8 (N, H, W, 3) -> one PIL image with ``cols`` columns, the whole picture (gaps
    included) nearest-neighbour scaled by ``scale``; the last row is filled with `pad_value`."""
    images = np.asarray(images)
    n = len(images)
    rows = -(-n // cols)
    blank = np.full((rows * cols - n, *images.shape[1:]), pad_value, np.uint8)
    cells = np.concatenate([images, blank]).reshape(rows, cols, *images.shape[1:])
    return Image.fromarray(pictures.upscale(pictures.grid(cells, 1, pad, pad_value), scale))


def factor_sweep(steps: int = 8, base: dict | None = None) -> tuple[list[str], np.ndarray]:
    """One row per factor: that factor swept from its min to its max, the rest fixed.

    Returns (row labels, uint8 (F, steps, 64, 64, 3)); categorical rows cycle through
    their categories in order (e.g. black, brown, blond, gray, black, ...).
    """
    base = base or sf.default_factors(1)
    rows, labels = [], []
    for name in sf.FACTOR_NAMES:
        f = {k: np.repeat(v, steps) for k, v in base.items()}
        if name in sf.CONTINUOUS_FACTORS:
            lo, hi = sf.CONTINUOUS_FACTORS[name]
            f[name] = np.linspace(lo, hi, steps, dtype=np.float32)
            labels.append(f"{name} {lo:g}..{hi:g}")
        else:
            cats = sf.CATEGORICAL_FACTORS[name]
            f[name] = np.arange(steps, dtype=np.int64) % len(cats)
            labels.append(f"{name}: " + "/".join(cats))
        rows.append(sf.render(f))
    return labels, np.stack(rows)


def save_figures(out: Path, seed: int = 0) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    images, _, _ = sf.generate(64, seed)
    grid_path = out / "synthfaces_grid.png"
    image_grid(images, cols=8, scale=2, pad=2).save(grid_path)

    labels, sweep = factor_sweep()
    scale, label_w = 2, 230
    strip = image_grid(sweep.reshape(-1, *sweep.shape[2:]), cols=sweep.shape[1], scale=scale, pad=2)
    canvas = Image.new("RGB", (strip.width + label_w, strip.height), "white")
    canvas.paste(strip, (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = strip.height / len(labels)
    for i, label in enumerate(labels):
        draw.text((6, i * row_h + row_h / 2 - 6), label, fill="black")
    sweep_path = out / "synthfaces_factors.png"
    canvas.save(sweep_path)
    return [grid_path, sweep_path]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("assets"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in save_figures(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
