"""One sampler run of the Denoise tab, streamed to the page: each drawn step as a labelled
picture (x_t, decoded x_t, decoded x̂_0 per face) and a text that says where the sampler is,
then the GIF and the timing text.

Streaming: a sampler step is only drawn every `k`-th step (DDPM: every 20th of 1000), on a
drawing thread beside the sampler, and a drawn frame is only sent when `FRAME_INTERVAL` has
passed since the last one, so the browser keeps up; every drawn frame goes into the GIF. The
schedule plot is sent once per run, with its first frame (the timesteps this sampler visits,
drawn while it samples): each Plotly figure costs the browser ~0.2 s to draw, so its cursor
then follows the step texts in the page (schedule_cursor.js). The text says the sampling time
(U-Net and sampler) and, beside it, the whole run on the server: waiting for the last frame
and the GIF, and the time spent handing frames to the page.
"""
from __future__ import annotations

import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import numpy as np
import torch

from playground.app import common
from playground.app.schedule_plot import schedule_figure
from playground.data import pictures
from playground.data.images import tensor_to_images
from playground.diffusion import ddim_timesteps
from playground.pipelines import forward_process
from playground.pipelines.inference import inference
from playground.pipelines.latent_diffusion import LatentDiffusion

DDPM_EVERY = 20  # draw every 20th DDPM step: 50 frames of 1000 steps
DDIM_FRAMES = 12  # draw about this many DDIM frames (every ⌈S / 12⌉-th step): the GIF
FRAME_INTERVAL = 0.4  # seconds between frames sent to the browser (the last is always sent)
GIF_FPS = 10
ROW_LABELS = ("x_t (latent)", "decoded x_t", "x̂_0 decoded")
PIXEL_ROW_LABELS = ("x_t", "x̂_0")
RUNNING = "so far"  # the last words of a sampler's text while it runs
# one thread draws the frames of every run in this process, in the order they were sampled
_DRAWING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="denoise-frames")


def frame(pipe: LatentDiffusion, x_t: torch.Tensor, x0_pred: torch.Tensor,
          final: bool) -> tuple[np.ndarray, np.ndarray]:
    """One step as (labelled picture at 2×, unlabelled GIF frame at 1×): rows x_t (latent
    channels), decoded x_t, decoded x̂_0 (pixel space: x_t, x̂_0); a column per face."""
    n = x_t.shape[0]
    decoded = tensor_to_images(pipe.decode(torch.cat([x_t, x0_pred])))
    if pipe.space == "latent":
        rows = [forward_process.latent_picture(x_t), decoded[:n], decoded[n:]]
        labels = list(ROW_LABELS)
    else:
        rows, labels = [decoded[:n], decoded[n:]], list(PIXEL_ROW_LABELS)
    if final:
        labels[-1] = "sample x_0"
    cells = np.stack(rows)  # (rows, N, 64, 64, 3)
    return (common.labelled_grid(cells, labels, scale=2, pad=2, label_width=100),
            pictures.grid(cells, scale=1, pad=2))


def stream(pipe, sampler, prompt, guidance, n_faces, seed, steps, eta):
    """Run one sampler, yielding (picture, info, plot, gif path or None) frames; while it runs
    the info ends with `RUNNING`, the last frame carries the GIF and the timing text. The plot
    comes with the first frame only (later ones leave it as it is), so an API client, which
    gets the last message, receives none.

    Frames are drawn (decoded, labelled) on the drawing thread while the sampler goes on to
    the next steps here: on two cores the two overlap, so only the last frame and the GIF
    are waited for."""
    if sampler == "ddpm":
        steps, every = pipe.num_timesteps, DDPM_EVERY
        label = f"DDPM, {steps} steps"
    else:
        every = max(1, math.ceil(steps / DDIM_FRAMES))
        label = (f"DDIM, {steps} steps, η = {eta:g}" if sampler == "ddim" else
                 f"DPM-Solver++(2M), {steps} steps")
    marks = ({"timesteps visited": ddim_timesteps(pipe.num_timesteps, steps).tolist()}
             if sampler != "ddpm" else None)
    chain = pipe.sample_progressive([prompt] * n_faces, guidance=guidance, sampler=sampler,
                                    steps=steps, eta=eta, seed=seed, yield_every=every,
                                    decode=False)
    calls = steps * (1 if guidance in (0.0, 1.0) else 2)
    cursor = label.split(",")[0]  # DDPM, DDIM or DPM-Solver++(2M): the step texts begin so
    sampling = drawing = waited = 0.0
    started = time.perf_counter()
    drawn: deque = deque()  # (step, future of (picture, GIF frame, seconds)), oldest first
    frames, last_sent, plot_sent = [], 0.0, False
    try:
        while True:
            start = time.perf_counter()
            with inference():
                item = next(chain, None)
            sampling += time.perf_counter() - start
            if item is None:
                break
            step = item[0]
            final = step.index == steps - 1
            drawn.append((step, _DRAWING.submit(_draw, pipe, step.x_t.clone(),
                                                step.x0_pred.clone(), final)))
            start = time.perf_counter()
            if final:  # the sample itself: wait for it (and every frame before it)
                for _, future in drawn:
                    future.result()
            waited += time.perf_counter() - start
            ready = None
            while drawn and drawn[0][1].done():
                ready, future = drawn.popleft()
                picture, gif_frame, seconds = future.result()
                frames.append(gif_frame)
                drawing += seconds
            now = time.perf_counter()
            if ready is not None and (final or now - last_sent >= FRAME_INTERVAL):
                last_sent = now
                info = (f"**{label}** — step {ready.index + 1}/{steps}, t = {ready.t} · "
                        f"{sampling:.2f} s {RUNNING}")
                plot = gr.update()
                if not plot_sent:
                    plot = schedule_figure(pipe.schedule, {cursor: ready.t}, marks,
                                           live_cursor=True)
                    plot_sent = True
                yield picture, info, plot, None
    finally:  # Stop or an error: frames nobody will show are not drawn
        for _, future in drawn:
            future.cancel()
    start = time.perf_counter()
    gif = common.save_gif(pictures.gif_bytes(np.stack(frames), fps=GIF_FPS, scale=2),
                          f"{sampler}-{seed}")
    waited += time.perf_counter() - start
    wall = time.perf_counter() - started
    what = "unconditional" if not prompt.strip() else f"“{prompt}”, w = {guidance:g}"
    info = (f"**{label}**: {sampling:.2f} s of sampling for {n_faces} face(s) "
            f"({1000 * sampling / steps:.1f} ms per step, {calls} U-Net evaluations of the "
            f"batch{' (guidance doubles the batch)' if calls > steps else ''}). The run took "
            f"**{wall:.2f} s** on the server: that, {waited:.2f} s waiting for the last frame "
            f"and the GIF ({len(frames)} frames took {drawing:.2f} s to draw, beside the "
            f"sampling), and {max(wall - sampling - waited, 0):.2f} s sending frames to the "
            f"page. Seed {seed} ({what}).")
    yield picture, info, gr.update(), gif


def _draw(pipe, x_t, x0_pred, final) -> tuple[np.ndarray, np.ndarray, float]:
    """`frame` on the drawing thread, with the seconds it took."""
    start = time.perf_counter()
    with inference():
        picture, gif_frame = frame(pipe, x_t, x0_pred, final)
    return picture, gif_frame, time.perf_counter() - start
