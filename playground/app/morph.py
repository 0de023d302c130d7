"""The Morph tab: walk the latent space from one face to another, and compare the βs.

Events (api_name): morph_models (↻), morph_use_upload_a / morph_use_upload_b (an upload
selects it as the source), morph (strip + GIF), compare_betas (reconstructions and random
faces of every available β-VAE side by side).
"""
from __future__ import annotations

import gradio as gr
import numpy as np

from playground.app import common, priority
from playground.data import pictures
from playground.evaluation.metrics import active_dims
from playground.pipelines import diffusion_models, latent_paths
from playground.pipelines import vae as ops
from playground.pipelines.inference import inference
from playground.pipelines.inputs import MAX_SEED, check_seed, in_range, whole_number
from playground.store import checkpoints

DEFAULT_STEPS = 8
MIN_STEPS, MAX_STEPS = 2, 32
MAX_SAMPLES = 8  # random faces per model in the comparison
MAX_COMPARE = 6  # models in the comparison (lowest β first)
GIF_FPS = 8

EXPLAIN = r"""
### Morphing: a straight line in $z$ is a smooth path in faces
Encode both faces to their posterior means $z_a = \mu(x_a)$, $z_b = \mu(x_b)$ and decode points
between them, $t = 0, \tfrac{1}{S-1}, \dots, 1$:

**lerp** $\;z_t = (1-t)\,z_a + t\,z_b$

**slerp** $\;z_t = \dfrac{\sin((1-t)\,\Omega)}{\sin\Omega}\,\hat z_a + \dfrac{\sin(t\,\Omega)}{\sin\Omega}\,\hat z_b$
(times the interpolated length), with $\cos\Omega = \hat z_a\!\cdot\!\hat z_b$.

Under the prior $\mathcal N(0, I)$ almost all codes lie near the sphere $\|z\| \approx \sqrt{D}$;
the straight line cuts inside it, where codes are atypical (the midpoint of two random codes is
~30 % shorter), while slerp follows the sphere. If every point on the way decodes to a
plausible face, the latent space is *smooth*: that is what the KL term buys.
"""

COMPARE_EXPLAIN = r"""
### The same faces through every β
Reconstructions $\text{dec}(\mu(x))$ of faces A and B, then random faces $\text{dec}(z)$ with
**the same** $z \sim \mathcal N(0, I)$ (same seed) for every model. Low β reconstructs sharply but
its random faces can be odd (the posterior need not fill the prior); high β gives blurrier
reconstructions but random samples that look like the data.
"""


def _faces(source_a, seed_a, index_a, upload_a, source_b, seed_b, index_b, upload_b):
    face_a, note_a = common.load_face(source_a, seed_a, index_a, upload_a)
    face_b, note_b = common.load_face(source_b, seed_b, index_b, upload_b)
    return face_a, face_b, f"**A**: {note_a}  \n**B**: {note_b}"


@common.user_errors
def morph(model_name, source_a, seed_a, index_a, upload_a, source_b, seed_b, index_b, upload_b,
          steps, mode):
    """Two faces, steps, lerp/slerp in → (face A, face B, strip, GIF path, notice)."""
    model = ops.get_model(model_name)
    steps = whole_number(steps, "steps")
    if not MIN_STEPS <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between {MIN_STEPS} and {MAX_STEPS}, got {steps}")
    face_a, face_b, notes = _faces(source_a, seed_a, index_a, upload_a,
                                   source_b, seed_b, index_b, upload_b)
    frames = latent_paths.morph(model, face_a, face_b, steps, mode)  # (steps, 64, 64, 3)
    gif = pictures.gif_bytes(frames, fps=GIF_FPS, pingpong=True, scale=2)
    notice = f"{notes}  \n{steps} steps, {mode}, decoded by **{model_name}**."
    return (common.show(face_a, 2), common.show(face_b, 2), pictures.strip(frames, scale=2, pad=2),
            common.save_gif(gif, f"morph-{model_name}-{mode}"), notice)


def _models_by_beta() -> list[tuple[str, object]]:
    names = common.model_names()
    if not names:
        raise ValueError(ops.no_models_hint())
    models = [(name, ops.get_model(name)) for name in names]
    models.sort(key=lambda nm: (ops.model_beta(nm[1]), nm[0]))
    return models[:MAX_COMPARE]


def _metrics_row(name: str, model) -> str:
    try:
        m = checkpoints.load_metrics(name, allow_paths=False)
    except (ValueError, OSError):
        m = {}

    def num(key, fmt):
        return format(m[key], fmt) if isinstance(m.get(key), (int, float)) else "–"

    # active dimensions as Traverse counts them: the same 512 faces, the same threshold
    active = active_dims(ops.dims_by_kl(model)[1])
    return (f"| {name} | {ops.model_beta(model):g} | {num('recon_bce', '.0f')} | "
            f"{num('kl', '.1f')} | {active} | {num('mig', '.3f')} |")


@common.user_errors
def compare_betas(source_a, seed_a, index_a, upload_a, source_b, seed_b, index_b, upload_b,
                  sample_seed, n_samples):
    """Faces A, B and a seed in → (labelled grid: one row per model, metrics table)."""
    n_samples = in_range(n_samples, "number of random faces", 1, MAX_SAMPLES, whole=True)
    sample_seed = check_seed(sample_seed, "sample seed")
    face_a, face_b, notes = _faces(source_a, seed_a, index_a, upload_a,
                                   source_b, seed_b, index_b, upload_b)
    models = _models_by_beta()
    faces = np.stack([face_a, face_b])
    blank = np.full((n_samples, *faces.shape[1:]), 255, np.uint8)
    rows, labels = [np.concatenate([faces, blank])], ["original"]
    table = ["| model | β | recon BCE | KL | active dims | MIG |", "|---|---|---|---|---|---|"]
    for name, model in models:
        rows.append(np.concatenate([ops.reconstruct(model, faces),
                                    ops.sample(model, n_samples, sample_seed)]))
        labels.append(f"β={ops.model_beta(model):g} {name}")
        table.append(_metrics_row(name, model))
    columns = ["face A", "face B"] + [f"z #{i + 1}" for i in range(n_samples)]
    picture = common.labelled_grid(np.stack(rows), labels, columns, scale=2, pad=2,
                                   label_width=150)
    notice = (f"{notes}  \nRandom faces: seed {sample_seed} (the same z for every model of "
              "the same latent size).\n\nFrom each model's metrics.json (evaluation set; "
              "BCE and KL in nats per image):\n\n" + "\n".join(table))
    return picture, notice


BOTH_DDIM_STEPS = 50  # DDIM steps of the inversions and of every frame of the diffusion morph
BOTH_EXPLAIN = r"""
#### The same two faces, morphed in both worlds
Above, the path runs through the β-VAE's $z$. Here it also runs through the diffusion model's
noise: both faces are inverted by DDIM to their $x_T$ (see the Prompt tab), the path between
the two $x_T$ follows the great circle (slerp), and every point is sampled back with DDIM. The
judge measures how smooth each path is: the mean distance between its features of consecutive
frames (lower: the face changes a little at every step).
"""


@common.user_errors
def both_worlds(model_name, source_a, seed_a, index_a, upload_a, source_b, seed_b, index_b,
                upload_b, steps):
    """The faces morphed through the β-VAE's z (slerp) and through diffusion's x_T → (two
    labelled rows, the judge's smoothness of each)."""
    from playground.pipelines.inversion import diffusion_morph, path_smoothness

    model = ops.get_model(model_name)
    steps = in_range(steps, "steps S", MIN_STEPS, MAX_STEPS, whole=True)
    face_a, face_b, notes = _faces(source_a, seed_a, index_a, upload_a,
                                   source_b, seed_b, index_b, upload_b)
    names = diffusion_models.list_pipelines()
    if not names:
        raise ValueError(diffusion_models.no_pipeline_hint())
    pipe = diffusion_models.get_pipeline(diffusion_models.default_pipeline(names))
    judge = diffusion_models.get_judge()
    vae_frames = latent_paths.morph(model, face_a, face_b, steps, "slerp")
    with inference():
        ldm_frames = diffusion_morph(pipe, face_a, face_b, frames=steps,
                                     steps=min(BOTH_DDIM_STEPS, pipe.num_timesteps))
    picture = common.labelled_grid(np.stack([vae_frames, ldm_frames]),
                                   [f"β-VAE {model_name}", f"diffusion {pipe.name}"],
                                   scale=2, pad=2, label_width=150)
    if judge is None:
        return picture, notes + "  \nNo judge model: the smoothness cannot be measured."
    with inference():
        smooth = [path_smoothness(judge, f) for f in (vae_frames, ldm_frames)]
    return picture, (f"{notes}  \nJudge's mean step between frames (lower is smoother): "
                     f"β-VAE **{smooth[0]:.2f}**, diffusion **{smooth[1]:.2f}**.")


def build(demo: gr.Blocks | None = None) -> None:
    """Add the tab to the enclosing Blocks (`demo`, if given, morphs once on page load)."""
    with gr.Tab("Morph"):
        gr.Markdown(common.no_models_message(), visible=bool(common.no_models_message()))
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    model = common.model_dropdown()
                    refresh = gr.Button("↻", scale=0, min_width=40)
                with gr.Row():
                    with gr.Column(min_width=200):
                        picker_a = common.face_picker("face A", seed=1)
                    with gr.Column(min_width=200):
                        picker_b = common.face_picker("face B", seed=2)
                with gr.Row():
                    steps = gr.Slider(MIN_STEPS, MAX_STEPS, value=DEFAULT_STEPS, step=1,
                                      label="steps S (both faces included)")
                    mode = gr.Radio(list(latent_paths.INTERPOLATION_MODES), value="lerp",
                                    label="interpolation")
                run = gr.Button("Morph", variant="primary")
            with gr.Column(scale=2):
                gr.Markdown(EXPLAIN, latex_delimiters=common.LATEX)
        with gr.Row():
            face_a = gr.Image(label="A", type="numpy", format="png", interactive=False,
                              height=140, scale=0, min_width=140)
            morph_strip = gr.Image(label="decoded path z_0 … z_1", type="numpy", format="png",
                                   interactive=False, scale=4)
            face_b = gr.Image(label="B", type="numpy", format="png", interactive=False,
                              height=140, scale=0, min_width=140)
        with gr.Row():
            gif = gr.File(label="morph GIF (there and back)", interactive=False, scale=1)
            notice = gr.Markdown()

        gr.Markdown(COMPARE_EXPLAIN, latex_delimiters=common.LATEX)
        with gr.Row():
            with gr.Column(scale=1):
                sample_seed = common.number_box(0, "seed of the random z", 0, MAX_SEED)
                n_samples = gr.Slider(1, MAX_SAMPLES, value=4, step=1,
                                      label="random faces per model")
                compare = gr.Button("Compare βs")
            compare_grid = gr.Image(label="rows: models by β · columns: faces A, B, random z",
                                    type="numpy", format="png", interactive=False, scale=3)
        compare_notice = gr.Markdown()

        gr.Markdown(BOTH_EXPLAIN, latex_delimiters=common.LATEX)
        with gr.Row():
            both_button = gr.Button("Morph in both worlds", scale=1)
            both_grid = gr.Image(label="rows: the β-VAE's z (slerp) · diffusion's x_T (slerp)",
                                 type="numpy", format="png", interactive=False, scale=4)
        both_notice = gr.Markdown()

        faces_in = [*picker_a.inputs, *picker_b.inputs]
        refresh.click(common.refresh_models, model, model, api_name="morph_models")
        common.wire_upload(picker_a, "morph_use_upload_a")
        common.wire_upload(picker_b, "morph_use_upload_b")
        triggers = [run.click]
        if demo is not None and common.model_names():
            triggers.insert(0, demo.load)
        morph_in = [model, *faces_in, steps, mode]
        gr.on(triggers, morph, morph_in, [face_a, face_b, morph_strip, gif, notice],
              api_name="morph", validator=common.field_validator(morph_in))
        compare_in = [*faces_in, sample_seed, n_samples]
        compare.click(compare_betas, compare_in, [compare_grid, compare_notice],
                      api_name="compare_betas", validator=common.field_validator(compare_in))
        both_in = [model, *faces_in, steps]
        both_button.click(priority.background(both_worlds), both_in, [both_grid, both_notice],
                          api_name="morph_both_worlds", concurrency_id="diffusion",
                          validator=common.field_validator(both_in))
