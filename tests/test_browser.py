"""The app in a real browser: Debian's chromium driven by Playwright.

Opens every tab, moves a traversal slider and sees the decoded face change, and saves one
screenshot per tab (into $SCREENSHOT_DIR when set, e.g. assets/screens, else a tmp folder).
Skipped where chromium or playwright is missing (.ci/run installs chromium).
"""
import os
import shutil
from pathlib import Path

import pytest

from playground.pipelines import diffusion_models
from playground.pipelines import vae as ops
from tests.helpers import save_tiny_pipeline, save_tiny_vae

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-quic"]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    models = os.environ.get("BROWSER_TEST_REAL_MODELS") != "1"
    mp = pytest.MonkeyPatch()
    if models:  # tiny random VAEs: fast, and independent of what is in trained/
        root = tmp_path_factory.mktemp("models")
        for beta in (1.0, 4.0, 10.0):
            save_tiny_vae(root / "trained" / f"vae-beta{beta:g}", beta=beta, seed=int(beta))
        # a tiny latent-diffusion pipeline (T = 1000, like the shipped one) and judge
        save_tiny_pipeline(root / "trained", judge=True, num_timesteps=1000)
        mp.setenv("PLAYGROUND_TRAINED", str(root / "trained"))
        mp.setattr(ops, "REFERENCE_SIZE", 64)
    # runs the page starts (the Train tab's) go to a folder of this module's, with real models
    # too: never into the checkout's runs/, where a second session would find the first's
    runs = tmp_path_factory.mktemp("runs")
    mp.setenv("PLAYGROUND_RUNS", str(runs))
    ops.clear_model_cache()
    diffusion_models.clear_cache()
    import app

    demo = app.build_app()
    demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(  # as served, with its <head>
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True))
    try:
        yield demo.local_url
    finally:
        demo.close()
        mp.undo()
        ops.clear_model_cache()
        diffusion_models.clear_cache()


@pytest.fixture(scope="module")
def page(app_url):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        page.get_by_role("tab").first.wait_for(timeout=30_000)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open_tab(page, name):
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(500)


DECODED = "#traverse-decoded img"


def _decoded_src(page):
    image = page.locator(DECODED).first
    image.wait_for(timeout=20_000)
    return image.get_attribute("src")


def test_every_tab_opens_and_is_screenshotted(page, shots):
    names = [t.inner_text().strip() for t in page.get_by_role("tab").all()]
    assert names[:5] == ["Traverse", "Morph", "Denoise", "Prompt", "Latent map"]
    assert "SynthFaces" in names
    for name in names:
        _open_tab(page, name)
        assert page.get_by_role("tabpanel").first.is_visible()
        # the outputs the page draws on load are drawn before the picture is taken
        _settled_images(page.locator("[role=tabpanel]:visible").first)
        page.wait_for_function("() => !document.querySelector('.progress-text, .eta-bar')",
                               timeout=60_000)
        if name == "Traverse":  # its load-time encode also draws decoder(z) and the KL plot
            _decoded_src(page)
            page.locator("[role=tabpanel]:visible .js-plotly-plot").first.wait_for(timeout=20_000)
            page.wait_for_timeout(500)
        path = shots / f"tab_{name.lower().replace(' ', '_')}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000  # a real picture, not a blank page


def test_moving_a_traversal_slider_changes_the_face(page):
    _open_tab(page, "Traverse")
    before = _decoded_src(page)  # the page encodes a face on load
    slider = page.locator("input[type=range]").first
    slider.fill("3")  # drag to the end: a live .change event decodes one face
    page.wait_for_function("""src => {
        const img = document.querySelector("#traverse-decoded img");
        return img && img.getAttribute("src") !== src;
    }""", arg=before, timeout=20_000)
    assert _decoded_src(page) != before


def _src_changes(page, selector, before, timeout=30_000):
    page.wait_for_function("""([sel, src]) => {
        const img = document.querySelector(sel);
        return img && img.getAttribute("src") && img.getAttribute("src") !== src;
    }""", arg=[selector, before], timeout=timeout)


def test_denoise_forward_slider_and_ddim_run(page, shots):
    _open_tab(page, "Denoise")
    x_t = page.locator("#denoise-xt img").first
    x_t.wait_for(timeout=30_000)  # the page draws the forward process on load
    before = x_t.get_attribute("src")
    page.locator("#denoise-t input[type=range]").first.fill("900")  # a live .input event
    _src_changes(page, "#denoise-xt img", before)
    page.locator("#run-ddim").click()
    page.wait_for_function("""() => {
        const s = document.querySelector("#denoise-ddim-info");
        return s && s.innerText.includes("s of sampling");
    }""", timeout=60_000)
    assert page.locator("#denoise-ddim img").first.get_attribute("src")
    assert "DDIM, 50 steps" in page.locator("#denoise-ddim-info").inner_text()
    # the plot came once, with the run's first frame; the page moved its cursor to the last
    # step (the lowest timestep visited), label included
    page.wait_for_function(CURSOR_AT_LAST_STEP, arg="DDIM", timeout=10_000)
    page.screenshot(path=str(shots / "tab_denoise_run.png"), full_page=True)
    page.locator("#run-ddpm").click()
    page.wait_for_function("""() => {
        const s = document.querySelector("#denoise-ddpm-info");
        return s && s.innerText.includes("s of sampling");
    }""", timeout=60_000)
    page.wait_for_function(CURSOR_AT_LAST_STEP, arg="DDPM", timeout=10_000)


# The reverse plot's cursor line and label sit at the run's last timestep: the lowest of the
# visited dots (DDIM), or 0 (DDPM: no dots, every step).
CURSOR_AT_LAST_STEP = """(sampler) => {
    const plot = document.querySelector("#denoise-reverse-plot .js-plotly-plot");
    if (!plot || !plot.layout || !plot.layout.shapes || !plot.layout.annotations) return false;
    const visited = (plot._fullData || []).find(t => t.name === "timesteps visited");
    const last = visited ? Math.min(...Array.from(visited.x)) : 0;
    if ((sampler === "DDPM") === Boolean(visited)) return false;
    const text = String(plot.layout.annotations[0].text);
    return plot.layout.shapes[0].x0 === last && text.startsWith(`${sampler}: t = ${last}, ᾱ = `);
}"""


def test_prompt_generate_shows_faces_and_the_seed(page, shots):
    _open_tab(page, "Prompt")
    page.locator("#prompt-text textarea").first.fill("a smiling man with glasses")
    page.locator("#prompt-generate").click()
    page.locator("#prompt-grid img").first.wait_for(timeout=60_000)
    page.wait_for_function("""() => {
        const s = document.querySelector("#prompt-notice");
        return s && s.innerText.includes("Seed");
    }""", timeout=30_000)
    notice = page.locator("#prompt-notice").inner_text()
    assert "Smiling" in notice and "Eyeglasses" in notice
    page.screenshot(path=str(shots / "tab_prompt_run.png"), full_page=True)


def test_synthfaces_grid_button_draws_faces(page):
    _open_tab(page, "SynthFaces")
    page.get_by_role("button", name="Generate").click()
    image = page.locator("#synthfaces-grid img").first
    image.wait_for(timeout=20_000)
    assert image.get_attribute("src")


def test_train_tab_runs_a_tiny_vae_and_shows_its_curve_and_samples(page, shots, tmp_path,
                                                                   monkeypatch):
    from playground.app import train_settings

    # A tiny model and 4 steps (the server runs in this process), in a runs/ of its own.
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(train_settings, "SETTINGS", train_settings.JobSettings(
        latent_dim=8, channels=(8, 16), eval_size=16, log_every=1, max_steps=4, cpu_threads=1,
        poll_seconds=0.1))
    _open_tab(page, "Train")
    page.locator("#train-name textarea, #train-name input").first.fill("browser-run")
    page.locator("#train-start").click()
    page.wait_for_function("""() => {
        const s = document.querySelector("#train-status");
        return s && s.innerText.includes("finished");
    }""", timeout=60_000)
    assert "browser-run" in page.locator("#train-status").inner_text()
    page.locator("#train-grid img").first.wait_for(timeout=20_000)
    assert page.locator(".js-plotly-plot").count() >= 1  # the loss curve
    page.screenshot(path=str(shots / "tab_train_run.png"), full_page=True)
    assert (tmp_path / "runs" / "browser-run" / "metrics.json").is_file()


def _images(panel) -> list:
    return [img.get_attribute("src") for img in panel.locator("img").all()]


def _settled_images(panel, timeout=30.0) -> list:
    """The panel's image sources once they stop changing for a second."""
    import time

    end, last = time.monotonic() + timeout, None
    while time.monotonic() < end:
        now = _images(panel)
        if now == last:
            return now
        last = now
        panel.page.wait_for_timeout(1000)
    return last


# tab, field (its label), a bad value, the button that would run it, what the message says
BAD_INPUTS = [
    ("Traverse", "seed", "-5", "Encode", "seed must be between 0 and 2147483647, got -5"),
    ("Morph", "seed of the random z", "1e12", "Compare βs", "seed of the random z must be"),
    ("Denoise", "noise seed (ε)", "-1", "Noise it", "noise seed must be between 0 and"),
    ("Prompt", "seed", "2.5", "Generate", "seed must be a whole number, got 2.5"),
    ("Latent map", "seed (t-SNE / UMAP)", "-3", "Show map", "seed must be between 0 and"),
    ("Train", "β", "-1", "Start", "β must be between 0 and 100, got -1"),
    ("SynthFaces", "Seed", "", "Generate", "Seed is empty: enter a whole number"),
]


@pytest.mark.parametrize("tab,field,value,button,message", BAD_INPUTS, ids=lambda v: v)
def test_a_bad_value_is_named_under_its_field_and_nothing_else_changes(page, tab, field, value,
                                                                       button, message):
    _open_tab(page, tab)
    panel = page.locator("[role=tabpanel]:visible").first
    images = _settled_images(panel)  # what the page drew on load
    box = panel.get_by_label(field, exact=True).first
    box.fill(value)
    panel.get_by_role("button", name=button, exact=True).first.click()
    error = panel.locator(".validation-error", has_text=message).first
    error.wait_for(timeout=20_000)
    page.wait_for_timeout(500)  # anything the event would have drawn has had time to arrive
    assert _images(panel) == images
    assert page.get_by_text("Error", exact=True).count() == 0  # no red badge, no bare toast
    box.fill("0" if tab != "Train" else "1")  # put it right: the message goes away
    panel.get_by_role("button", name=button, exact=True).first.click()
    page.wait_for_function("""msg => ![...document.querySelectorAll('.validation-error')]
        .some(e => e.innerText.includes(msg))""", arg=message, timeout=20_000)


# The pixel centre of the point farthest right on the map (no other point covers it), and its
# face index; Plotly's axes map data to pixels (l2p) inside the plot area (_offset). _fullData
# holds the decoded arrays (the figure sends them base64-encoded).
RIGHTMOST_POINT = """() => {
    const plot = document.querySelector("#latent-map-plot .js-plotly-plot");
    let best = null;
    for (const trace of plot._fullData) {
        for (let i = 0; i < trace.x.length; i++) {
            if (!best || trace.x[i] > best.x)
                best = {x: trace.x[i], y: trace.y[i], index: trace.customdata[i]};
        }
    }
    const box = plot.getBoundingClientRect();
    const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis;
    return {index: best.index, px: box.left + xa._offset + xa.l2p(best.x),
            py: box.top + ya._offset + ya.l2p(best.y)};
}"""

CHOSEN_MARK = """() => {
    const plot = document.querySelector("#latent-map-plot .js-plotly-plot");
    const mark = plot._fullData.find(t => t.name === "chosen face");
    return mark ? {index: mark.customdata[0], x: mark.x[0]} : null;
}"""


def test_hovering_and_clicking_a_point_on_the_latent_map_shows_its_face(page):
    _open_tab(page, "Latent map")
    panel = page.locator("[role=tabpanel]:visible").first
    panel.get_by_role("radio", name="PCA").check()  # the map follows the choice (instant)
    page.wait_for_function("""() => {
        const plot = document.querySelector("#latent-map-plot .js-plotly-plot");
        return plot && plot.data && plot.data.length && plot.layout.title &&
               String(plot.layout.title.text || plot.layout.title).includes("PCA");
    }""", timeout=60_000)
    page.wait_for_timeout(500)  # the plot settles (Plotly resizes it once)
    point = page.evaluate(RIGHTMOST_POINT)
    face = page.locator("#latent-map-face img")
    before = face.first.get_attribute("src") if face.count() else None

    # hovering shows the point's face beside the mouse, cut from the figure's sprite sheet
    page.mouse.move(point["px"] - 30, point["py"])
    page.mouse.move(point["px"], point["py"])
    thumb = page.wait_for_function("""i => {
        const box = document.getElementById("latent-map-thumb");
        return box && box.style.display === "block" && box.dataset.index === String(i) &&
               box.style.backgroundImage.includes("data:image/webp") && box;
    }""", arg=point["index"], timeout=10_000)
    shown = thumb.evaluate("""b => {
        const t = document.querySelector("#latent-map-plot .js-plotly-plot").layout.meta.thumbs;
        return {width: b.clientWidth, position: b.style.backgroundPosition, cols: t.cols};
    }""")
    row, col = divmod(point["index"], shown["cols"])
    assert shown["width"] == 64  # a 32-pixel tile at twice its size, as the faces are shown
    assert shown["position"] == f"{-col * 64}px {-row * 64}px"  # that face's tile
    page.mouse.move(5, 5)  # off the map: the thumbnail goes
    page.wait_for_function(
        "() => document.getElementById('latent-map-thumb').style.display === 'none'",
        timeout=10_000)

    _click_point(page, point)
    page.get_by_text(f"SynthFaces test face #{point['index']}").first.wait_for(timeout=30_000)
    assert face.first.get_attribute("src") != before
    mark = page.evaluate(CHOSEN_MARK)
    assert mark is not None and mark["index"] == point["index"]

    # typing an index moves the ring to that face
    other = 0 if point["index"] != 0 else 1
    box = page.locator("#latent-map-index input")
    box.fill(str(other))
    page.locator("#latent-map-show-face").click()
    page.get_by_text(f"SynthFaces test face #{other}").first.wait_for(timeout=30_000)
    assert page.evaluate(CHOSEN_MARK)["index"] == other


def _click_point(page, point):
    """Click the map at `point` and wait for its index in the index box."""
    page.mouse.move(point["px"] - 30, point["py"])
    page.mouse.move(point["px"], point["py"])
    page.wait_for_timeout(200)  # plotly.js clicks the point it hovers: let the hover land
    page.mouse.down()
    page.wait_for_timeout(100)
    page.mouse.up()
    page.wait_for_function("i => document.querySelector('#latent-map-index input').value == i",
                           arg=str(point["index"]), timeout=10_000)


def test_the_new_lessons_answer_in_the_page(page, shots):
    """Guidance taken apart and a face inverted (Prompt), an attribute slider (Traverse), the
    morph in both worlds (Morph), DPM-Solver++ (Denoise): each draws its picture."""
    _open_tab(page, "Prompt")
    page.locator("#prompt-anatomy").click()
    page.locator("#prompt-anatomy-picture img").first.wait_for(timeout=60_000)
    page.locator("#prompt-invert").click()
    page.locator("#prompt-invert-picture img").first.wait_for(timeout=60_000)
    page.get_by_text("DDIM round trip").first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "tab_prompt_lessons.png"), full_page=True)

    _open_tab(page, "Traverse")
    before = _decoded_src(page)
    page.get_by_text("Attribute vectors: edit by arithmetic").first.click()
    edit = page.locator("#traverse-edit-1 input[type=range]").first  # + Eyeglasses
    edit.wait_for(timeout=20_000)
    edit.fill("2")
    _src_changes(page, DECODED, before, timeout=60_000)
    page.screenshot(path=str(shots / "tab_traverse_attributes.png"), full_page=True)

    _open_tab(page, "Morph")
    panel = page.locator("[role=tabpanel]:visible").first
    panel.get_by_role("button", name="Morph in both worlds").click()
    page.get_by_text("Judge's mean step between frames").first.wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "tab_morph_both_worlds.png"), full_page=True)

    _open_tab(page, "Denoise")
    panel = page.locator("[role=tabpanel]:visible").first
    page.locator("#denoise-frontier").get_by_text("frontier").first.wait_for(timeout=20_000)
    panel.get_by_role("radio", name="DPM-Solver++ (2M)").check()
    page.locator("#run-ddim").click()
    page.wait_for_function("""() => {
        const s = document.querySelector("#denoise-ddim-info");
        return s && s.innerText.includes("DPM-Solver++(2M)") && s.innerText.includes("on the server");
    }""", timeout=60_000)
