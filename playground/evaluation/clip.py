"""How well a CLIP matches faces and captions, on a captioned split (SynthFaces test).

- zero-shot attribute accuracy: for each attribute, is an image closer to "a photo of a person
  smiling" than to "… not smiling"? Per attribute and mean, with the majority-class baseline,
  the balanced accuracy and the ROC AUC of the margin (both 0.5 at chance).
- image → caption retrieval: top-1 accuracy within groups of 100 pairs (chance 1 / 100).

The CLIP trainer reports these per epoch and in metrics.json; the command line re-measures a
saved CLIP::

    python -m playground.evaluation.clip NAME [--test-size N] [--write]
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch

from playground.data.captions import ATTRIBUTE_PHRASES, captions_for_dataset, zero_shot_prompts
from playground.models.clip import TextImageCLIP
from playground.store.checkpoints import METRICS_FILE, load_metrics, load_model, resolve_model_dir
from playground.store.files import atomic_write_json
from playground.training.batches import image_source, open_dataset


@torch.no_grad()
def image_embeddings(model: TextImageCLIP, source, batch_size: int = 250) -> torch.Tensor:
    """Normalised image embeddings (N, E) of a whole image source."""
    model.eval()
    parts = [model.encode_image(x).float().cpu()
             for x in source.iterate(torch.split(torch.arange(len(source)), batch_size))]
    return torch.cat(parts)


@torch.no_grad()
def zero_shot_accuracy(model: TextImageCLIP, image_features: torch.Tensor,
                       attributes: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per attribute: predict "present" when an image is closer to the positive prompt than
    to the negative one (`zero_shot_prompts`), compare with the truth.

    Args:
        image_features: (N, E) normalised; attributes: name → (≥ N,) 0/1 arrays.
    Returns:
        ``zero_shot_acc`` (mean), ``zero_shot_acc_per_attribute``, ``zero_shot_baseline``
        (majority-class accuracy, mean) and ``…_per_attribute``; ``zero_shot_balanced_acc``
        (mean of the true-positive and true-negative rates) and ``zero_shot_auc`` (ROC AUC of
        the margin sim(pos) − sim(neg)), each with ``…_per_attribute`` — both 0.5 at chance
        whatever the attribute's frequency.
    """
    model.eval()
    n = image_features.shape[0]
    names = [a for a in ATTRIBUTE_PHRASES if a in attributes]
    if not names:
        raise ValueError("no attribute with zero-shot phrases in this dataset")
    prompts = [p for a in names for p in zero_shot_prompts(a)]
    text = model.encode_text(prompts).float().cpu()  # (2A, E)
    sims = image_features @ text.T  # (N, 2A)
    from sklearn.metrics import roc_auc_score

    acc, base, balanced, auc = {}, {}, {}, {}
    for j, name in enumerate(names):
        margin = (sims[:, 2 * j] - sims[:, 2 * j + 1]).numpy()  # > 0: closer to "present"
        pred = margin > 0
        y = np.asarray(attributes[name])[:n].astype(bool)
        acc[name] = float((pred == y).mean())
        base[name] = float(max(y.mean(), 1 - y.mean()))
        if 0 < y.sum() < n:
            balanced[name] = float(0.5 * (pred[y].mean() + (~pred[~y]).mean()))
            auc[name] = float(roc_auc_score(y, margin))
    return {"zero_shot_acc": float(np.mean(list(acc.values()))),
            "zero_shot_acc_per_attribute": acc,
            "zero_shot_baseline": float(np.mean(list(base.values()))),
            "zero_shot_baseline_per_attribute": base,
            # threshold-free and prior-free views of the same margins (chance: 0.5 each)
            "zero_shot_balanced_acc": float(np.mean(list(balanced.values()))) if balanced else None,
            "zero_shot_balanced_acc_per_attribute": balanced,
            "zero_shot_auc": float(np.mean(list(auc.values()))) if auc else None,
            "zero_shot_auc_per_attribute": auc}


@torch.no_grad()
def retrieval_accuracy(model: TextImageCLIP, image_features: torch.Tensor, captions: list[str],
                       group: int = 100) -> float:
    """Image → caption top-1 accuracy within consecutive groups of `group` pairs (chance
    1 / group): is each image's own caption the closest of the group's captions?"""
    model.eval()
    hits, total = 0, 0
    for s in range(0, len(captions) - group + 1, group):
        text = model.encode_text(captions[s:s + group]).float().cpu()
        sims = image_features[s:s + group] @ text.T
        hits += int((sims.argmax(dim=1) == torch.arange(group)).sum())
        total += group
    return hits / total if total else float("nan")


def evaluate_clip(model: TextImageCLIP, test_set, device: torch.device | str = "cpu"
                  ) -> dict[str, Any]:
    """Zero-shot attribute scores and image→caption retrieval on a captioned test set."""
    feats = image_embeddings(model, image_source(test_set, torch.device(device)))
    attrs = getattr(test_set, "attributes", {})
    test_captions = captions_for_dataset(attrs, getattr(test_set, "factors", None), seed=0)
    group = min(100, len(test_captions))
    return {**zero_shot_accuracy(model, feats, attrs),
            "retrieval_top1": retrieval_accuracy(model, feats, test_captions, group),
            "retrieval_group": group,
            "n_test": int(feats.shape[0]),
            "vocabulary_tokens": len(model.config.known_tokens)}


def main(argv: list[str] | None = None) -> int:
    """``python -m playground.evaluation.clip NAME [--write]``: re-measure a CLIP on the test
    split (and update its metrics.json with --write)."""
    p = argparse.ArgumentParser(prog="python -m playground.evaluation.clip",
                                description=main.__doc__)
    p.add_argument("name", help="model name (trained/, runs/) or folder")
    p.add_argument("--test-size", type=int, default=None, help="first N test faces (default all)")
    p.add_argument("--write", action="store_true", help="merge the scores into its metrics.json")
    args = p.parse_args(argv)
    model = load_model(args.name).float().eval()
    scores = evaluate_clip(model, open_dataset("synthfaces", "test", args.test_size, None))
    print(f"zero-shot accuracy {scores['zero_shot_acc']:.4f} (majority {scores['zero_shot_baseline']:.4f}), "
          f"balanced {scores['zero_shot_balanced_acc']:.4f}, AUC {scores['zero_shot_auc']:.4f}, "
          f"retrieval top-1 {scores['retrieval_top1']:.3f} of {scores['retrieval_group']}")
    if args.write:
        folder = resolve_model_dir(args.name)
        atomic_write_json(folder / METRICS_FILE, {**load_metrics(args.name), **scores})
    return 0


if __name__ == "__main__":
    sys.exit(main())
