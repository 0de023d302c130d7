"""Is a label separated on a 2-D map? One score, one verdict, for the Latent map tab and the
assignment's report ("is the separation clear?").

    s = separation(points, labels)     # kNN accuracy (plain and balanced), majority baseline,
                                       # silhouette, classes, n, folds, note
    verdict, reason = separation_verdict(s["knn_acc"], s["baseline"], s["silhouette"],
                                         s["knn_balanced_acc"], s["classes"])
"""
from __future__ import annotations

import numpy as np

from playground.evaluation import metrics

KNN_K = 10  # neighbours of the kNN separation score
FOLDS = 5  # cross-validation folds of the kNN score
SILHOUETTE_MAX = 2000  # silhouette (O(N²)) on at most this many points, sampled with the seed


def separation(points, labels, k: int = KNN_K, seed: int = 0) -> dict:
    """Is the label separated on the map? (playground.evaluation.metrics on the 2-D points)

    Returns:
        dict with ``knn_acc`` (cross-validated accuracy of a k-NN classifier, k = 10),
        ``baseline`` (accuracy of always guessing the most common class), ``silhouette``
        (mean silhouette of the classes, on at most SILHOUETTE_MAX points sampled with
        `seed`), ``n``, ``k``, ``folds`` and ``note`` ("" or why a number is None: a label with
        one class only, or a class too rare for cross-validation).
    """
    points = np.asarray(points, np.float32)
    labels = np.asarray(labels)
    out = {"knn_acc": None, "knn_balanced_acc": None, "silhouette": None, "baseline": None,
           "classes": 0, "n": len(labels), "k": k, "folds": FOLDS, "note": ""}
    if points.ndim != 2 or len(points) != len(labels):
        raise ValueError(f"points (N, 2) and labels (N,) must have the same N, got "
                         f"{points.shape} and {labels.shape}")
    out["baseline"] = metrics.majority_baseline(labels)
    classes, counts = np.unique(labels, return_counts=True)
    out["classes"] = len(classes)
    if len(classes) < 2:
        out["note"] = "every point has the same value: nothing to separate"
        return out
    folds = min(FOLDS, int(counts.min()))
    if folds < 2:
        out["note"] = "a class has a single point: too rare to score"
        return out
    out["folds"] = folds
    for key, balanced in (("knn_acc", False), ("knn_balanced_acc", True)):
        out[key] = metrics.knn_accuracy(points, labels, k=min(k, len(labels) // 2),
                                        folds=folds, seed=seed, balanced=balanced)
    if len(points) > SILHOUETTE_MAX:
        pick = np.random.default_rng(seed).choice(len(points), SILHOUETTE_MAX, replace=False)
        if len(np.unique(labels[pick])) >= 2:
            out["silhouette"] = metrics.silhouette(points[pick], labels[pick])
    else:
        out["silhouette"] = metrics.silhouette(points, labels)
    if folds < FOLDS:
        out["note"] = f"{folds}-fold cross-validation (the rarest class has {counts.min()} points)"
    return out


DOMINANT_SHARE = 0.8  # a class with this share of the points "dominates" the label


def separation_verdict(knn_acc: float, baseline: float, silhouette: float | None,
                       balanced_acc: float | None = None, classes: int = 2) -> tuple[str, str]:
    """("clear" | "partial" | "none", one-sentence reason) from the separation numbers.

    Gain = the share of the possible improvement over chance: (balanced − 1/C) / (1 − 1/C) with
    the balanced kNN accuracy when there is one (a dominant class cannot inflate it), else
    (kNN acc − majority baseline) / (1 − baseline). Silhouette thresholds follow Kaufman &
    Rousseeuw (> 0.5 strong, 0.25–0.5 weak, < 0.25 no substantial cluster structure); an
    unknown silhouette does not block "clear".
    """
    if balanced_acc is not None:
        chance = 1.0 / max(classes, 2)
        gain, against = (balanced_acc - chance) / (1.0 - chance), "chance (balanced accuracy)"
    else:
        gain = (knn_acc - baseline) / max(1.0 - baseline, 1e-9)
        against = "the majority baseline"
    clusters = silhouette is None or silhouette >= 0.25
    sil = "n/a" if silhouette is None else f"{silhouette:.2f}"
    if gain >= 0.6 and clusters:
        return "clear", (f"neighbours almost always share the label ({gain:.0%} of the possible "
                         f"gain over {against}) and the classes form distinct clusters "
                         f"(silhouette {sil})")
    if gain >= 0.2:
        structure = ("distinct clusters" if clusters else
                     "no distinct clusters (silhouette < 0.25): the classes lie side by side "
                     "in overlapping regions rather than in separate islands")
        return "partial", (f"the label is predictable from a point's neighbours ({gain:.0%} of "
                           f"the possible gain over {against}) but there are {structure}")
    if gain <= 0:
        return "none", (f"a point's neighbours predict the label no better than {against}, "
                        f"and the silhouette {sil} shows no cluster structure")
    return "none", (f"a point's neighbours barely predict the label ({gain:.0%} of the possible "
                    f"gain over {against}; silhouette {sil})")
