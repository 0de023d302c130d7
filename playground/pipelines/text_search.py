"""Text search on the Latent map: rank test faces by CLIP similarity to a query (no UI here).

    text_scores("a photo of a person wearing a hat", n_points=2000)   # (N,) cosine similarities
    text_margins("a photo of a person wearing a hat", 2000)   # (N,) minus "a photo of a person"

It needs the playground's CLIP (``trained/clip``); until it exists, `text_scores` raises a
ValueError saying so, and `text_search_available` is False. The image embeddings of the first N
test faces are computed once per CLIP weights file and kept in memory.
"""
from __future__ import annotations

import numpy as np

from playground.data import synthfaces as sf
from playground.data.captions import NEUTRAL_PROMPT
from playground.data.images import images_to_tensor
from playground.pipelines.latent_map import SPLIT, check_points
from playground.store import checkpoints

CLIP_MODEL = "clip"  # the text encoder's model name (trained/clip)
MAX_QUERY_CHARS = 2_000  # longer text-search queries are refused (as the Prompt tab does)
CLIP_MISSING = "text search needs the CLIP model (not trained yet)"
TEXT_TOP = 50  # faces highlighted by a text query


def text_search_available() -> bool:
    """True when a CLIP model (``clip`` in trained/ or runs/) exists."""
    try:
        checkpoints.resolve_model_dir(CLIP_MODEL, allow_paths=False)
    except ValueError:
        return False
    return True


FALLBACK_QUERY = "a photo of a person wearing a hat"


def example_query() -> str:
    """A search the shipped CLIP answers well: the positive zero-shot prompt of the attribute
    with its best measured zero-shot ROC AUC (metrics.json), so the example in the box shows
    text search working rather than a query the model cannot read yet."""
    from playground.data.captions import zero_shot_prompts

    try:
        auc = checkpoints.load_metrics(CLIP_MODEL, allow_paths=False).get(
            "zero_shot_auc_per_attribute") or {}
        best = max(auc, key=auc.get) if auc else None
        return zero_shot_prompts(best)[0] if best else FALLBACK_QUERY
    except (ValueError, OSError):
        return FALLBACK_QUERY


_clip_cache: dict = {}  # {"stamp": (folder, mtime, size), "model": ..., "images": {n: (N, E)}}


def _load_clip():
    """The CLIP model: ``encode_text(list[str]) → (T, E)``, ``encode_image(x) → (N, E)``."""
    model = checkpoints.load_model(CLIP_MODEL, allow_paths=False)
    if not (hasattr(model, "encode_text") and hasattr(model, "encode_image")):
        raise ValueError("the CLIP model has no encode_text/encode_image methods: text search "
                         "expects encode_text(list of str) and encode_image(x (N, 3, 64, 64) in "
                         "[0, 1]), each returning one embedding per row")
    return model


def _clip_and_stamp():
    folder = checkpoints.resolve_model_dir(CLIP_MODEL, allow_paths=False)
    st = (folder / checkpoints.WEIGHTS_FILE).stat()
    stamp = (str(folder), st.st_mtime_ns, st.st_size)
    if _clip_cache.get("stamp") != stamp:
        _clip_cache.clear()
        _clip_cache.update(stamp=stamp, model=_load_clip(), images={})
    return _clip_cache["model"], _clip_cache["images"]


def text_scores(query: str, n_points: int) -> np.ndarray:
    """Cosine similarity of the query's CLIP text embedding to each of the first n test faces.

    Returns:
        (N,) float32 in [−1, 1].
    Raises:
        ValueError: CLIP_MISSING while there is no CLIP model; an empty query.
    """
    if not text_search_available():
        raise ValueError(CLIP_MISSING)
    query = (query or "").strip()
    if not query:
        raise ValueError(f"type a description to search for, e.g. '{example_query()}'")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"the search text has {len(query):,} characters; at most "
                         f"{MAX_QUERY_CHARS:,} (CLIP reads 77 tokens, about 300 characters)")
    n = check_points(n_points)
    import torch

    clip, image_features = _clip_and_stamp()
    with torch.inference_mode():
        images = image_features.get(n)
        if images is None:  # embed the faces once per model and map size
            faces = sf.render(sf.generate_factors(n, sf.SPLIT_SEEDS[SPLIT]))
            images = np.concatenate([
                torch.as_tensor(clip.encode_image(images_to_tensor(faces[s:s + 250])))
                .float().numpy() for s in range(0, n, 250)])  # (N, E)
            images /= np.linalg.norm(images, axis=1, keepdims=True) + 1e-12
            image_features.clear()
            image_features[n] = images
        text = torch.as_tensor(clip.encode_text([query])).float().numpy()[0]  # (E,)
    text /= np.linalg.norm(text) + 1e-12
    return (images @ text).astype(np.float32)


def text_margins(query: str, n_points: int) -> np.ndarray:
    """How much closer each of the first n test faces is to the query than to NEUTRAL_PROMPT:
    cos(face, query) − cos(face, neutral), what text search ranks by.

    Some faces sit closer to every caption than others, and cosine alone ranks them first
    whatever the query; the similarity to NEUTRAL_PROMPT, true of every face, measures that
    offset. On the shipped CLIP the top 50 of 2,000 for "a photo of a person wearing a hat"
    hold 33 hat-wearers by cosine and 50 by the margin (README). The neutral prompt itself is
    ranked by cosine.

    Returns:
        (N,) float32 in [−2, 2].
    """
    scores = text_scores(query, n_points)  # (checks the query)
    if query.strip() == NEUTRAL_PROMPT:
        return scores
    return scores - text_scores(NEUTRAL_PROMPT, n_points)


# What the README reports of text search: a query, and the attribute its faces should have.
SEARCH_CHECKS: tuple[tuple[str, str], ...] = (
    ("a photo of a person wearing a hat", "Wearing_Hat"),
    ("a woman wearing lipstick", "Wearing_Lipstick"),
    ("a person wearing glasses", "Eyeglasses"),
    ("a smiling person", "Smiling"),
    ("a man with a mustache", "Mustache"),
)


def search_hits(query: str, attribute: str, n_points: int = 2000, top: int = TEXT_TOP,
                score=None) -> dict[str, float]:
    """How many of the `top` faces a query ranks first have `attribute`, against how many a
    random pick of `top` would have (`top` × its share of the n test faces). `score` ranks
    the faces (default `text_margins`, as the Latent map does)."""
    has = sf.attributes_from_factors(sf.generate_factors(n_points, sf.SPLIT_SEEDS[SPLIT]))
    has = np.asarray(has[attribute], dtype=bool)
    first = np.argsort(-(score or text_margins)(query, n_points), kind="stable")[:top]
    return {"hits": int(has[first].sum()), "top": top, "chance": float(top * has.mean()),
            "share": float(has.mean())}


def main(argv: list[str] | None = None) -> int:
    """``python -m playground.pipelines.text_search [--points N]``: the Latent map's text
    search on the shipped CLIP, as a table: each query of SEARCH_CHECKS, how many of its top 50
    faces have the attribute ranked by the margin over the neutral prompt and by cosine
    alone, and what chance gives."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m playground.pipelines.text_search",
                                description=main.__doc__)
    p.add_argument("--points", type=int, default=2000, help="test faces searched (default 2000)")
    args = p.parse_args(argv)
    print(f"| query | attribute | of the top {TEXT_TOP} have it: by margin | by cosine | "
          f"chance |")
    print("|---|---|---:|---:|---:|")
    for query, attribute in SEARCH_CHECKS:
        r = search_hits(query, attribute, args.points)
        cosine = search_hits(query, attribute, args.points, score=text_scores)
        print(f"| {query} | {attribute} | **{r['hits']}** | {cosine['hits']} | "
              f"{r['chance']:.0f} ({r['share']:.0%}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
