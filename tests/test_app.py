"""The app answers through gradio_client: valid calls give images, invalid ones a clear error."""
import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client():
    import app

    demo = app.build_app()
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None,
                        quiet=True)
    try:
        yield gradio_client.Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_synthfaces_grid(client):
    path = client.predict(seed=1, count=4, api_name="/synthfaces_grid")
    image = np.asarray(Image.open(path))
    # 4 faces in one row, each 64 px scaled x2 with 2 px padding.
    assert image.shape[:2] == (2 * (64 + 2) + 4, 4 * 2 * (64 + 2) + 4)
    same = np.asarray(Image.open(client.predict(seed=1, count=4, api_name="/synthfaces_grid")))
    assert np.array_equal(image, same)


def test_synthfaces_face_follows_the_sliders(client):
    kwargs = dict(yaw=0, roll=0, light=0, skin=0.3, width=0.5, smile=0.5, mouth_open=0.2,
                  eye_open=0.7, brow=0.5, hair_color="brown", hair_style="short",
                  eyeglasses="no", hat="no", facial_hair="none", lipstick="no", background=0.5)
    plain = np.asarray(Image.open(client.predict(**kwargs, api_name="/synthfaces_face")))
    assert plain.shape == (256, 256, 3)
    glasses = np.asarray(Image.open(client.predict(**{**kwargs, "eyeglasses": "yes"},
                                                   api_name="/synthfaces_face")))
    assert np.abs(plain.astype(int) - glasses).mean() > 1.0


@pytest.mark.parametrize("seed,count", [(-1, 4), (0, 0), (0, 1000)])
def test_bad_grid_input_gives_a_clear_error_and_the_app_still_answers(client, seed, count):
    with pytest.raises(Exception, match="(Seed|Number of faces|maximum value|minimum value)"):
        client.predict(seed=seed, count=count, api_name="/synthfaces_grid")
    assert client.predict(seed=0, count=1, api_name="/synthfaces_grid")


def test_preload_loads_every_model_and_skips_a_broken_one(tmp_path, monkeypatch):
    """`app.preload` (what `python app.py` runs before serving) fills the tab caches; a
    corrupt model is skipped, the others still load."""
    import app
    from playground.pipelines import diffusion_models
    from playground.pipelines import vae as ops
    from tests.helpers import save_tiny_pipeline, save_tiny_vae

    trained = tmp_path / "trained"
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(trained))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    save_tiny_vae(trained / "vae-beta4", beta=4.0)
    save_tiny_vae(trained / "vae-beta10", beta=10.0)
    (trained / "vae-beta10" / "model.safetensors").write_bytes(b"not a safetensors file")
    save_tiny_pipeline(trained, judge=True)
    loaded = app.preload()
    assert loaded == ["vae-beta4", "ldm", "judge"]
    assert diffusion_models.get_pipeline("ldm") is diffusion_models.get_pipeline("ldm")  # cached, not reloaded
    assert ops.get_model("vae-beta4") is ops.get_model("vae-beta4")


def test_the_app_starts_as_a_hugging_face_space_would_run_it(tmp_path):
    """`python app.py` under a Space's environment (SPACE_ID, SYSTEM=spaces, the server name
    and port from GRADIO_SERVER_*), a HOME of its own, trained/ shipped alongside: it serves,
    answers a tab, limits training as on a shared CPU, and writes nothing into trained/."""
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.helpers import save_tiny_vae

    trained = tmp_path / "trained"
    save_tiny_vae(trained / "vae-beta1", beta=1.0, seed=1)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in trained.rglob("*"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAYGROUND_", "GRADIO_"))}
    env.update(SPACE_ID="someone/vae-diffusion-playground", SYSTEM="spaces",
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               HOME=str(tmp_path / "home"), PLAYGROUND_TRAINED=str(trained),
               PLAYGROUND_RUNS=str(tmp_path / "runs"), OMP_NUM_THREADS="1")
    repo = Path(__file__).resolve().parents[1]
    server = subprocess.Popen([sys.executable, "app.py"], cwd=repo, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client, deadline = None, time.monotonic() + 120
        while client is None and time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read()[-3000:]
            try:
                client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:  # not listening yet
                time.sleep(1)
        assert client is not None, "the app did not start within 120 s"
        face = client.predict("vae-beta1", "random", 0, 0, None, api_name="/traverse_encode")[0]
        assert np.asarray(Image.open(face)).shape == (256, 256, 3)
        with pytest.raises(Exception, match=r"minutes must be between 0.05 and 2"):
            client.predict("", 1, 30, 64, 16, 0, api_name="/train_start")  # a Space: ≤ 2 min
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in trained.rglob("*")) == before
