"""Promote a finished training run to a shipped model: ``trained/<name>`` in fp16.

    python -m playground.ship runs/vae-beta4 vae-beta4 [--fp32]

Copies the weights (fp16 unless --fp32: halves the size in git), config.json and
metrics.json (adding ``shipped_dtype`` and the run's training log summary). The shipped
outputs are checked against the run's: the largest absolute difference of a decode is
printed, so a precision loss is visible before anything is committed.

All or nothing: the new folder is written and loaded back in a hidden temporary folder next to
``trained/<name>``, then swapped in by two renames (the old folder aside, the new one in; the
old one is put back if the second fails). A failed save (disk full, no permission) prints one
``error:`` line, removes the temporary folder and leaves trained/ as it was.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from playground.checkpoints import (METRICS_FILE, atomic_write_bytes, is_valid_name,
                                    load_model, read_json, save_model, trained_dir)


def ship(run_dir: str | Path, name: str, dtype: torch.dtype = torch.float16) -> tuple[Path, float]:
    """Write ``trained/<name>`` from ``run_dir``. Returns (folder, max |Δ| of a check decode)."""
    if not is_valid_name(name):
        raise ValueError(f"invalid model name {name!r}")
    run_dir = Path(run_dir)
    model = load_model(run_dir)
    metrics_path = run_dir / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    metrics["shipped_dtype"] = str(dtype).replace("torch.", "")
    root = trained_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.shipping-"))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a model folder is not
        save_model(staging, model, metrics=metrics, dtype=dtype)
        for extra in run_dir.glob("*.npz"):  # e.g. cached t-SNE points (plain arrays, no pickle)
            atomic_write_bytes(staging / extra.name, extra.read_bytes())
        shipped = load_model(staging)
        gap = 0.0
        if hasattr(model, "decode") and hasattr(getattr(model, "config", None), "latent_dim"):
            z = torch.randn(8, model.config.latent_dim, generator=torch.Generator().manual_seed(0))
            with torch.inference_mode():
                gap = float((model.decode(z) - shipped.decode(z)).abs().max())
        _swap_in(staging, root / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root / name, gap


def _swap_in(staging: Path, final: Path) -> None:
    """Rename `staging` to `final`. An existing `final` is first renamed aside, and deleted
    once the new folder is in place (renamed back if that fails)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--fp32", action="store_true", help="keep float32 weights")
    args = parser.parse_args(argv)
    try:
        out, gap = ship(args.run_dir, args.name, torch.float32 if args.fp32 else torch.float16)
    except OSError as err:  # disk full, no permission, ...: trained/ is as it was
        reason = err.strerror or str(err)
        print(f"error: could not ship {args.run_dir} as {trained_dir() / args.name}: {reason}"
              f"{f' ({err.filename})' if err.filename else ''}; trained/ is unchanged",
              file=sys.stderr)
        return 1
    except ValueError as err:  # a bad name, not a model folder, corrupt files
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    print(f"{out}: {size:.1f} MB, max |decode difference| vs the run = {gap:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
