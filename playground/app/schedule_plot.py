"""The plot of a noise schedule: ᾱ_t (the signal kept) and SNR(t) against t, with a line for
where a picture or a sampler is now and dots for the timesteps a sampler visits."""
from __future__ import annotations

import numpy as np

from playground.diffusion import NoiseSchedule
from playground.pipelines import forward_process


def schedule_figure(schedule: NoiseSchedule, cursors: dict[str, int] | None = None,
                    marks: dict[str, list[int]] | None = None, title: str = "",
                    live_cursor: bool = False):
    """Plotly figure of ᾱ_t (left axis) and SNR(t) (right axis, log) against t, with a
    vertical line per cursor {label: t} and dots on the ᾱ_t curve per marks {label: [t, …]}.
    `live_cursor`: the figure carries every ᾱ_t (layout.meta.alphas_cumprod), so that the
    page can move the first cursor and rewrite its label (schedule_cursor.js)."""
    import plotly.graph_objects as go

    curves = forward_process.schedule_curves(schedule)
    T = schedule.num_timesteps
    keep = np.unique(np.linspace(0, T - 1, min(T, 250)).round().astype(int))  # light JSON
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=keep, y=curves["alphas_cumprod"][keep], name="ᾱ_t",
                             line=dict(color="#1f77b4"),
                             hovertemplate="t = %{x}: ᾱ_t = %{y:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=keep, y=curves["snr"][keep], name="SNR(t)", yaxis="y2",
                             line=dict(color="#ff7f0e", dash="dot"),
                             hovertemplate="t = %{x}: SNR = %{y:.3g}<extra></extra>"))
    colours = ["#d62728", "#2ca02c", "#9467bd"]
    for i, (label, ts) in enumerate((marks or {}).items()):
        ts = np.asarray(ts, dtype=int)
        fig.add_trace(go.Scatter(x=ts, y=curves["alphas_cumprod"][ts], mode="markers",
                                 name=label, marker=dict(size=5, color=colours[i % 3]),
                                 hovertemplate="t = %{x}<extra></extra>"))
    for i, (label, t) in enumerate((cursors or {}).items()):
        t = int(t)
        fig.add_vline(x=t, line=dict(color=colours[i % 3], width=2))
        fig.add_annotation(x=t, y=1.02, yref="paper", showarrow=False,
                           text=f"{label}: t = {t}, ᾱ = {curves['alphas_cumprod'][t]:.3f}, "
                                f"SNR = {curves['snr'][t]:.3g}",
                           font=dict(color=colours[i % 3], size=11),
                           xanchor="left" if t < T / 2 else "right")
    fig.update_layout(
        title=title or None, height=300, margin=dict(l=50, r=60, t=40 if title else 30, b=40),
        xaxis=dict(title="timestep t", range=[0, T - 1]),
        yaxis=dict(title="ᾱ_t (signal kept)", range=[0, 1.05]),
        yaxis2=dict(title="SNR (log)", type="log", overlaying="y", side="right",
                    showgrid=False),
        legend=dict(orientation="h", y=-0.25), hovermode="x")
    if live_cursor:
        # the page writes the cursor's label from these (SNR too: from a rounded ᾱ it would
        # drift near t = 0, where ᾱ → 1)
        fig.update_layout(meta={key: [float(f"{v:.6g}") for v in curves[key]]
                                for key in ("alphas_cumprod", "snr")})
    return fig
