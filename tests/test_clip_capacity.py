"""The tower-capacity check: a fine-tune of the image tower on one attribute alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from playground.evaluation.clip_capacity import CapacityCheck, tower_capacity
from tests.helpers import tiny_clip


class _Faces:
    """N noise images, half of them brighter by `offset`: the attribute "Bright"."""

    def __init__(self, n: int, seed: int, offset: int = 40):
        rng = np.random.default_rng(seed)
        bright = rng.random(n) < 0.5
        images = rng.integers(60, 180, size=(n, 64, 64, 3)) + offset * bright[:, None, None, None]
        self.images = images.astype(np.uint8)
        self.attributes = {"Bright": bright.astype(np.int64)}

    def __len__(self) -> int:
        return len(self.images)


def test_a_tower_that_can_see_an_attribute_learns_it_and_only_the_image_side_changes():
    model = tiny_clip()
    text_before = {k: v.clone() for k, v in model.clip.state_dict().items()
                   if not k.startswith("visual.")}
    visual_before = {k: v.clone() for k, v in model.clip.visual.state_dict().items()}
    check = CapacityCheck(attribute="Bright", steps=30, eval_every=10, batch_size=32, lr=3e-3)
    curve = tower_capacity(model, _Faces(256, 0), _Faces(128, 1), check)
    assert [step for step, _ in curve] == [0, 10, 20, 30]
    assert all(0.0 <= auc <= 1.0 for _, auc in curve)
    assert curve[-1][1] > 0.95  # brightness is easy to see: the head reads it after training
    for k, v in model.clip.state_dict().items():
        if not k.startswith("visual."):
            torch.testing.assert_close(v, text_before[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(v, visual_before[k])
               for k, v in model.clip.visual.state_dict().items())


def test_an_unknown_attribute_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="Bright"):
        tower_capacity(tiny_clip(), _Faces(8, 0), _Faces(8, 1), CapacityCheck(attribute="Bald"))
