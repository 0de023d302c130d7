"""The command line of the LDM evaluation, ``python -m playground.evaluation.ldm`` (its help is
the package docstring)."""
from __future__ import annotations

import argparse
import json
import sys

import torch

from playground.evaluation import ldm
from playground.evaluation.ldm.config import MAX_SAMPLES, EvalConfig
from playground.evaluation.ldm.run import PARTS, evaluate, merge_into_metrics
from playground.store.checkpoints import METRICS_FILE, load_model, resolve_model_dir


def _sample_count(text: str) -> int | None:
    """The type of --samples and --guidance-samples: a count (at least 2, for the diversity), or
    'auto' → None."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError("need at least 2 samples")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.evaluation.ldm",
                                     description=ldm.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ldm", nargs="?", default="ldm", help="the LDM under trained/ (default ldm)")
    parser.add_argument("--judge", default="judge", help="the judge model (default judge)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), metavar="PART",
                        help=f"parts to run: some of {' '.join(PARTS)} (default: all)")
    parser.add_argument("--samples", type=_sample_count, default=None,
                        help="samples per Table-1 row and per VAE-table model, or 'auto' "
                             f"(default): the most (≤ {MAX_SAMPLES}) that fit --minutes")
    parser.add_argument("--guidance-samples", type=_sample_count, default=None,
                        help="samples per prompt and guidance scale, or 'auto' (default)")
    parser.add_argument("--minutes", type=float, default=EvalConfig.minutes,
                        help="sampling budget of this run, shared by its parts (default 25)")
    parser.add_argument("--batch-size", type=int, default=EvalConfig.batch_size,
                        help="samples per sampler call (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-n", type=int, default=EvalConfig.reference_n,
                        help="SynthFaces test faces in the FD-judge reference (default 5000)")
    parser.add_argument("--pixel-batch-size", type=int, default=EvalConfig.pixel_batch_size)
    parser.add_argument("--pixel-steps", type=int, default=EvalConfig.pixel_steps)
    parser.add_argument("--amp", default="none", choices=("none", "bf16"),
                        help="autocast of the pixel-vs-latent measurement")
    parser.add_argument("--grid-out", default=EvalConfig.grid_path,
                        help=f"the grid PNG (default {EvalConfig.grid_path})")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--write", action="store_true",
                        help="merge the results into trained/<ldm>/metrics.json")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from playground.pipelines.latent_diffusion import load_pipeline

    try:
        folder = resolve_model_dir(args.ldm)
        pipeline = load_pipeline(args.ldm, device=args.device)
        judge = load_model(args.judge, device=args.device)
    except (ValueError, FileNotFoundError) as error:  # unknown or malformed model names
        parser.error(str(error))
    cfg = EvalConfig(samples=args.samples, guidance_samples=args.guidance_samples,
                     minutes=args.minutes, batch_size=args.batch_size, seed=args.seed,
                     reference_n=args.reference_n, device=args.device,
                     pixel_batch_size=args.pixel_batch_size, pixel_steps=args.pixel_steps,
                     amp=args.amp, grid_path=args.grid_out, progress=not args.no_progress)
    result = evaluate(pipeline, judge, args.only, cfg, judge_name=args.judge, ldm_name=args.ldm)
    from playground.evaluation.vae import weights_fingerprint

    sha = weights_fingerprint(folder)  # ties each part's numbers to the U-Net weights they came from
    for entry in result["samples"].values():
        entry["ldm_weights_sha256"] = sha
    print(json.dumps(result, indent=2))
    if args.write:
        merge_into_metrics(folder, result)
        print(f"wrote {folder / METRICS_FILE}", file=sys.stderr)
    return 0
