"""The Prompt tab's last section: a real face inverted into x_T by DDIM, and re-prompted.

Event (api_name): prompt_invert (face source, source prompt, edited prompt, w, steps → the four
pictures and their PSNR).
"""
from __future__ import annotations

import gradio as gr

from playground.app import common, priority
from playground.pipelines import diffusion_models
from playground.pipelines.diffusion_inputs import MAX_PROMPT_CHARS
from playground.pipelines.inference import inference
from playground.pipelines.inputs import in_range
from playground.pipelines.inversion import LABELS, invert_and_edit

MIN_STEPS, MAX_STEPS = 10, 100
MAX_GUIDANCE = 15.0

EXPLAIN = r"""
#### Invert a real face, then change the prompt
DDIM with $\eta = 0$ is deterministic: a step of an ODE. Run backwards from the face's latent
$z_0$, it finds the noise $x_T$ that DDIM turns back into this face:
$$x_t = \sqrt{\bar\alpha_t}\,\hat x_0 + \sqrt{1-\bar\alpha_t}\,\hat\varepsilon,\qquad
\hat x_0 = \frac{x_s - \sqrt{1-\bar\alpha_s}\,\hat\varepsilon}{\sqrt{\bar\alpha_s}},\qquad
\hat\varepsilon = \varepsilon_\theta(x_s, t)$$
for consecutive timesteps $s < t$. Sampling from that $x_T$ with the same prompt gives the
face back (as well as the autoencoder can copy it, and worse with strong guidance or few
steps); with an **edited prompt**, the same noise becomes the same face, changed where the
prompt changed. DDPM draws new noise at every step: it has no such inverse.
"""


@common.user_errors
def invert(model_name, source, seed, index, upload, prompt, edit_prompt, guidance, steps):
    """Face and prompts in → (labelled row of 4 pictures, the PSNRs)."""
    pipe = diffusion_models.get_pipeline(model_name)
    face, note = common.load_face(source, seed, index, upload)
    guidance = in_range(guidance, "guidance w", 0.0, MAX_GUIDANCE)
    steps = min(in_range(steps, "DDIM steps", MIN_STEPS, MAX_STEPS, whole=True),
                pipe.num_timesteps)  # a model trained with fewer timesteps takes all of them
    with inference():
        out = invert_and_edit(pipe, face, prompt, edit_prompt, guidance, steps)
    picture = common.labelled_grid(out["images"][None], ["DDIM"], list(LABELS), scale=3, pad=3,
                                   label_width=60)
    p = out["psnr"]
    text = (f"{note}. Inverted under “{prompt}” with w = {guidance:g}, {steps} steps. PSNR "
            f"against the face: the autoencoder's copy **{p['autoencoder']:.1f} dB** (the "
            f"ceiling), the DDIM round trip **{p['round_trip']:.1f} dB**, the edited prompt "
            f"{p['edited']:.1f} dB (lower: it changed).")
    return picture, text


def build(model: gr.Dropdown) -> None:
    """Add the section to the enclosing tab; `model` is the tab's U-Net dropdown."""
    with gr.Row():
        with gr.Column(scale=2):
            gr.Markdown(EXPLAIN, latex_delimiters=common.LATEX)
            picker = common.face_picker("face to invert", seed=5)
            source = gr.Textbox("", label="its prompt (empty: unconditional)", lines=1,
                                max_length=MAX_PROMPT_CHARS)
            edited = gr.Textbox("a photo of a person wearing a hat", label="edited prompt",
                                lines=1, max_length=MAX_PROMPT_CHARS)
            with gr.Row():
                guidance = gr.Slider(0, MAX_GUIDANCE, value=1.0, step=0.5,
                                     label="guidance w (1: inverts best)")
                steps = gr.Slider(MIN_STEPS, MAX_STEPS, value=50, step=1, label="DDIM steps")
            button = gr.Button("Invert and re-prompt", elem_id="prompt-invert")
        with gr.Column(scale=5):
            picture = gr.Image(label="inversion", type="numpy", format="png",
                               interactive=False, elem_id="prompt-invert-picture")
            text = gr.Markdown()
    common.wire_upload(picker, "prompt_invert_use_upload")
    inputs = [model, *picker.inputs, source, edited, guidance, steps]
    button.click(priority.background(invert), inputs, [picture, text], api_name="prompt_invert",
                 concurrency_id="diffusion", validator=common.field_validator(inputs))
