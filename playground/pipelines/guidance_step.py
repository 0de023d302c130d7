"""What classifier-free guidance adds at one step of a prompt's DDIM run (the Prompt tab's
"guidance, made visible").

    view = guidance_at_step(pipe, "a smiling man", guidance=7.5, steps=50, at_step=10, seed=0)
    view["images"]       # (5, 64, 64, 3) uint8: x_t, x̂_0 without / with the prompt, guided, push

The run follows the guided trajectory (DDIM, η = 0, guidance w) for `at_step` steps — the faces
the Prompt tab would draw — and then, at the next timestep t, asks the U-Net twice: ε(x_t, ∅)
and ε(x_t, c). `playground.diffusion.guidance_anatomy` turns them into the three guesses of
the clean face and the push (w − 1)(ε_c − ε_∅) that guidance adds; the last picture shows that
push in pixels: decode(x̂_0 guided) − decode(x̂_0 with the prompt), mid-grey where it changes
nothing, amplified `PUSH_GAIN` times.
"""
from __future__ import annotations

import torch

from playground.data.images import tensor_to_images
from playground.diffusion import ddim_sample_progressive, ddim_timesteps, guidance_anatomy
from playground.pipelines import diffusion_inputs, latent_diffusion
from playground.pipelines.inputs import whole_number

PUSH_GAIN = 4.0  # the push picture is 0.5 + PUSH_GAIN · (guided − conditional), in [0, 1]
LABELS = ("x_t (decoded)", "x̂₀ without the prompt", "x̂₀ with the prompt", "x̂₀ guided",
          f"guidance's push ×{PUSH_GAIN:g}")


def guidance_at_step(pipe: latent_diffusion.LatentDiffusion, prompt: str, guidance: float, steps: int,
                     at_step: int, seed: int, negative_prompt: str = "") -> dict:
    """Guidance taken apart at step `at_step` (0 … steps − 1) of a DDIM run.

    Returns:
        dict with ``images`` uint8 (5, 64, 64, 3) (see `LABELS`), ``t`` (the timestep),
        ``eps_gap_rms`` (RMS of ε_c − ε_∅: how much the prompt changes the prediction),
        ``push_rms`` (RMS of (w − 1)(ε_c − ε_∅)), ``x0_shift_rms`` (RMS of x̂_0 guided − x̂_0
        with the prompt, in the model's space), and the checked ``guidance``, ``steps``,
        ``at_step``, ``seed``.
    """
    prompt = diffusion_inputs.check_prompt(prompt)
    negative_prompt = diffusion_inputs.check_prompt(negative_prompt, "negative prompt")
    w = diffusion_inputs.check_guidance(guidance)
    _, steps, _ = diffusion_inputs.check_sampler("ddim", steps, 0.0, pipe.num_timesteps)
    at_step = whole_number(at_step, "step")
    if not 0 <= at_step < steps:
        raise ValueError(f"step must be between 1 and {steps} (the run's steps), "
                         f"got {at_step + 1}")
    x_t, _ = pipe.initial_noise(1, seed)
    cond = pipe.encode_prompts([prompt])
    timesteps = ddim_timesteps(pipe.num_timesteps, steps).tolist()
    with torch.no_grad():
        if at_step:
            chain = ddim_sample_progressive(pipe.denoiser(w, negative_prompt), x_t,
                                            pipe.schedule, steps, 0.0, cond)
            for step in chain:
                x_t = step.x_t
                if step.index == at_step - 1:
                    break
        t = timesteps[at_step]
        null = pipe.encode_prompts([negative_prompt])
        length = max(cond[0].shape[1], null[0].shape[1])
        eps = pipe.unet_denoiser()
        t_batch = torch.full((1,), t, dtype=torch.long, device=x_t.device)
        eps_uncond = eps(x_t, t_batch, latent_diffusion.pad_condition(null, length))
        eps_cond = eps(x_t, t_batch, latent_diffusion.pad_condition(cond, length))
        parts = guidance_anatomy(x_t, t, eps_uncond, eps_cond, w, pipe.schedule)
    decoded = pipe.decode(torch.cat([x_t, parts.x0_uncond, parts.x0_cond, parts.x0_guided]))
    push = (0.5 + PUSH_GAIN * (decoded[3] - decoded[2])).clamp(0.0, 1.0)
    images = tensor_to_images(torch.cat([decoded, push[None]]))

    def rms(x: torch.Tensor) -> float:
        return float(x.float().pow(2).mean().sqrt())

    return {"images": images, "t": t, "eps_gap_rms": rms(eps_cond - eps_uncond),
            "push_rms": rms(parts.push), "x0_shift_rms": rms(parts.x0_guided - parts.x0_cond),
            "guidance": w, "steps": steps, "at_step": at_step, "seed": seed}

