"""What a detail is worth in BCE nats: the Bernoulli KL identity and real renders."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from playground.data.synthfaces import sample_factors
from playground.evaluation.detail_value import (
    DETAILS,
    Detail,
    bernoulli_kl,
    binary_entropy,
    detail_value,
    value_table,
)


def test_bernoulli_kl_is_the_bce_a_perfect_decoder_saves():
    rng = np.random.default_rng(0)
    p, q = rng.uniform(0.01, 0.99, (3, 4, 4, 3)), rng.uniform(0.01, 0.99, (3, 4, 4, 3))
    pt, qt = torch.from_numpy(p), torch.from_numpy(q)
    bce = lambda target, pred: F.binary_cross_entropy(pred, target, reduction="none").sum((1, 2, 3))  # noqa: E731
    assert bernoulli_kl(p, q) == pytest.approx((bce(pt, qt) - bce(pt, pt)).numpy(), rel=1e-9)
    assert np.all(bernoulli_kl(p, q) > 0) and np.all(bernoulli_kl(p, p) == 0)


def test_binary_entropy():
    assert binary_entropy(0.5) == pytest.approx(math.log(2))
    assert binary_entropy(0.35) == pytest.approx(binary_entropy(0.65))
    assert binary_entropy(0.0) == binary_entropy(1.0) == 0.0


def test_a_detail_saves_bce_only_when_it_changes_the_picture():
    factors = sample_factors(3, np.random.default_rng(1))
    lipstick = detail_value(DETAILS[0], factors)
    assert lipstick["pixels"] > 0 and lipstick["saving_median"] > 0
    assert lipstick["entropy"] == pytest.approx(binary_entropy(0.35))
    nothing = detail_value(Detail("none", "lipstick", 1, 1, 0.35), factors)
    assert nothing["saving_mean"] == 0 and nothing["pixels"] == 0
    glasses = detail_value(DETAILS[1], factors)
    assert glasses["saving_mean"] > lipstick["saving_mean"]  # 151 pixels against 31


def test_the_table_has_a_row_per_detail_and_the_judges_reading():
    table = value_table(faces=2, judged={"Wearing_Lipstick": 0.64}).splitlines()
    assert len(table) == 2 + len(DETAILS)
    assert table[2].startswith("| Wearing_Lipstick |") and table[2].endswith("| 0.64 |")
