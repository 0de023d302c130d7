"""A real face into the diffusion model's noise, and back out with another prompt (no UI here).

    out = invert_and_edit(pipe, face, "a photo of a woman", "a photo of a woman wearing a hat",
                          guidance=1.0, steps=50)
    out["images"]      # uint8 (4, 64, 64, 3): the face, the autoencoder's copy, the DDIM round
                       # trip, the same x_T under the edited prompt
    out["psnr"]        # {"autoencoder": dB, "round_trip": dB}

The face goes through the autoencoder's encoder (z_0, its posterior mean), then DDIM inversion
(`playground.diffusion.ddim_invert`) runs the deterministic sampler's ODE backwards to x_T
under the source prompt. Sampling from that x_T with the same prompt, guidance and steps
returns (nearly) the face; with an edited prompt, the same noise becomes the same face changed
where the prompt changed — the lesson of DDIM's determinism, which DDPM, drawing fresh noise at
every step, cannot give. The round trip is only as good as the autoencoder (its PSNR is the
ceiling) and degrades with strong guidance and few steps (`playground.evaluation.inversion`
measures both, and the edits' success).
"""
from __future__ import annotations

import numpy as np
import torch

from playground.data.images import images_to_tensor, tensor_to_images
from playground.diffusion import ddim_invert
from playground.models.autoencoder import psnr
from playground.pipelines import diffusion_inputs, latent_diffusion

LABELS = ("face", "autoencoder's copy", "DDIM round trip", "edited prompt")


def invert(pipe: latent_diffusion.LatentDiffusion, faces: np.ndarray, prompts: str | list[str],
           guidance: float, steps: int) -> torch.Tensor:
    """uint8 faces (N, 64, 64, 3) → their x_T (N, C, h, w) under `prompts` (one, or one per
    face) and guidance w."""
    prompts = [prompts] * len(faces) if isinstance(prompts, str) else list(prompts)
    prompts = diffusion_inputs.check_prompts(prompts)
    _, steps, _ = diffusion_inputs.check_sampler("ddim", steps, 0.0, pipe.num_timesteps)
    z_0 = pipe.encode(images_to_tensor(faces))
    cond = pipe.encode_prompts(prompts)
    return ddim_invert(pipe.denoiser(diffusion_inputs.check_guidance(guidance)), z_0, pipe.schedule,
                       steps, cond)


def invert_and_edit(pipe: latent_diffusion.LatentDiffusion, face: np.ndarray, prompt: str,
                    edit_prompt: str, guidance: float = 1.0, steps: int = 50) -> dict:
    """One face inverted under `prompt`, sampled back under `prompt` and under `edit_prompt`.

    Returns:
        dict with ``images`` uint8 (4, 64, 64, 3) (see `LABELS`), ``psnr`` {"autoencoder",
        "round_trip", "edited"} in dB against the face, and ``x_T`` (1, C, h, w).
    """
    face = np.asarray(face)[None] if np.asarray(face).ndim == 3 else np.asarray(face)[:1]
    edit_prompt = diffusion_inputs.check_prompt(edit_prompt, "edited prompt")
    x_T = invert(pipe, face, prompt, guidance, steps)
    copy = pipe.decode(pipe.encode(images_to_tensor(face)))
    kwargs = dict(guidance=guidance, sampler="ddim", steps=steps, eta=0.0, x_T=x_T)
    back = pipe.sample([prompt], **kwargs)
    edited = pipe.sample([edit_prompt], **kwargs)
    original = images_to_tensor(face)
    return {"images": tensor_to_images(torch.cat([original, copy, back, edited])),
            "psnr": {name: float(psnr(x, original)[0]) for name, x in
                     (("autoencoder", copy), ("round_trip", back), ("edited", edited))},
            "x_T": x_T}


def diffusion_morph(pipe: latent_diffusion.LatentDiffusion, face_a: np.ndarray, face_b: np.ndarray,
                    frames: int = 8, steps: int = 50) -> np.ndarray:
    """Two faces morphed through the diffusion model's noise → uint8 (frames, 64, 64, 3):
    both inverted (empty prompt, w = 1) to x_T, the path between them taken along the great
    circle (slerp: x_T is Gaussian, so points stay at its typical radius), each point sampled
    back with DDIM (η = 0). The ends are the two round trips."""
    from playground.pipelines.latent_paths import interpolate

    x_T = invert(pipe, np.stack([face_a, face_b]), "", 1.0, steps)  # (2, C, h, w)
    shape = x_T.shape[1:]
    path = interpolate(x_T[0].flatten().cpu().numpy(), x_T[1].flatten().cpu().numpy(), frames,
                       "slerp")  # (frames, C·h·w)
    x = torch.from_numpy(path).to(x_T).view(frames, *shape)
    return tensor_to_images(pipe.sample([""] * frames, guidance=1.0, sampler="ddim",
                                        steps=steps, eta=0.0, x_T=x))


def path_smoothness(judge, frames: np.ndarray) -> float:
    """The mean distance between the judge's features of consecutive frames (N, 64, 64, 3):
    lower is smoother (a path that changes the face a little at every step)."""
    with torch.no_grad():
        feats = judge.features(images_to_tensor(frames).to(next(judge.parameters()).device))
    return float((feats[1:] - feats[:-1]).norm(dim=1).mean())
