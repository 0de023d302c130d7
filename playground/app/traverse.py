"""The Traverse tab: encode a face, then move single latent dimensions and watch the decoder.

Events (api_name): traverse_models (↻), traverse_encode, traverse_use_upload +
traverse_encode_upload (an upload selects and encodes it), traverse_decode (one slider move),
traverse_grid (top dimensions × 9 values, PNG + GIF).

The encoded face lives in a `gr.State` ({"model", "z", "dims", "kl"}): a slider move only
decodes one latent (~2 ms on the CPU), it never re-encodes.
"""
from __future__ import annotations

import gradio as gr
import numpy as np

from playground.app import common
from playground.data import pictures
from playground.evaluation.metrics import ACTIVE_KL, active_dims
from playground.pipelines import latent_paths
from playground.pipelines import vae as ops
from playground.pipelines.attribute_vectors import EDITS, attribute_vectors
from playground.pipelines.inputs import whole_number

N_SLIDERS = 8  # live sliders, on the highest-KL dimensions
SLIDER_RANGE = 3.0  # z_d ∈ [−3, 3]: ±3 prior standard deviations
SLIDER_STEP = 0.05  # slider resolution: a z_d is shown and decoded on this grid
EDIT_VECTORS = EDITS[:4]  # the attribute-vector sliders (Smiling, Eyeglasses, Wearing_Hat, …)
# A slider move is one plain HTTP request, not a queued event: in chromium it shows the new
# face in a median 84 ms (p95 154) against 119 (p95 279) through the queue, and it can never
# wait behind a diffusion run (python -m playground.bench --browser; README).
SLIDER_QUEUE = False
GRID_VALUES = 9  # columns of the traversal grid, evenly from −3 to 3
MAX_GRID_DIMS = 16  # rows of the traversal grid at most

VECTORS_EXPLAIN = r"""
A slider above moves **one coordinate** of $z$. These move along a **direction**:
$v_a = \operatorname{mean}\mu(x \mid a) - \operatorname{mean}\mu(x \mid \lnot a)$ over 5,000
training faces, and the face becomes $\mu + \alpha\, v_a$. Does "+ Smiling" add a smile and
nothing else? `python -m playground.pipelines.attribute_vectors vae-beta1 vae-beta10` measures it with
the judge (the README's table); the first use of a model computes its vectors (~10 s).
"""

EXPLAIN = r"""
### Latent traversal: what does one coordinate of $z$ do?
The encoder maps a face $x$ to a Gaussian $q(z\mid x)=\mathcal N(\mu(x), \operatorname{diag}\sigma^2(x))$
and the decoder maps a code $z$ back to a picture. Training maximises the **ELBO**
$$\mathcal L(x) = \mathbb E_{q(z\mid x)}\big[\log p(x\mid z)\big] \;-\; \beta\,\mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big)$$
with the prior $p(z)=\mathcal N(0, I)$, and samples drawn by the **reparameterisation** $z = \mu + \sigma \odot \varepsilon,\ \varepsilon \sim \mathcal N(0, I)$
so that gradients flow through $\mu$ and $\sigma$.

The first term asks for a faithful reconstruction; the second charges
$\mathrm{KL}_d = \tfrac12(\mu_d^2 + \sigma_d^2 - 1 - \log\sigma_d^2)$ nats for every bit a
dimension $d$ carries. **β is the price of information**: with β = 10 a dimension is only worth
using if it explains a lot of the picture, so *fewer* dimensions stay active, and each tends to
follow one factor (head turn, light, hair) — cleaner sliders, blurrier faces. A dimension with
KL ≈ 0 is ignored by the decoder: its slider does nothing. The sliders start at $z = \mu(x)$
(no ε) and set one $z_d$ each; the picture is the decoder's mean image.
"""


def _plot_kl(kl: np.ndarray, dims: np.ndarray, model_name: str):
    """Plotly bar chart of KL per dimension, sorted, slider dimensions highlighted."""
    import plotly.graph_objects as go

    order = np.argsort(-kl, kind="stable")
    on_slider = set(int(d) for d in dims)
    colors = ["#d62728" if int(d) in on_slider else "#1f77b4" for d in order]
    fig = go.Figure(go.Bar(x=[f"z[{d}]" for d in order], y=kl[order], marker_color=colors,
                           hovertemplate="%{x}: %{y:.3f} nats<extra></extra>"))
    active = active_dims(kl)
    fig.update_layout(
        title=f"{model_name}: KL per latent dimension, sorted (red: on a slider) — "
              f"{active} of {len(kl)} active (> {ACTIVE_KL} nats), total {kl.sum():.1f} nats",
        xaxis_title="latent dimension", yaxis_title="KL (nats), mean over 512 faces",
        height=320, margin=dict(l=50, r=10, t=50, b=60), xaxis_tickangle=-60,
        xaxis_tickfont_size=9)
    return fig


def slider_values(z: np.ndarray) -> np.ndarray:
    """z_d as a slider can show it: clipped to ±SLIDER_RANGE, rounded to its SLIDER_STEP
    (a box reading 0.40, not 0.39161235)."""
    z = np.clip(np.asarray(z, dtype=np.float64), -SLIDER_RANGE, SLIDER_RANGE)
    return np.round(np.round(z / SLIDER_STEP) * SLIDER_STEP, 2) + 0.0  # + 0.0: no "-0.0"


def _slider_updates(values: np.ndarray, dims: np.ndarray, kl: np.ndarray) -> list:
    """gr.update for each slider: label with the dimension and its KL, its value."""
    updates = []
    for i in range(N_SLIDERS):
        if i < len(dims):
            d = int(dims[i])
            updates.append(gr.update(label=f"z[{d}] (KL {kl[d]:.2f} nats)", visible=True,
                                     value=float(values[i])))
        else:  # a model with fewer than N_SLIDERS latent dimensions
            updates.append(gr.update(visible=False, value=0.0))
    return updates


@common.user_errors
def encode(model_name, source, seed, index, upload):
    """Face source in → (face, decoded face, state, *slider updates, KL plot, notice)."""
    model = ops.get_model(model_name)
    face, note = common.load_face(source, seed, index, upload)
    order, kl = ops.dims_by_kl(model)
    z = ops.encode_mean(model, face[None])[0]  # (D,)
    dims = order[:N_SLIDERS]
    # What the sliders show (z_d clipped to ±3, on the slider's 0.05 grid) is what gets
    # decoded, now and on every move.
    on_sliders = slider_values(z[dims])
    shown = latent_paths.with_values(z, dims, on_sliders)
    decoded = ops.decode(model, shown[None])[0]
    state = {"model": model_name, "z": z, "dims": dims, "order": order, "kl": kl}
    active = active_dims(kl)
    notice = (f"{note}. Encoded by **{model_name}** (β = {ops.model_beta(model):g}): "
              f"{active} of {len(kl)} dimensions active; sliders on the top {len(dims)}.")
    return (common.show(face), common.show(decoded), state,
            *_slider_updates(on_sliders, dims, kl), *[0.0] * len(EDIT_VECTORS),
            _plot_kl(kl, dims, model_name), notice)


@common.user_errors
def encode_upload(model_name, seed, index, upload):
    """`encode` with the upload as the source (the upload event)."""
    return encode(model_name, "upload", seed, index, upload)


def _latent_from(state, values) -> tuple:
    """(model, z): μ with the dimension sliders' values set, then α_a·v_a added for every
    attribute slider (values = N_SLIDERS dimension values, then len(EDIT_VECTORS) α's)."""
    if not state or "z" not in state:
        raise ValueError("encode a face first (press Encode)")
    dims = state["dims"]
    values = [0.0 if v is None else float(v) for v in values]
    dim_values, alphas = values[:len(dims)], values[N_SLIDERS:N_SLIDERS + len(EDIT_VECTORS)]
    if any(abs(v) > SLIDER_RANGE + 1e-6 for v in dim_values + alphas):
        raise ValueError(f"slider values must lie in [−{SLIDER_RANGE:g}, {SLIDER_RANGE:g}]")
    z = latent_paths.with_values(state["z"], dims, dim_values)
    if any(alphas):
        vectors = attribute_vectors(state["model"])
        for name, alpha in zip(EDIT_VECTORS, alphas):
            if alpha and name in vectors:
                z = z + np.float32(alpha) * vectors[name]
    return ops.get_model(state["model"]), z


@common.user_errors
def decode(state, *values):
    """Slider values in → the decoded face (one latent, one decoder pass)."""
    model, z = _latent_from(state, values)
    return common.show(ops.decode(model, z[None])[0])


@common.user_errors
def traversal(state, n_dims, *values):
    """Top `n_dims` dimensions × 9 values around the current slider position → (grid, GIF path)."""
    model, z = _latent_from(state, values)
    n_dims = whole_number(n_dims, "number of dimensions")
    if not 1 <= n_dims <= MAX_GRID_DIMS:
        raise ValueError(f"number of dimensions must be between 1 and {MAX_GRID_DIMS}, "
                         f"got {n_dims}")
    kl = state["kl"]
    dims = state["order"][:n_dims]
    values = np.linspace(-SLIDER_RANGE, SLIDER_RANGE, GRID_VALUES)
    cells = latent_paths.traversal_grid(model, z, dims, values)  # (R, 9, 64, 64, 3)
    picture = common.labelled_grid(
        cells, [f"z[{d}] KL {kl[d]:.2f}" for d in dims], [f"{v:+.2f}" for v in values],
        scale=2, pad=2, label_width=110)
    # GIF: frame j shows every traversed dimension at value j, side by side; back and forth.
    frames = cells.transpose(1, 0, 2, 3, 4)  # (9, R, 64, 64, 3)
    frames = np.stack([pictures.strip(f, pad=2) for f in frames])  # (9, 68, R·66 + 2, 3)
    gif = pictures.gif_bytes(frames, fps=6, pingpong=True, scale=2)
    return picture, common.save_gif(gif, f"traversal-{state['model']}")


def build(demo: gr.Blocks | None = None) -> None:
    """Add the tab to the enclosing Blocks (`demo`, if given, encodes a face on page load)."""
    with gr.Tab("Traverse"):
        gr.Markdown(common.no_models_message(), visible=bool(common.no_models_message()))
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    model = common.model_dropdown()
                    refresh = gr.Button("↻", scale=0, min_width=40)
                picker = common.face_picker("base face", seed=0)
                encode_button = gr.Button("Encode", variant="primary")
                notice = gr.Markdown()
            with gr.Column(scale=4):
                with gr.Row():
                    original = gr.Image(label="face x", type="numpy", format="png",
                                        interactive=False, height=256)
                    decoded = gr.Image(label="decoder(z) — follows the sliders", type="numpy",
                                       format="png", interactive=False, height=256,
                                       elem_id="traverse-decoded")
                sliders = [gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, value=0.0, step=SLIDER_STEP,
                                     label=f"slider {i + 1}", elem_id=f"traverse-slider-{i}")
                           for i in range(N_SLIDERS)]
                with gr.Accordion("Attribute vectors: edit by arithmetic", open=False):
                    gr.Markdown(VECTORS_EXPLAIN, latex_delimiters=common.LATEX)
                    edits = [gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, value=0.0, step=0.1,
                                       label=f"+ {name}", elem_id=f"traverse-edit-{i}")
                             for i, name in enumerate(EDIT_VECTORS)]
            with gr.Column(scale=4):
                gr.Markdown(EXPLAIN, latex_delimiters=common.LATEX)
        kl_plot = gr.Plot(label="KL per latent dimension")
        with gr.Row():
            with gr.Column(scale=1):
                n_dims = gr.Slider(1, MAX_GRID_DIMS, value=N_SLIDERS, step=1,
                                   label="dimensions in the grid (highest KL first)")
                grid_button = gr.Button("Traversal grid")
                gif = gr.File(label="traversal GIF", interactive=False)
            grid = gr.Image(label="traversal: each row moves one z_d from −3 to +3, the rest "
                                  "stay at the slider values", type="numpy", format="png",
                            interactive=False, scale=3)

        state = gr.State(None)
        encoded = [original, decoded, state, *sliders, *edits, kl_plot, notice]
        refresh.click(common.refresh_models, model, model, api_name="traverse_models")
        triggers = [encode_button.click, model.change]
        if demo is not None and common.model_names():  # no toast on load when there is none
            triggers.insert(0, demo.load)
        # always_last: a model switched while the first encode (KL ranking, ~1 s) runs is not lost
        encode_in = [model, *picker.inputs]
        gr.on(triggers, encode, encode_in, encoded, api_name="traverse_encode",
              trigger_mode="always_last", validator=common.field_validator(encode_in))
        upload_in = [model, picker.seed, picker.index, picker.upload]
        common.wire_upload(picker, "traverse_use_upload").then(
            encode_upload, upload_in, encoded, api_name="traverse_encode_upload",
            validator=common.field_validator(upload_in))
        gr.on([s.input for s in [*sliders, *edits]], decode, [state, *sliders, *edits], decoded,
              api_name="traverse_decode", trigger_mode="always_last", show_progress="hidden",
              queue=SLIDER_QUEUE)
        grid_button.click(traversal, [state, n_dims, *sliders], [grid, gif],
                          api_name="traverse_grid")
