"""Can a CLIP's image tower learn one attribute, if nothing else asks it to?

The linear probe (`clip.linear_probe`) says whether the image embedding holds an attribute
*now*. When it does not, there are two different reasons: the tower cannot see the detail
(too coarse a patch grid, too small a model), or it can but the training loss gives the detail
too small a share of the gradient among everything else it asks for. This check tells them
apart: it fine-tunes the image tower (in place; nothing is saved) with a linear head on the attribute alone (BCE
on the labels) and prints the head's test ROC AUC every few steps. A tower that climbs from
chance within a few hundred steps could see the detail all along.

    python -m playground.evaluation.clip_capacity clip --attribute Arched_Eyebrows --steps 300

(Stretch 18: the CLIP of stretch 17 held brows at 0.51; the same fine-tune with the brow-arch
factor as its target, a one-off script, took them to 0.94 in 300 steps on one CPU thread, so
the recipe, not the tower, was what lacked. This module's BCE version has not been timed on it.)
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from playground.evaluation.clip import image_embeddings
from playground.models.clip import TextImageCLIP
from playground.store.checkpoints import load_model
from playground.training.batches import image_source, open_dataset
from playground.training.trainers.clip_losses import AttributeHead


@dataclass
class CapacityCheck:
    """One fine-tuning of the image tower on a single attribute."""

    attribute: str = "Arched_Eyebrows"  # the label the head reads
    steps: int = 300  # optimizer steps (300 take about 3 minutes on one CPU thread)
    eval_every: int = 100  # test AUC every N steps
    batch_size: int = 128  # faces per step
    lr: float = 5e-4  # AdamW, no decay: a short probe, not a training run
    train_size: int = 20000  # training faces drawn from
    test_size: int = 2000  # test faces the AUC is measured on
    seed: int = 0  # head initialisation and batch order


def _head_auc(model: TextImageCLIP, head: AttributeHead, test_source, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    with torch.no_grad():
        scores = head(image_embeddings(model, test_source))[:, 0].numpy()
    model.train()
    return float(roc_auc_score(labels, scores))


def tower_capacity(model: TextImageCLIP, train_set, test_set,
                   check: CapacityCheck = CapacityCheck()) -> list[tuple[int, float]]:
    """Fine-tune `model.clip.visual` (in place) and a fresh linear head on one attribute.

    Returns [(step, test ROC AUC of the head)], from step 0 (a random read-out) to
    `check.steps`."""
    names = getattr(train_set, "attributes", {})
    if check.attribute not in names:
        raise ValueError(f"no {check.attribute!r} labels in this dataset; known: {sorted(names)}")
    generator = torch.Generator().manual_seed(check.seed)
    torch.manual_seed(check.seed)
    labels = torch.as_tensor(np.asarray(train_set.attributes[check.attribute]), dtype=torch.float32)
    test_labels = np.asarray(test_set.attributes[check.attribute])
    train_source = image_source(train_set, torch.device("cpu"))
    test_source = image_source(test_set, torch.device("cpu"))
    head = AttributeHead(model.config.embed_dim, (check.attribute,))
    model.float().train()
    optimizer = torch.optim.AdamW([*head.parameters(), *model.clip.visual.parameters()],
                                  lr=check.lr, weight_decay=0.0)
    curve = [(0, _head_auc(model, head, test_source, test_labels))]
    batches = [torch.randint(0, len(train_set), (check.batch_size,), generator=generator)
               for _ in range(check.steps)]
    for step, (idx, x) in enumerate(zip(batches, train_source.iterate(batches)), start=1):
        logits = head(model.encode_image(x).float())[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits, labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % check.eval_every == 0 or step == check.steps:
            curve.append((step, _head_auc(model, head, test_source, test_labels)))
            print(f"step {step}: test ROC AUC {curve[-1][1]:.3f} (loss {loss.item():.3f})",
                  flush=True)
    return curve


def main(argv: list[str] | None = None) -> int:
    """``python -m playground.evaluation.clip_capacity NAME``: can this CLIP's image tower
    learn an attribute when trained on it alone? (Nothing is saved.)"""
    d = CapacityCheck()
    p = argparse.ArgumentParser(prog="python -m playground.evaluation.clip_capacity",
                                description=main.__doc__)
    p.add_argument("name", help="CLIP name (trained/, runs/) or folder")
    p.add_argument("--attribute", default=d.attribute, help=f"(default {d.attribute})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"(default {d.steps})")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help=f"(default {d.eval_every})")
    p.add_argument("--train-size", type=int, default=d.train_size,
                   help=f"(default {d.train_size})")
    p.add_argument("--test-size", type=int, default=d.test_size, help=f"(default {d.test_size})")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    check = CapacityCheck(attribute=args.attribute, steps=args.steps, eval_every=args.eval_every,
                          train_size=args.train_size, test_size=args.test_size)
    model = load_model(args.name)
    train = open_dataset("synthfaces", "train", check.train_size, None)
    test = open_dataset("synthfaces", "test", check.test_size, None)
    curve = tower_capacity(model, train, test, check)
    print(f"{check.attribute}: test ROC AUC {curve[0][1]:.3f} → {curve[-1][1]:.3f} in "
          f"{check.steps} steps of the image tower alone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
