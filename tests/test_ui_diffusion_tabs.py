"""The Denoise and Prompt tabs through gradio_client against the launched app, on a tiny
latent-diffusion pipeline (T = 20) and a tiny judge saved in a tmp folder; and without any
diffusion model (the forward process still works, the rest says "not trained yet")."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from playground.app import common, diffusion_picker, prompt
from playground.data.images import tensor_to_images
from playground.pipelines import diffusion_models, face_sources, forward_process
from playground.pipelines import vae as ops
from tests.helpers import TINY_T, save_tiny_pipeline

gradio_client = pytest.importorskip("gradio_client")

SHOWN = 256  # a 64 px face shown at 4×


def _image(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _launch():
    import app

    demo = app.build_app()
    demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True))
    return demo


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion")
    save_tiny_pipeline(root / "trained", judge=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("PLAYGROUND_TRAINED", str(root / "trained"))
    mp.setenv("PLAYGROUND_RUNS", str(root / "runs"))
    diffusion_models.clear_cache()
    demo = _launch()
    try:
        yield gradio_client.Client(demo.local_url, verbose=False)
    finally:
        demo.close()
        mp.undo()
        diffusion_models.clear_cache()


# ------------------------------------------------------------------------------ Denoise
def _forward(client, t=5, model="ldm", source="random", seed=0, index=0, noise_seed=0):
    return client.predict(model, source, seed, index, None, t, noise_seed,
                          api_name="/denoise_forward")


def test_forward_process_pictures_plot_and_notice(client):
    x0, eps, x_t, z_t, z_dec, plot, notice = _forward(client, t=TINY_T - 1)
    for path in (x0, eps, x_t, z_t, z_dec):
        assert _image(path).shape == (SHOWN, SHOWN, 3)
    assert f"t = {TINY_T - 1}" in notice and "Schedule of **ldm**" in notice
    assert plot is not None
    # what the core computes for the same face, t and noise seed (shown 4× larger)
    face = face_sources.random_face(0)
    expected = forward_process.noised_images(face[None], TINY_T - 1, 0,
                                             diffusion_models.get_pipeline().schedule)
    assert np.array_equal(_image(x0)[::4, ::4], face)
    assert np.array_equal(_image(x_t)[::4, ::4], expected["x_t"][0])
    assert np.array_equal(_image(eps)[::4, ::4], expected["noise"][0])


def test_forward_without_a_model_uses_the_default_schedule(client):
    out = _forward(client, t=999, model=None, source="data", index=3)
    assert "Default schedule" in out[6] and "t = 999" in out[6]
    assert _image(out[2]).shape == (SHOWN, SHOWN, 3)


def test_an_upload_is_noised(client, tmp_path):
    path = tmp_path / "me.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8)).save(path)
    out = client.predict("ldm", 0, 0, gradio_client.handle_file(str(path)), 3, 0,
                         api_name="/denoise_forward_upload")
    assert _image(out[0]).shape == (SHOWN, SHOWN, 3)
    assert "uploaded me.png: cropped 120×90 → 90×90, resized to 64×64" in out[6]


@pytest.mark.parametrize("kwargs,message", [
    (dict(t=TINY_T), f"between 0 and {TINY_T - 1}"),
    (dict(noise_seed=-1), "noise seed must be between 0 and 2147483647, got -1"),
    (dict(model="nope"), "No model named 'nope'"),
    (dict(source="data", index=9999), "maximum|between 0 and 4999"),
])
def test_bad_forward_input_gives_a_clear_error_and_the_app_still_answers(client, kwargs, message):
    with pytest.raises(Exception, match=message):
        _forward(client, **kwargs)
    assert _image(_forward(client)[2]).shape == (SHOWN, SHOWN, 3)


def _run(client, api, prompt="a smiling man", guidance=3.0, faces=2, seed=0, steps=10, eta=0.0,
         model="ldm"):
    return client.predict(model, prompt, guidance, faces, seed, steps, eta, api_name=api)


def _grid_shape(faces: int) -> tuple:
    # 3 rows (latent x_t, decoded x_t, decoded x̂_0) of 128 px faces with 2 px gaps; 100 px labels
    return (common.LABEL_BADGE_PX + 3 * 130 + 2, 100 + faces * 130 + 2, 3)


def test_ddim_streams_to_the_sample_with_time_and_gif(client):
    ddim, info, _, _, plot, gif, _ = _run(client, "/denoise_ddim", faces=3, steps=10)
    assert _image(ddim).shape == _grid_shape(3)
    assert "DDIM, 10 steps, η = 0" in info and "s of sampling for 3 face(s)" in info
    assert gif.endswith(".gif") and Image.open(gif).n_frames >= 2
    # the last row of the final frame is the pipeline's sample for the same seed
    pipe = diffusion_models.get_pipeline("ldm")
    expected = tensor_to_images(pipe.sample(["a smiling man"] * 3, guidance=3.0,
                                                  steps=10, seed=0))
    picture = _image(ddim)
    top, left = common.LABEL_BADGE_PX + 2 + 2 * 130, 100 + 2
    for i in range(3):
        cell = picture[top:top + 128:2, left + i * 130:left + i * 130 + 128:2]
        assert np.array_equal(cell, expected[i])


def test_dpm_solver_runs_in_the_few_step_column(client):
    few, info, *_ = client.predict("ldm", "a smiling man", 3.0, 2, 0, 10, 0.0, "dpm++",
                                   api_name="/denoise_ddim")
    assert "DPM-Solver++(2M), 10 steps" in info
    pipe = diffusion_models.get_pipeline("ldm")
    expected = tensor_to_images(pipe.sample(["a smiling man"] * 2, guidance=3.0,
                                                  sampler="dpm++", steps=10, seed=0))
    picture = _image(few)
    top, left = common.LABEL_BADGE_PX + 2 + 2 * 130, 100 + 2
    for i in range(2):
        assert np.array_equal(picture[top:top + 128:2, left + i * 130:left + i * 130 + 128:2],
                              expected[i])
    with pytest.raises(Exception, match="few-step sampler must be one of"):
        client.predict("ldm", "", 1.0, 1, 0, 10, 0.0, "euler", api_name="/denoise_ddim")


def test_ddpm_and_both(client):
    _, _, ddpm, info, _, _, gif = _run(client, "/denoise_ddpm", faces=1)
    assert _image(ddpm).shape == _grid_shape(1)
    assert f"DDPM, {TINY_T} steps" in info and gif.endswith(".gif")
    ddim, ddim_info, ddpm2, ddpm_info, _, ddim_gif, ddpm_gif = _run(client, "/denoise_run",
                                                                     faces=1, guidance=1.0)
    assert "DDIM" in ddim_info and "DDPM" in ddpm_info and "guidance doubles" not in ddpm_info
    assert ddim_gif.endswith(".gif") and ddpm_gif.endswith(".gif")
    assert not np.array_equal(_image(ddim), _image(ddpm2))  # different paths, same x_T


@pytest.mark.parametrize("kwargs,message", [
    (dict(steps=5), "DDIM steps S must be between 10 and 100, got 5"),
    (dict(eta=2.0), "maximum|η must be between 0 and 1"),
    (dict(guidance=16.0), "guidance w must be between 0 and 15, got 16"),
    (dict(faces=5), "faces must be between 1 and 4, got 5"),
    (dict(prompt="x" * 100_000), "100,000 characters long|maximum"),
    (dict(model="nope"), "No model named 'nope'"),
])
def test_bad_run_input_gives_a_clear_error_and_the_app_still_answers(client, kwargs, message):
    with pytest.raises(Exception, match=message):
        _run(client, "/denoise_ddim", **kwargs)
    assert _image(_forward(client)[2]).shape == (SHOWN, SHOWN, 3)  # the app still answers


# ------------------------------------------------------------------------------ Prompt
def _generate(client, text="a smiling woman with blond hair", negative="", guidance=7.5,
              steps=10, seed=3, randomize=False, faces=4, model="ldm"):
    return client.predict(model, text, negative, guidance, steps, seed, randomize, faces,
                          api_name="/prompt_generate")


def test_generate_grid_seed_and_determinism(client):
    grid, notice, seed = _generate(client)
    image = _image(grid)
    assert image.shape == (3 + 195, 3 + 4 * 195, 3)  # 4 faces at 3× with 3 px gaps
    assert seed == 3 and "**Seed 3**" in notice and "Blond_Hair" in notice
    assert np.array_equal(_image(_generate(client)[0]), image)
    pipe = diffusion_models.get_pipeline("ldm")
    first = tensor_to_images(pipe.sample(["a smiling woman with blond hair"] * 4,
                                               guidance=7.5, steps=10, seed=3))[0]
    assert np.array_equal(image[3:3 + 192:3, 3:3 + 192:3], first)


def test_randomise_draws_and_shows_a_new_seed(client):
    grid, notice, seed = _generate(client, randomize=True, faces=2)
    assert isinstance(seed, (int, float)) and f"**Seed {int(seed)}**" in notice
    again, _, _ = _generate(client, seed=int(seed), faces=2)
    assert np.array_equal(_image(again), _image(grid))


@pytest.mark.parametrize("text,expected", [
    ("", "Empty prompt: unconditional faces"),
    ("a dragon", "names no attribute the model knows"),
    ("a smiling dragon", "never read in a training caption.*“dragon”"),
    ("a smiling man with glasses " * 5, "The prompt was cut"),
])
def test_prompt_notices(client, text, expected):
    _, notice, _ = _generate(client, text=text, faces=1)
    assert __import__("re").search(expected, notice), notice


def test_the_notice_names_what_this_model_draws_poorly(client):
    import os

    from playground.store.files import atomic_write_json, read_json

    path = Path(os.environ["PLAYGROUND_TRAINED"]) / "ldm" / "metrics.json"
    before = read_json(path) if path.is_file() else {}
    sweep = [{"prompt": "a person with glasses", "targets": {"Eyeglasses": 1},
              "w": [1.0, 7.5], "accuracy": [0.2, 0.07]},
             {"prompt": "a person with blond hair", "targets": {"Blond_Hair": 1},
              "w": [1.0, 7.5], "accuracy": [0.9, 1.0]}]
    words = {"per_attribute": {"Eyeglasses": 4e-6, "Blond_Hair": 6e-3, "Smiling": -1e-5}}
    atomic_write_json(path, {**before, "guidance_per_prompt": sweep, "word_sensitivity": words})
    try:
        _, notice, _ = _generate(client, text="a blond person with glasses", faces=1)
        assert "draws Eyeglasses poorly" in notice and "Eyeglasses on 7%" in notice
        assert "Blond_Hair on" not in notice  # drawn well: not named
        assert "by 4.0e-06 (Eyeglasses), against 6.0e-03 for Blond_Hair" in notice
        assert "barely reads them" in notice
        words["per_attribute"]["Eyeglasses"] = 1e-3  # read, yet drawn poorly
        atomic_write_json(path, {**before, "guidance_per_prompt": sweep, "word_sensitivity": words})
        _, notice, _ = _generate(client, text="a person with glasses", faces=1)
        assert "1.0e-03 (Eyeglasses)" in notice and "barely" not in notice
        _, notice, _ = _generate(client, text="a person with blond hair", faces=1)
        assert "poorly" not in notice
    finally:
        atomic_write_json(path, before)


def test_generate_uses_the_sampler_measured_fastest_and_says_why(client):
    import os

    from playground.store.files import atomic_write_json, read_json

    path = Path(os.environ["PLAYGROUND_TRAINED"]) / "ldm" / "metrics.json"
    before = read_json(path) if path.is_file() else {}
    reference = {"sampler": "DDIM", "method": "ddim", "eta": 0.0, "steps": 50, "nfe": 50,
                 "fd": 3.0, "n": 100}
    fastest = {"sampler": "DPM++ 2M", "method": "dpm++", "eta": 0.0, "steps": 20, "nfe": 20,
               "fd": 2.9, "n": 100}
    part = {"guidance": 7.5, "rows": [reference, fastest], "reference": reference,
            "fastest": {**fastest, "saving": 2.5}}
    frontier = {"unconditional": {**part, "guidance": 1.0}, "captioned": part}
    text = "a smiling woman with blond hair"
    atomic_write_json(path, {**before, "solver_frontier": frontier})
    try:
        grid, notice, _ = _generate(client, text=text, faces=1, steps=10)
        assert "DPM-Solver++ (2M) 10 steps" in notice
        assert "2.5× fewer U-Net evaluations" in notice and "2.90 vs 3.00" in notice
        pipe = diffusion_models.get_pipeline("ldm")
        dpm = tensor_to_images(pipe.sample([text], guidance=7.5, steps=10, seed=3,
                                           sampler="dpm++"))[0]
        ddim = tensor_to_images(pipe.sample([text], guidance=7.5, steps=10, seed=3))[0]
        assert np.array_equal(_image(grid)[3:3 + 192:3, 3:3 + 192:3], dpm)
        assert not np.array_equal(dpm, ddim)
        table = client.predict("ldm", api_name="/denoise_frontier")
        assert "reaches DDIM-50's FD (2.90 vs 3.00)" in table
    finally:
        atomic_write_json(path, before)
    _, notice, _ = _generate(client, text=text, faces=1, steps=10)
    assert "DDIM 10 steps" in notice and "frontier was not measured" in notice
    assert "not measured" in client.predict("ldm", api_name="/denoise_frontier")


@pytest.mark.parametrize("kwargs,message", [
    (dict(text="x" * 100_000), "100,000 characters long|maximum"),
    (dict(guidance=-1.0), "guidance scale w must be between 0 and 15, got -1"),
    (dict(steps=500), "steps .*must be between 5 and 100, got 500"),
    (dict(faces=0), "faces must be between 1 and 8, got 0"),
    (dict(seed=-5), "minimum|seed must be between"),
])
def test_bad_prompt_input_gives_a_clear_error_and_the_app_still_answers(client, kwargs, message):
    with pytest.raises(Exception, match=message):
        _generate(client, **kwargs)
    assert _image(_generate(client, faces=1)[0]).shape == (198, 198, 3)


def test_guidance_sweep_rows_and_table(client):
    grid, table = client.predict("ldm", "a smiling man", "", 10, 1, 2, api_name="/prompt_sweep")
    # 4 rows (w = 1, 3, 7.5, 12) of 2 faces at 2×, 70 px labels
    assert _image(grid).shape == (common.LABEL_BADGE_PX + 4 * 130 + 2, 70 + 2 * 130 + 2, 3)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "|---" not in line]
    assert [r.split("|")[1].strip() for r in rows[1:5]] == ["1", "3", "7.5", "12"]
    for row in rows[1:5]:
        accuracy, diversity = (float(c) for c in row.split("|")[2:4])
        assert 0 <= accuracy <= 1 and diversity >= 0
    assert "Smiling" in table


def test_sweep_without_a_judge_says_so(client, monkeypatch):
    monkeypatch.setattr(diffusion_models, "get_judge", lambda name="judge": None)
    *_, (grid, table) = list(prompt.sweep("ldm", "a smiling man", "", 10, 0, 2))
    assert "No judge model" in table and "| 1 | – | – |" in table


def test_random_seed_button(client):
    assert 0 <= client.predict(api_name="/prompt_random_seed") <= 2**31 - 1


def test_refresh_lists_the_pipeline(client):
    assert client.predict("gone", api_name="/denoise_models")["value"] == "ldm"
    assert client.predict("ldm", api_name="/prompt_models")["value"] == "ldm"


# ------------------------------------------------------------------------------ no model
def test_without_a_diffusion_model(tmp_path):
    mp = pytest.MonkeyPatch()
    mp.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    mp.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    diffusion_models.clear_cache()
    try:
        assert "Model not trained yet" in diffusion_picker.no_pipeline_message()
        demo = _launch()
        try:
            c = gradio_client.Client(demo.local_url, verbose=False)
            out = c.predict(None, "random", 0, 0, None, 100, 0, api_name="/denoise_forward")
            assert _image(out[2]).shape == (SHOWN, SHOWN, 3)
            with pytest.raises(Exception, match="not trained yet"):
                c.predict(None, "", 1.0, 1, 0, 10, 0.0, api_name="/denoise_ddim")
            with pytest.raises(Exception, match="not trained yet"):
                c.predict(None, "a man", "", 7.5, 10, 0, False, 1, api_name="/prompt_generate")
            with pytest.raises(Exception, match="not trained yet"):
                c.predict("ldm", "a man", "", 10, 0, 2, api_name="/prompt_sweep")
        finally:
            demo.close()
    finally:
        mp.undo()
        diffusion_models.clear_cache()


def test_stop_says_where_each_running_sampler_stopped(client):
    running = "**DDPM, 1000 steps** — step 101/1000, t = 899 · 6.31 s so far"
    finished = "**DDIM, 50 steps, η = 0**: 1.20 s of sampling for 2 face(s)"
    ddim, ddpm = client.predict(finished, running, api_name="/denoise_stop")
    assert ddim == finished  # a finished run keeps its summary
    assert ddpm.startswith("**Stopped**") and "step 101/1000" in ddpm and "so far" not in ddpm


def test_guidance_taken_apart_at_one_step(client):
    from playground.diffusion import ddim_sample_progressive
    from playground.pipelines.guidance_step import guidance_at_step

    picture, text = client.predict("ldm", "a smiling man", "", 7.5, 10, 3, 4,
                                   api_name="/prompt_guidance_step")
    assert "Step 4 of 10" in text and "w = 7.5" in text
    image = _image(picture)
    # one row of 5 faces at 3× with 3 px gaps, under the badge band and the column titles
    assert image.shape == (common.LABEL_BADGE_PX + 18 + 3 + 195, 70 + 3 + 5 * 195, 3)
    pipe = diffusion_models.get_pipeline("ldm")
    view = guidance_at_step(pipe, "a smiling man", 7.5, 10, 3, seed=3)
    # the guided guess is the conditional one pushed w - 1 = 6.5 times the gap further:
    # its shift equals (w - 1) · sqrt(1/ᾱ_t - 1) · RMS(ε_c − ε_∅)
    abar = float(pipe.schedule.alphas_cumprod[view["t"]])
    assert view["x0_shift_rms"] == pytest.approx(6.5 * (1 / abar - 1) ** 0.5
                                                 * view["eps_gap_rms"], rel=1e-4)
    assert view["push_rms"] == pytest.approx(6.5 * view["eps_gap_rms"], rel=1e-4)
    # x_t is where the guided DDIM run stands after 3 steps
    x_T, _ = pipe.initial_noise(1, 3)
    steps = list(ddim_sample_progressive(pipe.denoiser(7.5), x_T, pipe.schedule, 10, 0.0,
                                         pipe.encode_prompts(["a smiling man"])))
    expected = tensor_to_images(pipe.decode(steps[2].x_t))[0]
    assert np.array_equal(view["images"][0], expected)
    with pytest.raises(Exception, match="(?i)step must be between 1 and 10, got 11"):
        client.predict("ldm", "a smiling man", "", 7.5, 10, 3, 11,
                       api_name="/prompt_guidance_step")


def test_a_face_is_inverted_and_re_prompted(client):
    from playground.pipelines.inversion import invert_and_edit

    picture, text = client.predict("ldm", "data", 0, 3, None, "", "a person wearing a hat", 1.0,
                                   20, api_name="/prompt_invert")
    assert "SynthFaces test face #3" in text and "DDIM round trip" in text
    image = _image(picture)
    assert image.shape == (common.LABEL_BADGE_PX + 18 + 3 + 195, 60 + 3 + 4 * 195, 3)
    pipe = diffusion_models.get_pipeline("ldm")
    out = invert_and_edit(pipe, face_sources.dataset_face(3), "", "a person wearing a hat", 1.0, 20)
    top, left = common.LABEL_BADGE_PX + 18 + 3, 60 + 3
    for j in range(4):  # the four pictures are the core's, cell by cell
        cell = image[top:top + 192:3, left + j * 195:left + j * 195 + 192:3]
        assert np.array_equal(cell, out["images"][j])
    assert f"{out['psnr']['round_trip']:.1f} dB" in text


def test_a_morph_in_both_worlds_and_its_smoothness(client):
    import os
    import shutil

    from playground.app import morph
    from playground.pipelines.inversion import diffusion_morph, invert, path_smoothness
    from tests.helpers import save_tiny_vae

    pipe = diffusion_models.get_pipeline("ldm")
    a, b = face_sources.random_face(1), face_sources.random_face(2)
    frames = diffusion_morph(pipe, a, b, frames=4, steps=10)
    assert frames.shape == (4, 64, 64, 3) and frames.dtype == np.uint8
    x_T = invert(pipe, np.stack([a, b]), "", 1.0, 10)  # the ends are the two round trips
    ends = tensor_to_images(pipe.sample(["", ""], guidance=1.0, steps=10, x_T=x_T))
    # the same latents sampled in a batch of 4 and of 2: equal up to float rounding (the two
    # batch sizes may take other kernels), at most a level or two of 255
    for frame, end in ((frames[0], ends[0]), (frames[-1], ends[1])):
        assert np.abs(frame.astype(int) - end).max() <= 2
    judge = diffusion_models.get_judge()
    still = path_smoothness(judge, np.repeat(frames[:1], 4, axis=0))
    assert still == pytest.approx(0.0, abs=1e-5) and path_smoothness(judge, frames) > still
    folder = Path(os.environ["PLAYGROUND_TRAINED"]) / "vae-beta1"
    save_tiny_vae(folder, beta=1.0, seed=1)
    try:
        picture, notice = morph.both_worlds("vae-beta1", "random", 1, 0, None, "random", 2, 0,
                                            None, 4)
        assert picture.shape == (common.LABEL_BADGE_PX + 2 + 2 * 130, 150 + 2 + 4 * 130, 3)
        assert "β-VAE **" in notice and "diffusion **" in notice
    finally:
        shutil.rmtree(folder)
        ops.clear_model_cache()
