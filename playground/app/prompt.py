"""The Prompt tab: text in, faces out, with classifier-free guidance — and a guidance sweep
that measures what w buys (adherence) and costs (diversity).

Events (api_name): prompt_models (↻), prompt_generate (prompt, negative prompt, w, steps,
seed, randomise, faces → grid, notice, the seed used), prompt_sweep (w = 1, 3, 7.5, 12 with the
same seed: a row of faces per w and a table of adherence and diversity by the judge; streamed
one row at a time).
"""
from __future__ import annotations

import secrets
import time

import gradio as gr
import numpy as np

from playground.app import common, invert, priority
from playground.app.diffusion_picker import (
    no_pipeline_message,
    pipeline_dropdown,
    refresh_pipelines,
)
from playground.data import pictures
from playground.data.images import tensor_to_images
from playground.pipelines import diffusion_models, prompts
from playground.pipelines.diffusion_inputs import EXAMPLE_PROMPT, MAX_PROMPT_CHARS, check_prompt
from playground.pipelines.inference import inference
from playground.pipelines.inputs import MAX_SEED, check_seed, in_range
from playground.pipelines.latent_diffusion import LatentDiffusion

MAX_FACES = 8
GRID_COLUMNS = 4
MIN_STEPS, MAX_STEPS = 5, 100  # 5: the fewest steps of the samplers' frontier
MAX_GUIDANCE = 15.0
DEFAULT_PROMPT = EXAMPLE_PROMPT
WORDS_BARELY_READ = 0.01  # a word's ε-MSE rise under 1 % of the best-read attribute's

EXPLAIN = r"""
### Classifier-free guidance: how hard to listen to the prompt
One U-Net, trained with the caption dropped on some of its steps (10–20 %), predicts the
noise both with the prompt $c$ and without it ($\varnothing$, the empty prompt). Sampling mixes the two:
$$\tilde\varepsilon = \varepsilon_\theta(x_t, t, \varnothing) + w\,\big(\varepsilon_\theta(x_t, t, c) - \varepsilon_\theta(x_t, t, \varnothing)\big).$$
$w = 0$ ignores the prompt, $w = 1$ is the plain conditional model, and $w > 1$ goes *past* it,
in the direction that makes the face more like the prompt than like a random face. Larger $w$:
faces follow the prompt more often (**adherence**) but look more alike (**diversity** falls).
A **negative prompt** takes the place of $\varnothing$, so guidance also pushes away from it.
Faces are drawn with the sampler that reached DDIM-50's quality with the fewest U-Net calls
on this model (measured: the Denoise tab's samplers' frontier; named under the faces). The same
seed gives the same $x_T$ for every $w$; the sweep and the step view below use DDIM.
"""

SWEEP_EXPLAIN = r"""
**Adherence**: the judge (a CNN trained to read the SynthFaces attributes back) checks every
attribute the prompt names — the fraction of (face, attribute) pairs it finds as asked.
**Diversity**: the mean distance between the judge's features of every pair of faces.
"""


def _notes(pipe: LatentDiffusion, prompt: str, negative: str, guidance: float) -> list[str]:
    """What to tell the user about the prompt before the faces are judged."""
    info = prompts.prompt_info(prompt, pipe.clip)
    notes = []
    if info.empty:
        notes.append("**Empty prompt: unconditional faces** (ε(x_t, ∅) only" +
                     ("; guidance pushes away from the negative prompt" if negative.strip()
                      and guidance != 1 else "; guidance changes nothing") + ").")
    elif not info.attributes:
        notes.append("**The prompt names no attribute the model knows** (smiling, hair colour, "
                     "glasses, hat, beard, mustache, goatee, lipstick, bangs, bald, pale skin, "
                     "open mouth, narrow eyes, arched eyebrows, chubby): expect random faces.")
    if info.unknown_words:
        notes.append("Words the U-Net never read in a training caption (it cannot know what "
                     "they mean): " + ", ".join(f"“{w}”" for w in info.unknown_words) + ".")
    if info.truncated:
        notes.append(f"**The prompt was cut** at the tokenizer's {pipe.clip.context_length} "
                     "tokens: the end of it is ignored.")
    if negative.strip() and prompts.prompt_info(negative, pipe.clip).truncated:
        notes.append("The negative prompt was cut at the tokenizer's context length.")
    if negative.strip() and guidance == 1:
        notes.append("With w = 1 the negative prompt has no effect (only ε(x_t, c) is used).")
    if info.attributes:
        notes.append("Attributes named: " + ", ".join(
            f"{a}{'' if v else ' (absent)'}" for a, v in info.attributes.items()) + ".")
    known = prompts.measured_attribute_accuracy(pipe.name)
    poor = {a: share for a, share in known.items()
            if a in info.attributes and share < prompts.DRAWN_POORLY}
    if poor:
        notes.append(f"**This model draws {', '.join(poor)} poorly**: at w = "
                     f"{prompts.NOTICE_GUIDANCE:g} the judge found "
                     + ", ".join(f"{a} on {share:.0%}" for a, share in poor.items())
                     + " of its faces (its metrics.json, measured with DDIM on the sweep's "
                     "prompts). Try several seeds, or see the README for why.")
        heard = prompts.measured_word_sensitivity(pipe.name)
        named = [a for a in poor if a in heard]
        if named:
            loudest = max(heard, key=heard.get)
            notes.append("How much the U-Net reads those words: a caption that says the "
                         "opposite raises its noise-prediction error by "
                         + ", ".join(f"{heard[a]:.1e} ({a})" for a in named)
                         + f", against {heard[loudest]:.1e} for {loudest} (its metrics.json)."
                         + (" It barely reads them: guidance has little to amplify."
                            if all(heard[a] < WORDS_BARELY_READ * heard[loudest] for a in named)
                            else ""))
    return notes


def _check(model_name, prompt, negative, guidance, steps, n_faces, seed):
    pipe = diffusion_models.get_pipeline(model_name)
    prompt = check_prompt(prompt)
    negative = check_prompt(negative, "negative prompt")
    guidance = in_range(guidance, "guidance scale", 0.0, MAX_GUIDANCE)
    steps = in_range(steps, "steps", MIN_STEPS, MAX_STEPS, whole=True)
    n_faces = in_range(n_faces, "number of faces", 1, MAX_FACES, whole=True)
    seed = check_seed(seed)
    return pipe, prompt, negative, guidance, min(steps, pipe.num_timesteps), n_faces, seed


def _grid(images) -> np.ndarray:
    faces = tensor_to_images(images)  # (N, 64, 64, 3)
    n = len(faces)
    cols = min(GRID_COLUMNS, n)
    rows = -(-n // cols)
    blank = np.full((rows * cols - n, *faces.shape[1:]), 255, np.uint8)
    cells = np.concatenate([faces, blank]).reshape(rows, cols, *faces.shape[1:])
    return pictures.grid(cells, scale=3, pad=3)


@common.user_errors
def generate(model_name, prompt, negative, guidance, steps, seed, randomize, n_faces):
    """Prompt and settings in → (grid of faces, notice, the seed used)."""
    if randomize:
        seed = secrets.randbelow(MAX_SEED + 1)
    pipe, prompt, negative, guidance, steps, n_faces, seed = _check(
        model_name, prompt, negative, guidance, steps, n_faces, seed)
    notes = _notes(pipe, prompt, negative, guidance)
    start = time.perf_counter()
    choice = prompts.sampler_for_prompts(pipe.name)
    with inference():
        images = pipe.sample([prompt] * n_faces, guidance=guidance, steps=steps, seed=seed,
                             negative_prompt=negative, sampler=choice.sampler, eta=choice.eta)
    seconds = time.perf_counter() - start
    notes.insert(0, f"**Seed {seed}**, w = {guidance:g}, {choice.label} {steps} steps, "
                    f"{n_faces} faces by **{pipe.name}**: {seconds:.2f} s. {choice.why}")
    return _grid(images), "  \n".join(notes), seed


def _table(rows: list[dict], judged: bool, wanted: dict) -> str:
    lines = ["| w | adherence | diversity | seconds |", "|---|---|---|---|"]
    for r in rows:
        acc = "–" if r["accuracy"] is None else f"{r['accuracy']:.2f}"
        div = "–" if r["diversity"] is None else f"{r['diversity']:.2f}"
        lines.append(f"| {r['w']:g} | {acc} | {div} | {r['seconds']:.2f} |")
    if rows and wanted and judged:
        header = "| w | " + " | ".join(wanted) + " |"
        lines += ["", "Per attribute (fraction of faces the judge finds as asked):", "",
                  header, "|---" * (len(wanted) + 1) + "|"]
        for r in rows:
            lines.append(f"| {r['w']:g} | " + " | ".join(
                f"{r['per_attribute'][a]:.2f}" for a in wanted) + " |")
    return "\n".join(lines)


@common.user_errors
def sweep(model_name, prompt, negative, steps, seed, n_faces):
    """The guidance sweep, streamed: after each w → (labelled grid so far, table + notes)."""
    pipe, prompt, negative, _, steps, n_faces, seed = _check(
        model_name, prompt, negative, 1.0, steps, n_faces, seed)
    judge = diffusion_models.get_judge()
    wanted = prompts.named_attributes(prompt)
    notes = _notes(pipe, prompt, negative, 7.5)
    if judge is None:
        notes.append("**No judge model** (trained/judge is not trained yet): adherence and "
                     "diversity cannot be measured; the faces are shown.")
    elif not wanted:
        notes.append("Adherence needs a prompt that names attributes; diversity is measured.")
    notes.append(f"Seed {seed} (the same x_T for every w), DDIM {steps} steps, {n_faces} "
                 f"faces per w, by **{pipe.name}**.")
    rows, cells = [], []
    chain = prompts.guidance_sweep_progressive(pipe, prompt, n=n_faces, steps=steps, seed=seed,
                                               negative_prompt=negative, judge=judge)
    while True:
        with inference():
            row = next(chain, None)
        if row is None:
            break
        rows.append(row)
        cells.append(tensor_to_images(row["images"]))
        picture = common.labelled_grid(np.stack(cells), [f"w = {r['w']:g}" for r in rows],
                                       scale=2, pad=2, label_width=70)
        yield picture, _table(rows, judge is not None, wanted) + "\n\n" + "  \n".join(notes)


ANATOMY_EXPLAIN = r"""
#### Guidance, made visible
At one step $t$ of the same run, the U-Net is asked twice. Each answer implies a guess of the
clean face, $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon)/\sqrt{\bar\alpha_t}$.
Guidance adds $(w-1)\,(\varepsilon_c - \varepsilon_\varnothing)$ to the conditional
prediction: in $\hat x_0$ it is an **extrapolation**, from the guess without the prompt through
the guess with it, $w - 1$ times further. The last picture is that push in pixels (grey: no
change). Early steps ($t$ large) decide the layout; late steps only touch details.
"""


@common.user_errors
def anatomy(model_name, prompt, negative, guidance, steps, seed, at_step):
    """Guidance taken apart at one step → (labelled row of 5 pictures, numbers)."""
    from playground.pipelines.guidance_step import LABELS, guidance_at_step

    pipe, prompt, negative, guidance, steps, _, seed = _check(
        model_name, prompt, negative, guidance, steps, 1, seed)
    at_step = in_range(at_step, "step", 1, steps, whole=True)
    with inference():
        view = guidance_at_step(pipe, prompt, guidance, steps, at_step - 1, seed, negative)
    picture = common.labelled_grid(view["images"][None], [f"t = {view['t']}"], list(LABELS),
                                   scale=3, pad=3, label_width=70)
    text = (f"Step {at_step} of {steps} (t = {view['t']}), w = {guidance:g}, seed {seed}: the "
            f"prompt changes the noise prediction by RMS **{view['eps_gap_rms']:.3f}**; guidance "
            f"adds **{view['push_rms']:.3f}** to it, which moves x̂₀ by RMS "
            f"**{view['x0_shift_rms']:.3f}** (in the model's latent units).")
    return picture, text


def _random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def _default_steps(model_name: str | None) -> int:
    """The steps with which the model's measured sampler reached DDIM-50's quality (50 if none)."""
    steps = prompts.sampler_for_prompts(model_name).steps if model_name else 50
    return min(max(steps, MIN_STEPS), MAX_STEPS)


def build(demo: gr.Blocks | None = None) -> None:
    """Add the tab to the enclosing Blocks (nothing runs on page load)."""
    with gr.Tab("Prompt"):
        message = no_pipeline_message("The other tabs work without it.")
        gr.Markdown(message, visible=bool(message))
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    model = pipeline_dropdown()
                    refresh = gr.Button("↻", scale=0, min_width=40)
                prompt = gr.Textbox(DEFAULT_PROMPT, label="prompt (empty: unconditional)",
                                    lines=2, max_length=MAX_PROMPT_CHARS,
                                    elem_id="prompt-text")
                negative = gr.Textbox("", label="negative prompt (replaces ∅ in guidance)",
                                      lines=1, max_length=MAX_PROMPT_CHARS)
                guidance = gr.Slider(0, MAX_GUIDANCE, value=7.5, step=0.5,
                                     label="guidance scale w")
                with gr.Row():
                    steps = gr.Slider(MIN_STEPS, MAX_STEPS, value=_default_steps(model.value),
                                      step=1, label="steps")
                    n_faces = gr.Slider(1, MAX_FACES, value=4, step=1, label="faces")
                with gr.Row():
                    seed = common.number_box(0, "seed", 0, MAX_SEED, min_width=100)
                    randomize = gr.Checkbox(False, label="new random seed each time")
                    dice = gr.Button("New seed", scale=0, min_width=90)
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", elem_id="prompt-generate")
                    sweep_button = gr.Button("Guidance sweep (w = 1, 3, 7.5, 12)")
            with gr.Column(scale=4):
                grid = gr.Image(label="samples", type="numpy", format="png", interactive=False,
                                elem_id="prompt-grid")
                notice = gr.Markdown(elem_id="prompt-notice")
            with gr.Column(scale=3):
                gr.Markdown(EXPLAIN, latex_delimiters=common.LATEX)
        with gr.Row():
            sweep_grid = gr.Image(label="guidance sweep: one row per w, same seed",
                                  type="numpy", format="png", interactive=False, scale=3)
            with gr.Column(scale=2):
                gr.Markdown(SWEEP_EXPLAIN, latex_delimiters=common.LATEX)
                sweep_table = gr.Markdown()
        with gr.Row():
            with gr.Column(scale=2):
                gr.Markdown(ANATOMY_EXPLAIN, latex_delimiters=common.LATEX)
                at_step = gr.Slider(1, MAX_STEPS, value=10, step=1, label="at step",
                                    info="of the steps above (1: pure noise)")
                anatomy_button = gr.Button("Show what guidance adds", elem_id="prompt-anatomy")
            with gr.Column(scale=5):
                anatomy_picture = gr.Image(label="one step, taken apart", type="numpy",
                                           format="png", interactive=False,
                                           elem_id="prompt-anatomy-picture")
                anatomy_text = gr.Markdown()

        refresh.click(refresh_pipelines, model, model, api_name="prompt_models")
        dice.click(_random_seed, None, seed, api_name="prompt_random_seed")
        generate_in = [model, prompt, negative, guidance, steps, seed, randomize, n_faces]
        gr.on([run.click, prompt.submit], priority.background(generate), generate_in,
              [grid, notice, seed], api_name="prompt_generate", concurrency_id="diffusion",
              validator=common.field_validator(generate_in))
        sweep_in = [model, prompt, negative, steps, seed, n_faces]
        sweep_button.click(priority.background(sweep), sweep_in, [sweep_grid, sweep_table],
                           api_name="prompt_sweep", concurrency_id="diffusion",
                           validator=common.field_validator(sweep_in))
        anatomy_in = [model, prompt, negative, guidance, steps, seed, at_step]
        anatomy_button.click(priority.background(anatomy), anatomy_in,
                             [anatomy_picture, anatomy_text], api_name="prompt_guidance_step",
                             concurrency_id="diffusion",
                             validator=common.field_validator(anatomy_in))
        invert.build(model)
