"""Latent diffusion as one object: `LatentDiffusion` (U-Net + autoencoder + CLIP + schedule)
and `load_pipeline`, which builds it from the models on disk (no UI here).

    pipe = load_pipeline("ldm")        # trained/ldm + the autoencoder and CLIP its config names
    images = pipe.sample(["a smiling woman with blond hair"] * 4, guidance=7.5, steps=50,
                         seed=0)       # float (4, 3, 64, 64) in [0, 1], on the CPU
    for step, x0_images in pipe.sample_progressive(prompts, sampler="ddpm", yield_every=20):
        ...                            # step.t, step.x_t (N, 4, 16, 16); decoded x̂_0 (N, 3, 64, 64)

A `LatentDiffusion` holds eval-mode models on one device: the ε-prediction U-Net, the
first-stage autoencoder (None for a pixel-space U-Net), the CLIP whose per-token states are the
U-Net's context, and the noise schedule the U-Net was trained on. The math is not here: it
calls `playground.diffusion` (samplers, classifier-free guidance) with the U-Net as the
denoiser ``(x_t, t, cond) -> eps``, ``cond = (context (B, L, D), mask (B, L))``.

Seeds: ``seed`` seeds one CPU `torch.Generator`; x_T is its first draw and the sampler's
per-step noise (DDPM, DDIM with η > 0) continues from it. So the same seed gives the same x_T
for DDPM and DDIM, and the same faces on every device.

Around the pipeline: the checks of its inputs are `playground.pipelines.diffusion_inputs`; the
app's list of diffusion models and its cache of loaded ones (`get_pipeline`, reloaded when a
weights file changes), `playground.pipelines.diffusion_models`. The forward process on pictures
is `playground.pipelines.forward_process`; what a prompt names and how well faces follow it,
`playground.pipelines.prompts`.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from playground.diffusion import (
    NoiseSchedule,
    Step,
    classifier_free_guidance,
    ddim_sample_progressive,
    ddpm_sample_progressive,
    dpmpp_2m_sample_progressive,
    draw_noise,
)
from playground.pipelines import compiled_unet
from playground.pipelines.diffusion_inputs import (
    MAX_BATCH,
    check_guidance,
    check_prompt,
    check_prompts,
    check_sampler,
)
from playground.pipelines.inputs import whole_number
from playground.store import checkpoints, files, model_kinds

DEFAULT_PIPELINE = "ldm"  # the shipped U-Net's name (trained/ldm)
MAX_SEED = 2**63 - 1

Condition = tuple[torch.Tensor, torch.Tensor]  # (context (B, L, D) float, mask (B, L) bool)


def pad_condition(cond: Condition, length: int) -> Condition:
    """(context (B, L, D), mask (B, L)) zero-padded to `length` tokens; the padding is masked
    out (False), so the U-Net's output does not change."""
    context, mask = cond
    extra = length - context.shape[1]
    if extra < 0:
        raise ValueError(f"cannot pad a condition of {context.shape[1]} tokens to {length}")
    if extra == 0:
        return context, mask
    return (torch.nn.functional.pad(context, (0, 0, 0, extra)),
            torch.nn.functional.pad(mask, (0, extra), value=False))


# ============================================================================ the pipeline
@dataclass
class LatentDiffusion:
    """A text-conditioned latent diffusion model: U-Net + autoencoder + CLIP + schedule.

    All models are in eval mode on the same device (the U-Net's). Build it with
    `load_pipeline`, or directly from models in memory (tests, a trainer's samples).
    """

    unet: nn.Module  # LatentUNet: (x_t, t, context, context_mask) -> eps
    autoencoder: nn.Module | None  # KLAutoencoder (encode/decode scaled latents); None in pixel space
    clip: nn.Module  # TextImageCLIP: tokenize, encode_text_tokens, text_mask
    schedule: NoiseSchedule  # the forward process the U-Net was trained on
    name: str = ""  # the U-Net's model name (for messages)
    names: dict = field(default_factory=dict)  # {"unet", "autoencoder", "clip"}: model names

    # ------------------------------------------------------------------ shapes
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one x_t, e.g. (4, 16, 16) for the 16×16×4 latent."""
        return tuple(int(v) for v in self.unet.config.sample_shape)

    @property
    def space(self) -> str:
        """"latent" (x is an autoencoder latent) or "pixel" (x is an image in [-1, 1])."""
        return getattr(self.unet.config, "space", "latent")

    @property
    def text_words(self) -> bool:
        """Whether the U-Net reads each word's embedding beside the CLIP's final states."""
        return bool(getattr(self.unet.config, "text_words", False))

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_timesteps

    # ------------------------------------------------------------------ text
    def encode_prompts(self, prompts: Sequence[str]) -> Condition:
        """Prompts → the U-Net's context: (context (B, L, D) float32, mask (B, L) bool),
        on the U-Net's device. The empty prompt "" is the null (unconditional) condition.

        L is the longest prompt's token count, not the full context length: the text
        encoder is causal and the U-Net masks padding, so the cut columns change nothing but
        the cost (`pad_condition` brings two conditions to one length)."""
        prompts = check_prompts(prompts)
        with torch.no_grad():
            tokens = self.clip.tokenize(prompts)  # (B, context_length)
            tokens = tokens[:, :max(int(self.clip.text_mask(tokens).sum(dim=1).max()), 1)]
            context = self.clip.encode_text_tokens(tokens, words=self.text_words)  # (B, L, D)
            mask = self.clip.text_mask(tokens)  # (B, L)
        device = self.device
        return context.to(device=device, dtype=torch.float32), mask.to(device)

    def truncated(self, prompts: Sequence[str]) -> list[bool]:
        """For each prompt, whether the tokenizer cuts it at the context length."""
        return list(self.clip.truncated(check_prompts(prompts)))

    # ------------------------------------------------------------------ the denoiser
    def unet_denoiser(self):
        """The U-Net as a denoiser ``(x_t, t, cond) -> eps`` with ``cond = (context, mask)``
        (compiled per input shape where ``$PLAYGROUND_UNET_COMPILE`` asks: `compiled_unet`)."""
        unet = compiled_unet.fast(self.unet)

        def eps(x_t: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
            context, mask = cond
            return unet(x_t, t, context, mask)

        return eps

    def denoiser(self, guidance: float = 1.0, negative_prompt: str = ""):
        """The denoiser the samplers call, ``(x_t, t, cond) -> eps``, with guidance w.

            ε̃ = ε(x_t, ∅) + w · (ε(x_t, c) − ε(x_t, ∅)),   ∅ = the encoded `negative_prompt`

        w = 1 is the conditional U-Net itself (one forward pass of N, not 2N), w = 0 the
        unconditional one (``cond`` is ignored: ∅ for every sample); any other w goes through
        `playground.diffusion.classifier_free_guidance` (one batched pass of 2N).
        """
        w = check_guidance(guidance)
        base = self.unet_denoiser()
        if w == 1.0:
            return base
        null = self.encode_prompts([check_prompt(negative_prompt, "negative prompt")])
        if w == 0.0:
            def unconditional(x_t, t, cond):
                n = x_t.shape[0]
                return base(x_t, t, (null[0].expand(n, -1, -1), null[1].expand(n, -1)))

            return unconditional

        def guided(x_t, t, cond):  # ∅ and c padded to one token length, then one 2N pass
            length = max(cond[0].shape[1], null[0].shape[1])
            return classifier_free_guidance(base, w, pad_condition(null, length))(
                x_t, t, pad_condition(cond, length))

        return guided

    # ------------------------------------------------------------------ noise, decode
    def initial_noise(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
        """x_T ~ N(0, I) of shape (n, C, H, W) on the device, and the CPU generator it came
        from (seeded with `seed`; the sampler's per-step noise continues from it)."""
        n, seed = whole_number(n, "number of samples"), whole_number(seed, "seed")
        if not 1 <= n <= MAX_BATCH:
            raise ValueError(f"number of samples must be between 1 and {MAX_BATCH}, got {n}")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be between 0 and 2^63 - 1, got {seed}")
        generator = torch.Generator().manual_seed(seed)
        x_T = draw_noise((n, *self.sample_shape), generator, device=self.device)
        return x_T, generator

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Clean samples x_0 (N, C, H, W) → images float (N, 3, 64, 64) in [0, 1] on the CPU
        (through the autoencoder's decoder in latent space; (x + 1) / 2 in pixel space)."""
        with torch.no_grad():
            if self.autoencoder is None:
                images = (x0.float() + 1) / 2
            else:
                images = self.autoencoder.decode(x0.to(self.device).float())
        return images.float().clamp(0.0, 1.0).cpu()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images float (N, 3, 64, 64) in [0, 1] → x_0 (N, C, H, W) on the device (scaled
        autoencoder latents — the posterior means — or 2·x − 1 in pixel space)."""
        images = images.to(self.device).float()
        with torch.no_grad():
            if self.autoencoder is None:
                return images * 2 - 1
            return self.autoencoder.encode(images)

    # ------------------------------------------------------------------ sampling
    def sample_progressive(self, prompts: Sequence[str], *, guidance: float = 7.5,
                           sampler: str = "ddim", steps: int | None = None, eta: float = 0.0,
                           seed: int = 0, negative_prompt: str = "",
                           x_T: torch.Tensor | None = None, yield_every: int = 1,
                           decode: bool = True) -> Iterator[tuple[Step, torch.Tensor | None]]:
        """Sample one face per prompt, yielding ``(Step, decoded x̂_0)`` as it goes.

        Args:
            prompts: B prompts ("" = unconditional).
            guidance: classifier-free guidance scale w ≥ 0 (see `denoiser`).
            sampler: "ddim", "ddpm" or "dpm++". "ddpm" with steps = T (the default) is ancestral
                DDPM over all T steps; "ddpm" with fewer steps is DDIM with η = 1 over them (the
                DDIM paper's "DDPM" rows); "dpm++" is DPM-Solver++(2M), one denoiser call per
                step like DDIM but second order. `eta` only applies to "ddim".
            steps: denoiser calls S (1 … T); default 50 for DDIM, T for DDPM.
            eta: DDIM's η in [0, 1] (0 = deterministic given x_T).
            seed: seeds x_T and the per-step noise (see the module docstring).
            negative_prompt: the prompt guidance pushes away from ("" = unconditional).
            x_T: start from this noise (B, C, H, W) instead of the seed's (the per-step noise
                still comes from the seed).
            yield_every: yield every k-th step (and always the last one); the steps between
                still run, they are just not shown (a UI that draws 1000 frames cannot keep up).
            decode: decode x̂_0 of each yielded step to images (N, 3, 64, 64) in [0, 1] on the
                CPU; False yields None instead (cheaper).
        Yields:
            (Step(index, t, x_t, x0_pred), images or None). After the last step, step.x_t is
            the sample x_0 and the images are its decoding.
        """
        prompts = check_prompts(prompts)
        sampler, steps, eta = check_sampler(sampler, steps, eta, self.num_timesteps)
        yield_every = whole_number(yield_every, "yield_every")
        if yield_every < 1:
            raise ValueError(f"yield_every must be >= 1, got {yield_every}")
        # The seed's x_T is drawn even when x_T is given, so the per-step noise that follows
        # is the same either way (x_T = initial_noise(n, seed)[0] reproduces the seed's run).
        seeded, generator = self.initial_noise(len(prompts), seed)
        if x_T is None:
            x_T = seeded
        else:
            expected = (len(prompts), *self.sample_shape)
            if not isinstance(x_T, torch.Tensor) or tuple(x_T.shape) != expected:
                got = tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else type(x_T).__name__
                raise ValueError(f"x_T must have shape {expected} (one per prompt), got {got}")
            x_T = x_T.to(device=self.device, dtype=torch.float32)
        cond = self.encode_prompts(prompts)
        denoiser = self.denoiser(guidance, negative_prompt)
        if sampler == "ddpm" and steps == self.num_timesteps:
            chain = ddpm_sample_progressive(denoiser, x_T, self.schedule, cond, generator)
        elif sampler == "dpm++":
            chain = dpmpp_2m_sample_progressive(denoiser, x_T, self.schedule, steps, cond)
        else:
            chain = ddim_sample_progressive(denoiser, x_T, self.schedule, steps,
                                            1.0 if sampler == "ddpm" else eta, cond, generator)
        last = steps - 1
        for step in chain:  # (the samplers run under no_grad; no context may span a yield)
            if step.index % yield_every and step.index != last:
                continue
            yield step, (self.decode(step.x0_pred if step.index != last else step.x_t)
                         if decode else None)

    def sample(self, prompts: Sequence[str], *, guidance: float = 7.5, sampler: str = "ddim",
               steps: int | None = None, eta: float = 0.0, seed: int = 0,
               negative_prompt: str = "", x_T: torch.Tensor | None = None,
               progress: bool = False) -> torch.Tensor:
        """One face per prompt → images float (B, 3, 64, 64) in [0, 1] on the CPU.

        Same arguments as `sample_progressive`; `progress` shows a tqdm bar of the steps.
        """
        _, steps, _ = check_sampler(sampler, steps, eta, self.num_timesteps)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"{sampler} {steps} steps", unit="step")
        images = None
        chain = self.sample_progressive(prompts, guidance=guidance, sampler=sampler, steps=steps,
                                        eta=eta, seed=seed, negative_prompt=negative_prompt,
                                        x_T=x_T, yield_every=1, decode=False)
        try:
            for step, _ in chain:
                if bar is not None:
                    bar.update(1)
                if step.index == steps - 1:
                    images = self.decode(step.x_t)
        finally:
            if bar is not None:
                bar.close()
        return images


# ============================================================================ loading
def _register_unet_kind() -> None:
    """Make kind "unet" loadable even where the checkpoint registry does not list it yet."""
    try:
        model_kinds.get_kind("unet")
    except ValueError:
        from playground.models.unet import LatentUNet, UNetConfig

        model_kinds.register_kind("unet", UNetConfig, LatentUNet)


def component_dirs(name: str, *, allow_paths: bool) -> dict:
    """Folders of the U-Net `name` and of the autoencoder and CLIP its config names."""
    _register_unet_kind()
    unet_dir = checkpoints.resolve_model_dir(name, allow_paths=allow_paths)
    config = files.read_json(unet_dir / checkpoints.CONFIG_FILE)
    if config.get("kind") != "unet":
        raise ValueError(f"model {name!r} is a {config.get('kind')!r} model, not a diffusion "
                         "U-Net (kind 'unet')")
    dirs = {"unet": unet_dir}
    wanted = [("clip", config.get("text_encoder") or "", "text encoder (CLIP)")]
    if config.get("space", "latent") == "latent":
        wanted.append(("autoencoder", config.get("autoencoder") or "", "autoencoder"))
    for key, component, what in wanted:
        if not component:
            raise ValueError(f"the config of U-Net {name!r} names no {what}: it cannot be "
                             "sampled (set its text_encoder / autoencoder name)")
        try:  # names written by our trainer; a folder path is allowed there
            dirs[key] = checkpoints.resolve_model_dir(component, allow_paths=True)
        except ValueError as err:
            raise ValueError(f"U-Net {name!r} was trained with the {what} {component!r}, which "
                             f"cannot be found: {err}") from None
    return dirs


def load_pipeline(name: str = DEFAULT_PIPELINE, device: str | torch.device = "cpu", *,
                  allow_paths: bool = True) -> LatentDiffusion:
    """Load the U-Net `name` (trained/<name>, runs/<name> or a folder) and the autoencoder and
    CLIP its config.json names, with its noise schedule, in eval mode on `device`.

    Raises:
        ValueError: unknown/invalid name, not a U-Net, or a component that cannot be found
            (ModelNotFoundError, a ValueError, lists the models that exist).
    """
    dirs = component_dirs(name, allow_paths=allow_paths)
    unet = checkpoints.load_model(dirs["unet"], device=device)
    clip = checkpoints.load_model(dirs["clip"], device=device)
    autoencoder = (checkpoints.load_model(dirs["autoencoder"], device=device)
                   if "autoencoder" in dirs else None)
    for model in (unet, clip, autoencoder):
        if model is not None:
            model.requires_grad_(False)
    expected_context = getattr(unet.config, "context_dim", None)
    width = getattr(clip, "text_width", None)
    if width is not None and getattr(unet.config, "text_words", False):
        width = 2 * int(width)  # final states ‖ word embeddings
    if expected_context is not None and width is not None and int(width) != int(expected_context):
        raise ValueError(f"U-Net {name!r} expects text states of width {expected_context}, but "
                         f"its text encoder gives {width}")
    latent_shape = tuple(autoencoder.latent_shape) if autoencoder is not None else None
    if latent_shape is not None and latent_shape != tuple(unet.config.sample_shape):
        raise ValueError(f"U-Net {name!r} works on x_t of shape {unet.config.sample_shape}, but "
                         f"its autoencoder's latents are {latent_shape}")
    names = {key: folder.name for key, folder in dirs.items()}
    return LatentDiffusion(unet=unet, autoencoder=autoencoder, clip=clip,
                           schedule=NoiseSchedule(unet.config.schedule), name=str(name),
                           names=names)

