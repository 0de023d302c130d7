"""The diffusion-model (U-Net) dropdown the Denoise and Prompt tabs share: its choices, its ↻
handler and the notice shown while no diffusion model is trained yet."""
from __future__ import annotations

import gradio as gr

from playground.pipelines import diffusion_models


def pipeline_names() -> list[str]:
    """The diffusion models a tab can open (trained/ first, then runs/)."""
    return diffusion_models.list_pipelines()


def no_pipeline_message(until: str = "Until then this tab shows the forward process only."
                        ) -> str:
    """Markdown notice for the top of a diffusion tab ("" when a model exists)."""
    if pipeline_names():
        return ""
    hint = diffusion_models.no_pipeline_hint()
    return ("**Model not trained yet.** " + hint[0].upper() + hint[1:] +
            ". Then press ↻. " + until)


def pipeline_dropdown(label: str = "diffusion model (U-Net)") -> gr.Dropdown:
    """A dropdown of the diffusion models, on the default one ("ldm" when it exists)."""
    names = pipeline_names()
    return gr.Dropdown(names, value=diffusion_models.default_pipeline(names), label=label,
                       allow_custom_value=True, interactive=True, scale=4)


def refresh_pipelines(current: str | None):
    """↻ handler: new choices for a diffusion-model dropdown (keeps `current` if it exists)."""
    names = pipeline_names()
    value = current if current in names else diffusion_models.default_pipeline(names)
    return gr.update(choices=names, value=value)

