"""How well DDIM inversion works on the shipped latent diffusion, in three tables:

    python -m playground.evaluation.inversion [ldm] [--faces 8] [--out assets/bench]

- `inversion_table`: round-trip PSNR of test faces inverted to x_T and sampled back under their
  own caption, for every S × w (inversion is an Euler step run backwards: it wants small steps,
  and guidance breaks it);
- `edit_table`: prompt edits after inversion, against w: the face's caption with one attribute
  added ("… wearing a hat"), sampled from the face's own x_T. *Success*: the judge finds the
  attribute on the edit. *Kept*: the share of the other attributes the judge reads the same on
  the edit as on the round trip, and the judge-feature distance between the two (the identity
  the edit kept; 0 = the same face);
- `morph_table`: the Morph tab's two worlds on pairs of test faces — each β-VAE's slerp between
  the posterior means and diffusion's slerp between the DDIM-inverted x_T — scored by the
  judge's path smoothness (the mean feature distance between consecutive frames).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from playground.data.captions import caption_from_attributes
from playground.data.images import images_to_tensor
from playground.models.autoencoder import psnr
from playground.pipelines.inversion import diffusion_morph, invert, path_smoothness
from playground.pipelines.latent_diffusion import LatentDiffusion

EDITS = ("Wearing_Hat", "Blond_Hair", "Eyeglasses", "Smiling")  # attributes added by the edits


def inversion_table(pipe: LatentDiffusion, faces: np.ndarray, prompts: list[str],
                    steps: tuple[int, ...] = (10, 20, 50, 100),
                    guidance: tuple[float, ...] = (1.0, 3.0, 7.5)) -> list[dict]:
    """Round-trip PSNR (dB, mean over `faces`, each inverted and sampled back under its own
    prompt) for every S × w, and the autoencoder's ceiling:
    [{"steps", "guidance", "psnr", "ceiling"}]."""
    original = images_to_tensor(faces)
    ceiling = float(psnr(pipe.decode(pipe.encode(original)), original).mean())
    rows = []
    for s in steps:
        for w in guidance:
            x_T = invert(pipe, faces, prompts, w, s)
            back = pipe.sample(list(prompts), guidance=w, sampler="ddim", steps=s, eta=0.0,
                               x_T=x_T)
            rows.append({"steps": s, "guidance": w, "psnr": float(psnr(back, original).mean()),
                         "ceiling": ceiling})
    return rows


def edit_prompts(attributes: dict[str, np.ndarray], rows: Sequence[int], edit: str,
                 seed: int = 0) -> tuple[list[str], list[str]]:
    """For the faces `rows`: (their captions, the same captions with `edit` set present) — the
    same caption seed, so the phrasing stays and only the edit's words are new."""
    sources, edited = [], []
    for i in rows:
        attrs = {k: int(v[i]) for k, v in attributes.items()}
        sources.append(caption_from_attributes(attrs, rng=seed + int(i)))
        edited.append(caption_from_attributes({**attrs, edit: 1}, rng=seed + int(i)))
    return sources, edited


@torch.no_grad()
def edit_table(pipe: LatentDiffusion, judge, faces: np.ndarray, attributes: dict[str, np.ndarray],
               edits: Sequence[str] = EDITS, per_edit: int = 8,
               guidance: tuple[float, ...] = (1.0, 3.0, 7.5), steps: int = 50) -> list[dict]:
    """Prompt edits after inversion (module docstring), for each edit × w, on the first
    `per_edit` faces that lack the edited attribute:
    [{"edit", "guidance", "n", "success", "success_round_trip", "kept", "distance"}].
    ``success_round_trip`` is the same judge reading on the round trip (the edit's baseline)."""
    from playground.evaluation.quality import judge_attributes

    device = next(judge.parameters()).device
    rows = []
    for edit in edits:
        chosen = np.flatnonzero(np.asarray(attributes[edit]) == 0)[:per_edit]
        if len(chosen) == 0:
            continue
        sources, edited = edit_prompts(attributes, chosen, edit)
        for w in guidance:
            x_T = invert(pipe, faces[chosen], sources, w, steps)
            kwargs = dict(guidance=w, sampler="ddim", steps=steps, eta=0.0, x_T=x_T)
            back, changed = pipe.sample(sources, **kwargs), pipe.sample(edited, **kwargs)
            read_back = judge_attributes(judge, back.to(device))
            read_edit = judge_attributes(judge, changed.to(device))
            others = [a for a in read_back if a != edit]
            kept = np.mean([read_back[a] == read_edit[a] for a in others], axis=0)  # (n,)
            features = [judge.features(x.to(device).float()) for x in (back, changed)]
            rows.append({"edit": edit, "guidance": w, "n": len(chosen),
                         "success": float(read_edit[edit].mean()),
                         "success_round_trip": float(read_back[edit].mean()),
                         "kept": float(kept.mean()),
                         "distance": float((features[0] - features[1]).norm(dim=1).mean())})
    return rows


@torch.no_grad()
def morph_table(pipe: LatentDiffusion, judge, vaes: dict, faces: np.ndarray, pairs: int = 6,
                frames: int = 8, steps: int = 50) -> dict:
    """The judge's mean step between consecutive frames, averaged over `pairs` pairs of faces
    (faces 0–1, 2–3, …): {"pairs", "frames", "mean_step_in_judge_features": {path: value}}
    with one path per β-VAE in `vaes` (name → model) and the diffusion one."""
    from playground.pipelines.latent_paths import morph

    if len(faces) < 2 * pairs:
        raise ValueError(f"{pairs} pairs need {2 * pairs} faces, got {len(faces)}")
    paths = {name: lambda a, b, m=model: morph(m, a, b, frames, "slerp")
             for name, model in vaes.items()}
    paths[f"{pipe.name} (DDIM-{steps} inversion)"] = lambda a, b: diffusion_morph(
        pipe, a, b, frames=frames, steps=steps)
    scores = {name: float(np.mean([path_smoothness(judge, path(faces[2 * i], faces[2 * i + 1]))
                                   for i in range(pairs)]))
              for name, path in paths.items()}
    return {"pairs": pairs, "frames": frames, "mean_step_in_judge_features": scores}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m playground.evaluation.inversion",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ldm", nargs="?", default="ldm", help="the latent diffusion (default ldm)")
    p.add_argument("--judge", default="judge")
    p.add_argument("--faces", type=int, default=8, help="test faces per table cell (default 8)")
    p.add_argument("--out", default="assets/bench", help="folder of the JSON tables")
    p.add_argument("--only", choices=("round_trip", "edits", "morph"), default=None)
    p.add_argument("--vaes", nargs="*", default=["vae-beta1", "vae-beta4", "vae-beta10"],
                   help="β-VAEs of the morph table (default the three shipped)")
    p.add_argument("--pairs", type=int, default=6, help="face pairs of the morph table")
    p.add_argument("--steps", type=int, default=50,
                   help="DDIM steps of the edits and of the diffusion morph (default 50)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from playground.data.synthfaces import SynthFacesDataset
    from playground.pipelines.latent_diffusion import load_pipeline
    from playground.store.checkpoints import load_model

    pipe, judge = load_pipeline(args.ldm), load_model(args.judge).eval()
    test = SynthFacesDataset("test", n=max(200, args.faces))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "round_trip"):
        faces = test.images[:args.faces]
        prompts = edit_prompts(test.attributes, range(args.faces), EDITS[0])[0]
        table = inversion_table(pipe, faces, prompts)
        (out / "inversion_table.json").write_text(json.dumps(table, indent=1))
        print(json.dumps(table), file=sys.stderr)
    if args.only in (None, "edits"):
        table = edit_table(pipe, judge, test.images, test.attributes, per_edit=args.faces,
                           steps=args.steps)
        (out / "inversion_edits.json").write_text(json.dumps(table, indent=1))
        for r in table:
            print(f"{r['edit']:<12} w={r['guidance']:<4g} success {r['success']:.2f} "
                  f"(round trip {r['success_round_trip']:.2f}), kept {r['kept']:.2f}, "
                  f"distance {r['distance']:.2f}", file=sys.stderr)
    if args.only in (None, "morph"):
        vaes = {name: load_model(name).eval() for name in args.vaes}
        table = morph_table(pipe, judge, vaes, test.images, pairs=args.pairs, steps=args.steps)
        (out / "morph_smoothness.json").write_text(json.dumps(table, indent=1))
        print(json.dumps(table), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
