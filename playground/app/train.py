"""The Train tab: train a small β-VAE at any β and watch it learn.

Events (api_name): train_start and train_resume (stream the status, the loss curve and the
sample grid until the session ends; both share the queue slot ``concurrency_id="train"`` with
``concurrency_limit=1``, so one run trains at a time and other starts wait in the queue),
train_cancel (graceful stop with a checkpoint), train_status (one look at a run), train_pick
(choose an earlier run), train_runs (↻ the list of runs started here).

The work is in `playground.app.jobs` (the background job), `playground.app.train_settings`
(checks, policy), `playground.app.run_folders` (run names) and `playground.app.run_status`
(snapshots, curves, samples); the handlers here turn widget values into one call there and its
snapshots into pictures.
"""
from __future__ import annotations

import gradio as gr
import numpy as np

from playground.app import common, jobs, run_folders, run_status, train_settings
from playground.data import pictures
from playground.pipelines.inputs import MAX_SEED

GRID_SCALE, GRID_PAD = 2, 2  # each face of the sample grid at 128 px, 2 px apart
GRID_LABEL = ("**Latest checkpoint.** Rows: validation faces $x$ · reconstructions "
              "dec(μ(x)) · random faces dec(z), the same $z \\sim \\mathcal N(0, I)$ each time")
TRAIN_QUEUE = "train"  # the concurrency_id shared by Start and Resume

EXPLAIN = r"""
### Training a β-VAE: what the curves show
Each step takes a batch of faces $x$, encodes them to $\mu(x), \sigma(x)$, draws
$z = \mu + \sigma \odot \varepsilon$ with $\varepsilon \sim \mathcal N(0, I)$, decodes $z$ and
takes an Adam step downhill on the **β-VAE loss** (nats per image):
$$\begin{aligned} \mathcal L_\beta(x) &= \text{recon} + \beta\,\text{KL} \\ \text{recon} &= -\log p(x\mid z) \;\;\text{(BCE)} \\ \text{KL} &= \mathrm{KL}\big(q(z\mid x)\,\|\,\mathcal N(0, I)\big) \end{aligned}$$

The reconstruction term falls fast as the decoder learns what a face is. The KL term is the
price of the information $z$ carries: it first rises as the encoder starts to use $z$, then
settles at a level set by β, so a larger β keeps fewer nats, blurrier reconstructions and
more face-like random samples. The bottom row of the grid decodes the **same** random
$z$ after every checkpoint: watch blobs turn into faces.
"""

HOW = """
**One run trains at a time** for everyone using this app: if another run is training, your
Start waits in the queue (the status shows your place) and begins when that run ends.
**Cancel** stops after the current step and saves a checkpoint; **Resume** continues it for the
minutes set above. A run is saved under `runs/<name>`; once it has a checkpoint, press **↻**
beside the model list in Traverse, Morph or Latent map and pick it there.

The latent diffusion model (Denoise and Prompt tabs) takes hours, not minutes: train it on
the command line with `python -m playground.train ldm` (see the README).
"""


# ------------------------------------------------------------------------------ errors
# ------------------------------------------------------------------------------ views
def _minutes(seconds: float) -> str:
    """Seconds as m:ss."""
    seconds = max(0.0, float(seconds))
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def status_text(snap: run_status.RunSnapshot) -> str:
    """Markdown: the run's state, where it trains, how far it is and its latest losses."""
    state = snap.train_state or {}
    args = state.get("args", {})
    beta = args.get("beta", (snap.request or {}).get("request", {}).get("beta"))
    budget = f" of {_minutes(snap.budget_minutes * 60)}" if snap.budget_minutes else ""
    b = "β" if beta is None else f"{float(beta):g}"
    lines = [f"**{snap.name}** (β = {b}) — **{snap.state}**"]
    if snap.device:
        lines.append(f"device: {snap.device}")
    trains = [r for r in snap.records if r.get("type") == "train"]
    vals = [r for r in snap.records if r.get("type") == "val"]
    if trains:
        last = trains[-1]
        lines.append(f"step {last['step']} · epoch {last['epoch']:.2f} · "
                     f"time {_minutes(last.get('elapsed', 0))}{budget} · "
                     f"{last.get('img_per_s', 0):.0f} faces/s · train loss {last['loss']:.1f} "
                     f"= recon {last['recon']:.1f} + {b} × KL {last['kl']:.2f} "
                     "(nats/face)")
    elif snap.active:
        lines.append("preparing the data and the model (the first point comes after a few "
                     "steps)")
    if vals:
        last = vals[-1]
        lines.append(f"after epoch {last['epoch']}: val loss {last['loss']:.1f} "
                     f"(recon {last['recon']:.1f}, KL {last['kl']:.2f})")
    if snap.state == "stopping":
        lines.append("stopping after this step, then saving a checkpoint …")
    elif snap.state == "failed":
        lines.append(f"the session failed: `{snap.error}`"
                     + (" — the last checkpoint is kept; Resume tries again"
                        if snap.resumable else ""))
    elif snap.state in ("stopped", "interrupted"):
        lines.append(f"stopped at step {snap.step} after {_minutes(snap.elapsed_seconds)} "
                     "with a checkpoint: **Resume** continues it")
    elif snap.state == "finished":
        m = snap.metrics or {}
        summary = (f": val recon {m['recon_bce']:.1f}, KL {m['kl']:.2f} nats/face, "
                   f"{m['active_dims']} active dimensions" if "recon_bce" in m else "")
        lines.append(f"finished {snap.step} steps in {_minutes(snap.elapsed_seconds)}"
                     f"{summary}. Press ↻ beside the model list in Traverse, Morph or Latent map "
                     f"and pick **{snap.name}** (Resume trains it longer)")
    elif snap.state == "new":
        lines.append("stopped before its first checkpoint: Start it again (same name)")
    return "  \n".join(lines)


def curve_figure(snap: run_status.RunSnapshot):
    """Plotly: reconstruction (left) and KL (right) per face against the step, train and val."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    series = run_status.curve_series(snap.records)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "recon = −log p(x|z) (nats/face)", "KL(q(z|x) ‖ N(0, I)) (nats/face)"))
    styles = {"train": dict(mode="lines", line=dict(color="#1f77b4")),
              "val": dict(mode="lines+markers", line=dict(color="#d62728"))}
    for kind, s in series.items():
        for col, key in ((1, "recon"), (2, "kl")):
            fig.add_trace(go.Scatter(x=s["step"], y=s[key], name=kind, legendgroup=kind,
                                     showlegend=col == 1, **styles[kind]), row=1, col=col)
    fig.update_xaxes(title_text="optimizer step")
    title = f"{snap.name}: loss = recon + β·KL"
    if not series["train"]["step"]:
        title += " — waiting for the first points"
    fig.update_layout(title=title, height=340, margin=dict(l=50, r=10, t=70, b=40),
                      legend=dict(orientation="h", y=-0.25, x=0.5, xanchor="center"))
    return fig


def sample_grid(name: str) -> np.ndarray | None:
    """The run's sample grid (None before its first checkpoint): 3 rows of faces (see
    `GRID_LABEL`), uint8 (3·130 + 2, S·130 + 2, 3)."""
    cells = run_status.sample_cells(name)
    if cells is None:
        return None
    return pictures.grid(cells, scale=GRID_SCALE, pad=GRID_PAD)


def _runs_update(name: str | None):
    runs = run_folders.app_runs()
    return gr.update(choices=runs, value=name if name in runs else None)


def _view(snap: run_status.RunSnapshot) -> tuple:
    """(name, runs dropdown, status, loss curve, sample grid) for the tab's outputs."""
    return (snap.name, _runs_update(snap.name), status_text(snap), curve_figure(snap),
            sample_grid(snap.name))


# ------------------------------------------------------------------------------ handlers
@common.user_errors
def start(name, beta, minutes, train_size, batch_size, seed):
    """Widgets in → a stream of views of the new run until its session ends."""
    request = train_settings.TrainRequest(name=name or "", beta=beta, minutes=minutes,
                              train_size=train_size, batch_size=batch_size, seed=seed)
    run = jobs.JOBS.start(request)
    for snap in jobs.JOBS.follow(run):
        yield _view(snap)


@common.user_errors
def resume(name, minutes):
    """Run name and more minutes in → a stream of views until the session ends."""
    run = jobs.JOBS.resume(name, minutes)
    for snap in jobs.JOBS.follow(run):
        yield _view(snap)


@common.user_errors
def cancel(name):
    """Run name in → status (it stops after this step; the Start/Resume stream shows the end)."""
    jobs.JOBS.cancel(name)
    return status_text(jobs.JOBS.snapshot(name))


@common.user_errors
def show(name):
    """Run name in → its view now (any run in runs/, e.g. after a page reload)."""
    return _view(jobs.JOBS.snapshot(run_folders.check_name(name)))


def refresh_runs(current):
    """↻: the runs started here, newest first (keeps `current` if it is still there)."""
    return _runs_update(current)


# ------------------------------------------------------------------------------ layout
def build(demo: gr.Blocks | None = None) -> None:
    """Add the tab to the enclosing Blocks."""
    policy = train_settings.training_policy()
    request = train_settings.TrainRequest()
    with gr.Tab("Train"):
        if policy.note:
            gr.Markdown(f"⚠️ {policy.note}", elem_id="train-policy")
        with gr.Row():
            with gr.Column(scale=3):
                gr.Markdown(f"Trains on **{policy.device_label}**, at most "
                            f"**{policy.max_minutes:g} minutes** per session.")
                with gr.Row():
                    runs = gr.Dropdown(run_folders.app_runs(), value=None, label="earlier runs",
                                       interactive=True, scale=4)
                    refresh = gr.Button("↻", scale=0, min_width=40)
                name = gr.Textbox("", label="run name (saved as runs/<name>)",
                                  placeholder="empty: my-vae-beta<β>", max_length=64,
                                  elem_id="train-name")
                with gr.Row():
                    beta = common.number_box(request.beta, "β", 0, train_settings.MAX_BETA,
                                             whole=False, min_width=80)
                    minutes = common.number_box(request.minutes,
                                                f"minutes (≤ {policy.max_minutes:g})",
                                                train_settings.MIN_MINUTES,
                                                policy.max_minutes, whole=False, min_width=80)
                with gr.Row():
                    train_size = common.number_box(
                        min(request.train_size, policy.max_train_size),
                        f"train size (faces, ≤ {policy.max_train_size})",
                        train_settings.MIN_TRAIN_SIZE, policy.max_train_size, min_width=80)
                    batch_size = common.number_box(request.batch_size, "batch size",
                                                   *train_settings.BATCH_RANGE, min_width=80)
                    seed = common.number_box(request.seed, "seed", 0, MAX_SEED,
                                             min_width=80)
                with gr.Row():
                    start_button = gr.Button("Start", variant="primary", elem_id="train-start",
                                             interactive=policy.enabled, min_width=60)
                    cancel_button = gr.Button("Cancel", variant="stop",
                                              interactive=policy.enabled, min_width=60)
                    resume_button = gr.Button("Resume", interactive=policy.enabled, min_width=60)
                    status_button = gr.Button("Status", min_width=60)
                status = gr.Markdown(elem_id="train-status")
                gr.Markdown(HOW)
            with gr.Column(scale=5):
                curve = gr.Plot(label="loss curve (log.jsonl)")
                gr.Markdown(GRID_LABEL, latex_delimiters=common.LATEX)
                grid = gr.Image(label="sample grid", show_label=False, type="numpy",
                                format="png", interactive=False, elem_id="train-grid")
            with gr.Column(scale=3):
                gr.Markdown(EXPLAIN, latex_delimiters=common.LATEX)

        view = [name, runs, status, curve, grid]
        start_in = [name, beta, minutes, train_size, batch_size, seed]
        start_button.click(start, start_in, view, api_name="train_start", concurrency_limit=1,
                           concurrency_id=TRAIN_QUEUE, validator=common.field_validator(start_in))
        resume_button.click(resume, [name, minutes], view, api_name="train_resume",
                            concurrency_limit=1, concurrency_id=TRAIN_QUEUE,
                            validator=common.field_validator([name, minutes]))
        cancel_button.click(cancel, name, status, api_name="train_cancel")
        status_button.click(show, name, view, api_name="train_status")
        runs.input(show, runs, view, api_name="train_pick")
        refresh.click(refresh_runs, runs, runs, api_name="train_runs")
