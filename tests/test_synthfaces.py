"""SynthFaces: determinism, shapes, each factor acting where it should, attributes, caching,
threads, plain scripts."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from playground.data import synthfaces as sf
from playground.data.synthfaces import renderer

# Pixel regions of the default (frontal, untilted) face, as (rows, cols) slices.
MOUTH = (slice(40, 50), slice(22, 42))
HAIR = (slice(6, 16), slice(18, 46))
EYES = (slice(26, 35), slice(16, 48))
CORNERS = (slice(0, 6), slice(0, 6))
FACE_LEFT = (slice(20, 46), slice(18, 32))
FACE_RIGHT = (slice(20, 46), slice(32, 46))
FACE_CENTRE = (slice(22, 42), slice(24, 40))


def render_with(**changes):
    f = sf.default_factors(1)
    for name, value in changes.items():
        f[name] = np.array([value], dtype=f[name].dtype)
    return sf.render(f)[0].astype(np.float64)


def region_change(a, b, region):
    return np.abs(a[region] - b[region]).mean()


def test_same_seed_same_bytes_and_different_seed_differs():
    a, fa, _ = sf.generate(16, seed=3)
    b, fb, _ = sf.generate(16, seed=3)
    c, _, _ = sf.generate(16, seed=4)
    assert a.tobytes() == b.tobytes()
    assert all(np.array_equal(fa[k], fb[k]) for k in sf.FACTOR_NAMES)
    assert a.tobytes() != c.tobytes()


def test_every_prefix_is_stable():
    small, f_small, _ = sf.generate(7, seed=11)
    big, f_big, _ = sf.generate(1_005, seed=11)  # spans two seeded blocks
    assert np.array_equal(small, big[:7])
    assert all(np.array_equal(f_small[k], f_big[k][:7]) for k in sf.FACTOR_NAMES)


def test_shapes_and_dtypes():
    images, factors, attrs = sf.generate(5, seed=0)
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
    assert set(factors) == set(sf.FACTOR_NAMES)
    for name in sf.CONTINUOUS_FACTORS:
        lo, hi = sf.CONTINUOUS_FACTORS[name]
        assert factors[name].dtype == np.float32 and factors[name].shape == (5,)
        assert lo <= factors[name].min() and factors[name].max() <= hi
    for name, cats in sf.CATEGORICAL_FACTORS.items():
        assert factors[name].dtype == np.int64
        assert 0 <= factors[name].min() and factors[name].max() < len(cats)
    assert list(attrs) == list(sf.ATTRIBUTE_NAMES)
    assert all(v.dtype == np.uint8 and set(np.unique(v)) <= {0, 1} for v in attrs.values())
    assert sf.generate(0, seed=0)[0].shape == (0, 64, 64, 3)


def test_images_use_the_full_range_and_are_antialiased():
    images, _, _ = sf.generate(8, seed=1)
    # Anti-aliased edges leave many intermediate values between neighbouring flat colours.
    assert len(np.unique(images[0].reshape(-1, 3), axis=0)) > 300
    assert images.min() < 30 and images.max() > 220


def test_smile_changes_the_mouth_not_the_hair():
    frown, grin = render_with(smile=-1.0), render_with(smile=1.0)
    assert region_change(frown, grin, MOUTH) > 5.0
    assert region_change(frown, grin, HAIR) < 0.5
    assert region_change(frown, grin, MOUTH) > 20 * region_change(frown, grin, HAIR) - 1e-9


def test_light_moves_brightness_left_and_right():
    def balance(img):
        return img[FACE_LEFT].mean() - img[FACE_RIGHT].mean()

    from_left, from_right = render_with(light=-1.0), render_with(light=1.0)
    assert balance(from_left) > 15.0
    assert balance(from_right) < -15.0


def test_eyeglasses_change_the_eye_region():
    off, on = render_with(eyeglasses=0), render_with(eyeglasses=1)
    assert region_change(off, on, EYES) > 8.0
    assert region_change(off, on, MOUTH) < 0.5 and region_change(off, on, HAIR) < 0.5


def test_eye_open_and_brow_act_on_the_eye_region_only():
    for name, lo, hi in (("eye_open", 0.0, 1.0), ("brow", 0.0, 1.0)):
        a, b = render_with(**{name: lo}), render_with(**{name: hi})
        assert region_change(a, b, EYES) > 2.0, name
        assert region_change(a, b, MOUTH) < 0.2 and region_change(a, b, CORNERS) == 0, name


def test_hair_colour_and_hat_change_the_top_not_the_mouth():
    black, blond = render_with(hair_color=0), render_with(hair_color=2)
    assert region_change(black, blond, HAIR) > 30.0
    assert region_change(black, blond, MOUTH) < 0.5
    no_hat, hat = render_with(hat=0), render_with(hat=1)
    assert region_change(no_hat, hat, HAIR) > 20.0 and region_change(no_hat, hat, MOUTH) < 0.5


def test_background_changes_corners_not_face_and_skin_the_reverse():
    a, b = render_with(background=0.0), render_with(background=0.5)
    assert region_change(a, b, CORNERS) > 40.0 and region_change(a, b, FACE_CENTRE) < 0.5
    pale, dark = render_with(skin=0.0), render_with(skin=1.0)
    assert region_change(pale, dark, FACE_LEFT) > 60.0 and region_change(pale, dark, CORNERS) == 0


def test_roll_and_yaw_move_the_face():
    base = render_with()
    for name in ("roll", "yaw"):
        left, right = render_with(**{name: -1.0}), render_with(**{name: 1.0})
        assert region_change(left, right, EYES) > 5.0, name
        # Mirror-like: turning either way changes the image about as much.
        assert region_change(base, left, EYES) == pytest.approx(region_change(base, right, EYES),
                                                                rel=0.35), name
        assert region_change(left, right, CORNERS) == 0, name


def test_attribute_thresholds():
    f = sf.default_factors(4)
    f["smile"] = np.array([-0.5, -0.01, 0.01, 0.9], np.float32)
    f["hair_style"] = np.array([0, 1, 2, 3])
    f["hair_color"] = np.array([2, 2, 0, 3])
    f["facial_hair"] = np.array([0, 1, 2, 3])
    f["skin"] = np.array([0.1, 0.3, 0.19, 0.9], np.float32)
    a = sf.attributes_from_factors(f)
    assert a["Smiling"].tolist() == [0, 0, 1, 1]
    assert a["Bald"].tolist() == [1, 0, 0, 0] and a["Bangs"].tolist() == [0, 0, 0, 1]
    assert a["Blond_Hair"].tolist() == [0, 1, 0, 0]  # a bald head has no hair colour
    assert a["Black_Hair"].tolist() == [0, 0, 1, 0] and a["Gray_Hair"].tolist() == [0, 0, 0, 1]
    assert a["No_Beard"].tolist() == [1, 0, 0, 0]
    assert a["Mustache"].tolist() == [0, 1, 0, 0] and a["Goatee"].tolist() == [0, 0, 1, 0]
    assert a["Pale_Skin"].tolist() == [1, 0, 1, 0]


def test_attribute_balance_and_factor_independence():
    factors = sf.generate_factors(20_000, seed=5)
    attrs = sf.attributes_from_factors(factors)
    assert 0.40 <= attrs["Smiling"].mean() <= 0.60
    for name in sf.ATTRIBUTE_NAMES:  # every attribute occurs, none is nearly constant
        assert 0.05 < attrs[name].mean() < 0.95, name
    matrix = np.stack([factors[n].astype(np.float64) for n in sf.FACTOR_NAMES])
    corr = np.corrcoef(matrix)
    off_diagonal = np.abs(corr[~np.eye(len(sf.FACTOR_NAMES), dtype=bool)])
    assert off_diagonal.max() < 0.05  # independent draws: |r| ~ 1/sqrt(N) = 0.007


def test_bad_factors_give_clear_errors():
    f = sf.default_factors(1)
    f["smile"] = np.array([3.0], np.float32)
    with pytest.raises(ValueError, match="smile"):
        sf.render(f)
    f = sf.default_factors(1)
    del f["hat"]
    with pytest.raises(ValueError, match="missing"):
        sf.render(f)
    f = sf.default_factors(1)
    f["hair_color"] = np.array([7])
    with pytest.raises(ValueError, match="hair_color"):
        sf.render(f)


def test_dataset_items_and_cached_split(tmp_path, monkeypatch):
    monkeypatch.setitem(sf.SPLIT_SIZES, "val", 300)
    ds = sf.SynthFacesDataset("val", root=tmp_path)
    assert len(ds) == 300
    cached = list(tmp_path.rglob("*.npz"))
    assert len(cached) == 1
    item = ds[3]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["attributes"].shape == (len(sf.ATTRIBUTE_NAMES),) and item["index"] == 3
    # The cached split reloads to the same faces, which equal a direct render of the prefix.
    again = sf.SynthFacesDataset("val", root=tmp_path)
    assert np.array_equal(again.images, ds.images)
    direct = sf.SynthFacesDataset("val", n=20)
    assert np.array_equal(direct.images, ds.images[:20])
    assert torch.equal(ds.image_tensor()[3].float() / 255, item["image"])
    smiling = ds.attribute_names.index("Smiling")
    assert item["attributes"][smiling] == ds.attributes["Smiling"][3]


def test_damaged_cache_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setitem(sf.SPLIT_SIZES, "test", 50)
    sf.SynthFacesDataset("test", root=tmp_path)
    (path,) = tmp_path.rglob("*.npz")
    path.write_bytes(b"not a zip")
    ds = sf.SynthFacesDataset("test", root=tmp_path)
    assert len(ds) == 50 and np.array_equal(ds.images, sf.generate(50, sf.SPLIT_SEEDS["test"])[0])


def test_dataset_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        sf.SynthFacesDataset("training")
    with pytest.raises(ValueError, match="n must"):
        sf.SynthFacesDataset("val", n=0)


def test_unseen_faces_come_from_a_stream_no_split_uses():
    unseen = sf.SynthFacesDataset.unseen(12, seed=777)
    again = sf.SynthFacesDataset.unseen(12, seed=777)
    test = sf.SynthFacesDataset("test", n=12)
    assert unseen.split == "unseen-777" and len(unseen) == 12
    assert np.array_equal(unseen.images, again.images)  # a re-measurement can repeat it
    assert not np.array_equal(unseen.images, test.images)
    assert unseen[3]["image"].shape == (3, 64, 64) and unseen[3]["attributes"].shape == (18,)
    for seed in sf.SPLIT_SEEDS.values():
        with pytest.raises(ValueError, match="stream of a split"):
            sf.SynthFacesDataset.unseen(4, seed)
    with pytest.raises(ValueError, match="n must"):
        sf.SynthFacesDataset.unseen(0, 777)


def _extreme_factors(n: int, seed: int) -> dict:
    """Random faces whose continuous factors often sit at the ends of their ranges."""
    rng = np.random.default_rng(seed)
    f = sf.sample_factors(n, rng)
    for name, (lo, hi) in sf.CONTINUOUS_FACTORS.items():
        pick = rng.integers(0, 3, n)
        f[name] = np.where(pick == 0, lo, np.where(pick == 1, hi, f[name])).astype(np.float32)
    return f


def test_windows_change_no_pixel(monkeypatch):
    # Each part is drawn on a window of rows and columns only; drawing it everywhere must
    # give the same bytes, at the extremes of every factor too.
    f = _extreme_factors(384, seed=8)
    windowed = sf.render(f)
    monkeypatch.setattr(renderer, "_FULL_FRAME", True)
    assert np.array_equal(sf.render(f), windowed)


def test_threads_chunks_and_one_face_give_the_same_bytes():
    f = _extreme_factors(2 * renderer._TASK + 70, seed=9)
    one_thread = sf.render(f)
    assert np.array_equal(sf.render_parallel(f, workers=3), one_thread)
    assert np.array_equal(sf.render(f, chunk=7), one_thread)
    single = {k: v[100:101] for k, v in f.items()}  # a batch of one: no face to share with
    assert np.array_equal(sf.render(single)[0], one_thread[100])


def test_render_leaves_torch_thread_count_alone():
    before = torch.get_num_threads()
    sf.render_parallel(_extreme_factors(2 * renderer._TASK, seed=1), workers=2)
    sf.render(sf.default_factors(2))
    assert torch.get_num_threads() == before


def test_generate_works_from_a_plain_script_without_main_guard(tmp_path):
    # A process pool started by spawn or forkserver re-imports the script, which then calls
    # generate again in every worker: BrokenProcessPool. The script has no main guard on purpose,
    # and asks for 2,001 faces, enough for generate to share them out among workers. That
    # threads give the same bytes as one is tested above; here the first and last faces are
    # compared with an in-process render.
    script = tmp_path / "make_faces.py"
    script.write_text(
        "import hashlib\n"
        "from playground.data import synthfaces as sf\n"
        "images, factors, _ = sf.generate(2001, seed=5)\n"
        "for part in (images[:64], images[-64:]):\n"
        "    print(hashlib.sha256(part.tobytes()).hexdigest())\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    f = sf.generate_factors(2001, 5)
    expected = [hashlib.sha256(sf.render({k: v[part] for k, v in f.items()}).tobytes())
                .hexdigest() for part in (slice(0, 64), slice(-64, None))]
    assert run.stdout.split() == expected
