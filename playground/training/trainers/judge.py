"""Train the judge: ``python -m playground.train judge [--minutes 15 | --epochs 5]``.

Supervised on SynthFaces, whose factors are known. Loss per batch, summed over factors:

    Σ_continuous (μ_f − y_f)²                                    (y rescaled to [−1, 1])
  + Σ_categorical cross-entropy(logits_c, y_c)
  + Σ_continuous ½ (log σ²_f + (y_f − sg[μ_f])² / σ²_f)        (uncertainty heads; sg = stop-gradient)

Same machinery as the other trainers: resumable atomic checkpoints, seeded batch order,
DDP, time budget, log.jsonl. metrics.json: attribute accuracy on the test split (per
attribute and mean, with the majority-class baseline), R² of every continuous factor,
accuracy of every categorical factor, and ``fd_floor`` — FD-judge between the two halves of
the test split, the value two samples of *real* faces reach (a generator cannot do better).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from playground.data.synthfaces import attributes_from_factors
from playground.evaluation.frechet import frechet_distance
from playground.models.judge import Judge, JudgeConfig, attribute_probabilities
from playground.store.checkpoints import runs_dir
from playground.training import (
    DistInfo,
    GracefulStop,
    StartAndSpeed,
    TrainLoop,
    add_common_arguments,
    autocast,
    check_run_options,
    config_from_args,
    image_source,
    int_tuple,
    open_dataset,
    run_trainer,
)

HELP = "judge CNN: reads SynthFaces factors/attributes back (FD-judge features, attribute accuracy)"


@dataclass
class JudgeTrainConfig(StartAndSpeed):
    """One judge training run (saved in train_state.json as "args")."""

    channels: tuple[int, ...] = (32, 64, 128, 256)  # trunk widths, one stride-2 block each
    feature_dim: int = 128  # penultimate features (FD-judge)
    data_root: str | None = None  # SynthFaces cache folder
    epochs: int | None = None  # stop after this many epochs (5 if no minutes/max_steps given)
    minutes: float | None = None  # stop after this much training time, summed over resumes
    max_steps: int | None = None  # stop after this many optimizer steps in total (quick runs)
    batch_size: int = 128  # global batch, split evenly across DDP processes
    lr: float = 2e-3  # Adam learning rate (peak of the cosine schedule)
    lr_schedule: str = "cosine"  # "cosine" (to lr_min_ratio · lr at the end of the budget) or "constant"
    lr_min_ratio: float = 0.05  # final learning rate of the cosine schedule, as a fraction of lr
    weight_decay: float = 0.0  # AdamW weight decay
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (CUDA if available)
    seed: int = 0  # initial weights and data order
    train_size: int | None = None  # use the first N training images (None = the whole split)
    eval_size: int | None = 1024  # first N validation images for the per-epoch accuracy
    test_size: int | None = None  # first N test images for metrics.json (None = the whole split)
    checkpoint_minutes: float = 2.0  # also checkpoint this often within an epoch
    log_every: int = 20  # a "train" line in log.jsonl every N steps
    num_workers: int = 2  # unused (SynthFaces is in memory); kept for the shared options
    threads: int | None = None  # CPU threads for torch (None = torch's default, all cores)
    progress: bool = True  # tqdm progress bar
    out: str | None = None  # run folder (default: runs/judge)
    MODEL_KIND: ClassVar[str] = "judge"
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("channels", "feature_dim")

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        check_run_options(self)
        self.model_config()

    def model_config(self) -> JudgeConfig:
        return JudgeConfig(channels=self.channels, feature_dim=self.feature_dim)

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else runs_dir() / "judge"


FIXED_ON_RESUME = ("channels", "feature_dim", "batch_size", "seed", "train_size")


# =========================================================================== targets & loss
class FactorTargets:
    """A dataset's factors as tensors: continuous (N, Fc) in [−1, 1], categorical (N, Fk) int64."""

    def __init__(self, factors: dict[str, np.ndarray], config: JudgeConfig, device: torch.device):
        names = config.continuous_names + config.categorical_names
        missing = [name for name in names if name not in factors]
        if missing:
            raise ValueError(f"the dataset has no factors {missing}: the judge trains on "
                             "SynthFaces (a dataset with a .factors dict)")
        n = len(np.asarray(factors[names[0]]))
        cont = [(np.asarray(factors[name], np.float32) - lo) / (hi - lo) * 2 - 1
                for name, lo, hi in config.continuous]
        self.continuous = torch.from_numpy(np.stack(cont, axis=1) if cont
                                           else np.zeros((n, 0), np.float32)).to(device)
        cat = [np.asarray(factors[name], np.int64) for name in config.categorical_names]
        self.categorical = torch.from_numpy(np.stack(cat, axis=1) if cat
                                            else np.zeros((n, 0), np.int64)).to(device)

    def __len__(self) -> int:
        return self.continuous.shape[0]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.continuous.device)
        return self.continuous[idx], self.categorical[idx]


def judge_loss(out: dict[str, torch.Tensor], continuous: torch.Tensor, categorical: torch.Tensor,
               categorical_names: list[str]) -> dict[str, torch.Tensor]:
    """The judge objective (module docstring), each term summed over factors, averaged over
    the batch.

    Args:
        out: `Judge.forward` output; continuous: (N, Fc) targets in [−1, 1];
        categorical: (N, Fk) int64 class indices, columns in `categorical_names` order.
    Returns:
        ``loss``, ``mse``, ``ce``, ``nll`` (scalars).
    """
    zero = continuous.new_zeros(())
    mse = nll = ce = zero
    if continuous.shape[1]:
        mean, logvar = out["continuous_mean"].float(), out["continuous_logvar"].float()
        mse = (mean - continuous).pow(2).sum(dim=1).mean()
        resid2 = (continuous - mean.detach()).pow(2)
        nll = (0.5 * (logvar + resid2 * torch.exp(-logvar))).sum(dim=1).mean()
    for j, name in enumerate(categorical_names):
        ce = ce + F.cross_entropy(out[name].float(), categorical[:, j])
    return {"loss": mse + ce + nll, "mse": mse, "ce": ce, "nll": nll}


# =========================================================================== evaluation
@torch.no_grad()
def predict_all(judge: Judge, source, batch_size: int = 256) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Factor predictions (numpy, `predict_factors` format) and features (N, F) of a whole source."""
    judge.eval()
    parts: list[dict[str, torch.Tensor]] = []
    feats = []
    for x in source.iterate(torch.split(torch.arange(len(source)), batch_size)):
        f = judge.features(x)
        out = judge.heads(f)
        feats.append(f.double().cpu())
        parts.append({k: v.cpu() for k, v in judge.factors_from_heads(out).items()})
    preds = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
    return preds, torch.cat(feats).numpy()


def judge_scores(judge: Judge, source, factors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Accuracy of the judge on images with known factors.

    Returns:
        ``attribute_acc`` (mean over the 18 attributes), ``attribute_acc_per_attribute``,
        ``attribute_baseline_acc_per_attribute`` (always guessing the majority class),
        ``factor_r2`` (continuous factor → R²), ``factor_r2_mean``, ``factor_acc``
        (categorical factor → accuracy), ``n``, and the features under ``"_features"``.
    """
    preds, feats = predict_all(judge, source)
    n = feats.shape[0]
    factors = {k: np.asarray(v)[:n] for k, v in factors.items()}
    truth = attributes_from_factors(factors)
    probs = attribute_probabilities({k: torch.from_numpy(v) for k, v in preds.items()})
    acc, base = {}, {}
    for name, p in probs.items():
        y = truth[name].astype(bool)
        acc[name] = float(((p.numpy() > 0.5) == y).mean())
        base[name] = float(max(y.mean(), 1 - y.mean()))
    r2 = {}
    for name in judge.config.continuous_names:
        y = factors[name].astype(np.float64)
        ss_res = float(((y - preds[name]) ** 2).sum())
        ss_tot = float(((y - y.mean()) ** 2).sum())
        r2[name] = 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    cat_acc = {name: float((preds[name].argmax(axis=1) == factors[name]).mean())
               for name in judge.config.categorical_names}
    finite_r2 = [v for v in r2.values() if np.isfinite(v)]
    return {
        "attribute_acc": float(np.mean(list(acc.values()))),
        "attribute_acc_per_attribute": acc,
        "attribute_baseline_acc_per_attribute": base,
        "factor_r2": {k: (v if np.isfinite(v) else None) for k, v in r2.items()},
        "factor_r2_mean": float(np.mean(finite_r2)) if finite_r2 else None,
        "factor_acc": cat_acc,
        "n": n,
        "_features": feats,
    }


# =========================================================================== training
def train_judge(cfg: JudgeTrainConfig, *, resume: bool = False, train_set=None, val_set=None,
                test_set=None, stop_event=None) -> dict[str, Any] | None:
    """Train (or, with `resume`, continue) a `Judge` in ``cfg.out_dir()``.

    Datasets must expose ``.images`` (uint8 (N, 64, 64, 3)) and ``.factors`` (dict of
    arrays), like `SynthFacesDataset`; given ones replace the SynthFaces splits (a given
    `val_set` also serves as the test set unless `test_set` is given).
    Returns:
        the metrics written to metrics.json (on rank 0; None on other ranks).
    """
    return run_trainer(cfg, stop_event, lambda info, device, stop: _train(
        cfg, info, device, resume, train_set, val_set, test_set, stop))


def _train(cfg: JudgeTrainConfig, info: DistInfo, device: torch.device, resume: bool,
           train_set, val_set, test_set, stop: GracefulStop):
    loop = TrainLoop(cfg, info, device, stop, resume, rng_scheme="order seeded by (seed, epoch)")
    if test_set is None and val_set is not None:
        test_set = val_set
    train_set, val_set, train_source, val_source = loop.open_data(train_set, val_set, "synthfaces")
    model_config = cfg.model_config()
    targets = FactorTargets(getattr(train_set, "factors", {}), model_config, device)
    n = len(train_source)
    if len(targets) != n:
        raise ValueError(f"the training set has {n} images but {len(targets)} factor rows")
    loop.set_data(n, default_epochs=5)

    def build():
        model = Judge(model_config).to(device)
        return model, torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    model = loop.setup_model(build, FIXED_ON_RESUME)
    cat_names = model_config.categorical_names

    def step(x, idx, epoch, step_in_epoch):
        y_cont, y_cat = targets.batch(idx)
        with autocast(device, loop.amp):
            outputs = loop.net(x)
        losses = judge_loss(outputs, y_cont, y_cat, cat_names)
        return losses["loss"], torch.stack([losses[k].detach() for k in ("loss", "mse", "ce", "nll")])

    def validate(epoch):
        if info.is_main:  # a small validation: rank 0 alone
            val = judge_scores(model, val_source, getattr(val_set, "factors", {}))
            loop.out.log({"type": "val", "step": loop.global_step, "epoch": epoch,
                          "attribute_acc": val["attribute_acc"],
                          "factor_r2_mean": val["factor_r2_mean"], "elapsed": loop.elapsed()})
            print(f"epoch {epoch}: val attribute accuracy {val['attribute_acc']:.4f}, "
                  f"mean factor R² {val['factor_r2_mean']:.4f}", flush=True)

    loop.run(train_source, step, ("loss", "mse", "ce", "nll"), validate=validate, log_lr=True,
             postfix=lambda m, img_s: dict(mse=f"{m['mse']:.3f}", ce=f"{m['ce']:.3f}",
                                           img_s=f"{img_s:.0f}"))

    def final():
        nonlocal test_set
        if test_set is None:
            test_set = open_dataset("synthfaces", "test", cfg.test_size, cfg.data_root)
        test = judge_scores(model, image_source(test_set, device, cfg.num_workers),
                            getattr(test_set, "factors", {}))
        feats = test.pop("_features")
        half = feats.shape[0] // 2
        fd_floor = frechet_distance(feats[:half], feats[half:2 * half]) if half >= 2 else None
        metrics = {
            **test,
            "fd_floor": fd_floor,
            "fd_floor_n": half,
            "feature_dim": model_config.feature_dim,
            "parameters": sum(p.numel() for p in model.parameters()),
            **loop.run_metrics(),
        }
        return metrics, (f"done: {loop.global_step} steps, test attribute accuracy "
                         f"{test['attribute_acc']:.4f}, mean factor R² {test['factor_r2_mean']:.4f}, "
                         f"FD-judge floor {fd_floor} → {loop.out.path}")

    return loop.finish(final)


# =========================================================================== command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m playground.train judge``. Unset options keep the checkpoint's
    values on --resume (and the defaults shown otherwise)."""
    d = JudgeTrainConfig()
    S = argparse.SUPPRESS
    p.add_argument("--channels", type=int_tuple, default=S,
                   help="trunk widths, comma separated (default 32,64,128,256)")
    p.add_argument("--feature-dim", dest="feature_dim", type=int, default=S,
                   help=f"penultimate feature size for FD-judge (default {d.feature_dim})")
    p.add_argument("--weight-decay", dest="weight_decay", type=float, default=S,
                   help=f"AdamW weight decay (default {d.weight_decay:g})")
    add_common_arguments(p, d, "run folder (default runs/judge)")


def main(args: argparse.Namespace) -> int:
    train_judge(config_from_args(JudgeTrainConfig, args), resume=args.resume)
    return 0
