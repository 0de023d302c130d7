"""Attacks on the launched app (the settings `python app.py` uses): files outside the app,
unsafe model and run names, pickles, oversized or script-bearing uploads, cross-site requests,
the monitoring page, huge and odd text (1 MB prompts, emoji, other scripts), out-of-range
numbers.

Where Gradio already protects, the test proves it; where it did not (the /monitoring summary,
cross-site uploads, a model name too long for the file system), app.py / checkpoints.py were
fixed and the test keeps them fixed. Reads and unpickling are watched with a Python audit hook
(`sys.addaudithook`): the "open" and "pickle.find_class" events of the server threads, which
run in this process.
"""
from __future__ import annotations

import http.client as http_client
import json
import pickle
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from playground.pipelines import vae as ops
from playground.store import checkpoints
from tests.helpers import save_tiny_vae

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

PASSWD_MARK = "root:"  # the first line of /etc/passwd on any Linux
GOOD = "vae-beta10"  # the default model of the dropdowns


# ------------------------------------------------------------------------------ audit hook
class _Audit:
    """Records the paths opened and the classes unpickled while `recording` is set."""

    def __init__(self):
        self.lock = threading.Lock()
        self.recording = False
        self.opened: list[str] = []
        self.unpickled: list[str] = []

    def hook(self, event, args):
        if not self.recording:
            return
        if event == "open" and args and isinstance(args[0], (str, bytes, Path)):
            with self.lock:
                self.opened.append(str(args[0]))
        elif event == "pickle.find_class":
            with self.lock:
                self.unpickled.append(f"{args[0]}.{args[1]}")

    def __enter__(self):
        with self.lock:
            self.opened, self.unpickled = [], []
        self.recording = True
        return self

    def __exit__(self, *exc):
        self.recording = False


_AUDIT = _Audit()
sys.addaudithook(_AUDIT.hook)  # process-wide and permanent; idle unless recording


# ------------------------------------------------------------------------------ the app
class Marker:
    """Unpickling this writes a file: the proof that something was unpickled."""

    def __init__(self, path):
        self.path = Path(path)

    def __reduce__(self):
        return (Path.write_text, (self.path, "unpickled!"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """trained/: a good tiny β-VAE, a model whose weights are a pickle named model.pt, one whose
    model.safetensors is a pickle, a symlink to a model outside; outside/: a decoy model."""
    root = tmp_path_factory.mktemp("security")
    trained, runs, outside = root / "trained", root / "runs", root / "outside"
    runs.mkdir()
    save_tiny_vae(trained / GOOD, beta=10.0, seed=10)
    save_tiny_vae(outside / "decoy", beta=4.0, seed=4)
    marker = root / "UNPICKLED"
    payload = pickle.dumps(Marker(marker))
    for name, weights in (("vae-pickle", "model.pt"), ("vae-fake", "model.safetensors")):
        (trained / name).mkdir()
        (trained / name / "config.json").write_text((trained / GOOD / "config.json").read_text())
        (trained / name / weights).write_bytes(payload)
    (trained / "linked").symlink_to(outside / "decoy", target_is_directory=True)
    try:  # a tiny latent diffusion pipeline (trained/ldm, clip, autoencoder) for the Prompt tab
        from tests.helpers import save_tiny_pipeline

        save_tiny_pipeline(trained)
        pipeline = True
    except ImportError:
        pipeline = False
    mp = pytest.MonkeyPatch()
    mp.setenv("PLAYGROUND_TRAINED", str(trained))
    mp.setenv("PLAYGROUND_RUNS", str(runs))
    mp.setattr(ops, "REFERENCE_SIZE", 64)
    ops.clear_model_cache()
    yield {"root": root, "trained": trained, "runs": runs, "outside": outside, "marker": marker,
           "pipeline": pipeline}
    mp.undo()
    ops.clear_model_cache()


@pytest.fixture(scope="module")
def server(world):
    import app

    demo = app.build_app()
    demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True))
    try:
        yield demo.local_url.rstrip("/")
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server, verbose=False)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def raw_get(server: str, path: str) -> tuple[int, bytes]:
    """GET `path` byte for byte (http.client does not normalise ``..`` the way httpx does)."""
    host, port = server.split("//")[1].split(":")
    conn = http_client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def call(http, api: str, data: list, headers: dict | None = None) -> tuple[str, str]:
    """Run an event through the REST API → (last SSE event name, the whole stream text).
    An event with a validator checks its inputs before it is queued: an input refused there
    answers 400 at once, reported here as ("error", the answer)."""
    r = http.post(f"/gradio_api/call/{api}", json={"data": data}, headers=headers or {})
    if r.status_code == 400:
        return "error", r.text
    assert r.status_code == 200, (r.status_code, r.text[:300])
    stream = http.get(f"/gradio_api/call/{api}/{r.json()['event_id']}").text
    events = [line.split(":", 1)[1].strip() for line in stream.splitlines()
              if line.startswith("event:")]
    return (events[-1] if events else ""), stream


def upload(http, name: str, content: bytes, mime: str = "application/octet-stream",
           headers: dict | None = None) -> httpx.Response:
    return http.post("/gradio_api/upload", files={"files": (name, content, mime)},
                     headers=headers or {})


def png_bytes(size=(80, 60)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((*size[::-1], 3), 120, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def still_answers(client) -> None:
    out = client.predict(GOOD, "random", 1, 0, None, api_name="/traverse_encode")
    assert Path(out[0]).is_file()


# ------------------------------------------------------------------------------ file route
TRAVERSALS = [
    "/gradio_api/file=../../../../../../etc/passwd",
    "/gradio_api/file=/tmp/../../../../etc/passwd",
    "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/gradio_api/file=%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/gradio_api/file=..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/gradio_api/file=..%252f..%252f..%252fetc%252fpasswd",
    "/gradio_api/file=/etc/passwd",
    "/gradio_api/file=//etc//passwd",
    "/gradio_api/file=%2Fetc%2Fpasswd",
    "/gradio_api/file=/ETC/PASSWD",
    "/GRADIO_API/FILE=/etc/passwd",
    "/gradio_api/file=/etc/./passwd",
    "/gradio_api/file=file:///etc/passwd",
    "/file=/etc/passwd",
    "/gradio_api/file=/proc/self/environ",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_file_route_serves_nothing_outside_the_app(server, path):
    status, body = raw_get(server, path)
    assert status in (400, 403, 404), (status, body[:200])
    assert PASSWD_MARK.encode() not in body and b"PATH=" not in body


def test_file_route_serves_no_model_or_source_file(server, world):
    repo = checkpoints.repo_root()
    for target in (world["trained"] / GOOD / "model.safetensors", world["outside"] / "decoy" /
                   "config.json", repo / "app.py", repo / "playground" / "store" / "checkpoints.py"):
        status, body = raw_get(server, f"/gradio_api/file={target}")
        assert status == 403 and b"File not allowed" in body, (target, status)


def test_file_route_fetches_no_local_url(server, http):
    """The file route fetches http(s) URLs only from public addresses: not the app itself."""
    r = http.get(f"/gradio_api/file={server}/gradio_api/info")
    assert r.status_code in (400, 403, 404, 502) and "named_endpoints" not in r.text


def test_file_route_does_serve_uploads(http):
    """Positive control: a file in the upload cache is served (so the 403s are a decision)."""
    content = png_bytes()
    stored = upload(http, "face.png", content, "image/png").json()[0]
    r = http.get(f"/gradio_api/file={stored}")
    assert r.status_code == 200 and r.content == content
    assert r.headers["content-type"] == "image/png"


# ------------------------------------------------------------------------------ file inputs
CRAFTED = ["/etc/passwd", "/etc/../etc/passwd", "../../../../etc/passwd", "/proc/self/environ"]


@pytest.mark.parametrize("path", CRAFTED)
def test_a_crafted_file_input_is_refused_and_not_served(http, path):
    file_data = {"path": path, "orig_name": "face.png", "meta": {"_type": "gradio.FileData"}}
    with _AUDIT as audit:
        kind, stream = call(http, "traverse_encode", [GOOD, "upload", 0, 0, file_data])
    assert kind == "error" and PASSWD_MARK not in stream and "PATH=" not in stream
    assert not [p for p in audit.opened if p.endswith(("passwd", "environ"))], audit.opened


def test_a_crafted_file_input_pointing_at_a_model_file_is_refused(http, world):
    target = str(world["trained"] / GOOD / "model.safetensors")
    file_data = {"path": target, "meta": {"_type": "gradio.FileData"}}
    with _AUDIT as audit:
        kind, stream = call(http, "morph", [GOOD, "upload", 0, 0, file_data, "random", 1, 0,
                                            None, 8, "lerp"])
    assert kind == "error"  # Gradio refuses a path that is not in its upload cache
    assert target not in audit.opened


# ------------------------------------------------------------------------------ model names
BAD_NAMES = ["../outside/decoy", "../../outside/decoy", "..", "./vae-beta10", "/etc/passwd",
             "{outside}/decoy", "vae-beta10/../../outside/decoy", "..\\outside\\decoy",
             "%2e%2e/outside/decoy", "vae-beta10\x00", "linked", "x" * 1_000_000]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: n[:30])
def test_unsafe_model_names_are_refused_and_nothing_outside_is_read(client, world, name):
    name = name.format(outside=world["outside"])
    ops.clear_model_cache()
    with _AUDIT as audit:
        with pytest.raises(gradio_client.exceptions.AppError) as err:
            client.predict(name, "random", 0, 0, None, api_name="/traverse_encode")
    message = str(err.value)
    assert ("nvalid model name" in message or "resolves outside" in message
            or "no model named" in message.lower()), message[:300]
    assert len(message) <= 600  # a 1 MB name is not echoed back in full
    outside = str(world["outside"])
    assert not [p for p in audit.opened if p.startswith(outside)], audit.opened
    still_answers(client)


def test_the_audit_hook_sees_model_reads(client, world):
    """Positive control for the test above: loading a model is seen as opens in trained/."""
    ops.clear_model_cache()
    with _AUDIT as audit:
        still_answers(client)
    assert any(p.startswith(str(world["trained"] / GOOD)) for p in audit.opened), audit.opened


@pytest.mark.parametrize("name", ["../outside/decoy", "/etc", "a/b", "x" * 101, "", ".."])
def test_checkpoints_refuse_unsafe_names_for_user_input(name):
    with pytest.raises(ValueError):
        checkpoints.resolve_model_dir(name, allow_paths=False)
    assert not checkpoints.is_valid_name(name)


# ------------------------------------------------------------------------------ pickles
def test_the_audit_hook_sees_unpickling(world, tmp_path):
    """Positive control: unpickling our marker is seen (and writes the marker)."""
    marker = tmp_path / "marker"
    with _AUDIT as audit:
        pickle.loads(pickle.dumps(Marker(marker)))
    assert audit.unpickled and marker.is_file()


@pytest.mark.parametrize("name", ["vae-pickle", "vae-fake"])
def test_a_pickle_in_trained_is_never_unpickled(client, world, name):
    ops.clear_model_cache()
    with _AUDIT as audit:
        with pytest.raises(gradio_client.exceptions.AppError) as err:
            client.predict(name, "random", 0, 0, None, api_name="/traverse_encode")
        with pytest.raises(gradio_client.exceptions.AppError):
            client.predict(name, "pca", 100, 0, "Smiling", "", api_name="/latent_map")
        with pytest.raises((ValueError, FileNotFoundError)):
            checkpoints.load_model(name)
    assert not audit.unpickled, audit.unpickled
    assert not world["marker"].exists()
    message = str(err.value)
    assert "no weights" in message or "corrupt or truncated safetensors" in message.lower(), \
        message


def test_torch_load_is_not_used_anywhere():
    """Belt and braces: no torch.load / pickle.load / np.load(allow_pickle) in the package."""
    offenders = []
    for path in (checkpoints.repo_root() / "playground").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for needle in ("torch.load(", "pickle.load", "allow_pickle=True", "import dill"):
            if needle in text:
                offenders.append(f"{path.name}: {needle}")
    assert not offenders, offenders


# ------------------------------------------------------------------------------ uploads
def test_an_upload_over_max_file_size_is_refused(http):
    import app

    limit = 5 * 1024 * 1024
    assert app.launch_kwargs()["max_file_size"] == app.MAX_FILE_SIZE == "5mb"
    r = upload(http, "big.png", b"\x89PNG" + b"\0" * limit, "image/png")
    assert r.status_code == 413 and "maximum allowed size" in r.text
    assert upload(http, "ok.png", png_bytes(), "image/png").status_code == 200


SCRIPTED = [
    ("face.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(1)'
                 b'</script></svg>', "image/svg+xml", "Invalid file type"),
    ("face.html", b"<!doctype html><script>alert(1)</script>", "text/html", "Invalid file type"),
    ("face.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">'
                 b'<script>alert(1)</script></svg>', "image/png", "not an image"),
    ("face.png", b"<html><body><script>alert(1)</script></body></html>", "image/png",
     "not an image"),
]


@pytest.mark.parametrize("name,content,mime,expected", SCRIPTED,
                         ids=["svg", "html", "svg-as-png", "html-as-png"])
def test_svg_and_html_uploads_are_refused_and_never_served_as_pages(http, name, content, mime,
                                                                    expected):
    r = upload(http, name, content, mime)
    assert r.status_code == 200  # Gradio stores any upload in its cache ...
    stored = r.json()[0]
    file_data = {"path": stored, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
    kind, stream = call(http, "traverse_encode", [GOOD, "upload", 0, 0, file_data])
    assert kind == "error" and expected.lower() in stream.lower(), stream[-400:]  # ... refused
    # ... and the stored copy is never served as a page: a download, or a raster image type
    # (under which browsers do not run markup)
    served = http.get(f"/gradio_api/file={stored}")
    kind = served.headers["content-type"].split(";")[0]
    if served.headers["content-disposition"].startswith("inline"):
        assert kind in ("image/png", "image/jpeg", "image/gif", "image/webp"), kind
    else:
        assert kind == "application/octet-stream", kind


def test_a_real_picture_with_a_non_latin_name_is_accepted(http):
    r = upload(http, "顔 😀 лицо.png", png_bytes(), "image/png")
    stored = r.json()[0]
    file_data = {"path": stored, "orig_name": "顔 😀 лицо.png",
                 "meta": {"_type": "gradio.FileData"}}
    kind, stream = call(http, "traverse_encode", [GOOD, "upload", 0, 0, file_data])
    assert kind == "complete", stream[-400:]
    notice = json.loads(stream.split("data:", 1)[1])[-1]
    assert "uploaded 顔 😀 лицо.png: cropped 80×60 → 60×60" in notice, notice


# ------------------------------------------------------------------------------ cross-origin
EVIL = ["https://evil.example", "null", "http://127.0.0.1.evil.example", "file://"]


@pytest.mark.parametrize("origin", EVIL)
def test_cross_origin_writes_are_refused(http, origin):
    r = upload(http, "face.png", png_bytes(), "image/png", headers={"Origin": origin})
    assert r.status_code == 403 and "Cross-origin" in r.text
    r = http.post("/gradio_api/call/synthfaces_grid", json={"data": [1, 2]},
                  headers={"Origin": origin})
    assert r.status_code == 403 and "event_id" not in r.text
    r = http.post("/gradio_api/queue/join", json={"data": [1, 2], "fn_index": 0,
                                                   "session_hash": "evil"},
                  headers={"Origin": origin})
    assert r.status_code == 403
    # the browser's preflight gets no Access-Control-Allow-Origin either (Gradio's CORS)
    pre = http.options("/gradio_api/queue/join", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert "access-control-allow-origin" not in pre.headers


def test_same_origin_and_origin_less_writes_pass(http, server):
    assert upload(http, "face.png", png_bytes(), "image/png",
                  headers={"Origin": server}).status_code == 200
    assert upload(http, "face.png", png_bytes(), "image/png").status_code == 200
    kind, _ = call(http, "synthfaces_grid", [1, 2], headers={"Origin": server})
    assert kind == "complete"


def test_the_guard_rule():
    from playground.app.guard import origin_allowed

    hosts = ["127.0.0.1:7860"]
    assert origin_allowed("GET", "https://evil.example", hosts)  # reads: CORS decides
    assert origin_allowed("POST", None, hosts)  # gradio_client, curl
    assert origin_allowed("POST", "http://127.0.0.1:7860", hosts)
    assert not origin_allowed("POST", "https://evil.example", hosts)
    assert not origin_allowed("POST", "null", hosts)
    assert not origin_allowed("POST", "", hosts)
    assert origin_allowed("POST", "https://me-space.hf.space",
                          ["10.0.0.5:7860", "me-space.hf.space"])  # behind a proxy


# ------------------------------------------------------------------------------ monitoring
@pytest.mark.parametrize("path", ["/monitoring", "/monitoring/summary",
                                  "/monitoring/anything", "/gradio_api/monitoring"])
def test_the_monitoring_endpoint_is_not_exposed(http, path, capsys):
    r = http.get(path)
    assert r.status_code in (403, 404), (path, r.status_code)
    assert "functions" not in r.text
    assert "Monitoring URL" not in capsys.readouterr().out


# ------------------------------------------------------------------------------ text and numbers
HUGE = "a smiling face " * 70_000  # ~1 MB of text
PROMPT_ARGS = dict(model_name="ldm", negative="", guidance=7.5, steps=10, seed=0,
                   randomize=False, n_faces=1)


def _needs_pipeline(world):
    if not world["pipeline"]:
        pytest.skip("no tiny diffusion pipeline (tests.test_ldm_ops.save_tiny_pipeline)")


def test_a_1mb_prompt_gives_a_clear_error_quickly(client, world):
    _needs_pipeline(world)
    t0 = time.perf_counter()
    for kwargs in (dict(PROMPT_ARGS, prompt=HUGE), dict(PROMPT_ARGS, prompt="hi", negative=HUGE)):
        with pytest.raises(gradio_client.exceptions.AppError,
                           match="1,050,000 characters long; at most") as err:
            client.predict(**kwargs, api_name="/prompt_generate")
        assert len(str(err.value)) <= 600
    with pytest.raises(gradio_client.exceptions.AppError, match="characters long"):
        client.predict("ldm", HUGE, 1.0, 1, 0, 10, 0.0, api_name="/denoise_ddim")
    assert time.perf_counter() - t0 < 30
    still_answers(client)


def test_a_1mb_name_or_query_elsewhere_answers_quickly(client):
    """The other free-text inputs: a model name (a dropdown that takes custom values) is
    refused; the latent map's text search reads the first 77 tokens of any query."""
    t0 = time.perf_counter()
    with pytest.raises(gradio_client.exceptions.AppError, match="nvalid model name") as err:
        client.predict(HUGE, "random", 0, 0, None, api_name="/traverse_encode")
    assert len(str(err.value)) <= 600
    try:
        client.predict(GOOD, "pca", 100, 0, "Smiling", HUGE, api_name="/latent_map")
    except gradio_client.exceptions.AppError as err:  # (a limit on queries would be fine too)
        assert "has raised an exception" not in str(err)
    assert time.perf_counter() - t0 < 30
    still_answers(client)


NON_LATIN = ["笑顔の人 😀", "лицо с улыбкой", "وجه مبتسم", "🙂🙃" * 10, "e\u0301"]


@pytest.mark.parametrize("text", NON_LATIN)
def test_emoji_and_non_latin_prompts_work(client, world, text):
    _needs_pipeline(world)
    grid, notice, seed = client.predict(**dict(PROMPT_ARGS, prompt=text, negative=text),
                                        api_name="/prompt_generate")
    assert Image.open(grid).size[0] > 0 and seed == 0 and "Seed 0" in notice
    still_answers(client)


@pytest.mark.parametrize("text", NON_LATIN)
def test_emoji_and_non_latin_names_get_a_clean_answer(client, text):
    with pytest.raises(gradio_client.exceptions.AppError) as err:
        client.predict(text, "random", 0, 0, None, api_name="/traverse_encode")
    assert text in str(err.value) and "nvalid model name" in str(err.value)  # intact round trip
    still_answers(client)


OUTSIDE = "/tmp/playground-security-outside"  # an absolute run name (not where a clone may live)


@pytest.mark.parametrize("name", ["../../etc", OUTSIDE, "..", "a/b", "runs/../../x",
                                  HUGE],
                         ids=lambda n: n[:12])
def test_unsafe_run_names_are_refused_by_the_train_tab(client, world, name):
    """Start / resume / cancel / status with a name that would leave runs/: refused before any
    file is touched (nothing opened outside the test's folders, no folder made)."""
    before = sorted(p.name for p in world["root"].iterdir())
    with _AUDIT as audit:
        for api, args in (("/train_start", (name, 4.0, 0.1, 100, 16, 0)),
                          ("/train_resume", (name, 1.0)), ("/train_cancel", (name,)),
                          ("/train_status", (name,))):
            with pytest.raises(gradio_client.exceptions.AppError,
                               match="nvalid run name") as err:
                client.predict(*args, api_name=api)
            assert len(str(err.value)) <= 600
    assert sorted(p.name for p in world["root"].iterdir()) == before
    assert not list(world["runs"].iterdir())
    assert not [p for p in audit.opened if "etc" in Path(p).parts or p.startswith(OUTSIDE)], \
        audit.opened


OUT_OF_RANGE_PROMPT = [dict(guidance=1e9), dict(guidance=-1), dict(steps=10**6),
                       dict(steps=0), dict(n_faces=10**6), dict(seed=-1)]


@pytest.mark.parametrize("change", OUT_OF_RANGE_PROMPT, ids=lambda c: str(c))
def test_out_of_range_prompt_settings_give_a_clear_error(client, world, change):
    _needs_pipeline(world)
    with pytest.raises(gradio_client.exceptions.ValidationError, match="must be between"):
        client.predict(**dict(PROMPT_ARGS, prompt="hi", **change), api_name="/prompt_generate")


OUT_OF_RANGE = [
    ("/synthfaces_grid", dict(seed=0, count=10**9)),
    ("/synthfaces_grid", dict(seed=-5, count=4)),
    ("/synthfaces_grid", dict(seed=2**40, count=4)),
    ("/traverse_grid", dict(n_dims=10**6)),
    ("/morph", None),
    ("/compare_betas", None),
    ("/latent_map", None),
    ("/latent_map_point", None),
]


def _out_of_range_args(api):
    if api == "/morph":
        return [GOOD, "random", 0, 0, None, "random", 1, 0, None, 10**6, "lerp"]
    if api == "/compare_betas":
        return ["random", 0, 0, None, "data", 0, 10**9, None, 0, 10**6]
    if api == "/latent_map":
        return [GOOD, "pca", 10**9, 0, "Smiling", ""]
    if api == "/latent_map_point":
        return [GOOD, 100, -1]
    return None


@pytest.mark.parametrize("api,kwargs", OUT_OF_RANGE, ids=lambda v: v if isinstance(v, str) else "")
def test_out_of_range_numbers_give_a_clear_error_quickly(client, api, kwargs):
    if api == "/traverse_grid":
        client.predict(GOOD, "random", 0, 0, None, api_name="/traverse_encode")
        args, kwargs = [kwargs["n_dims"], *[0.0] * 8], {}
    else:
        args = _out_of_range_args(api) or []
    t0 = time.perf_counter()
    # refused by the event's validator (before the queue) or by the handler
    with pytest.raises((gradio_client.exceptions.ValidationError,
                        gradio_client.exceptions.AppError)) as err:
        client.predict(*args, **(kwargs or {}), api_name=api)
    message = str(err.value)
    assert "has raised an exception" not in message, message  # a message, not a crash
    assert any(w in message for w in ("between", "maximum", "minimum", "must")), message
    assert time.perf_counter() - t0 < 10
    still_answers(client)


def test_slider_values_beyond_the_range_are_refused(client):
    client.predict(GOOD, "random", 0, 0, None, api_name="/traverse_encode")
    with pytest.raises(gradio_client.exceptions.AppError, match="maximum|lie in"):
        client.predict(*[1e9] * 8, api_name="/traverse_decode")


def test_the_join_limiter_answers_busy_once_its_admissions_are_full():
    """Queue joins held by a slow admission (as a validator holds them) fill the limiter;
    the next join is told 503 'Queue is full', other requests pass, and slots come back."""
    import asyncio

    from playground.app.join_limit import JoinLimiter

    release = asyncio.Event()

    async def slow_app(scope, receive, send):  # admits an event once `release` is set
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def request(limiter, method, path):
        sent = []

        async def send(message):
            sent.append(message)

        await limiter({"type": "http", "method": method, "path": path}, None, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    async def scenario():
        limiter = JoinLimiter(slow_app, max_in_flight=3)
        held = [asyncio.create_task(request(limiter, "POST", "/gradio_api/queue/join"))
                for _ in range(3)]
        await asyncio.sleep(0.01)
        status, body = await request(limiter, "POST", "/gradio_api/call/morph")
        assert status == 503 and b"Queue is full" in body
        other = asyncio.create_task(request(limiter, "GET", "/gradio_api/call/morph/abc"))
        release.set()  # the stream GET was never limited; the held joins finish
        assert [(await t)[0] for t in held] == [200, 200, 200] and (await other)[0] == 200
        assert limiter.in_flight == 0
        assert (await request(limiter, "POST", "/gradio_api/queue/join"))[0] == 200

    asyncio.run(scenario())
