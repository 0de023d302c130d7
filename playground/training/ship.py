"""Promote a finished training run to a shipped model: ``trained/<name>`` in fp16.

    python -m playground.training.ship runs/vae-beta4 vae-beta4 [--fp32] [--if-better]

Copies the weights (fp16 unless --fp32: halves the size in git), config.json and
metrics.json (adding ``shipped_dtype`` and the run's training log summary). The shipped
outputs are checked against the run's: the largest absolute difference of a decode is
printed, so a precision loss is visible before anything is committed.

With ``--if-better`` the run and the shipped model are first measured on the same test faces
(their headline number, `playground.evaluation.quality`), and the run replaces the shipped model only
when its number is higher (or, for a headline with a second number such as the U-Net's, when
the headlines are within their noise and the second number is better: `quality.improves`);
either way the verdict is printed. The learning curve,
``trained/<name>/curve.jsonl``, carries over: the shipped model's points, the run's quality
probes (log.jsonl), and the two measurements, each at its cumulative CPU- / GPU-hours.

A U-Net learns in its autoencoder's latents and its text encoder's states, so those two never
ship alone while a shipped U-Net uses them (``--if-better`` refuses, except a text encoder whose
text states did not change: ``train clip --freeze-text-states``): ``--chain`` ships a U-Net
run together with the autoencoder and text encoder it was trained on (run folders), when its
pipeline beats the shipped one by the same rule.

    python -m playground.training.ship runs/ldm ldm --chain

All or nothing: the new folder is written and loaded back in a hidden temporary folder next to
``trained/<name>``, then swapped in by two renames (the old folder aside, the new one in; the
old one is put back if the second fails). A failed save (disk full, no permission) prints one
``error:`` line, removes the temporary folder and leaves trained/ as it was.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from playground.evaluation.quality import (
    HEADLINE_FACES,
    SECOND_NUMBERS,
    improves,
    measure,
    record,
)
from playground.models.clip import EMBEDDING_KEY
from playground.store.checkpoints import (
    METRICS_FILE,
    is_valid_name,
    load_model,
    resolve_model_dir,
    save_model,
    trained_dir,
)
from playground.store.files import atomic_write_bytes, read_json
from playground.training import CUMULATIVE_KEYS, cumulative_of_model, read_log

CURVE_FILE = "curve.jsonl"  # the learning curve of a shipped model (one JSON point per line)


def ship(run_dir: str | Path, name: str, dtype: torch.dtype = torch.float16,
         curve: list[dict] | None = None,
         config_updates: dict | None = None) -> tuple[Path, float]:
    """Write ``trained/<name>`` from ``run_dir`` (with `curve` as its curve.jsonl, else the
    shipped model's curve is kept; `config_updates` set fields of its config, e.g. the names
    a U-Net's pipeline goes by once shipped). Returns (folder, max |Δ| of a check decode)."""
    if not is_valid_name(name):
        raise ValueError(f"invalid model name {name!r}")
    run_dir = Path(run_dir)
    model = load_model(run_dir)
    for field, value in (config_updates or {}).items():
        setattr(model.config, field, value)
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
        if curve is None and (root / name / CURVE_FILE).is_file():
            curve = read_curve(root / name)
        if curve:
            text = "".join(json.dumps(point) + "\n" for point in curve)
            atomic_write_bytes(staging / CURVE_FILE, text.encode("utf-8"))
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


def read_curve(folder: str | Path) -> list[dict]:
    """The points of ``<folder>/curve.jsonl`` ([] if there is none)."""
    path = Path(folder) / CURVE_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def curve_point(source: str, cumulative: dict, scores: dict) -> dict:
    """One point of a learning curve: where it comes from, the counters, the numbers."""
    numbers = {k: v for k, v in scores.items() if isinstance(v, (int, float)) and k != "n"}
    return {"source": source, **{k: cumulative.get(k, 0) for k in CUMULATIVE_KEYS}, **numbers}


def ship_if_better(run_dir: str | Path, name: str, dtype: torch.dtype = torch.float16,
                   judge: str = "judge", n: int = HEADLINE_FACES) -> dict:
    """Ship `run_dir` as `name` only when its headline number beats the shipped model's on the
    same `n` test faces (`quality.improves`), or nothing is shipped yet. Returns {"shipped", "headline", "old",
    "new", "folder"} (old is None when there was no shipped model).

    A model that a shipped U-Net's pipeline uses (its autoencoder or text encoder) is refused:
    the U-Net learned in its latents / text states, so it ships only with a U-Net trained on
    it, by `ship_chain` — unless it gives the U-Net the same inputs bit for bit
    (`same_conditioning`: a CLIP trained with --freeze-text-states, an autoencoder trained
    with --freeze-encoder)."""
    if not is_valid_name(name):
        raise ValueError(f"invalid model name {name!r}")
    run_dir = Path(run_dir)
    current = trained_dir() / name
    users = pipelines_using(name)
    if users and not same_conditioning(run_dir, current):
        raise ValueError(f"trained/{', trained/'.join(users)} uses trained/{name}: replaced "
                         "alone it would break that pipeline; ship it together with a U-Net "
                         "trained on it (python -m playground.training.ship UNET_RUN ldm --chain)")
    new = measure(str(run_dir), judge=judge, n=n)
    old = measure(str(current), judge=judge, n=n) if (current / "config.json").is_file() else None
    if old is not None and old["headline"] != new["headline"]:
        raise ValueError(f"{run_dir} is judged by {new['headline']}, {current} by "
                         f"{old['headline']}: not the same kind of model")
    result = {"headline": new["headline"], "old": old, "new": new, "shipped": False,
              "folder": str(current)}
    if old is not None and not improves(new, old):
        return result
    _ship_measured(run_dir, name, dtype, old, new)
    result["shipped"] = True
    return result


def second_number(old: dict | None, new: dict) -> str:
    """", caption_fd 15.10 -> 12.30" when the headline has a second number, else ""."""
    second = SECOND_NUMBERS.get(new["headline"])
    if second is None or second[0] not in new:
        return ""
    key = second[0]
    before = f"{old[key]:.2f}" if old and key in old else "—"
    return f", {key} {before} -> {new[key]:.2f}"


# config fields of a U-Net that name the other models of its pipeline
PIPELINE_FIELDS = ("autoencoder", "text_encoder")


def pipelines_using(name: str) -> list[str]:
    """Shipped U-Nets whose config names `name` as their autoencoder or text encoder."""
    root = trained_dir()
    users = []
    for config in sorted(root.glob("*/config.json")) if root.is_dir() else []:
        data = read_json(config)
        if data.get("kind") == "unet" and name in (data.get(f) for f in PIPELINE_FIELDS):
            users.append(config.parent.name)
    return users


def same_conditioning(run_dir: str | Path, current: str | Path) -> bool:
    """Whether the model in `run_dir` gives a U-Net exactly what the shipped one in `current`
    gives it: a text encoder the same per-token states (same vocabulary, equal
    `text_state_tensors`), an autoencoder the same latents (same scale factor, equal
    `encoder_tensors`). Tensors are compared in fp32, so an fp32 run whose frozen weights came
    from the fp16 file matches it."""
    if not (Path(current) / "config.json").is_file():
        return False
    new, old = load_model(run_dir), load_model(current)
    if hasattr(new, "text_state_tensors") and hasattr(old, "text_state_tensors"):
        # words the new model learned on top are fine: a U-Net never read them, and a prompt
        # of the others gets the same states (the text tower is causal)
        read_by_unet = set(old.config.unet_tokens)
        same_config = read_by_unet <= set(new.config.unet_tokens)
        a, b = new.text_state_tensors(), old.text_state_tensors()
        if same_config and read_by_unet:
            rows = torch.tensor(sorted(read_by_unet | {0}), dtype=torch.long)
            a[EMBEDDING_KEY], b[EMBEDDING_KEY] = a[EMBEDDING_KEY][rows], b[EMBEDDING_KEY][rows]
    elif hasattr(new, "encoder_tensors") and hasattr(old, "encoder_tensors"):
        same_config = new.config.scale_factor == old.config.scale_factor
        a, b = new.encoder_tensors(), old.encoder_tensors()
    else:
        return False
    return same_config and a.keys() == b.keys() and all(
        torch.equal(a[k].float(), b[k].float()) for k in a)


def ship_chain(unet_run: str | Path, name: str = "ldm", dtype: torch.dtype = torch.float16,
               judge: str = "judge", n: int = HEADLINE_FACES) -> dict:
    """Ship a U-Net run together with the autoencoder and text encoder it was trained on, when
    it beats the shipped U-Net (`quality.improves`, each with its own pipeline). The parts keep
    the names the shipped U-Net gives them (default "autoencoder" and "clip"), the new U-Net's
    config is pointed at those names, and every part gets its own curve point.
    Returns {"shipped", "headline", "old", "new", "folder", "parts": {field: (run, name)}}."""
    if not is_valid_name(name):
        raise ValueError(f"invalid model name {name!r}")
    unet_run, current = Path(unet_run), trained_dir() / name
    run_config = read_json(unet_run / "config.json")
    if run_config.get("kind") != "unet":
        raise ValueError(f"{unet_run} is not a U-Net run (kind {run_config.get('kind')!r})")
    old_config = read_json(current / "config.json") if (current / "config.json").is_file() else {}
    defaults = {"autoencoder": "autoencoder", "text_encoder": "clip"}
    parts = {}
    for field in PIPELINE_FIELDS:
        source = run_config.get(field)
        if source:  # a pixel-space U-Net has no autoencoder
            parts[field] = (resolve_model_dir(source), old_config.get(field) or defaults[field])
    new = measure(str(unet_run), judge=judge, n=n)
    old = measure(str(current), judge=judge, n=n) if old_config else None
    result = {"headline": new["headline"], "old": old, "new": new, "shipped": False,
              "folder": str(current), "parts": {f: (str(src), part) for f, (src, part)
                                                in parts.items()}}
    if old is not None and not improves(new, old):
        return result
    for source, part in parts.values():
        target = trained_dir() / part
        if target.is_dir() and source == target.resolve():
            continue  # the U-Net was trained on the shipped part itself
        shipped = (target / "config.json").is_file()
        part_old = measure(str(target), judge=judge, n=n) if shipped else None
        _ship_measured(source, part, dtype, part_old, measure(str(source), judge=judge, n=n))
    _ship_measured(unet_run, name, dtype, old, new,
                   config_updates={f: part for f, (_, part) in parts.items()})
    result["shipped"] = True
    return result


def _ship_measured(run_dir: Path, name: str, dtype: torch.dtype, old: dict | None, new: dict,
                   config_updates: dict | None = None) -> None:
    """Ship `run_dir` as `name` with its learning curve carried over: the shipped model's
    points (its own first, if it has no curve yet), the run's probes, and the new measurement;
    metrics.json records `new`."""
    current = trained_dir() / name
    run_metrics = read_json(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).is_file() else {}
    curve = read_curve(current)
    if old is not None and not curve:  # the shipped model's own point starts the curve
        old_path = current / METRICS_FILE
        old_metrics = read_json(old_path) if old_path.is_file() else {}
        curve.append(curve_point("shipped", cumulative_of_model(old_metrics), old))
    curve += [{"source": "probe", **{k: v for k, v in r.items() if k not in ("type", "elapsed")}}
              for r in read_log(run_dir) if r.get("type") == "probe"]
    curve.append(curve_point("shipped", cumulative_of_model(run_metrics), new))
    ship(run_dir, name, dtype, curve=curve, config_updates=config_updates)
    record(current, new)


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
    parser.add_argument("--if-better", dest="if_better", action="store_true",
                        help="ship only if the run's headline number beats the shipped model's")
    parser.add_argument("--chain", action="store_true",
                        help="a U-Net run: ship it with the autoencoder and text encoder it was "
                             "trained on, if its prompt accuracy beats the shipped U-Net's")
    parser.add_argument("--judge", default="judge", help="judge model of the headline numbers")
    args = parser.parse_args(argv)
    dtype = torch.float32 if args.fp32 else torch.float16
    try:
        if args.if_better or args.chain:
            if args.chain:
                result = ship_chain(args.run_dir, args.name, dtype, judge=args.judge)
            else:
                result = ship_if_better(args.run_dir, args.name, dtype, judge=args.judge)
            old, new, key = result["old"], result["new"], result["headline"]
            before = f"{old['value']:.4f}" if old else "nothing shipped"
            verdict = "shipped" if result["shipped"] else "not better: the shipped model stays"
            print(f"{args.name}: {key} {before} -> {new['value']:.4f}{second_number(old, new)} "
                  f"({args.run_dir}): {verdict}")
            for field, (source, part) in result.get("parts", {}).items():
                print(f"  its {field}: {source} -> trained/{part}"
                      f"{'' if result['shipped'] else ' (not shipped)'}")
            return 0
        out, gap = ship(args.run_dir, args.name, dtype)
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
