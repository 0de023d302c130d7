"""The Latent map: core on tiny random β-VAEs (maps, caches, colours, scores, text-search hook)
and the tab through gradio_client."""
import shutil
import time

import numpy as np
import pytest
import torch
from PIL import Image

from playground.app import common
from playground.data import synthfaces as sf
from playground.evaluation import separation
from playground.evaluation import vae as vae_evaluation
from playground.pipelines import face_sources, text_search
from playground.pipelines import latent_map as lm
from playground.pipelines import vae as ops
from playground.store import checkpoints, files
from tests.helpers import save_tiny_vae

N = 100  # the smallest map


@pytest.fixture
def models(tmp_path, monkeypatch):
    """trained/vae-beta4 and runs/vae-beta1 (tiny, random); empty caches."""
    save_tiny_vae(tmp_path / "trained" / "vae-beta4", beta=4.0, seed=4)
    save_tiny_vae(tmp_path / "runs" / "vae-beta1", beta=1.0, seed=1)
    monkeypatch.setenv("PLAYGROUND_TRAINED", str(tmp_path / "trained"))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    ops.clear_model_cache()
    lm.clear_cache()
    yield tmp_path
    ops.clear_model_cache()
    lm.clear_cache()


def _test_faces(n):
    return sf.render(sf.generate_factors(n, sf.SPLIT_SEEDS["test"]))


# ------------------------------------------------------------------------------ the map
def test_pca_map_of_the_first_test_faces(models):
    m = lm.latent_map("vae-beta4", "pca", N, seed=0, write_cache=False)
    assert m["points"].shape == (N, 2) and m["points"].dtype == np.float32
    assert m["mu"].shape == (N, 8) and np.array_equal(m["indices"], np.arange(N))
    assert m["source"] == "computed" and m["method"] == "pca" and m["n"] == N
    # μ is the posterior mean of test faces 0 … N−1, and PCA of it gives the points
    mu = ops.encode_mean(ops.get_model("vae-beta4"), _test_faces(N))
    np.testing.assert_allclose(m["mu"], mu, atol=1e-5)
    centred = mu - mu.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:2]  # (2, D)
    np.testing.assert_allclose(np.abs(m["points"]), np.abs(centred @ top.T), atol=1e-4)
    assert set(m["attributes"]) == set(sf.ATTRIBUTE_NAMES)
    assert all(len(v) == N for v in [*m["factors"].values(), *m["attributes"].values()])


def test_pca_is_deterministic_and_models_differ(models):
    a = lm.latent_map("vae-beta4", "pca", N, use_cache=False, write_cache=False)
    b = lm.latent_map("vae-beta4", "pca", N, use_cache=False, write_cache=False)
    c = lm.latent_map("vae-beta1", "pca", N, use_cache=False, write_cache=False)
    assert np.array_equal(a["points"], b["points"])
    assert not np.allclose(a["points"], c["points"])


def test_tsne_map_is_computed_with_progress(models):
    calls = []
    m = lm.latent_map("vae-beta1", "tsne", N, seed=3, write_cache=False,
                      progress=lambda f, msg: calls.append((f, msg)))
    assert m["points"].shape == (N, 2) and np.all(np.isfinite(m["points"]))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1
    assert any("render" in msg for _, msg in calls) and any("tsne" in msg for _, msg in calls)


def test_a_computed_map_is_cached_in_a_file_and_the_hit_is_identical_and_fast(models):
    trained_before = sorted(p.name for p in (models / "trained").rglob("*"))
    first = lm.latent_map("vae-beta4", "pca", 200, seed=0)
    path = models / "cache" / "latent-maps" / "vae-beta4" / "latent_map_pca_200.npz"
    assert first["source"] == "computed" and path.is_file() and first["cache_note"] == ""
    # trained/ holds shipped models only (it may be read-only): nothing was written there
    assert sorted(p.name for p in (models / "trained").rglob("*")) == trained_before
    lm.clear_cache()  # a fresh app: only the file is left
    t0 = time.perf_counter()
    again = lm.latent_map("vae-beta4", "pca", 200, seed=0)
    assert time.perf_counter() - t0 < 1.0
    assert again["source"] == "file latent_map_pca_200.npz"
    assert np.array_equal(again["points"], first["points"])
    np.testing.assert_allclose(again["mu"], first["mu"], atol=2e-3)  # stored as float16
    assert lm.latent_map("vae-beta4", "pca", 200, seed=0)["source"] == "memory"
    with np.load(path, allow_pickle=False) as z:  # plain arrays: no pickle needed
        assert str(z["method"]) == "pca" and int(z["n"]) == 200
    # another seed gets its own file; the default one is not overwritten
    lm.latent_map("vae-beta4", "pca", 200, seed=7)
    assert (path.parent / "latent_map_pca_200_seed7.npz").is_file()


def test_cache_only_answers_none_before_the_map_exists(models):
    assert lm.latent_map("vae-beta4", "tsne", N, cached_only=True) is None
    assert not list((models / "trained" / "vae-beta4").glob("latent_map_*"))
    assert not (models / "cache" / "latent-maps").exists()


def test_a_cache_file_of_another_model_or_a_damaged_one_is_not_used(models):
    lm.latent_map("vae-beta4", "pca", N)
    mine = lm.map_cache_dir("vae-beta4") / f"latent_map_pca_{N}.npz"
    other = models / "runs" / "vae-beta1" / mine.name  # as if shipped with another model
    shutil.copy(mine, other)
    lm.clear_cache()
    assert lm.latent_map("vae-beta1", "pca", N, cached_only=True) is None  # μ check fails
    mine.write_bytes(b"not an npz")
    lm.clear_cache()
    assert lm.latent_map("vae-beta4", "pca", N, cached_only=True) is None
    assert lm.latent_map("vae-beta4", "pca", N)["source"] == "computed"  # and rewritten
    lm.clear_cache()
    assert lm.latent_map("vae-beta4", "pca", N)["source"].startswith("file")


def test_a_cache_survives_the_fp16_copy_that_ship_makes(models):
    lm.latent_map("vae-beta1", "pca", N)  # cached under the name vae-beta1
    from playground.training.ship import ship

    ship(models / "runs" / "vae-beta1", "vae-beta1")  # trained/vae-beta1 now shadows the run
    lm.clear_cache()
    ops.clear_model_cache()
    hit = lm.latent_map("vae-beta1", "pca", N, cached_only=True)
    assert hit is not None and hit["source"] == f"file latent_map_pca_{N}.npz"


def _evaluate_file(folder, points, labels, seed=0):
    vae_evaluation.save_tsne(folder, {"_tsne": {"points": points, "labels": labels},
                                "eval_split": "test", "eval_seed": seed})
    vae_evaluation.merge_metrics(folder, {"smiling_knn_acc": 0.5})  # records the weights' SHA-256


def test_the_tsne_file_of_evaluate_serves_the_tsne_map_when_it_matches(models):
    folder = models / "trained" / "vae-beta4"
    smiling = sf.attributes_from_factors(
        sf.generate_factors(N, sf.SPLIT_SEEDS["test"]))["Smiling"].astype(np.int64)
    points = np.random.default_rng(0).normal(size=(N, 2)).astype(np.float32)
    _evaluate_file(folder, points, smiling)
    m = lm.latent_map("vae-beta4", "tsne", N, seed=0, cached_only=True)
    assert m["source"] == "file tsne_smiling.npz" and m["mu"] is None
    assert np.array_equal(m["points"], points)
    lm.clear_cache()
    assert lm.latent_map("vae-beta4", "tsne", N, seed=1, cached_only=True) is None  # seed
    assert lm.latent_map("vae-beta4", "tsne", 200, cached_only=True) is None  # size
    _evaluate_file(folder, points, 1 - smiling)  # labels of other faces
    assert lm.latent_map("vae-beta4", "tsne", N, cached_only=True) is None
    _evaluate_file(folder, points, smiling)
    lm.clear_cache()
    assert lm.latent_map("vae-beta4", "tsne", N, cached_only=True) is not None
    save_tiny_vae(models / "other", beta=4.0, seed=99)  # new weights, same metrics.json
    shutil.copy(models / "other" / checkpoints.WEIGHTS_FILE, folder / checkpoints.WEIGHTS_FILE)
    ops.clear_model_cache()
    lm.clear_cache()
    assert lm.latent_map("vae-beta4", "tsne", N, cached_only=True) is None


@pytest.mark.parametrize("kwargs,message", [
    (dict(method="isomap"), "unknown method 'isomap'; choose one of tsne, umap, pca"),
    (dict(n_points=99), "number of points must be between 100 and 5000, got 99"),
    (dict(n_points=5001), "between 100 and 5000"),
    (dict(n_points=150.5), "number of points must be a whole number"),
    (dict(seed=-1), "seed must be between 0"),
    (dict(model_name="vae-beta7"), "no model named 'vae-beta7'.*available: vae-beta4"),
    (dict(model_name="../x"), "invalid model name"),
])
def test_bad_input_raises_a_clear_value_error(models, kwargs, message):
    args = {"model_name": "vae-beta4", "method": "pca", "n_points": N, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        lm.latent_map(**args)


@pytest.mark.slow
def test_umap_map(models):
    m = lm.latent_map("vae-beta4", "umap", N, write_cache=False)
    assert m["points"].shape == (N, 2) and np.all(np.isfinite(m["points"]))


# ------------------------------------------------------------------------------ colours, scores
def test_colour_values_of_an_attribute_and_of_factors(models):
    m = lm.latent_map("vae-beta4", "pca", N, write_cache=False)
    factors = sf.generate_factors(N, sf.SPLIT_SEEDS["test"])
    smiling = lm.colour_values(m, "Smiling")
    assert smiling["kind"] == "attribute" and smiling["categories"] == ("no", "yes")
    assert np.array_equal(smiling["values"], factors["smile"] > 0)  # Smiling = smile > 0
    yaw = lm.colour_values(m, "yaw")
    assert yaw["kind"] == "continuous" and yaw["range"] == (-1.0, 1.0)
    np.testing.assert_array_equal(yaw["values"], factors["yaw"])
    assert np.array_equal(yaw["labels"], factors["yaw"] > np.median(factors["yaw"]))
    hair = lm.colour_values(m, "hair_color")
    assert hair["kind"] == "categorical" and hair["categories"][2] == "blond"
    assert np.array_equal(hair["labels"], factors["hair_color"])
    assert lm.colour_names()[:len(sf.ATTRIBUTE_NAMES)] == list(sf.ATTRIBUTE_NAMES)
    with pytest.raises(ValueError, match="unknown colour 'Happy': choose an attribute"):
        lm.colour_values(m, "Happy")


def test_separation_scores_tell_separated_from_mixed_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 150)
    apart = rng.normal(size=(300, 2)) + labels[:, None] * 10.0  # two far-apart blobs
    s = separation.separation(apart, labels)
    assert s["knn_acc"] == 1.0 and s["baseline"] == 0.5 and s["silhouette"] > 0.7
    mixed = separation.separation(rng.normal(size=(300, 2)), labels)
    assert abs(mixed["knn_acc"] - 0.5) < 0.12 and abs(mixed["silhouette"]) < 0.1
    one = separation.separation(apart, np.zeros(300, int))
    assert one["knn_acc"] is None and one["baseline"] == 1.0 and "same value" in one["note"]
    rare = separation.separation(apart, np.r_[np.zeros(297, int), np.ones(3, int)])
    assert rare["folds"] == 3 and "3-fold" in rare["note"] and rare["knn_acc"] is not None


def test_a_clean_cluster_of_a_rare_class_is_called_separated_and_dominance_is_said():
    from playground.app.latent_map import _scores_markdown

    rng = np.random.default_rng(2)
    labels = np.r_[np.zeros(270, int), np.ones(30, int)]  # hats on 10 % of the faces
    clean = rng.normal(size=(300, 2)) + labels[:, None] * 10.0
    s = separation.separation(clean, labels)
    assert s["knn_balanced_acc"] > 0.95 and s["classes"] == 2
    text = _scores_markdown(s, {"name": "Wearing_Hat", "kind": "binary"}, {})
    assert "**well separated**" in text and "One class dominates (90% of the faces)" in text
    # the same share, no structure: plain accuracy near the baseline, balanced near chance
    mixed = separation.separation(rng.normal(size=(300, 2)), labels)
    assert mixed["knn_balanced_acc"] < 0.6
    assert "**not separated on this map**" in _scores_markdown(
        mixed, {"name": "Wearing_Hat", "kind": "binary"}, {})


def test_silhouette_of_a_large_map_uses_a_sample():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, separation.SILHOUETTE_MAX + 500)
    points = rng.normal(size=(len(labels), 2)) + labels[:, None] * 8.0
    s = separation.separation(points, labels)
    assert s["n"] == len(labels) and s["silhouette"] > 0.6 and s["knn_acc"] > 0.99


# ------------------------------------------------------------------------------ text search hook
def test_text_search_says_it_needs_clip_until_clip_exists(models):
    assert not text_search.text_search_available()
    with pytest.raises(ValueError, match=r"text search needs the CLIP model \(not trained yet\)"):
        text_search.text_scores("a smiling face", N)


class _ColourClip:
    """A stand-in with CLIP's interface: an image's embedding is its mean RGB colour, a text's
    is the colour it names (the neutral query: grey, as near to every colour)."""

    def encode_image(self, x):  # (N, 3, 64, 64) in [0, 1] → (N, 3)
        return x.mean(dim=(2, 3))

    def encode_text(self, texts):
        colours = {"red": [1.0, 0, 0], "blue": [0, 0, 1.0],
                   text_search.NEUTRAL_PROMPT: [1.0, 1.0, 1.0]}
        return torch.tensor([colours[t] for t in texts])


def _colour_clip(models, monkeypatch):
    folder = models / "trained" / "clip"
    folder.mkdir()
    (folder / checkpoints.CONFIG_FILE).write_text('{"kind": "clip"}')
    (folder / checkpoints.WEIGHTS_FILE).write_bytes(b"stand-in")
    monkeypatch.setattr(text_search, "_load_clip", lambda: _ColourClip())
    monkeypatch.setattr(text_search, "_clip_cache", {})


def _face_cosines(colour: list[float]) -> np.ndarray:
    rgb = _test_faces(N).reshape(N, -1, 3).astype(np.float64).mean(1) / 255
    return rgb @ np.asarray(colour) / np.linalg.norm(rgb, axis=1) / np.linalg.norm(colour)


def test_text_scores_rank_faces_by_cosine_similarity_when_a_clip_model_exists(models, monkeypatch):
    _colour_clip(models, monkeypatch)
    assert text_search.text_search_available()
    scores = text_search.text_scores("red", N)
    np.testing.assert_allclose(scores, _face_cosines([1, 0, 0]), atol=1e-4)
    blue = _face_cosines([0, 0, 1])
    assert np.argmax(text_search.text_scores("blue", N)) == np.argmax(blue)
    with pytest.raises(ValueError, match="type a description"):
        text_search.text_scores("  ", N)
    with pytest.raises(ValueError, match="at most 2,000"):
        text_search.text_scores("red " * 100_000, N)


def test_text_margins_subtract_each_faces_similarity_to_the_neutral_query(models, monkeypatch):
    _colour_clip(models, monkeypatch)
    grey = _face_cosines([1, 1, 1])
    margins = text_search.text_margins("red", N)
    assert margins.shape == (N,) and margins.dtype == np.float32
    np.testing.assert_allclose(margins, _face_cosines([1, 0, 0]) - grey, atol=1e-4)
    assert not np.array_equal(np.argsort(-margins), np.argsort(-text_search.text_scores("red", N)))
    np.testing.assert_allclose(text_search.text_margins(text_search.NEUTRAL_PROMPT, N), grey,
                               atol=1e-4)  # the neutral query itself: by cosine
    with pytest.raises(ValueError, match="type a description"):
        text_search.text_margins(" ", N)


def test_search_hits_count_the_attribute_among_the_top_faces(monkeypatch):
    from playground.data import synthfaces as sf

    hats = sf.attributes_from_factors(sf.generate_factors(N, sf.SPLIT_SEEDS["test"]))
    hats = np.asarray(hats["Wearing_Hat"], dtype=float)
    assert 0 < hats.sum() < N - 10
    for scores, expected in ((hats, min(10, hats.sum())), (-hats, max(0, 10 - (N - hats.sum())))):
        monkeypatch.setattr(text_search, "text_margins", lambda q, n, s=scores: s)
        r = text_search.search_hits("a hat", "Wearing_Hat", N, top=10)
        assert r["hits"] == expected and r["top"] == 10
        assert r["chance"] == pytest.approx(10 * hats.mean())
    # another ranking (the README's cosine column) is passed in
    assert text_search.search_hits("a hat", "Wearing_Hat", N, top=10,
                                   score=lambda q, n: hats)["hits"] == min(10, hats.sum())


# ------------------------------------------------------------------------------ the tab
gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_tiny_vae(root / "trained" / "vae-beta10", beta=10.0, seed=10)
    save_tiny_vae(root / "runs" / "vae-beta4", beta=4.0, seed=4)
    mp = pytest.MonkeyPatch()
    mp.setenv("PLAYGROUND_TRAINED", str(root / "trained"))
    mp.setenv("PLAYGROUND_RUNS", str(root / "runs"))
    mp.setattr(ops, "REFERENCE_SIZE", 64)
    ops.clear_model_cache()
    lm.clear_cache()
    import app

    demo = app.build_app()
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield gradio_client.Client(demo.local_url, verbose=False)
    finally:
        demo.close()
        mp.undo()
        ops.clear_model_cache()
        lm.clear_cache()


def _map(client, model="vae-beta10", method="pca", n=N, seed=0, colour="Smiling", query=""):
    return client.predict(model, method, n, seed, colour, query, api_name="/latent_map")


def _traces(plot) -> list[dict]:
    import json

    return json.loads(plot["plot"])["data"]


def test_every_latent_map_event_has_an_api_name(client):
    names = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for api in ("/latent_map_models", "/latent_map", "/latent_map_cached", "/latent_map_point"):
        assert api in names
    update = client.predict("gone", api_name="/latent_map_models")
    assert update["value"] == "vae-beta10"


def test_the_map_is_coloured_by_an_attribute_with_scores_in_markdown(client):
    plot, scores, notice = _map(client, colour="Smiling")
    traces = _traces(plot)
    m = lm.latent_map("vae-beta10", "pca", N)
    smiling = m["attributes"]["Smiling"]
    assert [t["name"] for t in traces] == [f"Smiling: no ({np.sum(smiling == 0)})",
                                           f"Smiling: yes ({np.sum(smiling == 1)})"]
    assert "face #%{customdata}" in traces[0]["hovertemplate"]
    s = separation.separation(m["points"], smiling)
    assert f"kNN accuracy **{s['knn_acc']:.2f}** vs majority baseline **{s['baseline']:.2f}**" \
        in scores
    assert "silhouette" in scores and "Map " in notice


def test_a_continuous_factor_gets_a_colour_scale(client):
    plot, scores, _ = _map(client, colour="yaw")
    (trace,) = _traces(plot)
    assert trace["marker"]["colorscale"] and trace["marker"]["cmin"] == -1
    assert "yaw = %{marker.color:.2f}" in trace["hovertemplate"]
    assert "yaw (above / below its median)" in scores


def test_cached_map_on_page_load_and_a_hint_when_not_cached(client):
    _map(client, method="pca", n=200)
    lm.clear_cache()  # only the file is left
    plot, scores, notice = client.predict("vae-beta10", "pca", 200, 0, "hair_color", "",
                                          api_name="/latent_map_cached")
    assert plot is not None and "precomputed (latent_map_pca_200.npz" in notice
    assert len(_traces(plot)) == 4  # black, brown, blond, gray
    plot, scores, notice = client.predict("vae-beta10", "tsne", 300, 0, "Smiling", "",
                                          api_name="/latent_map_cached")
    assert plot is None and "not precomputed yet" in notice


def test_a_point_shows_its_face_reconstruction_attributes_and_factors(client):
    face, recon, info = client.predict("vae-beta10", N, 12, api_name="/latent_map_point")
    shown = np.asarray(Image.open(face).convert("RGB"))
    assert shown.shape == (64 * common.SHOW_SCALE,) * 2 + (3,)
    assert np.array_equal(shown[::common.SHOW_SCALE, ::common.SHOW_SCALE], face_sources.dataset_face(12))
    expected = ops.reconstruct(ops.get_model("vae-beta10"), face_sources.dataset_face(12)[None])[0]
    rec = np.asarray(Image.open(recon).convert("RGB"))[::common.SHOW_SCALE, ::common.SHOW_SCALE]
    assert np.array_equal(rec, expected)
    factors = sf.generate_factors(13, sf.SPLIT_SEEDS["test"])
    assert "test face #12" in info and f"| yaw | {factors['yaw'][12]:+.2f}" in info
    hair = sf.CATEGORICAL_FACTORS["hair_color"][factors["hair_color"][12]]
    assert f"| hair_color | {hair} |" in info


@pytest.mark.parametrize("args,message", [
    (dict(model="nope"), "No model named 'nope'"),
    (dict(n=50), "points must be between 100 and 5000, got 50"),
    (dict(method="isomap"), "projection to 2-D must be one of .*, got 'isomap'"),
    (dict(colour="Happy"), "colour by must be one of .*, got 'Happy'"),
    (dict(query="a smiling face"), r"Text search needs the CLIP model \(not trained yet\)"),
])
def test_bad_map_input_gives_a_clear_error_and_the_app_still_answers(client, args, message):
    with pytest.raises(Exception, match=message):
        _map(client, **args)
    assert _map(client)[0] is not None


@pytest.mark.parametrize("n,index,message", [
    (N, N, "Point index must be between 0 and 99"),
    (N, None, "(?i)point index is empty"),
    (N, -1, "point index must be between 0 and 4999, got -1"),
])
def test_bad_point_input_gives_a_clear_error(client, n, index, message):
    with pytest.raises(Exception, match=message):
        client.predict("vae-beta10", n, index, api_name="/latent_map_point")
    assert client.predict("vae-beta10", N, 0, api_name="/latent_map_point")[0]


def test_the_command_line_precomputes_a_map_next_to_the_model_to_ship(models, capsys):
    assert lm.main(["vae-beta4", "--method", "pca", "--n", "100"]) == 0
    assert (models / "trained" / "vae-beta4" / "latent_map_pca_100.npz").is_file()
    assert "computed" in capsys.readouterr().out
    lm.clear_cache()  # a fresh app finds the shipped file, and writes nothing more
    assert lm.latent_map("vae-beta4", "pca", 100)["source"] == "file latent_map_pca_100.npz"
    assert not (models / "cache" / "latent-maps").exists()


def test_the_example_query_is_the_attribute_this_clip_reads_best(models):
    assert text_search.example_query() == text_search.FALLBACK_QUERY  # no CLIP yet
    folder = models / "trained" / "clip"
    folder.mkdir()
    (folder / checkpoints.CONFIG_FILE).write_text('{"kind": "clip"}')
    files.atomic_write_json(folder / checkpoints.METRICS_FILE, {
        "zero_shot_auc_per_attribute": {"Smiling": 0.49, "Wearing_Hat": 0.99, "Bald": 0.7}})
    assert text_search.example_query() == "a photo of a person wearing a hat"
    with pytest.raises(ValueError, match="e.g. 'a photo of a person wearing a hat'"):
        folder.joinpath(checkpoints.WEIGHTS_FILE).write_bytes(b"stand-in")
        text_search.text_scores(" ", N)
