"""The Denoise tab: the forward process on a face, then DDPM and DDIM undoing it from noise.

Events (api_name): denoise_models (↻), denoise_forward (face, t, noise seed → x_0, ε, x_t,
the latent version and the ᾱ_t / SNR plot), denoise_use_upload + denoise_forward_upload (an
upload selects and noises it), denoise_ddim, denoise_ddpm and denoise_run (DDIM, then DDPM, from
the same x_T) — generators that stream x_t and x̂_0 step by step, then the wall time and a GIF —
denoise_stop, and denoise_frontier (the samplers' frontier measured on the chosen model).

The handlers check the widgets' values and call the core: the forward process is
`playground.pipelines.forward_process`, one streamed sampler run `playground.app.sampler_stream`,
the plot `playground.app.schedule_plot`, the model dropdown `playground.app.diffusion_picker`.
"""
from __future__ import annotations

import math
from pathlib import Path

import gradio as gr
import numpy as np

from playground.app import common, priority
from playground.app.diffusion_picker import (
    no_pipeline_message,
    pipeline_dropdown,
    refresh_pipelines,
)
from playground.app.sampler_stream import RUNNING, stream
from playground.app.schedule_plot import schedule_figure
from playground.diffusion import NoiseSchedule
from playground.evaluation.ldm.solver_frontier import frontier_markdown
from playground.pipelines import diffusion_models, forward_process, prompts
from playground.pipelines.diffusion_inputs import MAX_PROMPT_CHARS, check_prompt
from playground.pipelines.inference import inference
from playground.pipelines.inputs import MAX_SEED, check_seed, in_range
from playground.pipelines.latent_diffusion import LatentDiffusion

MAX_FACES = 4  # faces per sampler run
MIN_DDIM_STEPS, MAX_DDIM_STEPS = 10, 100
MAX_GUIDANCE = 15.0
FEW_STEP_SAMPLERS = [("DDIM", "ddim"), ("DPM-Solver++ (2M)", "dpm++")]  # the left column's
CURSOR_SCRIPT = Path(__file__).with_name("schedule_cursor.js")  # the plot follows a run's steps

FORWARD_EXPLAIN = r"""
### The forward process: noise in closed form
Diffusion destroys a picture in $T = 1000$ small steps $q(x_t\mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I)$.
Gaussians compose, so any step can be reached in one jump:
$$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\qquad \varepsilon\sim\mathcal N(0, I),$$
$$\bar\alpha_t=\prod_{s\le t}(1-\beta_s),\qquad \mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t}.$$
Move $t$: the face fades into static with the *same* $\varepsilon$ (the noise seed). The plot
shows how much signal is left — where the SNR crosses 1, signal and noise weigh the same. The
network is trained to guess $\varepsilon$ from $x_t$ at every $t$. **Latent** diffusion noises
the autoencoder's 16×16 code (a few channels) instead of the pixels: decoding a noisy code does not look like
a noisy photo, yet it is the same formula.
"""

REVERSE_EXPLAIN = r"""
### The reverse process: DDPM and DDIM from the same $x_T$
The U-Net predicts the noise $\hat\varepsilon = \varepsilon_\theta(x_t, t, c)$, hence a guess of the clean sample
$\hat x_0 = \big(x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon\big)/\sqrt{\bar\alpha_t}$.
**DDPM** walks all $T$ steps, each adding fresh noise:
$x_{t-1} = \tilde\mu_t(x_t, \hat x_0) + \sqrt{\tilde\beta_t}\,z$.
**DDIM** jumps between $S$ timesteps $t > s$:
$$x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1-\bar\alpha_s-\sigma_t^2}\;\hat\varepsilon + \sigma_t z,\qquad \sigma_t = \eta\sqrt{\tfrac{1-\bar\alpha_s}{1-\bar\alpha_t}}\sqrt{1-\tfrac{\bar\alpha_t}{\bar\alpha_s}}.$$
With $\eta = 0$ DDIM is deterministic, so 50 steps already give a clean face; DDPM needs all
1000. Watch $\hat x_0$: a blurry average face first, details as $t$ falls. Same seed, same
$x_T$ for both — the faces differ because their paths do.
"""


# ------------------------------------------------------------------------------ helpers
def frontier_note(model_name) -> str:
    """The samplers' frontier measured on this model (its metrics.json), as a table."""
    if not model_name:
        return ""
    return frontier_markdown(prompts.measured_metrics(model_name).get("solver_frontier"), model_name)


def _schedule_for(model_name) -> tuple[NoiseSchedule, LatentDiffusion | None]:
    """The chosen model's schedule and pipeline, or the default schedule and None."""
    if not model_name:
        return NoiseSchedule(), None
    pipe = diffusion_models.get_pipeline(model_name)
    return pipe.schedule, pipe


# ------------------------------------------------------------------------------ forward
@common.user_errors
def forward(model_name, source, seed, index, upload, t, noise_seed):
    """Face, t and noise seed in → (x_0, ε, x_t, latent z_t, decoded z_t, plot, notice)."""
    schedule, pipe = _schedule_for(model_name)
    t = forward_process.check_timestep(t, schedule)
    noise_seed = check_seed(noise_seed, "noise seed")
    face, note = common.load_face(source, seed, index, upload)
    with inference():
        pixels = forward_process.noised_images(face[None], t, noise_seed, schedule)
        latent = forward_process.noised_latents(pipe, face[None], t, noise_seed) if (
            pipe is not None and pipe.space == "latent") else None
    ab = float(schedule.alphas_cumprod[t])
    notice = (f"{note}. **t = {t}**: ᾱ_t = {ab:.4f}, so x_t = {math.sqrt(ab):.3f}·x_0 + "
              f"{math.sqrt(1 - ab):.3f}·ε; SNR = {ab / (1 - ab):.3g}.")
    if pipe is None:
        notice += (" Default schedule (linear β, T = 1000); the latent view needs a diffusion "
                   "model.")
    else:
        notice += f" Schedule of **{pipe.name}**."
    blank = np.full((64, 64, 3), 255, np.uint8)
    z_t = latent["z_t"][0] if latent else blank
    decoded = latent["decoded"][0] if latent else blank
    figure = schedule_figure(schedule, {"x_t": t})
    return (common.show(pixels["x0"][0]), common.show(pixels["noise"][0]),
            common.show(pixels["x_t"][0]), common.show(z_t), common.show(decoded), figure,
            notice)


@common.user_errors
def forward_upload(model_name, seed, index, upload, t, noise_seed):
    """`forward` with the upload as the face (the upload event)."""
    return forward(model_name, "upload", seed, index, upload, t, noise_seed)


# ------------------------------------------------------------------------------ reverse
def _check_run(model_name, prompt, guidance, n_faces, seed, steps, eta):
    pipe = diffusion_models.get_pipeline(model_name)
    prompt = check_prompt(prompt)
    guidance = in_range(guidance, "guidance scale", 0.0, MAX_GUIDANCE)
    n_faces = in_range(n_faces, "number of faces", 1, MAX_FACES, whole=True)
    seed = check_seed(seed)
    steps = in_range(steps, "DDIM steps", MIN_DDIM_STEPS, MAX_DDIM_STEPS, whole=True)
    eta = in_range(eta, "η", 0.0, 1.0)
    return pipe, prompt, guidance, n_faces, seed, min(steps, pipe.num_timesteps), eta


def mark_stopped(*infos):
    """Stop's handler: each sampler text that was still running now says where it stopped
    (its last frame shown); finished or empty texts stay as they are."""
    return tuple(f"**Stopped** — {info.removesuffix(RUNNING).rstrip(' ·')} of sampling, at the "
                 "frame shown." if isinstance(info, str) and info.endswith(RUNNING) else info
                 for info in infos)


def _run(samplers, model_name, prompt, guidance, n_faces, seed, steps, eta):
    pipe, prompt, guidance, n_faces, seed, steps, eta = _check_run(
        model_name, prompt, guidance, n_faces, seed, steps, eta)
    # Outputs a sampler does not touch stay as they are (gr.update()), except that a DDPM run
    # after the few-step one repeats its final picture, text and GIF: an API client gets the
    # last message only, and it should hold both results.
    done = {"few": [gr.update()] * 3, "ddpm": [gr.update()] * 3}  # picture, info, gif
    for sampler in samplers:
        column = "ddpm" if sampler == "ddpm" else "few"
        for picture, info, plot, gif in stream(pipe, sampler, prompt, guidance, n_faces, seed,
                                               steps, eta):
            mine = [picture, info, gif if gif is not None else gr.update()]
            if gif is not None:
                done[column] = mine
            few, ddpm = (mine, done["ddpm"]) if column == "few" else (done["few"], mine)
            yield few[0], few[1], ddpm[0], ddpm[1], plot, few[2], ddpm[2]


def _few_step(solver) -> str:
    values = [v for _, v in FEW_STEP_SAMPLERS]
    if solver not in values:
        raise ValueError(f"few-step sampler must be one of {values}, got {solver!r}")
    return solver


@common.user_errors
def run_ddim(model_name, prompt, guidance, n_faces, seed, steps, eta, solver="ddim"):
    """Stream the few-step sampler (DDIM, or DPM-Solver++ with `solver` "dpm++") → (its
    picture, its info, DDPM picture, DDPM info, plot, its GIF, DDPM GIF); the DDPM outputs
    are left as they are, and the plot is sent with the first frame only (the page moves its
    cursor)."""
    yield from _run((_few_step(solver),), model_name, prompt, guidance, n_faces, seed, steps,
                    eta)


@common.user_errors
def run_ddpm(model_name, prompt, guidance, n_faces, seed, steps, eta, solver="ddim"):
    """Stream DDPM over all T steps (same outputs as `run_ddim`; `steps`/`eta` are DDIM's)."""
    yield from _run(("ddpm",), model_name, prompt, guidance, n_faces, seed, steps, eta)


@common.user_errors
def run_both(model_name, prompt, guidance, n_faces, seed, steps, eta, solver="ddim"):
    """Stream the few-step sampler, then DDPM, from the same x_T (the seed's)."""
    yield from _run((_few_step(solver), "ddpm"), model_name, prompt, guidance, n_faces, seed,
                    steps, eta)


# ------------------------------------------------------------------------------ layout
def head_script() -> str:
    """The <script> that moves the schedule plot's cursor as a run streams (for
    `launch(head=...)`)."""
    return common.script_tag(CURSOR_SCRIPT)


def build(demo: gr.Blocks | None = None) -> None:
    """Add the tab to the enclosing Blocks (`demo`, if given, draws the forward process on
    page load — it needs no trained model)."""
    with gr.Tab("Denoise"):
        message = no_pipeline_message()
        gr.Markdown(message, visible=bool(message))
        with gr.Row():
            model = pipeline_dropdown()
            refresh = gr.Button("↻", scale=0, min_width=40)

        # ---- forward process
        with gr.Row():
            with gr.Column(scale=3):
                picker = common.face_picker("face x_0", seed=0)
                t = gr.Slider(0, 999, value=250, step=1, label="timestep t",
                              elem_id="denoise-t")
                noise_seed = common.number_box(0, "noise seed (ε)", 0, MAX_SEED)
                forward_button = gr.Button("Noise it", variant="primary")
            with gr.Column(scale=4):
                with gr.Row():
                    x0 = gr.Image(label="x_0", type="numpy", format="png", interactive=False,
                                  height=200, min_width=120)
                    eps = gr.Image(label="ε", type="numpy", format="png", interactive=False,
                                   height=200, min_width=120)
                    x_t = gr.Image(label="x_t (pixels)", type="numpy", format="png",
                                   interactive=False, height=200, min_width=120,
                                   elem_id="denoise-xt")
                with gr.Row():
                    z_t = gr.Image(label="z_t: the noised latent (a tile per channel)", type="numpy",
                                   format="png", interactive=False, height=200)
                    z_dec = gr.Image(label="D(z_t): the noised latent, decoded", type="numpy",
                                     format="png", interactive=False, height=200)
                forward_notice = gr.Markdown()
            with gr.Column(scale=4):
                gr.Markdown(FORWARD_EXPLAIN, latex_delimiters=common.LATEX)
        forward_plot = gr.Plot(label="ᾱ_t and SNR(t)")

        # ---- reverse process
        gr.Markdown(REVERSE_EXPLAIN, latex_delimiters=common.LATEX)
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox("", label="prompt (empty: unconditional)", lines=1,
                                    max_length=MAX_PROMPT_CHARS)
                guidance = gr.Slider(0, MAX_GUIDANCE, value=1.0, step=0.5,
                                     label="guidance w (1: the conditional model, one pass)")
                with gr.Row():
                    n_faces = gr.Slider(1, MAX_FACES, value=4, step=1, label="faces",
                                        elem_id="denoise-faces")
                    seed = common.number_box(0, "seed (x_T and noise)", 0, MAX_SEED)
                solver = gr.Radio(FEW_STEP_SAMPLERS, value="ddim", label="few-step sampler",
                                  info="DPM-Solver++ reuses the last x̂_0: second order, the "
                                       "same one U-Net call per step")
                steps = gr.Slider(MIN_DDIM_STEPS, MAX_DDIM_STEPS, value=50, step=1,
                                  label="DDIM steps S")
                eta = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="DDIM η")
                with gr.Row():
                    ddim_button = gr.Button("Run few-step", variant="primary", elem_id="run-ddim")
                    ddpm_button = gr.Button("Run DDPM (1000 steps)", elem_id="run-ddpm")
                with gr.Row():
                    both_button = gr.Button("Run both")
                    stop = gr.Button("Stop", variant="stop")
            with gr.Column(scale=5):
                with gr.Row():
                    with gr.Column():
                        ddim_image = gr.Image(label="few-step: DDIM or DPM-Solver++", type="numpy",
                                              format="png",
                                              interactive=False, elem_id="denoise-ddim")
                        ddim_info = gr.Markdown(elem_id="denoise-ddim-info")
                        ddim_gif = gr.File(label="DDIM GIF", interactive=False)
                    with gr.Column():
                        ddpm_image = gr.Image(label="DDPM", type="numpy", format="png",
                                              interactive=False, elem_id="denoise-ddpm")
                        ddpm_info = gr.Markdown(elem_id="denoise-ddpm-info")
                        ddpm_gif = gr.File(label="DDPM GIF", interactive=False)
                reverse_plot = gr.Plot(label="where the sampler is: ᾱ_t and SNR(t)",
                                       elem_id="denoise-reverse-plot")
                frontier = gr.Markdown(frontier_note(model.value), elem_id="denoise-frontier")

        refresh.click(refresh_pipelines, model, model, api_name="denoise_models")
        model.change(frontier_note, model, frontier, api_name="denoise_frontier", queue=False)
        forward_in = [model, *picker.inputs, t, noise_seed]
        forward_out = [x0, eps, x_t, z_t, z_dec, forward_plot, forward_notice]
        triggers = [forward_button.click, t.input, model.change]
        if demo is not None:
            triggers.insert(0, demo.load)
        gr.on(triggers, forward, forward_in, forward_out, api_name="denoise_forward",
              trigger_mode="always_last", show_progress="hidden",
              validator=common.field_validator(forward_in))
        upload_in = [model, picker.seed, picker.index, picker.upload, t, noise_seed]
        common.wire_upload(picker, "denoise_use_upload").then(
            forward_upload, upload_in, forward_out, api_name="denoise_forward_upload",
            validator=common.field_validator(upload_in))

        run_in = [model, prompt, guidance, n_faces, seed, steps, eta, solver]
        run_out = [ddim_image, ddim_info, ddpm_image, ddpm_info, reverse_plot, ddim_gif,
                   ddpm_gif]
        run_checks = common.field_validator(run_in)
        events = [
            ddim_button.click(priority.background(run_ddim), run_in, run_out,
                              api_name="denoise_ddim", concurrency_id="diffusion",
                              validator=run_checks),
            ddpm_button.click(priority.background(run_ddpm), run_in, run_out,
                              api_name="denoise_ddpm", concurrency_id="diffusion",
                              validator=run_checks),
            both_button.click(priority.background(run_both), run_in, run_out,
                              api_name="denoise_run", concurrency_id="diffusion",
                              validator=run_checks),
        ]
        stop.click(mark_stopped, [ddim_info, ddpm_info], [ddim_info, ddpm_info], cancels=events,
                   api_name="denoise_stop", show_progress="hidden")
