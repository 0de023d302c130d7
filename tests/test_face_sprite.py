"""The latent map's thumbnails: one sprite sheet whose tile i is test face i, halved."""
from __future__ import annotations

import numpy as np
import pytest

from playground.pipelines import face_sources, face_sprite


def test_sheet_places_face_i_at_row_i_div_cols_and_box_averages_it():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    sheet, cols = face_sprite.sheet(faces, tile=32)
    assert cols == 3 and sheet.shape == (2 * 32, 3 * 32, 3)  # 5 faces: 2 rows of 3
    for i in range(5):
        expected = faces[i].reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
        got = face_sprite.tile(sheet, i, 32, cols).astype(np.float64)
        assert np.abs(got - expected).max() <= 0.5  # rounded to the nearest level
    assert not face_sprite.tile(sheet, 5, 32, cols).any()  # the unused tile stays black


def test_sheet_refuses_a_tile_that_does_not_divide_the_face():
    with pytest.raises(ValueError, match="do not shrink evenly"):
        face_sprite.sheet(np.zeros((2, 64, 64, 3), np.uint8), tile=24)


def test_the_sprite_shows_the_test_faces_the_map_points_at():
    sheet = face_sprite.sprite(100)
    assert sheet["src"].startswith("data:image/webp;base64,")
    assert (sheet["n"], sheet["tile"], sheet["cols"]) == (100, 32, 10)
    image = face_sprite.decode(sheet)
    for i in (0, 37, 99):  # the face a click on point i opens, halved, through WebP
        face = face_sources.dataset_face(i).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
        error = np.abs(face_sprite.tile(image, i, 32, sheet["cols"]) - face).mean()
        assert error < 12, (i, error)
        other = face_sources.dataset_face(i + 1).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
        assert error < np.abs(face_sprite.tile(image, i, 32, sheet["cols"]) - other).mean()
