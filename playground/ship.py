"""Promote a finished training run to a shipped model: ``trained/<name>`` in fp16.

    python -m playground.ship runs/vae-beta4 vae-beta4 [--fp32]

Copies the weights (fp16 unless --fp32: halves the size in git), config.json and
metrics.json (adding ``shipped_dtype`` and the run's training log summary). The shipped
outputs are checked against the run's: the largest absolute difference of a decode is
printed, so a precision loss is visible before anything is committed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from playground.checkpoints import (METRICS_FILE, is_valid_name, load_model, read_json,
                                    save_model, trained_dir)


def ship(run_dir: str | Path, name: str, dtype: torch.dtype = torch.float16) -> tuple[Path, float]:
    """Write ``trained/<name>`` from ``run_dir``. Returns (folder, max |Δ| of a check decode)."""
    if not is_valid_name(name):
        raise ValueError(f"invalid model name {name!r}")
    run_dir = Path(run_dir)
    model = load_model(run_dir)
    metrics_path = run_dir / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    metrics["shipped_dtype"] = str(dtype).replace("torch.", "")
    out = save_model(trained_dir() / name, model, metrics=metrics, dtype=dtype)
    for extra in run_dir.glob("*.npz"):  # e.g. cached t-SNE points (plain arrays, no pickle)
        (out / extra.name).write_bytes(extra.read_bytes())
    shipped = load_model(out)
    gap = 0.0
    if hasattr(model, "decode") and hasattr(model, "config") and hasattr(model.config, "latent_dim"):
        z = torch.randn(8, model.config.latent_dim, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            gap = float((model.decode(z) - shipped.decode(z)).abs().max())
    return out, gap


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--fp32", action="store_true", help="keep float32 weights")
    args = parser.parse_args(argv)
    out, gap = ship(args.run_dir, args.name, torch.float32 if args.fp32 else torch.float16)
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    print(f"{out}: {size:.1f} MB, max |decode difference| vs the run = {gap:.2e}")


if __name__ == "__main__":
    main()
