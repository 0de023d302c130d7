"""What the repository ships: models small enough for a Hugging Face Space, loadable, no pickles."""
from pathlib import Path

import pytest

from playground.store.checkpoints import load_model

TRAINED = Path(__file__).resolve().parents[1] / "trained"
SPACE_FILE_LIMIT = 10 * 2**20  # the Hub refuses larger files outside LFS / Xet
TRAINED_LIMIT = 100 * 2**20  # the whole folder (every committed copy stays in git history)


def shipped_files():
    return sorted(p for p in TRAINED.rglob("*") if p.is_file())


@pytest.mark.skipif(not TRAINED.is_dir(), reason="no trained/ folder")
def test_every_shipped_file_fits_a_space_and_the_folder_fits_its_budget():
    files = shipped_files()
    too_big = {str(p.relative_to(TRAINED)): p.stat().st_size for p in files
               if p.stat().st_size >= SPACE_FILE_LIMIT}
    assert not too_big, too_big
    assert sum(p.stat().st_size for p in files) <= TRAINED_LIMIT
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".pkl", ".bin", ".ckpt")]


@pytest.mark.skipif(not (TRAINED / "clip").is_dir(), reason="no shipped CLIP")
def test_the_shipped_clip_loads_from_its_compact_file():
    clip = load_model(TRAINED / "clip")
    assert clip.config.known_tokens  # its file keeps only these rows of the embedding
    assert clip.encode_text(["a photo of a person wearing a hat"]).shape[0] == 1
