"""The Train tab: background β-VAE runs (start, cancel, resume, one at a time), the handlers'
views, and the same through gradio_client against the launched app. Tiny runs only: a
(8, 16)-channel VAE with an 8-d latent, 64-256 faces, a few steps, one thread."""
import time

import numpy as np
import pytest
from PIL import Image

from playground.app import jobs as tj
from playground.app import run_folders, run_status, train, train_settings
from playground.data import pictures
from playground.pipelines import vae as ops
from playground.store import checkpoints, files
from playground.training import read_log

gradio_client = pytest.importorskip("gradio_client")

TINY = dict(latent_dim=8, channels=(8, 16), eval_size=16, log_every=1, cpu_threads=1,
            poll_seconds=0.05, samples=8, wait_seconds=30)
CPU = train_settings.Policy(True, "cpu", "cpu (test)", train_settings.CPU_MAX_MINUTES,
                            train_settings.MAX_TRAIN_SIZE, None, "")
GRID_SHAPE = (3 * (64 * train.GRID_SCALE + train.GRID_PAD) + train.GRID_PAD,
              8 * (64 * train.GRID_SCALE + train.GRID_PAD) + train.GRID_PAD, 3)


def _settings(monkeypatch, max_steps=4, **kw):
    settings = train_settings.JobSettings(**{**TINY, "max_steps": max_steps, **kw})
    monkeypatch.setattr(train_settings, "SETTINGS", settings)


@pytest.fixture
def jobs(monkeypatch):
    """A fresh manager as the app's JOBS, tiny settings, no Space/off variables; any run still
    training at the end is stopped."""
    for var in ("SPACE_ID", "PLAYGROUND_TRAINING"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(train_settings, "training_policy", lambda *a, **k: CPU)
    _settings(monkeypatch)
    manager = tj.TrainJobs()
    monkeypatch.setattr(tj, "JOBS", manager)
    yield manager
    job = manager.current()
    if job is not None:
        job.stop_event.set()
        manager.wait(30)


def _request(name="run-a", minutes=1.0, train_size=64, batch_size=16, **kw):
    return train_settings.TrainRequest(name=name, minutes=minutes, train_size=train_size,
                                       batch_size=batch_size, **kw)


def _wait_for(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _steps(name):
    return [r["step"] for r in read_log(checkpoints.runs_dir() / name) if r["type"] == "train"]


# ------------------------------------------------------------------------------ policy and checks
def test_policy_gpu_cpu_space_and_off():
    local = train_settings.training_policy(env={}, cuda=False)
    assert (local.enabled, local.device, local.max_minutes, local.note) == (
        True, "cpu", train_settings.CPU_MAX_MINUTES, "")
    assert local.device_label.startswith("cpu (")
    gpu = train_settings.training_policy(env={"SPACE_ID": "me/playground"}, cuda=True)
    assert gpu.device == "cuda" and gpu.max_minutes == train_settings.GPU_MAX_MINUTES
    assert gpu.enabled
    space = train_settings.training_policy(env={"SPACE_ID": "me/playground"}, cuda=False)
    assert space.enabled and space.max_minutes == train_settings.SPACE_MAX_MINUTES
    assert space.max_train_size == train_settings.SPACE_MAX_TRAIN_SIZE and "Space" in space.note
    off = train_settings.training_policy(env={"PLAYGROUND_TRAINING": "off"}, cuda=False)
    assert not off.enabled and "switched off" in off.note
    with pytest.raises(ValueError, match="switched off"):
        tj.TrainJobs().start(_request(), policy=off)
    with pytest.raises(ValueError, match="between 0.05 and 2 on this machine"):
        train_settings.check_request(_request(minutes=5), space)


@pytest.mark.parametrize("change,message", [
    (dict(name="../escape"), "invalid run name"),
    (dict(name="a/b"), "invalid run name"),
    (dict(name="x" * 65), "invalid run name"),
    (dict(beta=-1), "β must be between 0 and 100"),
    (dict(beta=float("nan")), "β must be a finite number"),
    (dict(beta="many"), "β must be a number"),
    (dict(minutes=0), "minutes must be between 0.05 and 10"),
    (dict(minutes=11), "minutes must be between 0.05 and 10"),
    (dict(train_size=8), "train size must be between 16 and 60000"),
    (dict(train_size=64.5), "train size must be a whole number"),
    (dict(batch_size=1000), "batch size must be between 4 and 512"),
    (dict(batch_size=128), r"batch size \(128\) must not exceed the train size \(64"),
    (dict(seed=-1), "seed must be between 0 and"),
])
def test_bad_requests_are_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        request = train_settings.TrainRequest(**{**vars(_request()), **change})
        train_settings.check_request(request, CPU)


@pytest.mark.usefixtures("isolated_run_env")
def test_names_never_touch_trained_reserved_or_existing_runs(jobs):
    (checkpoints.trained_dir() / "shipped").mkdir(parents=True)
    with pytest.raises(ValueError, match="shipped model in trained/"):
        jobs.start(_request("shipped"))
    with pytest.raises(ValueError, match="reserved for the command-line trainers"):
        jobs.start(_request("autoencoder"))
    cli_run = checkpoints.runs_dir() / "cli-run"
    cli_run.mkdir(parents=True)
    with pytest.raises(ValueError, match="exists already: choose another name"):
        jobs.start(_request("cli-run"))
    (cli_run / "train_state.json").write_text('{"args": {}}')
    with pytest.raises(ValueError, match="not started in the Train tab"):
        jobs.resume("cli-run", 1)
    assert jobs.start(_request("")) == "my-vae-beta4"  # an empty name picks a free one
    jobs.wait(30)
    with pytest.raises(ValueError, match="exists already: press Resume"):
        jobs.start(_request("my-vae-beta4"))
    assert run_folders.free_name(4.0) == "my-vae-beta4-2"


# ------------------------------------------------------------------------------ the job manager
@pytest.mark.usefixtures("isolated_run_env")
def test_a_run_trains_to_its_limit_and_appears_in_the_model_lists(jobs):
    name = jobs.start(_request("run-a", beta=2.0))
    snaps = list(jobs.follow(name))
    assert snaps[0].state == "training" and snaps[-1].state == "finished"
    final = snaps[-1]
    assert _steps(name) == [1, 2, 3, 4] and final.step == 4
    assert [r["epoch"] for r in final.records if r["type"] == "val"] == [1]
    assert final.metrics["steps"] == 4 and final.metrics["device"] == "cpu"
    assert final.metrics["beta"] == 2.0 and final.train_state["args"]["train_size"] == 64
    assert run_folders.app_runs() == [name] and name in ops.list_vae_models()
    assert ops.get_model(name).config.beta == 2.0
    cells = run_status.sample_cells(name)
    assert cells.shape == (3, 8, 64, 64, 3) and cells.dtype == np.uint8
    assert np.array_equal(cells[0], ops.reference_images(8))  # row 1: the validation faces
    model = checkpoints.load_model(checkpoints.runs_dir() / name)
    assert np.array_equal(cells[2], ops.sample(model, 8, 0))  # row 3: dec(z), fixed z


@pytest.mark.usefixtures("isolated_run_env")
def test_cancel_stops_with_a_checkpoint_and_resume_continues_it(jobs, monkeypatch):
    _settings(monkeypatch, max_steps=None)  # only the minutes (1) would stop it
    name = jobs.start(_request("run-b", train_size=64, batch_size=16))
    _wait_for(lambda: len(_steps(name)) >= 2)
    assert jobs.cancel(name) == "stopping"
    assert jobs.wait(30)
    stopped = jobs.snapshot(name)
    assert stopped.state == "stopped" and stopped.resumable
    s = stopped.step
    assert s >= 2 and stopped.elapsed_seconds < 60 and _steps(name)[-1] <= s
    with pytest.raises(ValueError, match="is not training"):
        jobs.cancel(name)

    _settings(monkeypatch, max_steps=3)  # 3 more steps in this session
    assert jobs.resume(name, 0.5) == name
    assert jobs.wait(30)
    resumed = jobs.snapshot(name)
    assert resumed.state == "finished" and resumed.step == s + 3
    steps = _steps(name)
    assert steps == sorted(set(steps)) and steps[-1] == s + 3  # no step twice, none lost
    assert resumed.train_state["args"]["minutes"] == pytest.approx(
        stopped.elapsed_seconds / 60 + 0.5)
    sessions = resumed.request["sessions"]
    assert [x["resume"] for x in sessions] == [False, True]


@pytest.mark.usefixtures("isolated_run_env")
def test_a_run_still_training_when_the_process_exits_stops_with_a_checkpoint(jobs, monkeypatch):
    hooks, register = [], tj.atexit.register
    monkeypatch.setattr(tj.atexit, "register",  # seen here, still registered for real
                        lambda fn, *a, **k: (hooks.append(fn), register(fn, *a, **k))[1])
    _settings(monkeypatch, max_steps=None)  # only the minutes (1) would stop it
    name = jobs.start(_request("run-e"))
    _wait_for(lambda: len(_steps(name)) >= 1)
    assert hooks.count(jobs._stop_at_exit) == 1  # registered at the first run
    jobs._stop_at_exit()  # what the interpreter runs on its way out, before it tears torch down
    assert jobs.current() is None
    snap = jobs.snapshot(name)
    assert snap.state == "stopped" and snap.resumable and snap.elapsed_seconds < 60
    assert jobs.resume(name, 0.5) == name
    assert hooks.count(jobs._stop_at_exit) == 1  # not again (other modules register their own)
    jobs.cancel(name)
    assert jobs.wait(30)


@pytest.mark.usefixtures("isolated_run_env")
def test_one_run_at_a_time_and_a_viewer_who_leaves_stops_the_run(jobs, monkeypatch):
    _settings(monkeypatch, max_steps=None)
    name = jobs.start(_request("run-c"))
    with pytest.raises(ValueError, match="only one run trains at a time"):
        jobs.start(_request("run-d"))
    with pytest.raises(ValueError, match="only one run trains at a time"):
        jobs.resume(name, 1)
    with pytest.raises(ValueError, match="'run-d' is not training"):
        jobs.cancel("run-d")
    follower = jobs.follow(name)
    assert next(follower).state == "training"
    follower.close()  # the browser tab closed: nobody watches, so the run stops
    assert jobs.current() is None or jobs.current().state == "stopping"
    assert jobs.wait(30) and jobs.snapshot(name).state == "stopped"
    assert not (checkpoints.runs_dir() / "run-d").exists()


# ------------------------------------------------------------------------------ handlers
@pytest.mark.usefixtures("isolated_run_env")
def test_start_handler_streams_status_curve_and_sample_grid(jobs):
    views = list(train.start("", 4, 1, 64, 16, 0))
    name, runs, status, fig, grid = views[-1]
    assert name == "my-vae-beta4" and runs["choices"] == [name] and runs["value"] == name
    assert "**finished**" in status and "4 × KL" in status and "cpu (test)" in status
    train_x = [list(t.x) for t in fig.data if t.name == "train"]
    assert train_x == [[1, 2, 3, 4], [1, 2, 3, 4]]  # reconstruction and KL panels
    records = [r for r in read_log(checkpoints.runs_dir() / name) if r["type"] == "train"]
    assert list(fig.data[1].y) == [r["kl"] for r in records]
    assert grid.shape == GRID_SHAPE
    first_face = pictures.upscale(ops.reference_images(8)[0], train.GRID_SCALE)  # top-left cell
    assert np.array_equal(grid[train.GRID_PAD:train.GRID_PAD + 128,
                               train.GRID_PAD:train.GRID_PAD + 128], first_face)
    again = train.show(name)
    assert again[2] == status and np.array_equal(again[4], grid)
    assert train.refresh_runs(None)["choices"] == [name]


@pytest.mark.usefixtures("isolated_run_env")
def test_handlers_turn_bad_input_into_gr_errors(jobs):
    import gradio as gr

    with pytest.raises(gr.Error, match="Minutes must be between"):
        list(train.start("ok", 4, 99, 64, 16, 0))
    with pytest.raises(gr.Error, match="Invalid run name"):
        list(train.start("no way", 4, 1, 64, 16, 0))
    with pytest.raises(gr.Error, match="There is no run named 'ghost'"):
        list(train.resume("ghost", 1))
    with pytest.raises(gr.Error, match="Run 'ghost' is not training"):
        train.cancel("ghost")
    with pytest.raises(gr.Error, match="Run name is empty"):
        train.show("")


# ------------------------------------------------------------------------------ through the app
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("app")
    mp.setenv("PLAYGROUND_RUNS", str(root / "runs"))
    mp.setenv("PLAYGROUND_TRAINED", str(root / "trained"))
    mp.setenv("PLAYGROUND_CACHE", str(root / "cache"))
    import app

    demo = app.build_app()
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None,
                        quiet=True)
    try:
        yield gradio_client.Client(demo.local_url, verbose=False)
    finally:
        demo.close()
        mp.undo()


def test_app_start_cancel_resume_and_the_queue(client, jobs, monkeypatch):
    out = client.predict("app-a", 3, 1, 64, 16, 0, api_name="/train_start")
    name, runs, status, plot, grid = out
    assert name == "app-a" and "**finished**" in status and plot is not None
    assert np.asarray(Image.open(grid)).shape == GRID_SHAPE
    listed = client.predict("gone", api_name="/traverse_models")  # the other tabs see it
    assert "app-a" in [c[0] for c in listed["choices"]]
    assert "**finished**" in client.predict("app-a", api_name="/train_status")[2]

    with pytest.raises(Exception, match="Invalid run name"):
        client.predict("../x", 3, 1, 64, 16, 0, api_name="/train_start")
    # a bad number is refused before the queue, with a message naming the field
    with pytest.raises(Exception, match="batch size must be between 4 and 512, got 1"):
        client.predict("app-x", 3, 1, 64, 1, 0, api_name="/train_start")
    assert "app-x" not in run_folders.app_runs()

    # Cancel and resume through the API.
    _settings(monkeypatch, max_steps=None)
    running = client.submit("app-b", 3, 1, 64, 16, 0, api_name="/train_start")
    _wait_for(lambda: len(_steps("app-b")) >= 1)
    assert "**stopping**" in client.predict("app-b", api_name="/train_cancel")
    assert "**stopped**" in running.result(timeout=60)[2]
    _settings(monkeypatch, max_steps=2)
    assert "**finished**" in client.predict("app-b", 0.5, api_name="/train_resume")[2]
    assert _steps("app-b")[-1] == jobs.snapshot("app-b").step

    # Two starts: the second waits in the queue until the first run has ended.
    _settings(monkeypatch, max_steps=None)
    first = client.submit("app-c", 3, 0.05, 256, 16, 0, api_name="/train_start")
    _wait_for(lambda: jobs.current() is not None)
    second = client.submit("app-d", 3, 0.05, 256, 16, 1, api_name="/train_start")
    assert "**finished**" in first.result(timeout=60)[2]
    assert "**finished**" in second.result(timeout=60)[2]
    runs_dir = checkpoints.runs_dir()
    first_end = (runs_dir / "app-c" / checkpoints.METRICS_FILE).stat().st_mtime
    marker = files.read_json(runs_dir / "app-d" / run_folders.APP_MARKER)
    second_start = marker["sessions"][0]["started"]
    assert second_start >= first_end - 0.01
    assert client.predict(None, api_name="/train_runs")["choices"][0][0] == "app-d"


@pytest.mark.usefixtures("isolated_run_env")
def test_status_of_a_run_that_is_not_a_vae_shows_no_samples(jobs):
    from tests.helpers import save_tiny_vae

    folder = checkpoints.runs_dir() / "not-a-vae"
    save_tiny_vae(folder)
    config = files.read_json(folder / checkpoints.CONFIG_FILE)
    files.atomic_write_json(folder / checkpoints.CONFIG_FILE, {**config, "kind": "judge"})
    name, runs, status, fig, grid = train.show("not-a-vae")
    assert grid is None and "**new**" in status and runs["choices"] == []
