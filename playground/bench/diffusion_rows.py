"""The diffusion rows of the speed benchmark: the DDIM / DDPM / prompt budgets and the Denoise
and Prompt tabs' UI overhead, our samplers against diffusers' schedulers on the same U-Net, and
the untrained pipeline (the shipped architectures with random weights) that times them before
a model is trained."""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from pathlib import Path

from playground.bench.timing import paired_seconds, record_overhead
from playground.pipelines.diffusion_inputs import EXAMPLE_PROMPT

NO_DIFFUSERS = "diffusers not installed (a test-only dependency: pip install -r requirements-test.txt)"
PROMPT = EXAMPLE_PROMPT  # the Prompt tab's first prompt


def bench_diffusion(pipe_name: str, runs: int) -> tuple[dict, dict]:
    """The diffusion budgets (DDIM 50, DDPM streamed, prompt) and the Denoise / Prompt tabs'
    UI overhead, on the pipeline of U-Net `pipe_name`, with the U-Net compiled as the served
    app compiles it; and DDIM 50 with the eager U-Net beside it."""
    from playground.pipelines import compiled_unet, diffusion_models
    from playground.pipelines.inference import inference

    pipe = diffusion_models.get_pipeline(pipe_name)
    T = pipe.num_timesteps
    S = min(50, T)
    values, notes = {}, {}
    about = f"{pipe_name} (T = {T})"
    ddim = f"DDIM {S} steps" + ("" if S == 50 else f" (T = {T} < 50)")

    def sample(prompts, guidance):
        with inference():
            return pipe.sample(prompts, guidance=guidance, steps=S, seed=0)

    # The served app compiles the U-Net per input shape in the background; the rows time it
    # as a student meets it once that is done, and DDIM 50 with the eager U-Net alternately.
    served = _served_mode()
    with _compile_mode(served):  # "wait": the first call of each shape builds its graph
        sample([""] * 4, 1.0)
        sample([PROMPT] * 4, 7.5)
        decisions = getattr(compiled_unet.fast(pipe.unet), "decisions", {})

    def timed(mode):
        with _compile_mode(mode):
            return sample([""] * 4, 1.0)

    values["ddim50_s"], values["ddim50_eager_s"] = paired_seconds(
        lambda: timed(served), lambda: timed("off"), runs)
    notes["ddim50_s"] = (f"{about}, {ddim}, unconditional (one U-Net pass per step), "
                         f"U-Net compile mode {served!r}")
    notes["ddim50_eager_s"] = f"{about}, {ddim}, unconditional, the eager U-Net"
    values["unet_compile_speedup"] = values["ddim50_eager_s"] / values["ddim50_s"]
    notes["unet_compile_speedup"] = "ddim50_eager_s / ddim50_s, alternately; graphs: " + (
        "; ".join(f"{key[0]}: {why}" for key, why in decisions.items()) or "none")
    with _compile_mode(served):
        values.update(_timed_rows(pipe_name, pipe, sample, runs, S, about, ddim, notes))
    return values, notes


def _served_mode() -> str:
    """The compile mode of the rows: the served app's ("wait" stands for "background" after
    its graphs are built), unless $PLAYGROUND_UNET_COMPILE says otherwise."""
    from playground.pipelines import compiled_unet

    mode = os.environ.get(compiled_unet.ENV, "background")
    return "wait" if mode == "background" else mode


@contextlib.contextmanager
def _compile_mode(mode: str):
    from playground.pipelines import compiled_unet

    before = os.environ.get(compiled_unet.ENV)
    os.environ[compiled_unet.ENV] = mode
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(compiled_unet.ENV, None)
        else:
            os.environ[compiled_unet.ENV] = before


def _timed_rows(pipe_name, pipe, sample, runs, S, about, ddim, notes) -> dict:
    """The budget rows (DDIM 50, prompt, DDPM streamed) and the two tabs' UI overhead."""
    import math

    import torch

    from playground.app import denoise, sampler_stream
    from playground.app import prompt as prompt_tab
    from playground.pipelines.inference import inference

    T = pipe.num_timesteps
    values = {}
    handler_s, bare_s = paired_seconds(
        lambda: prompt_tab.generate(pipe_name, PROMPT, "", 7.5, S, 0, False, 4),
        lambda: sample([PROMPT] * 4, 7.5), runs)
    values["prompt_s"] = handler_s
    notes["prompt_s"] = f"{about}: the Prompt tab's handler, “{PROMPT}”, w = 7.5, {ddim}"
    record_overhead(values, notes, "prompt_overhead_ratio", handler_s, bare_s)

    every = max(1, math.ceil(S / sampler_stream.DDIM_FRAMES))

    def denoise_core():
        chain = pipe.sample_progressive([""] * 4, guidance=1.0, sampler="ddim", steps=S,
                                        seed=0, yield_every=every, decode=False)
        while True:
            with inference():
                item = next(chain, None)
                if item is None:
                    break
                pipe.decode(torch.cat([item[0].x_t, item[0].x0_pred]))

    record_overhead(values, notes, "denoise_overhead_ratio", *paired_seconds(
        lambda: list(denoise.run_ddim(pipe_name, "", 1.0, 4, 0, S, 0.0)), denoise_core, runs))

    firsts, totals = [], []
    for _ in range(max(1, min(runs, 2))):  # DDPM is long: at most two runs
        t0 = time.perf_counter()
        stream = denoise.run_ddpm(pipe_name, "", 1.0, 4, 0, S, 0.0)
        next(stream)
        firsts.append(time.perf_counter() - t0)
        for _ in stream:
            pass
        totals.append(time.perf_counter() - t0)
    values["ddpm_first_frame_s"] = statistics.median(firsts)
    values["ddpm1000_s"] = statistics.median(totals)
    notes["ddpm1000_s"] = notes["ddpm_first_frame_s"] = (
        f"{about}: the Denoise tab's DDPM handler over all {T} steps, 4 faces, streamed "
        f"(a frame every {sampler_stream.DDPM_EVERY} steps), {len(totals)} run(s)")
    return values


# ------------------------------------------------------------------------------ vs diffusers
def bench_vs_diffusers(pipe_name: str, runs: int) -> tuple[dict, dict]:
    """Our DDIM / DDPM loops vs diffusers' schedulers, both driving the pipeline's U-Net on the
    same x_T, prompt and (DDPM) noise generator; the final samples are compared too."""
    try:
        import diffusers
    except ImportError:
        return {}, {key: NO_DIFFUSERS for key in (
            "ours_ddim50_s", "diffusers_ddim50_s", "ddim_vs_diffusers_ratio", "ours_ddpm_s",
            "diffusers_ddpm_s", "ddpm_vs_diffusers_ratio", "ddim_loop_vs_diffusers_ratio",
            "ddpm_loop_vs_diffusers_ratio")}
    import torch

    from playground.diffusion import ddim_sample, ddpm_sample
    from playground.pipelines import diffusion_models
    from playground.pipelines.inference import inference

    pipe = diffusion_models.get_pipeline(pipe_name)
    schedule, unet = pipe.schedule, pipe.unet
    T = schedule.num_timesteps
    S = min(50, T)
    cond = pipe.encode_prompts([PROMPT] * 4)
    context, mask = cond
    x_T, _ = pipe.initial_noise(4, 0)
    denoiser = pipe.unet_denoiser()
    betas = schedule.betas.float().numpy()
    ddim = diffusers.DDIMScheduler(num_train_timesteps=T, trained_betas=betas,
                                   clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                                   timestep_spacing="trailing", prediction_type="epsilon")
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=T, trained_betas=betas,
                                   variance_type="fixed_small", clip_sample=False,
                                   prediction_type="epsilon")

    def unet_eps(x, t):
        return unet(x, torch.full((x.shape[0],), int(t), dtype=torch.long), context, mask)

    def theirs(scheduler, steps, generator=None, eps_fn=unet_eps):
        scheduler.set_timesteps(steps)
        x = x_T
        for t in scheduler.timesteps:
            x = scheduler.step(eps_fn(x, t), t, x, generator=generator).prev_sample
        return x

    runs_ = {"ddim": (lambda: ddim_sample(denoiser, x_T, schedule, steps=S, cond=cond),
                      lambda: theirs(ddim, S)),
             "ddpm": (lambda: ddpm_sample(denoiser, x_T, schedule, cond=cond,
                                          generator=torch.Generator().manual_seed(1)),
                      lambda: theirs(ddpm, T, torch.Generator().manual_seed(1)))}
    values, notes = {}, {}
    for kind, (ours_fn, theirs_fn) in runs_.items():
        with inference():
            gap = float((ours_fn() - theirs_fn()).abs().max())
            ours_s, theirs_s = paired_seconds(ours_fn, theirs_fn, max(1, min(runs, 3)))
        prefix = "ddim50" if kind == "ddim" else "ddpm"
        values[f"ours_{prefix}_s"], values[f"diffusers_{prefix}_s"] = ours_s, theirs_s
        values[f"{kind}_vs_diffusers_ratio"] = ours_s / theirs_s
        steps = S if kind == "ddim" else T
        notes[f"{kind}_vs_diffusers_ratio"] = (
            f"{pipe_name}, {steps} steps, 4 faces; max |x_0 ours − diffusers| = {gap:.1e} "
            "(diffusers keeps ᾱ in float32); diffusers " + diffusers.__version__)

    def free(x, t, cond=None):  # ε = 0 at no cost: what is left is the samplers' own work
        return torch.zeros_like(x)

    loops = {"ddim": (lambda: ddim_sample(free, x_T, schedule, steps=S),
                      lambda: theirs(ddim, S, eps_fn=free)),
             "ddpm": (lambda: ddpm_sample(free, x_T, schedule,
                                          generator=torch.Generator().manual_seed(1)),
                      lambda: theirs(ddpm, T, torch.Generator().manual_seed(1), eps_fn=free))}
    for kind, (ours_fn, theirs_fn) in loops.items():
        with inference():
            ours_s, theirs_s = paired_seconds(ours_fn, theirs_fn, 5 * max(1, min(runs, 3)))
        steps = S if kind == "ddim" else T
        values[f"{kind}_loop_vs_diffusers_ratio"] = ours_s / theirs_s
        notes[f"{kind}_loop_vs_diffusers_ratio"] = (
            f"{steps} steps: ours {1e6 * ours_s / steps:.0f} µs/step, diffusers "
            f"{1e6 * theirs_s / steps:.0f} µs/step")
    return values, notes


# ------------------------------------------------------------------------------ untrained
UNTRAINED = "untrained-ldm"  # name of the random-weights pipeline of --untrained-diffusion


def save_untrained_pipeline(folder: Path) -> str:
    """The shipped architectures (the trainers' default configs) with random weights, saved as
    `UNTRAINED` + its autoencoder and CLIP in `folder` → the U-Net's name. Speed does not
    depend on the weights, so this times the diffusion rows before a model is trained."""
    import torch

    from playground.models.autoencoder import KLAutoencoder
    from playground.models.clip import TextImageCLIP
    from playground.models.unet import LatentUNet
    from playground.store import checkpoints
    from playground.training.trainers.autoencoder import AutoencoderTrainConfig
    from playground.training.trainers.clip_config import CLIPTrainConfig
    from playground.training.trainers.ldm_config import LDMTrainConfig

    torch.manual_seed(0)
    autoencoder = KLAutoencoder(AutoencoderTrainConfig().model_config())
    clip = TextImageCLIP(CLIPTrainConfig().model_config())
    unet = LatentUNet(LDMTrainConfig().model_config(
        clip.config.text_width, autoencoder="untrained-autoencoder",
        text_encoder="untrained-clip"))
    checkpoints.save_model(folder / "untrained-autoencoder", autoencoder)
    checkpoints.save_model(folder / "untrained-clip", clip)
    checkpoints.save_model(folder / UNTRAINED, unet)
    return UNTRAINED


@contextlib.contextmanager
def use_runs_folder(folder: Path):
    """Look for runs in `folder` (where `save_untrained_pipeline` wrote) for a while."""
    before = os.environ.get("PLAYGROUND_RUNS")
    os.environ["PLAYGROUND_RUNS"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PLAYGROUND_RUNS", None)
        else:
            os.environ["PLAYGROUND_RUNS"] = before

