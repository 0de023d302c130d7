"""How well a CLIP matches faces and captions, on a captioned split (SynthFaces test).

- zero-shot attribute accuracy: for each attribute, is an image closer to "a photo of a person
  smiling" than to "… not smiling"? Per attribute and mean, with the majority-class baseline,
  the balanced accuracy and the ROC AUC of the margin (both 0.5 at chance).
- image → caption retrieval: top-1 accuracy within groups of 100 pairs (chance 1 / 100).

The CLIP trainer reports these per epoch and in metrics.json; the command line re-measures a
saved CLIP::

    python -m playground.evaluation.clip NAME [--test-size N] [--write] [--probe 6000]

``--probe`` adds a linear probe per attribute on the image side (`linear_probe`): on the
embeddings and on the ViT's patch embeddings, to tell a blind image tower from a blind text side.
``--negation`` asks how much of the zero-shot score the absent prompt ("… not smiling") costs
(`negation_diagnostic`): the same AUC with the neutral "a photo of a person" in its place.
``--paraphrases`` scores the same faces with every prompt pair in other words (`PARAPHRASES`).
``--facial-hair`` splits Mustache's and Goatee's AUC by the other kind of facial hair
(`facial_hair_diagnostic`).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch

from playground.data.captions import (
    ATTRIBUTE_PHRASES,
    NEUTRAL_PROMPT,
    captions_for_dataset,
    zero_shot_prompts,
)
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


# The zero-shot check in other words: each attribute's (present, absent) pair phrased as the
# captions also say it, after another noun ("a photo of a face with a grin" / "… with a serious
# expression"). A CLIP that learned the headline's phrases alone scores lower here.
PARAPHRASES: dict[str, tuple[str, str]] = {
    "Arched_Eyebrows": ("with arched brows", "with level brows"),
    "Bald": ("with a bald head", "with a full head of hair"),
    "Bangs": ("with a fringe", "without a fringe"),
    "Black_Hair": ("with dark hair", "with hair that is not black"),
    "Blond_Hair": ("with golden hair", "with hair that is not blond"),
    "Brown_Hair": ("with chestnut hair", "with hair that is not brown"),
    "Chubby": ("with a round face", "with a thin face"),
    "Eyeglasses": ("wearing spectacles", "without glasses"),
    "Goatee": ("with a goatee", "without a goatee"),
    "Gray_Hair": ("with silver hair", "with hair that is not gray"),
    "Mouth_Slightly_Open": ("with parted lips", "with closed lips"),
    "Mustache": ("with a moustache", "without a moustache"),
    "Narrow_Eyes": ("with narrowed eyes", "with wide eyes"),
    "No_Beard": ("without a beard", "with a full beard"),
    "Pale_Skin": ("with fair skin", "with olive skin"),
    "Smiling": ("with a grin", "with a serious expression"),
    "Wearing_Hat": ("wearing a cap", "without a hat"),
    "Wearing_Lipstick": ("with painted lips", "without lipstick"),
}
PARAPHRASE_NOUN = "face"


@torch.no_grad()
def zero_shot_accuracy(model: TextImageCLIP, image_features: torch.Tensor,
                       attributes: dict[str, np.ndarray],
                       phrases: dict[str, tuple[str, str]] | None = None,
                       noun: str = "person") -> dict[str, Any]:
    """Per attribute: predict "present" when an image is closer to the positive prompt than
    to the negative one (`zero_shot_prompts`; or "a photo of a <noun> <phrase>" for each
    (present, absent) pair of `phrases`), compare with the truth.

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
    names = [a for a in (phrases or ATTRIBUTE_PHRASES) if a in attributes]
    if not names:
        raise ValueError("no attribute with zero-shot phrases in this dataset")
    prompts = [p for a in names for p in (
        zero_shot_prompts(a, noun) if phrases is None
        else tuple(f"a photo of a {noun} {phrase}" for phrase in phrases[a]))]
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


def evaluate_clip(model: TextImageCLIP, test_set, device: torch.device | str = "cpu",
                  features: torch.Tensor | None = None) -> dict[str, Any]:
    """Zero-shot attribute scores and image→caption retrieval on a captioned test set
    (`features`: its image embeddings, when the caller has them already)."""
    feats = (image_embeddings(model, image_source(test_set, torch.device(device)))
             if features is None else features)
    attrs = getattr(test_set, "attributes", {})
    test_captions = captions_for_dataset(attrs, getattr(test_set, "factors", None), seed=0)
    group = min(100, len(test_captions))
    return {**zero_shot_accuracy(model, feats, attrs),
            "retrieval_top1": retrieval_accuracy(model, feats, test_captions, group),
            "retrieval_group": group,
            "n_test": int(feats.shape[0]),
            "vocabulary_tokens": len(model.config.known_tokens)}


@torch.no_grad()
def patch_embeddings(model: TextImageCLIP, source, batch_size: int = 250) -> torch.Tensor:
    """The ViT's patch embeddings (its first, linear layer) of a whole image source, flattened
    (N, width · patches): what the image tower starts from, before any attention."""
    model.eval()
    visual, captured = model.clip.visual, []
    hook = visual.conv1.register_forward_hook(lambda mod, inp, out: captured.append(
        out.flatten(1).float().cpu()))
    try:
        for x in source.iterate(torch.split(torch.arange(len(source)), batch_size)):
            model.encode_image(x)
    finally:
        hook.remove()
    return torch.cat(captured)


def linear_probe(model: TextImageCLIP, train_set, test_set, names: tuple[str, ...] | None = None,
                 features: str = "embedding", device: str = "cpu") -> dict[str, float]:
    """Test ROC AUC of a logistic regression per attribute, fitted on the train faces' image
    features: does the image tower hold the attribute at all? (Zero-shot needs the text side
    too; a probe near 0.5 means the image side has already lost it.)

    features: "embedding" (the shared-space image embedding, (N, E)) or "patches" (the patch
    embeddings, reduced to 256 principal components).
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    embed = {"embedding": image_embeddings, "patches": patch_embeddings}[features]
    x_train, x_test = (embed(model, image_source(s, torch.device(device))).numpy()
                       for s in (train_set, test_set))
    if features == "patches":
        pca = PCA(min(256, *x_train.shape), random_state=0).fit(x_train)
        x_train, x_test = pca.transform(x_train), pca.transform(x_test)
    names = names or tuple(a for a in ATTRIBUTE_PHRASES if a in train_set.attributes)
    scores = {}
    for name in names:
        y_train = np.asarray(train_set.attributes[name])[:len(x_train)]
        y_test = np.asarray(test_set.attributes[name])[:len(x_test)]
        if len(set(y_train)) < 2 or len(set(y_test)) < 2:
            continue
        probe = LogisticRegression(max_iter=2000, C=0.1).fit(x_train, y_train)
        scores[name] = float(roc_auc_score(y_test, probe.decision_function(x_test)))
    return scores




@torch.no_grad()
def negation_diagnostic(model: TextImageCLIP, image_features: torch.Tensor,
                        attributes: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per attribute, the ROC AUC of two zero-shot margins on the same images: sim(present) −
    sim(absent) (the headline's, `zero_shot_accuracy`) and sim(present) − sim(NEUTRAL_PROMPT),
    which needs no understanding of "not" or "without"; plus the words of the absent prompt that
    no training caption had (`unknown_words`). A text encoder that reads negation gives the
    first margin at least the second's AUC.

    Args:
        image_features: (N, E) normalised; attributes: name → (≥ N,) 0/1 arrays.
    Returns: name → {"auc_absent", "auc_neutral", "unknown_words"} for attributes with both
    classes among the N faces.
    """
    from sklearn.metrics import roc_auc_score

    model.eval()
    n, out = image_features.shape[0], {}
    neutral = model.encode_text([NEUTRAL_PROMPT]).float().cpu()  # (1, E)
    for name in (a for a in ATTRIBUTE_PHRASES if a in attributes):
        y = np.asarray(attributes[name])[:n].astype(bool)
        if not 0 < y.sum() < n:
            continue
        present, absent = zero_shot_prompts(name)
        text = model.encode_text([present, absent]).float().cpu()  # (2, E)
        sims = image_features @ torch.cat([text, neutral]).T  # (N, 3)
        out[name] = {"auc_absent": float(roc_auc_score(y, (sims[:, 0] - sims[:, 1]).numpy())),
                     "auc_neutral": float(roc_auc_score(y, (sims[:, 0] - sims[:, 2]).numpy())),
                     "unknown_words": model.unknown_words(absent)}
    return out


# SynthFaces' facial_hair kinds (synthfaces.CATEGORICAL_FACTORS) that an attribute names
FACIAL_HAIR_KIND = {"Mustache": 1, "Goatee": 2}


@torch.no_grad()
def facial_hair_diagnostic(model: TextImageCLIP, image_features: torch.Tensor,
                           facial_hair: np.ndarray) -> dict[str, dict[str, float]]:
    """Whom the Mustache and Goatee margins confuse, on SynthFaces: the ROC AUC of each
    attribute's zero-shot margin, sim(present) − sim(absent), between the faces of its kind of
    facial hair and those of each other kind. SynthFaces draws a beard with a mustache and
    over the chin, yet labels it neither, so a CLIP that sees the hair ranks beards above the
    faces the label means: an AUC below 0.5 against "beard".

    Args:
        image_features: (N, E) normalised; facial_hair: (≥ N,) kinds 0–3 (none, mustache,
        goatee, beard).
    Returns: attribute → {other kind: AUC}, for the kinds with faces among the N.
    """
    from sklearn.metrics import roc_auc_score

    from playground.data.synthfaces import CATEGORICAL_FACTORS

    model.eval()
    n, kinds = image_features.shape[0], CATEGORICAL_FACTORS["facial_hair"]
    facial_hair = np.asarray(facial_hair)[:n].astype(int)
    out = {}
    for name, kind in FACIAL_HAIR_KIND.items():
        text = model.encode_text(list(zero_shot_prompts(name))).float().cpu()  # (2, E)
        sims = (image_features.float().cpu() @ text.T).numpy()  # (N, 2)
        margin = sims[:, 0] - sims[:, 1]
        mine, out[name] = facial_hair == kind, {}
        for other, other_name in enumerate(kinds):
            theirs = facial_hair == other
            if other != kind and mine.any() and theirs.any():
                pair = mine | theirs
                out[name][other_name] = float(roc_auc_score(mine[pair], margin[pair]))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m playground.evaluation.clip NAME [--write]``: re-measure a CLIP on the test
    split (and update its metrics.json with --write)."""
    p = argparse.ArgumentParser(prog="python -m playground.evaluation.clip",
                                description=main.__doc__)
    p.add_argument("name", help="model name (trained/, runs/) or folder")
    p.add_argument("--test-size", type=int, default=None, help="first N test faces (default all)")
    p.add_argument("--write", action="store_true", help="merge the scores into its metrics.json")
    p.add_argument("--probe", type=int, default=0, metavar="N",
                   help="also a linear probe per attribute on N train faces' image embeddings "
                        "and patch embeddings (is the image side blind to an attribute?)")
    p.add_argument("--negation", action="store_true",
                   help="also the zero-shot AUC with a neutral prompt in place of the absent one "
                        "(does the text side read 'not' and 'without'?)")
    p.add_argument("--paraphrases", action="store_true",
                   help="also the zero-shot scores with each attribute's prompts in other "
                        "words (PARAPHRASES): does the score hold beyond the headline's phrases?")
    p.add_argument("--facial-hair", action="store_true",
                   help="also the Mustache and Goatee margins' AUC against each other kind of "
                        "facial hair (are beards, drawn with a mustache, the confusion?)")
    args = p.parse_args(argv)
    model = load_model(args.name).float().eval()
    if args.probe:
        train = open_dataset("synthfaces", "train", args.probe, None)
        test = open_dataset("synthfaces", "test", args.test_size or 2000, None)
        probes = {f: linear_probe(model, train, test, features=f) for f in ("embedding", "patches")}
        print("linear probe ROC AUC   embedding  patches")
        for name in probes["embedding"]:
            print(f"  {name:<22} {probes['embedding'][name]:9.3f} {probes['patches'][name]:8.3f}")
    test_set = open_dataset("synthfaces", "test", args.test_size, None)
    features = image_embeddings(model, image_source(test_set, torch.device("cpu")))
    scores = evaluate_clip(model, test_set, features=features)
    if args.negation:
        rows = negation_diagnostic(model, features, test_set.attributes)
        print("| attribute | AUC vs absent prompt | AUC vs neutral prompt | unknown words |")
        print("|---|---:|---:|---|")
        for name, r in rows.items():
            print(f"| {name} | {r['auc_absent']:.3f} | {r['auc_neutral']:.3f} | "
                  f"{', '.join(r['unknown_words']) or '—'} |")
        scores["zero_shot_negation"] = rows
    if args.facial_hair:
        rows = facial_hair_diagnostic(model, features, test_set.factors["facial_hair"])
        print("| attribute | AUC against: none | mustache | goatee | beard |")
        print("|---|---:|---:|---:|---:|")
        for name, aucs in rows.items():
            cells = [f"{aucs[k]:.3f}" if k in aucs else "—"
                     for k in ("none", "mustache", "goatee", "beard")]
            print(f"| {name} | {' | '.join(cells)} |")
        scores["zero_shot_facial_hair"] = rows
    if args.paraphrases:
        other = zero_shot_accuracy(model, features, test_set.attributes, PARAPHRASES,
                                   PARAPHRASE_NOUN)
        scores["zero_shot_paraphrases"] = {"auc": other["zero_shot_auc"],
                                           "auc_per_attribute": other["zero_shot_auc_per_attribute"]}
        print("| attribute | AUC, headline prompts | AUC, paraphrases | paraphrases |")
        print("|---|---:|---:|---|")
        for name, auc in other["zero_shot_auc_per_attribute"].items():
            print(f"| {name} | {scores['zero_shot_auc_per_attribute'][name]:.3f} | {auc:.3f} | "
                  f"{' / '.join(PARAPHRASES[name])} |")
        print(f"mean AUC with paraphrases {other['zero_shot_auc']:.4f}")
    print(f"zero-shot accuracy {scores['zero_shot_acc']:.4f} (majority {scores['zero_shot_baseline']:.4f}), "
          f"balanced {scores['zero_shot_balanced_acc']:.4f}, AUC {scores['zero_shot_auc']:.4f}, "
          f"retrieval top-1 {scores['retrieval_top1']:.3f} of {scores['retrieval_group']}")
    if args.write:
        folder = resolve_model_dir(args.name)
        atomic_write_json(folder / METRICS_FILE, {**load_metrics(args.name), **scores})
    return 0


if __name__ == "__main__":
    sys.exit(main())
