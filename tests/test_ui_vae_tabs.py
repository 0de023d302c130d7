"""The Traverse and Morph tabs through gradio_client, on tiny random β-VAEs in a tmp folder."""
import numpy as np
import pytest
from PIL import Image

from playground.app import common, traverse
from playground.pipelines import face_sources, latent_paths
from playground.pipelines import vae as ops
from tests.helpers import save_tiny_vae

gradio_client = pytest.importorskip("gradio_client")

BETAS = (1.0, 4.0, 10.0)
SHOWN = 64 * common.SHOW_SCALE  # one face as displayed: 256 px


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """trained/ holds vae-beta1 and vae-beta10, runs/ holds vae-beta4 (both folders listed)."""
    root = tmp_path_factory.mktemp("models")
    for beta in BETAS:
        where = "runs" if beta == 4.0 else "trained"
        save_tiny_vae(root / where / f"vae-beta{beta:g}", beta=beta, seed=int(beta))
    mp = pytest.MonkeyPatch()
    mp.setenv("PLAYGROUND_TRAINED", str(root / "trained"))
    mp.setenv("PLAYGROUND_RUNS", str(root / "runs"))
    mp.setattr(ops, "REFERENCE_SIZE", 64)  # a small KL reference batch keeps the tests fast
    ops.clear_model_cache()
    yield root
    mp.undo()
    ops.clear_model_cache()


def _launch():
    import app

    demo = app.build_app()
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None,
                        quiet=True)
    return demo


@pytest.fixture(scope="module")
def client(tiny_models):
    demo = _launch()  # the env vars are set: the dropdowns list the tiny models
    try:
        yield gradio_client.Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def _image(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _frames(path) -> int:
    return Image.open(path).n_frames


def _encode(client, source="random", seed=0, index=0, upload=None, model="vae-beta10"):
    return client.predict(model, source, seed, index, upload, api_name="/traverse_encode")


# ------------------------------------------------------------------------------ Traverse
def test_models_of_trained_and_runs_are_listed(client, tiny_models):
    assert common.model_names() == ["vae-beta1", "vae-beta10", "vae-beta4"]
    update = client.predict("gone", api_name="/traverse_models")
    assert update["value"] == "vae-beta1"  # Traverse opens on the model that keeps faces
    assert [c[0] for c in update["choices"]] == ["vae-beta1", "vae-beta10", "vae-beta4"]
    assert client.predict("gone", api_name="/latent_map_models")["value"] == "vae-beta10"
    assert client.predict("vae-beta4", api_name="/morph_models")["value"] == "vae-beta4"


@pytest.mark.parametrize("source", ["random", "data"])
def test_encode_shows_the_face_its_decoding_and_labels_the_sliders(client, source):
    out = _encode(client, source, seed=3, index=7)
    face, decoded, *sliders, plot, notice = out
    sliders, edits = sliders[:traverse.N_SLIDERS], sliders[traverse.N_SLIDERS:]
    assert edits == [0.0] * len(traverse.EDIT_VECTORS)  # a new face starts unedited
    assert _image(face).shape == (SHOWN, SHOWN, 3) and _image(decoded).shape == (SHOWN, SHOWN, 3)
    expected = face_sources.random_face(3) if source == "random" else face_sources.dataset_face(7)
    assert np.array_equal(_image(face)[::common.SHOW_SCALE, ::common.SHOW_SCALE], expected)
    assert len(sliders) == traverse.N_SLIDERS
    order, kl = ops.dims_by_kl(ops.get_model("vae-beta10"))
    assert sliders[0]["label"] == f"z[{order[0]}] (KL {kl[order[0]]:.2f} nats)"
    assert "vae-beta10" in notice and ("seed 3" in notice or "#7" in notice)
    assert plot is not None
    # the boxes read z_d on the slider's grid (0.40, not 0.39161235), and the decoded face is
    # the decoding of exactly those values
    values = [s["value"] for s in sliders]
    assert all(abs(v * 20 - round(v * 20)) < 1e-9 and v == round(v, 2) for v in values)
    model = ops.get_model("vae-beta10")
    z = ops.encode_mean(model, expected[None])[0]
    assert np.abs(np.asarray(values) - np.clip(z[order[:8]], -3, 3)).max() <= 0.025 + 1e-6
    decoded_there = ops.decode(model, latent_paths.with_values(z, order[:8], values)[None])[0]
    assert np.array_equal(_image(decoded)[::common.SHOW_SCALE, ::common.SHOW_SCALE], decoded_there)


def test_slider_decode_follows_the_sliders_and_matches_the_core(client):
    _encode(client, "random", seed=4)
    model = ops.get_model("vae-beta10")
    order, _ = ops.dims_by_kl(model)
    z0 = ops.encode_mean(model, face_sources.random_face(4)[None])[0]
    values = [3.0] + [0.0] * (traverse.N_SLIDERS - 1)
    moved = _image(client.predict(*values, api_name="/traverse_decode"))
    assert moved.shape == (SHOWN, SHOWN, 3)
    expected = ops.decode(model, latent_paths.with_values(z0, order[:8], values)[None])[0]
    assert np.array_equal(moved[::common.SHOW_SCALE, ::common.SHOW_SCALE], expected)
    other = _image(client.predict(*([-3.0] + values[1:]), api_name="/traverse_decode"))
    assert not np.array_equal(moved, other)


def test_attribute_sliders_add_their_vector_to_the_face(client):
    from playground.pipelines.attribute_vectors import attribute_vectors

    _encode(client, "random", seed=4)
    model = ops.get_model("vae-beta10")
    order, _ = ops.dims_by_kl(model)
    z0 = ops.encode_mean(model, face_sources.random_face(4)[None])[0]
    dims = [0.0] * traverse.N_SLIDERS
    alphas = [0.0, 2.0, 0.0, -1.0]  # + 2 glasses, − 1 blond hair (Smiling, Eyeglasses, Hat, Blond)
    moved = _image(client.predict(*dims, *alphas, api_name="/traverse_decode"))
    vectors = attribute_vectors("vae-beta10")
    z = latent_paths.with_values(z0, order[:8], dims) + 2.0 * vectors["Eyeglasses"] - vectors["Blond_Hair"]
    expected = ops.decode(model, z[None].astype(np.float32))[0]
    assert np.abs(moved[::common.SHOW_SCALE, ::common.SHOW_SCALE].astype(int) - expected).max() <= 1
    plain = _image(client.predict(*dims, api_name="/traverse_decode"))  # α's default to 0
    assert not np.array_equal(moved, plain)


def test_traversal_grid_and_gif(client):
    _encode(client, "data", index=2)
    picture, gif = client.predict(3, *([0.0] * traverse.N_SLIDERS), api_name="/traverse_grid")
    cell = 64 * 2 + 2
    # 110 px of labels on the left, 18 on top; 3 rows × 9 columns of 128 px faces, 2 px gaps
    assert _image(picture).shape == (common.LABEL_BADGE_PX + 18 + 3 * cell + 2,
                                     110 + 9 * cell + 2, 3)
    assert gif.endswith(".gif") and _frames(gif) == 2 * traverse.GRID_VALUES - 2


def test_upload_is_cropped_resized_and_encoded(client, tmp_path):
    picture = np.random.default_rng(0).integers(0, 255, (200, 300, 4), np.uint8)
    path = tmp_path / "me.png"
    Image.fromarray(picture).save(path)
    out = client.predict("vae-beta1", 0, 0, gradio_client.handle_file(str(path)),
                         api_name="/traverse_encode_upload")
    face, notice = out[0], out[-1]
    assert _image(face).shape == (SHOWN, SHOWN, 3)
    assert "cropped 300×200 → 200×200, resized to 64×64" in notice and "vae-beta1" in notice
    same = _encode(client, "upload", upload=gradio_client.handle_file(str(path)),
                   model="vae-beta1")
    assert np.array_equal(_image(same[0]), _image(face))


@pytest.mark.parametrize("kwargs,message", [
    (dict(model="vae-beta7"), "No model named 'vae-beta7'.*available: vae-beta1"),
    (dict(model="../etc"), "Invalid model name"),
    (dict(source="data", index=5000), "between 0 and 4999|maximum"),
    (dict(source="upload"), "Upload a picture first"),
    (dict(source="webcam"), r"must be one of \['random', 'data', 'upload'\], got 'webcam'"),
])
def test_bad_encode_input_gives_a_clear_error_and_the_app_still_answers(client, kwargs, message):
    with pytest.raises(Exception, match=message):
        _encode(client, **kwargs)
    assert _image(_encode(client)[0]).shape == (SHOWN, SHOWN, 3)


def test_a_text_file_named_png_is_not_an_image(client, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture at all\n")
    with pytest.raises(Exception, match="Not an image: Pillow cannot read notes.png"):
        _encode(client, "upload", upload=gradio_client.handle_file(str(path)))
    assert _image(_encode(client)[0]).shape == (SHOWN, SHOWN, 3)


def test_decode_before_encode_asks_for_a_face(client):
    fresh = gradio_client.Client(client.src, verbose=False)  # a new session: no encoded face
    with pytest.raises(Exception, match="Encode a face first"):
        fresh.predict(*([0.0] * traverse.N_SLIDERS), api_name="/traverse_decode")


def test_out_of_range_slider_values_are_refused(client):
    _encode(client)
    with pytest.raises(Exception, match="maximum|slider values"):
        client.predict(*([9.0] * traverse.N_SLIDERS), api_name="/traverse_decode")


# ------------------------------------------------------------------------------ Morph
def _morph(client, steps=8, mode="lerp", model="vae-beta4", a=("random", 1, 0, None),
           b=("data", 0, 5, None)):
    return client.predict(model, *a, *b, steps, mode, api_name="/morph")


@pytest.mark.parametrize("steps,mode", [(8, "lerp"), (3, "slerp")])
def test_morph_strip_and_gif(client, steps, mode):
    face_a, face_b, strip, gif, notice = _morph(client, steps, mode)
    assert _image(face_a).shape == (128, 128, 3) and _image(face_b).shape == (128, 128, 3)
    assert _image(strip).shape == (128 + 4, steps * 130 + 2, 3)
    assert _frames(gif) == 2 * steps - 2
    assert f"{steps} steps, {mode}" in notice
    model = ops.get_model("vae-beta4")
    expected = latent_paths.morph(model, face_sources.random_face(1), face_sources.dataset_face(5), steps, mode)
    assert np.array_equal(_image(strip)[2:130:2, 2:130:2], expected[0])


@pytest.mark.parametrize("kwargs,message", [
    (dict(steps=40), "steps S must be between 2 and 32, got 40"),
    (dict(steps=1), "steps S must be between 2 and 32, got 1"),
    (dict(mode="cubic"), r"interpolation must be one of \['lerp', 'slerp'\], got 'cubic'"),
    (dict(model="nope"), "No model named 'nope'"),
    (dict(b=("data", 0, -1, None)), "minimum|between 0 and 4999"),
])
def test_bad_morph_input_gives_a_clear_error_and_the_app_still_answers(client, kwargs, message):
    with pytest.raises(Exception, match=message):
        _morph(client, **kwargs)
    assert _frames(_morph(client, steps=2)[3]) == 2


def test_compare_betas_has_a_row_per_model_sorted_by_beta(client):
    picture, notice = client.predict("random", 1, 0, None, "data", 0, 5, None, 7, 3,
                                     api_name="/compare_betas")
    cell = 64 * 2 + 2
    # 150 px of labels, 18 px of column titles; rows: originals + 3 models; columns: A, B, 3 z
    image = _image(picture)
    assert image.shape == (common.LABEL_BADGE_PX + 18 + 4 * cell + 2, 150 + 5 * cell + 2, 3)
    rows = [n for n in ("vae-beta1", "vae-beta4", "vae-beta10") if n in notice]
    assert len(rows) == 3 and notice.index("vae-beta4") < notice.index("vae-beta10")
    # row 2 (β = 4), column 3: the first random face of seed 7
    sample = ops.sample(ops.get_model("vae-beta4"), 3, 7)[0]
    top, left = common.LABEL_BADGE_PX + 18 + 2 + 2 * cell, 150 + 2 + 2 * cell
    assert np.array_equal(image[top:top + 128:2, left:left + 128:2], sample)
    with pytest.raises(Exception, match="between 1 and 8, got 99"):
        client.predict("random", 1, 0, None, "data", 0, 5, None, 7, 99, api_name="/compare_betas")


# ------------------------------------------------------------------------------ no models
def test_the_app_works_without_any_model(tmp_path):
    mp = pytest.MonkeyPatch()
    mp.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    mp.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    try:
        assert "No β-VAE models found" in common.no_models_message()
        demo = _launch()
        try:
            c = gradio_client.Client(demo.local_url, verbose=False)
            with pytest.raises(Exception, match="No β-VAE model chosen.*no β-VAE models found"):
                c.predict(None, "random", 0, 0, None, api_name="/traverse_encode")
            with pytest.raises(Exception, match="No β-VAE models found"):
                c.predict("random", 1, 0, None, "data", 0, 5, None, 0, 2,
                          api_name="/compare_betas")
            assert c.predict(seed=1, count=2, api_name="/synthfaces_grid")  # the rest works
        finally:
            demo.close()
    finally:
        mp.undo()
