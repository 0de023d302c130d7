"""The Latent map tab: t-SNE / UMAP / PCA of μ(x) for SynthFaces test faces, coloured by any
attribute or factor, with a separation score; click a point (or type its index) to see its face.

Events (api_name): latent_map_models (↻), latent_map (the map, its scores and a notice),
latent_map_cached (the same on page load — when `build` gets the demo — but only from a
cache: no minute-long t-SNE as the page opens), latent_map_point (one face, its
reconstruction, attributes and factors).

Picking a point: Gradio's gr.Plot has no click/select event (only "change"), and
gr.ScatterPlot's select event reports a brushed x-range, not a point. So a small script in the
page's <head> (`head_script`, latent_map_pick.js) listens to plotly.js's own click event: it
writes the clicked face's index into the index box, presses "Show face" (the same
latent_map_point event the API has) and rings the chosen point.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

import gradio as gr
import numpy as np

from playground.app import common
from playground.data import synthfaces as sf
from playground.evaluation import separation
from playground.pipelines import face_sources, face_sprite, text_search
from playground.pipelines import latent_map as lm
from playground.pipelines import vae as ops
from playground.pipelines.inputs import MAX_SEED, whole_number

METHOD_CHOICES = [(lm.METHOD_LABELS[m], m) for m in lm.METHODS]
COLOUR_CHOICES = ([(f"{a} (attribute)", a) for a in sf.ATTRIBUTE_NAMES] +
                  [(f"{f} (factor)", f) for f in sf.FACTOR_NAMES])
DEFAULT_COLOUR = "Smiling"
MAP_MODEL = "vae-beta10"  # the assignment: a t-SNE of β = 10's z coloured by Smiling
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]  # categories
POINT_SIZE = 5
PICK_SCRIPT = Path(__file__).with_name("latent_map_pick.js")  # click a point → its face

EXPLAIN = r"""
### Latent map: where does the model put each face?
Each dot is one SynthFaces test face $x$, placed by its code $\mu(x)\in\mathbb R^{D}$ (the
posterior mean) squeezed into 2-D. **PCA** is linear: the two directions in which $\mu$ varies
most — distances are honest, but whatever lives in the other dimensions is hidden. **t-SNE**
keeps each face's nearest neighbours together (it matches neighbour probabilities); the size of
clusters and the gaps between them mean little. **UMAP** also keeps neighbourhoods, holds on to
a little more of the global layout, and is faster for many points.

**Separation score**: a $k$-nearest-neighbour classifier ($k = 10$, 5-fold cross-validation)
guesses the colour of each point from its 10 nearest points on the map. Compare its accuracy
with the **majority baseline** (always guessing the commonest value): well above it means the
model's code groups faces by this property — without ever being told the label. The
**silhouette** ($-1 \dots 1$) says how compact and far apart the groups are; near 0 they overlap.

**Text search** circles the 50 faces with the largest $\cos(f, q) - \cos(f, n)$: $f$ the face's
CLIP embedding, $q$ the query's, $n$ that of "a photo of a person", which fits every face. Some
faces sit closer to every caption than others; cosine alone would circle those whatever you
type: for "a man with a mustache", cosine alone circles hardly any mustache, the margin
nearly fifty (`python -m playground.pipelines.text_search` counts them for the shipped CLIP).
"""


def _warm_imports() -> None:
    """Import scikit-learn's kNN/silhouette (≈1.5 s on a busy CPU) and draw the default map's
    thumbnails (≈3 s) before the first map."""
    import sklearn.metrics  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.neighbors  # noqa: F401

    face_sprite.sprite(lm.DEFAULT_POINTS)


# ------------------------------------------------------------------------------ the map
def _figure(result: dict, colour: dict, highlight: np.ndarray | None, query: str):
    """Plotly scatter of the map: one trace per category, or a colour scale for a continuous
    factor; hover shows the face index and the colour value."""
    import plotly.graph_objects as go

    points, index = result["points"], result["indices"]
    name, values = colour["name"], colour["values"]
    fig = go.Figure()
    if colour["kind"] == "continuous":
        lo, hi = colour["range"]
        fig.add_trace(go.Scattergl(
            x=points[:, 0], y=points[:, 1], mode="markers", customdata=index, name=name,
            marker=dict(size=POINT_SIZE, color=values, colorscale="Viridis", cmin=lo, cmax=hi,
                        colorbar=dict(title=dict(text=name))),
            hovertemplate=(f"face #%{{customdata}}<br>{name} = %{{marker.color:.2f}}"
                           "<extra></extra>")))
    else:
        for code, category in enumerate(colour["categories"]):
            keep = values == code
            if not keep.any():
                continue
            label = f"{name}: {category}"
            fig.add_trace(go.Scattergl(
                x=points[keep, 0], y=points[keep, 1], mode="markers", customdata=index[keep],
                name=f"{label} ({int(keep.sum())})",
                marker=dict(size=POINT_SIZE, color=PALETTE[code % len(PALETTE)], opacity=0.75),
                hovertemplate=f"face #%{{customdata}}<br>{label}<extra></extra>"))
    if highlight is not None:
        fig.add_trace(go.Scattergl(
            x=points[highlight, 0], y=points[highlight, 1], mode="markers",
            customdata=index[highlight], name=f"best {len(highlight)} matches for “{query}”",
            marker=dict(size=11, color="rgba(0,0,0,0)", line=dict(color="black", width=2)),
            hovertemplate="face #%{customdata}<br>text match<extra></extra>"))
    method = lm.METHOD_LABELS[result["method"]]
    axis = "PC" if result["method"] == "pca" else method
    fig.update_layout(
        title=f"{result['model']}: {method} of μ for {result['n']:,} SynthFaces test faces, "
              f"coloured by {name}",
        xaxis_title=f"{axis} 1", yaxis_title=f"{axis} 2", height=560,
        margin=dict(l=50, r=10, t=50, b=40), legend=dict(itemsizing="constant"),
        hovermode="closest",
        # face i's thumbnail, for the page's hover (latent_map_pick.js); the map's faces are
        # test faces 0 … n−1, so point index = tile index
        meta={"thumbs": face_sprite.sprite(result["n"])})
    return fig


def _scores_markdown(scores: dict, colour: dict, result: dict) -> str:
    what = colour["name"] + (" (above / below its median)" if colour["kind"] == "continuous"
                             else "")
    head = f"**How well does the map separate {what}?** ({scores['n']:,} points)  \n"
    if scores["knn_acc"] is None:
        return head + f"No score: {scores['note']}."
    knn, base, bal = scores["knn_acc"], scores["baseline"], scores["knn_balanced_acc"]
    sil = "n/a" if scores["silhouette"] is None else f"{scores['silhouette']:.2f}"
    text = (head + f"kNN accuracy **{knn:.2f}** vs majority baseline **{base:.2f}**; balanced "
            f"accuracy **{bal:.2f}** (chance {1 / scores['classes']:.2f}); silhouette **{sil}**")
    if scores["note"]:
        text += f" ({scores['note']})"
    if base >= separation.DOMINANT_SHARE:
        text += (f"  \nOne class dominates ({base:.0%} of the faces): guessing it alone scores "
                 f"{base:.2f}, so the verdict reads the balanced accuracy.")
    verdict, reason = separation.separation_verdict(knn, base, scores["silhouette"], bal,
                                            scores["classes"])
    word = {"clear": "well separated", "partial": "partly separated",
            "none": "not separated on this map"}[verdict]
    return text + f"  \n→ **{word}**: {reason}."


def _notice(result: dict, query_note: str) -> str:
    source = result["source"]
    if source == "computed":
        how = f"computed in {result['seconds']:.1f} s"
        how += f"; {result['cache_note']}" if result["cache_note"] else "; cached for next time"
    elif source == "memory":
        how = f"from memory ({result['seconds'] * 1000:.0f} ms)"
    else:
        how = f"precomputed ({source.removeprefix('file ')}, {result['seconds']:.2f} s)"
    return f"Map {how}. Hover a point to see its face; click it to open it below.{query_note}"


def _highlight(query: str, n: int) -> tuple[np.ndarray | None, str]:
    query = (query or "").strip()
    if not query:
        return None, ""
    scores = text_search.text_margins(query, n)  # ValueError(CLIP_MISSING) until CLIP exists
    top = np.argsort(-scores, kind="stable")[:text_search.TEXT_TOP]
    neutral = text_search.NEUTRAL_PROMPT
    how = ("by cosine" if query == neutral else
           f"by how much closer they are to it than to “{neutral}”: margin")
    return top, (f" Circled: the {len(top)} faces most similar to “{query}” by CLIP, {how} "
                 f"{scores[top[-1]]:.2f} … {scores[top[0]]:.2f}.")


def _render(result: dict, colour_by: str, query: str):
    colour = lm.colour_values(result, colour_by)
    highlight, query_note = _highlight(query, result["n"])
    scores = separation.separation(result["points"], colour["labels"], seed=result["seed"])
    return (_figure(result, colour, highlight, (query or "").strip()),
            _scores_markdown(scores, colour, result), _notice(result, query_note))


@common.user_errors
def show_map(model_name, method, n_points, seed, colour_by, query="",
             progress=gr.Progress()):
    """Map settings in → (plotly figure, separation scores (Markdown), notice (Markdown))."""
    lm.check_colour(colour_by)  # before a possibly long computation
    if (query or "").strip() and not text_search.text_search_available():
        raise ValueError(text_search.CLIP_MISSING)  # before a possibly long computation

    def report(fraction, message):
        progress(fraction, desc=message)

    result = lm.latent_map(model_name, method, n_points, seed, progress=report)
    return _render(result, colour_by, query)


@common.user_errors
def show_cached_map(model_name, method, n_points, seed, colour_by, query=""):
    """Like `show_map`, but only from a cache (page load): otherwise an empty plot and a hint."""
    if not model_name:
        return None, "", common.no_models_message()
    result = lm.latent_map(model_name, method, n_points, seed, cached_only=True)
    if result is None:
        return None, "", ("This map is not precomputed yet: press **Show map** to compute it "
                          "(on 2 busy cores t-SNE of 2,000 points takes ~10–30 s, UMAP's first "
                          "use ~20 s more to compile; PCA is instant).")
    return _render(result, colour_by, "" if not text_search.text_search_available() else query)


# ------------------------------------------------------------------------------ one point
def _point_markdown(index: int) -> str:
    factors = sf.generate_factors(index + 1, sf.SPLIT_SEEDS[lm.SPLIT])
    factors = {k: v[index:index + 1] for k, v in factors.items()}
    attributes = sf.attributes_from_factors(factors)
    present = [name for name in sf.ATTRIBUTE_NAMES if attributes[name][0]]
    rows = []
    for name in sf.FACTOR_NAMES:
        value = factors[name][0]
        if name in sf.CATEGORICAL_FACTORS:
            shown = sf.CATEGORICAL_FACTORS[name][int(value)]
        else:
            lo, hi = sf.CONTINUOUS_FACTORS[name]
            shown = f"{float(value):+.2f} (range {lo:g} … {hi:g})"
        rows.append(f"| {name} | {shown} |")
    return (f"**SynthFaces test face #{index}**  \n"
            f"Attributes: {', '.join(present) if present else 'none of the 18'}\n\n"
            "| factor | value |\n|---|---|\n" + "\n".join(rows))


@common.user_errors
def show_point(model_name, n_points, index):
    """Map size and a point index in → (face, its reconstruction, attributes and factors)."""
    n = lm.check_points(n_points)
    if index is None or index == "":
        raise ValueError("point index is empty: click a point on the map or enter its index")
    index = whole_number(index, "point index")
    if not 0 <= index < n:
        raise ValueError(f"point index must be between 0 and {n - 1} (the map shows test faces "
                         f"0–{n - 1}), got {index}")
    model = ops.get_model(model_name)
    face = face_sources.dataset_face(index)
    reconstruction = ops.reconstruct(model, face[None])[0]
    return common.show(face), common.show(reconstruction), _point_markdown(index)


# ------------------------------------------------------------------------------ layout
def head_script() -> str:
    """The <script> that makes a click on the map pick a face (for `launch(head=...)`)."""
    return common.script_tag(PICK_SCRIPT)


def build(demo: gr.Blocks | None = None) -> None:
    """Add the tab to the enclosing Blocks (`demo`, if given, shows a cached map on load)."""
    threading.Thread(target=_warm_imports, daemon=True, name="latent-map-imports").start()
    clip_ready = text_search.text_search_available()
    with gr.Tab("Latent map"):
        gr.Markdown(common.no_models_message(), visible=bool(common.no_models_message()))
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    model = common.model_dropdown(preferred=MAP_MODEL)
                    refresh = gr.Button("↻", scale=0, min_width=40)
                method = gr.Radio(METHOD_CHOICES, value="tsne", label="projection to 2-D")
                n_points = gr.Slider(lm.MIN_POINTS, lm.MAX_POINTS, value=lm.DEFAULT_POINTS,
                                     step=100, label="points (SynthFaces test faces 0 … N−1)")
                seed = common.number_box(0, "seed (t-SNE / UMAP)", 0, MAX_SEED)
                colour = gr.Dropdown(COLOUR_CHOICES, value=DEFAULT_COLOUR, label="colour by")
                show_button = gr.Button("Show map", variant="primary")
                query = gr.Textbox(
                    label="text search (CLIP)", lines=1, interactive=clip_ready,
                    placeholder=(f"e.g. {text_search.example_query()}" if clip_ready
                                 else text_search.CLIP_MISSING))
                if not clip_ready:
                    gr.Markdown(f"*{text_search.CLIP_MISSING[0].upper() + text_search.CLIP_MISSING[1:]}: "
                                "the search box opens once `trained/clip` exists.*")
            with gr.Column(scale=7):
                plot = gr.Plot(label="latent map", elem_id="latent-map-plot")
                notice = gr.Markdown()
                scores = gr.Markdown()
        with gr.Row():
            with gr.Column(scale=3):
                index = common.number_box(0, "point index", 0, lm.MAX_POINTS - 1,
                                          info="click a point on the map, or type its index",
                                          elem_id="latent-map-index")
                point_button = gr.Button("Show face", elem_id="latent-map-show-face")
                info = gr.Markdown()
            face = gr.Image(label="face x", type="numpy", format="png", interactive=False,
                            height=256, scale=2, elem_id="latent-map-face")
            reconstruction = gr.Image(label="decoder(μ(x)) — what the code keeps", type="numpy",
                                      format="png", interactive=False, height=256, scale=2)
            with gr.Column(scale=4):
                gr.Markdown(EXPLAIN, latex_delimiters=common.LATEX)

        map_inputs = [model, method, n_points, seed, colour, query]
        map_outputs = [plot, scores, notice]
        refresh.click(functools.partial(common.refresh_models, preferred=MAP_MODEL), model,
                      model, api_name="latent_map_models")
        # the map follows every choice that changes it, not only the button
        gr.on([show_button.click, method.input, colour.input, query.submit], show_map, map_inputs,
              map_outputs, api_name="latent_map", trigger_mode="always_last",
              validator=common.field_validator(map_inputs))
        if demo is not None:  # no error without models: it shows the hint instead
            demo.load(show_cached_map, map_inputs, map_outputs, api_name="latent_map_cached")
        gr.on([point_button.click, index.submit], show_point, [model, n_points, index],
              [face, reconstruction, info], api_name="latent_map_point",
              validator=common.field_validator([model, n_points, index]))
