"""Diffusion math, pure and model-free: the noise schedule, DDPM/DDIM/DPM-Solver++ samplers,
guidance.

    from playground.diffusion import NoiseSchedule, ddim_sample
    x0 = ddim_sample(denoiser, x_T, NoiseSchedule(), steps=50)

A denoiser is any callable ``(x_t, t, cond) -> eps`` with ``t`` a long tensor of shape (N,).
"""

from playground.diffusion.guidance import (
                                           GuidanceAnatomy,
                                           GuidedDenoiser,
                                           classifier_free_guidance,
                                           guidance_anatomy,
)
from playground.diffusion.samplers import (
                                           Step,
                                           ddim_invert,
                                           ddim_sample,
                                           ddim_sample_progressive,
                                           ddim_timesteps,
                                           ddpm_sample,
                                           ddpm_sample_progressive,
                                           dpmpp_2m_sample,
                                           dpmpp_2m_sample_progressive,
                                           draw_noise,
)
from playground.diffusion.schedule import NoiseSchedule, ScheduleConfig

__all__ = [
    "GuidanceAnatomy",
    "GuidedDenoiser",
    "NoiseSchedule",
    "ScheduleConfig",
    "Step",
    "classifier_free_guidance",
    "ddim_invert",
    "ddim_sample",
    "ddim_sample_progressive",
    "ddim_timesteps",
    "ddpm_sample",
    "ddpm_sample_progressive",
    "dpmpp_2m_sample",
    "dpmpp_2m_sample_progressive",
    "draw_noise",
    "guidance_anatomy",
]
