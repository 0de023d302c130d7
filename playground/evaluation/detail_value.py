"""What a small detail is worth to a β-VAE: the most reconstruction loss it can save by keeping
the detail in z, against the least KL it pays to send it.

For each detail the same faces are drawn twice, with the detail and without it, every other
factor equal. A decoder that knows the detail and draws it perfectly lowers a face's BCE by

    BCE(x_on, x_off) − BCE(x_on, x_on) = Σ_pixels KL(Bern(x_on) ‖ Bern(x_off))  nats,

averaged here over both directions and over the faces: the *most* that keeping the detail can
save (a blurry decoder saves less). Sending it costs at least the detail's entropy H(p) nats in
the KL term (a Gaussian code pays more for a bit it must deliver reliably), times β. Where
β·H(p) comes close to the saving, the objective itself tells the encoder to drop the detail,
and longer training cannot bring it back: that is what happens to lipstick at β = 1.

    python -m playground.evaluation.detail_value [--faces 400] [--model vae-beta1]
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from playground.data.synthfaces import CATEGORY_PROBS, render, sample_factors


@dataclass(frozen=True)
class Detail:
    """One small-detail attribute as a change of one factor (the rest of the face fixed)."""

    attribute: str  # CelebA name, as in the judge's metrics
    factor: str
    on: float  # factor value with the detail (middle of the attribute's range)
    off: float  # factor value without it
    prior: float  # share of SynthFaces faces that have it
    label: str = ""  # how the table names it, when not by the attribute

    @property
    def shown(self) -> str:
        return self.label or self.attribute


# Continuous factors are set to the middle of the attribute's side of its threshold
# (`synthfaces.factors.ATTRIBUTE_THRESHOLDS`); categorical ones to the category.
DETAILS: tuple[Detail, ...] = (
    Detail("Wearing_Lipstick", "lipstick", 1, 0, CATEGORY_PROBS["lipstick"][1]),
    Detail("Eyeglasses", "eyeglasses", 1, 0, CATEGORY_PROBS["eyeglasses"][1]),
    Detail("Mustache", "facial_hair", 1, 0, CATEGORY_PROBS["facial_hair"][1]),
    Detail("Goatee", "facial_hair", 2, 0, CATEGORY_PROBS["facial_hair"][2]),
    Detail("No_Beard", "facial_hair", 3, 0, CATEGORY_PROBS["facial_hair"][3], "No_Beard (a beard)"),
    Detail("Smiling", "smile", 0.5, -0.5, 0.5),  # smile > 0, on [-1, 1]
    Detail("Mouth_Slightly_Open", "mouth_open", 0.75, 0.25, 0.5),  # mouth_open > 0.5
    Detail("Narrow_Eyes", "eye_open", 0.125, 0.625, 0.25),  # eye_open < 0.25
    Detail("Arched_Eyebrows", "brow", 0.8, 0.3, 0.4),  # brow > 0.6
)
PIXEL_CHANGE = 0.05  # a pixel "changes" when some channel moves by more than this


def bernoulli_kl(p: np.ndarray, q: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Σ over all but the first axis of KL(Bern(p) ‖ Bern(q)): (N, ...) images in [0, 1] → (N,)
    nats. Equal to BCE(target p, prediction q) − BCE(p, p); clipped to [eps, 1 − eps] as a
    decoder's sigmoid never reaches 0 or 1."""
    p = np.clip(p.astype(np.float64), eps, 1 - eps)
    q = np.clip(q.astype(np.float64), eps, 1 - eps)
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    return kl.reshape(len(kl), -1).sum(axis=1)


def binary_entropy(p: float) -> float:
    """H(p) in nats: the least a code pays, on average, to send a bit that is 1 with chance p."""
    if not 0 < p < 1:
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def detail_value(detail: Detail, factors: dict[str, np.ndarray]) -> dict[str, float]:
    """The detail's BCE saving (mean and median nats over the faces), the pixels it changes
    and its entropy, on faces drawn from `factors` (N faces) with the detail on and off."""
    n = len(factors[detail.factor])
    with_it = {**factors, detail.factor: np.full(n, detail.on, factors[detail.factor].dtype)}
    without = {**factors, detail.factor: np.full(n, detail.off, factors[detail.factor].dtype)}
    x_on = render(with_it).astype(np.float64) / 255  # (N, 64, 64, 3)
    x_off = render(without).astype(np.float64) / 255
    saving = 0.5 * (bernoulli_kl(x_on, x_off) + bernoulli_kl(x_off, x_on))
    pixels = (np.abs(x_on - x_off).max(axis=-1) > PIXEL_CHANGE).sum(axis=(1, 2))
    entropy = binary_entropy(detail.prior)
    return {"saving_mean": float(saving.mean()), "saving_median": float(np.median(saving)),
            "pixels": float(pixels.mean()), "entropy": entropy,
            "ratio": float(saving.mean() / entropy) if entropy else math.inf}


def value_table(faces: int = 400, seed: int = 0,
                judged: dict[str, float] | None = None) -> str:
    """A markdown table of every detail's value, with the judge's accuracy on a model's
    reconstructions beside it where `judged` (attribute → accuracy) has the attribute."""
    factors = sample_factors(faces, np.random.default_rng(seed))
    rows = ["| detail | pixels it changes | BCE it can save (mean / median nats) | entropy H(p), "
            "nats | saving / H(p) | judge on β = 1's reconstructions |",
            "|---|---:|---:|---:|---:|---:|"]
    for detail in DETAILS:
        v = detail_value(detail, factors)
        acc = (judged or {}).get(detail.attribute)
        rows.append(f"| {detail.shown} | {v['pixels']:.0f} | {v['saving_mean']:.1f} / "
                    f"{v['saving_median']:.1f} | {v['entropy']:.2f} | {v['ratio']:.0f} | "
                    f"{'' if acc is None else f'{acc:.2f}'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m playground.evaluation.detail_value",
                                description="What each small detail is worth in BCE nats, "
                                            "against what it costs in KL.")
    p.add_argument("--faces", type=int, default=400, help="faces per detail (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="vae-beta1",
                   help="shipped β-VAE whose judge accuracy per detail is shown beside "
                        "(from its metrics.json; '' for none)")
    args = p.parse_args(argv)
    if args.faces < 1:
        p.error("--faces must be >= 1")
    judged = None
    if args.model:
        from playground.store.checkpoints import resolve_model_dir
        from playground.store.files import read_json

        metrics = read_json(resolve_model_dir(args.model) / "metrics.json")
        judged = metrics.get("quality", {}).get("small_detail_per_attribute")
    print(value_table(args.faces, args.seed, judged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
