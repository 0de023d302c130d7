"""The stamped model cache shared by the VAE and diffusion tabs."""
import threading

import pytest

from playground.store.model_cache import StampedCache, weights_stamp


def test_same_stamp_hits_new_stamp_reloads_and_the_oldest_is_dropped():
    cache, loads = StampedCache(size=2), []

    def loader(value):
        def load():
            loads.append(value)
            return value
        return load

    assert cache.get("a", (1,), loader("a1")) == "a1"
    assert cache.get("a", (1,), loader("never")) == "a1"  # hit: not loaded again
    assert cache.get("a", (2,), loader("a2")) == "a2"  # new weights: reloaded
    cache.get("b", (1,), loader("b1"))
    cache.get("a", (2,), loader("never"))  # a is now the most recent
    cache.get("c", (1,), loader("c1"))  # drops b, the least recently used
    assert cache.get("b", (1,), loader("b1 again")) == "b1 again"
    assert loads == ["a1", "a2", "b1", "c1", "b1 again"]
    cache.clear()
    assert cache.get("a", (2,), loader("a3")) == "a3"


def test_concurrent_gets_return_a_loaded_value():
    cache = StampedCache(size=1)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("m", (1,), lambda: 7)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [7] * 8


def test_weights_stamp_changes_with_the_file_and_names_a_missing_one(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(ValueError, match="has no weights yet"):
        weights_stamp(folder)
    (folder / "model.safetensors").write_bytes(b"12345")
    first = weights_stamp(folder)
    (folder / "model.safetensors").write_bytes(b"123456")
    assert weights_stamp(folder) != first
