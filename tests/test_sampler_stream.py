"""A Denoise run as `sampler_stream.stream` yields it (no server): the schedule plot comes once,
with what the page's cursor script needs, and the last frame carries the GIF and the times."""
import numpy as np

from playground.app import sampler_stream
from playground.pipelines.latent_diffusion import load_pipeline
from tests.helpers import save_tiny_pipeline


def test_a_run_sends_the_schedule_plot_once_with_every_alpha_bar(tmp_path, monkeypatch):
    save_tiny_pipeline(tmp_path / "trained")
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setattr(sampler_stream, "FRAME_INTERVAL", 0.0)  # send every drawn frame
    pipe = load_pipeline("ldm")
    for sampler in ("ddim", "ddpm"):
        frames = list(sampler_stream.stream(pipe, sampler, "", 1.0, 1, 0, 10, 0.0))
        plots = [plot for _, _, plot, _ in frames if not isinstance(plot, dict)]
        assert len(frames) >= 2 and len(plots) == 1 and frames[0][2] is plots[0]
        meta = plots[0].layout.meta  # what the page's cursor label reads
        abar = pipe.schedule.alphas_cumprod.numpy()
        np.testing.assert_allclose(meta["alphas_cumprod"], abar, rtol=1e-5)
        np.testing.assert_allclose(meta["snr"], abar / (1 - abar), rtol=1e-5)
        assert plots[0].layout.annotations[0].text.startswith(
            f"{sampler.upper()}: t = {frames[0][1].split('t = ')[1].split(' ')[0]}, ᾱ = ")
        visited = [trace for trace in plots[0].data if trace.name == "timesteps visited"]
        assert len(visited) == (sampler == "ddim")
        assert frames[-1][3].endswith(".gif") and "s of sampling" in frames[-1][1]
