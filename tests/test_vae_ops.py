"""The Traverse/Morph core on tiny random β-VAEs: exact where possible, clear errors otherwise."""
import dataclasses
import io
import os
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from playground.data import pictures
from playground.data import synthfaces as sf
from playground.evaluation.metrics import kl_per_dim
from playground.pipelines import face_sources, latent_paths
from playground.pipelines import vae as ops
from playground.store import checkpoints, model_kinds
from tests.helpers import save_tiny_vae


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """trained/ with vae-beta1 and vae-beta10, an empty runs/; env vars point at them."""
    trained, runs = tmp_path / "trained", tmp_path / "runs"
    runs.mkdir()
    save_tiny_vae(trained / "vae-beta1", beta=1.0, seed=1)
    save_tiny_vae(trained / "vae-beta10", beta=10.0, seed=10)
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(trained))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(runs))
    monkeypatch.setattr(ops, "REFERENCE_SIZE", 64)  # a small reference batch keeps tests fast
    ops.clear_model_cache()
    yield tmp_path
    ops.clear_model_cache()


@pytest.fixture
def model(models_dir):
    return ops.get_model("vae-beta10")


@pytest.fixture(scope="module")
def faces():
    return sf.generate(6, seed=3)[0]  # uint8 (6, 64, 64, 3)


# ------------------------------------------------------------------------------ models
def test_models_are_listed_cached_and_reloaded_when_the_file_changes(models_dir):
    assert ops.list_vae_models() == ["vae-beta1", "vae-beta10"]
    assert ops.default_model(ops.list_vae_models()) == "vae-beta10"
    assert ops.default_model(["vae-beta1"]) == "vae-beta1"
    assert ops.default_model([]) is None
    first = ops.get_model("vae-beta10")
    assert ops.get_model("vae-beta10") is first
    assert ops.model_beta(first) == 10.0
    save_tiny_vae(models_dir / "trained" / "vae-beta10", beta=10.0, seed=99)
    weights = models_dir / "trained" / "vae-beta10" / checkpoints.WEIGHTS_FILE
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    second = ops.get_model("vae-beta10")
    assert second is not first
    assert not torch.equal(next(first.parameters()), next(second.parameters()))


@pytest.mark.parametrize("name,message", [
    ("vae-beta4", "no model named 'vae-beta4'.*available: vae-beta1, vae-beta10"),
    ("../vae-beta1", "invalid model name"),
    ("", "no β-VAE model chosen: pick one of vae-beta1, vae-beta10"),
    (None, "no β-VAE model chosen"),
])
def test_bad_model_names_raise_clear_value_errors(models_dir, name, message):
    with pytest.raises(ValueError, match=message):
        ops.get_model(name)


@dataclasses.dataclass
class _NotAVAEConfig:
    kind: ClassVar[str] = "not-a-vae-test"
    width: int = 2  # one tiny linear layer


def test_a_model_of_another_kind_is_not_a_vae(models_dir):
    model_kinds.register_kind("not-a-vae-test", _NotAVAEConfig,
                              lambda cfg: torch.nn.Linear(cfg.width, cfg.width))
    config = _NotAVAEConfig()
    checkpoints.save_model(models_dir / "runs" / "linear", torch.nn.Linear(2, 2), config=config)
    assert "linear" not in ops.list_vae_models()
    with pytest.raises(ValueError, match="'linear' is a 'not-a-vae-test' model, not a β-VAE"):
        ops.get_model("linear")


def test_no_models_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "none"))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "none-either"))
    assert ops.list_vae_models() == []
    with pytest.raises(ValueError, match="no β-VAE models found.*playground.train vae"):
        ops.get_model(None)


# ------------------------------------------------------------------------------ encode / decode
def test_encode_mean_matches_the_model_and_accepts_uint8_or_float(model, faces):
    mu = ops.encode_mean(model, faces)
    assert mu.shape == (6, 8) and mu.dtype == np.float32
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected, _ = model.encode(x)
    np.testing.assert_allclose(mu, expected.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.encode_mean(model, faces / 255.0), mu, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad,message", [
    (np.zeros((64, 64, 3), np.uint8), "add a batch axis"),
    (np.zeros((2, 32, 32, 3), np.uint8), r"shape \(N, 64, 64, 3\)"),
    (np.full((1, 64, 64, 3), 2.0), r"\[0, 1\]"),
    (np.zeros((1, 64, 64, 3), np.int32), "uint8 or float"),
])
def test_encode_rejects_bad_images(model, bad, message):
    with pytest.raises(ValueError, match=message):
        ops.encode_mean(model, bad)


def test_decode_gives_uint8_faces_and_checks_the_latent_size(model):
    z = ops.prior_latents(3, 8, seed=0)
    images = ops.decode(model, z)
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(z)).permute(0, 2, 3, 1).numpy()
    assert np.abs(images.astype(float) - expected * 255).max() <= 0.5 + 1e-3
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        ops.decode(model, np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        ops.decode(model, np.full((1, 8), np.nan, np.float32))
    assert ops.decode(model, np.zeros((0, 8), np.float32)).shape == (0, 64, 64, 3)


def test_decoding_leaves_the_callers_thread_count_alone(model):
    before = torch.get_num_threads()
    ops.decode(model, np.zeros((1, 8), np.float32))
    assert torch.get_num_threads() == before


def test_prior_latents_are_the_same_for_the_same_seed():
    a, b = ops.prior_latents(4, 8, seed=5), ops.prior_latents(4, 8, seed=5)
    assert np.array_equal(a, b) and a.shape == (4, 8)
    assert not np.array_equal(a, ops.prior_latents(4, 8, seed=6))


# ------------------------------------------------------------------------------ KL ranking
def test_dims_by_kl_ranks_by_the_analytic_kl(model, faces):
    order, kl = ops.dims_by_kl(model, faces)
    mu, logvar = ops.encode_moments(model, faces)
    np.testing.assert_allclose(kl, kl_per_dim(mu, logvar))
    assert sorted(order.tolist()) == list(range(8))
    assert np.all(np.diff(kl[order]) <= 0)


def test_dims_by_kl_on_the_reference_batch_is_cached_per_model(model):
    order, kl = ops.dims_by_kl(model)
    again = ops.dims_by_kl(model)
    assert again[0] is order and again[1] is kl
    expected = ops.dims_by_kl(model, ops.reference_images(64))
    np.testing.assert_allclose(kl, expected[1])


def test_reference_images_are_the_start_of_the_val_split():
    ref = ops.reference_images(8)
    assert ref.shape == (8, 64, 64, 3)
    assert np.array_equal(ref, sf.SynthFacesDataset("val", n=8).images)


# ------------------------------------------------------------------------------ traversal
def test_traversal_changes_only_the_chosen_dimension(model, faces):
    z0 = ops.encode_mean(model, faces[:1])[0]
    dims, values = [5, 2], np.linspace(-3, 3, 9)
    z = latent_paths.traversal_latents(z0, dims, values)
    assert z.shape == (2, 9, 8)
    for r, d in enumerate(dims):
        others = np.arange(8) != d
        assert np.array_equal(z[r][:, others], np.repeat(z0[None, others], 9, 0))
        assert np.array_equal(z[r][:, d], values.astype(np.float32))
    grid = latent_paths.traversal_grid(model, z0, dims, values)
    assert grid.shape == (2, 9, 64, 64, 3) and grid.dtype == np.uint8
    for r, d in enumerate(dims):
        for j in (0, 4, 8):
            single = ops.decode(model, latent_paths.with_values(z0, [d], [values[j]])[None])[0]
            assert np.abs(grid[r, j].astype(int) - single).max() <= 1  # batch vs single rounding
    assert not np.array_equal(grid[0, 0], grid[0, 8])  # the dimension does change the face


@pytest.mark.parametrize("dims,message", [([8], r"0\.\.7"), ([-1], r"0\.\.7"),
                                          ([1.5], "integers"), ([], "at least one")])
def test_traversal_rejects_bad_dimensions(dims, message):
    with pytest.raises(ValueError, match=message):
        latent_paths.traversal_latents(np.zeros(8), dims, [0.0, 1.0])


# ------------------------------------------------------------------------------ interpolation
@pytest.mark.parametrize("mode", ["lerp", "slerp"])
def test_interpolation_endpoints_are_exact(mode):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16).astype(np.float32), rng.normal(size=16).astype(np.float32)
    path = latent_paths.interpolate(a, b, steps=8, mode=mode)
    assert path.shape == (8, 16) and path.dtype == np.float32
    assert np.array_equal(path[0], a) and np.array_equal(path[-1], b)


def test_lerp_is_the_straight_line():
    a, b = np.zeros(4), np.array([2.0, 4.0, 6.0, 8.0])
    np.testing.assert_allclose(latent_paths.interpolate(a, b, steps=5)[2], [1, 2, 3, 4])


def test_slerp_keeps_the_norm_of_equal_norm_vectors_and_lerp_does_not():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=32), rng.normal(size=32)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    slerp = latent_paths.interpolate(a, b, steps=9, mode="slerp")
    np.testing.assert_allclose(np.linalg.norm(slerp, axis=1), np.linalg.norm(a), rtol=1e-5)
    lerp = latent_paths.interpolate(a, b, steps=9, mode="lerp")
    assert np.linalg.norm(lerp[4]) < 0.9 * np.linalg.norm(a)  # the chord cuts inside
    # and it moves along the great circle: equal angles between neighbours
    unit = slerp / np.linalg.norm(slerp, axis=1, keepdims=True)
    angles = np.arccos(np.clip(np.sum(unit[1:] * unit[:-1], axis=1), -1, 1))
    np.testing.assert_allclose(angles, angles[0], rtol=1e-4)


def test_slerp_of_parallel_vectors_is_the_line_and_antiparallel_is_refused():
    a = np.array([1.0, 2.0, 3.0])
    path = latent_paths.interpolate(a, 3 * a, steps=3, mode="slerp")
    np.testing.assert_allclose(path[1], 2 * a, rtol=1e-6)
    assert np.all(np.isfinite(latent_paths.interpolate(np.zeros(3), a, steps=4, mode="slerp")))
    with pytest.raises(ValueError, match="opposite"):
        latent_paths.interpolate(a, -a, mode="slerp")


@pytest.mark.parametrize("kwargs,message", [
    (dict(steps=1), "between 2 and"), (dict(steps=2.5), "whole number"),
    (dict(mode="cubic"), "mode must be one of"),
])
def test_interpolation_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        latent_paths.interpolate(np.zeros(4), np.ones(4), **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        latent_paths.interpolate(np.zeros(4), np.ones(5))


def test_morph_decodes_the_path_between_two_faces(model, faces):
    frames = latent_paths.morph(model, faces[0], faces[1], steps=5, mode="slerp")
    assert frames.shape == (5, 64, 64, 3) and frames.dtype == np.uint8
    mu = ops.encode_mean(model, faces[:2])
    assert np.abs(frames[0].astype(int) - ops.decode(model, mu[:1])[0]).max() <= 1
    with pytest.raises(ValueError, match="face B must be a uint8"):
        latent_paths.morph(model, faces[0], faces[1, :32], steps=3)


# ------------------------------------------------------------------------------ GIF
def _gif_frames(data: bytes) -> list[np.ndarray]:
    image = Image.open(io.BytesIO(data))
    frames = []
    for i in range(image.n_frames):
        image.seek(i)
        frames.append(np.asarray(image.convert("RGB")))
    return frames


def test_gif_has_the_frames_pingpong_and_scale():
    frames = np.stack([np.full((8, 10, 3), 30 * i, np.uint8) for i in range(5)])
    plain = _gif_frames(pictures.gif_bytes(frames, fps=10))
    assert len(plain) == 5 and plain[0].shape == (8, 10, 3)
    assert [int(f[0, 0, 0]) for f in plain] == [0, 30, 60, 90, 120]
    looped = _gif_frames(pictures.gif_bytes(frames, fps=10, pingpong=True, scale=3))
    assert len(looped) == 8 and looped[0].shape == (24, 30, 3)
    assert [int(f[0, 0, 0]) for f in looped] == [0, 30, 60, 90, 120, 90, 60, 30]
    assert Image.open(io.BytesIO(pictures.gif_bytes(frames, fps=10))).info["duration"] == 100


def test_gif_rejects_bad_frames():
    with pytest.raises(ValueError, match="uint8"):
        pictures.gif_bytes(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="fps"):
        pictures.gif_bytes(np.zeros((2, 8, 8, 3), np.uint8), fps=0)


# ------------------------------------------------------------------------------ faces
def test_random_and_dataset_faces_match_synthfaces():
    assert np.array_equal(face_sources.random_face(7), sf.generate(1, seed=7)[0][0])
    assert np.array_equal(face_sources.dataset_face(3), sf.SynthFacesDataset("test", n=4).images[3])
    with pytest.raises(ValueError, match="between 0 and 4999"):
        face_sources.dataset_face(5000)
    with pytest.raises(ValueError, match="whole number"):
        face_sources.dataset_face(1.5)
    with pytest.raises(ValueError, match="seed must be between"):
        face_sources.random_face(-1)


# ------------------------------------------------------------------------------ uploads
def _save(tmp_path, image: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_upload_rgba_is_put_on_white_and_cropped(tmp_path):
    rgba = np.zeros((200, 300, 4), np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent on the left half
    rgba[:, 150:, 3] = 255
    face, notice = face_sources.prepare_upload(_save(tmp_path, Image.fromarray(rgba), "a.png"))
    assert face.shape == (64, 64, 3) and face.dtype == np.uint8
    assert notice == ("RGBA → RGB (transparent areas on white), cropped 300×200 → 200×200, "
                      "resized to 64×64")
    assert face[32, 2].tolist() == [255, 255, 255]  # transparent → white
    assert face[32, 61].tolist() == [255, 0, 0]  # opaque red stays red


def test_upload_grey_palette_and_16_bit(tmp_path):
    grey = Image.fromarray(np.full((64, 64), 77, np.uint8))  # mode L, already 64×64
    face, notice = face_sources.prepare_upload(_save(tmp_path, grey, "g.png"))
    assert notice == "L → RGB" and face[0, 0].tolist() == [77, 77, 77]

    palette = Image.fromarray(np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(
        np.uint8) % 4).convert("P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * 756)
    face, notice = face_sources.prepare_upload(_save(tmp_path, palette, "p.png"))
    assert face.shape == (64, 64, 3) and notice == "P → RGB, resized 100×100 to 64×64"

    deep = np.full((128, 128), 65535, np.uint16)
    deep[:, :64] = 32896  # mid-grey in 16 bits (= 128 · 257)
    image16 = Image.fromarray(deep)
    path = _save(tmp_path, image16, "d.png")
    assert Image.open(path).mode.startswith("I")
    face, notice = face_sources.prepare_upload(path)
    assert notice == "16-bit grey scaled to 8 bits, resized 128×128 to 64×64"
    assert face[10, 5].tolist() == [128, 128, 128] and face[10, 60].tolist() == [255, 255, 255]


def test_upload_odd_sizes_small_pictures_and_arrays(tmp_path):
    tall = Image.fromarray(np.random.default_rng(0).integers(0, 255, (301, 7, 3), np.uint8))
    face, notice = face_sources.prepare_upload(_save(tmp_path, tall, "t.jpg", quality=95))
    assert face.shape == (64, 64, 3) and notice == "cropped 7×301 → 7×7, enlarged to 64×64"
    same, notice = face_sources.prepare_upload(np.zeros((64, 64, 3), np.uint8))
    assert notice == "already 64×64 RGB, used as is" and not same.any()
    face, _ = face_sources.prepare_upload(Image.new("CMYK", (65, 65)))
    assert face.shape == (64, 64, 3)


@pytest.mark.parametrize("content,name", [
    (b"hello, I am plain text\n", "notes.png"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "icon.svg"),
    (b"<!DOCTYPE html><html><body>hi</body></html>", "page.png"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "truncated.png"),
])
def test_non_images_are_refused(tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match="^not an image"):
        face_sources.prepare_upload(path)


def test_missing_upload_and_wrong_types_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not an image: no file"):
        face_sources.prepare_upload(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="not an image"):
        face_sources.prepare_upload(12)
    with pytest.raises(ValueError, match="not an image"):
        face_sources.prepare_upload(np.zeros((4, 4, 2), np.uint8))
