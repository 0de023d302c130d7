"""The CLIP trainer's auxiliary losses (``--attribute-weight``, ``--factor-weight``), on tiny
models (the contrastive loss is tested in test_clip_training)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from playground.store.checkpoints import load_model
from playground.store.files import read_safetensors
from playground.training.trainers.clip import CLIPTrainConfig, train_clip
from playground.training.trainers.clip_losses import (
    FACE_FACTORS,
    AttributeHead,
    attribute_loss,
    attribute_matrix,
    balanced_mean,
    factor_loss,
    factor_matrix,
)
from tests.helpers import TINY_CLIP as TINY


def test_attribute_loss_is_the_mean_bce_and_reaches_the_image_embedding():
    head = AttributeHead(4, ("a", "b"))
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # p = 0.5 and 0.75
    labels = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    features = torch.nn.functional.normalize(torch.randn(2, 4), dim=1).requires_grad_()
    loss = attribute_loss(head, features, labels)
    expected = -(math.log(0.5) + math.log(0.75) + math.log(0.5) + math.log(0.25)) / 4
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    with torch.no_grad():  # √E scaling: a unit-norm embedding's coordinates have unit variance
        head.linear.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]]))
        head.linear.bias.zero_()
    one_hot = torch.tensor([[1.0, 0, 0, 0]])
    assert head(one_hot)[0].tolist() == pytest.approx([2.0, 0.0])
    attribute_loss(head, features, labels).backward()
    assert features.grad is not None and float(features.grad.abs().sum()) > 0


def test_attribute_matrix_orders_columns_by_name_and_needs_labels():
    attributes = {"Smiling": np.array([1, 0, 1]), "Bald": np.array([0, 0, 1])}
    matrix = attribute_matrix(attributes, ("Bald", "Smiling"))
    assert matrix.dtype == torch.float32
    assert matrix.tolist() == [[0, 1], [0, 0], [1, 1]]
    with pytest.raises(ValueError, match="attribute labels"):
        attribute_matrix({}, ())


def test_factor_targets_span_each_factors_drawing_range_and_leave_out_the_background():
    factors = {"brow": np.array([0.0, 0.6, 1.0]), "yaw": np.array([-1.0, 0.0, 0.5]),
               "background": np.array([0.1, 0.2, 0.3]), "hair_color": np.array([0, 1, 2])}
    names, targets = factor_matrix(factors)
    assert names == ("yaw", "brow") and "background" not in FACE_FACTORS
    assert targets.dtype == torch.float32
    torch.testing.assert_close(targets, torch.tensor([[-1.0, -1.0], [0.0, 0.2], [0.5, 1.0]]))
    with pytest.raises(ValueError, match="factors"):
        factor_matrix({})


def test_factor_loss_is_the_mean_squared_error_and_reaches_the_image_embedding():
    head = AttributeHead(4, ("brow", "yaw"))
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([0.5, -1.0]))
    targets = torch.tensor([[1.0, -1.0], [0.0, 1.0]])
    features = torch.nn.functional.normalize(torch.randn(2, 4), dim=1).requires_grad_()
    loss = factor_loss(head, features, targets)
    assert float(loss.detach()) == pytest.approx((0.25 + 0 + 0.25 + 4) / 4, rel=1e-6)
    with torch.no_grad():
        head.linear.weight.normal_()
    factor_loss(head, features, targets).backward()
    assert features.grad is not None and float(features.grad.abs().sum()) > 0


def test_loss_balance_weights_each_target_by_its_share_and_sends_the_gradient_where_it_is_high():
    per_target = torch.tensor([0.3, 0.05, 0.05, 0.0], requires_grad=True)
    assert float(balanced_mean(per_target.detach(), "mean")) == pytest.approx(0.1)
    value = balanced_mean(per_target, "loss")
    assert float(value.detach()) == pytest.approx((0.09 + 0.0025 + 0.0025) / 0.4)  # Σ L² / Σ L
    value.backward()  # weights held constant: ∂/∂L_t = (L_t / mean L) / T = L_t / Σ L
    torch.testing.assert_close(per_target.grad, torch.tensor([0.75, 0.125, 0.125, 0.0]))
    even = torch.full((5,), 0.2)  # equal losses: the same as the plain mean
    assert float(balanced_mean(even, "loss")) == pytest.approx(float(balanced_mean(even, "mean")))
    assert float(balanced_mean(torch.zeros(3), "loss")) == 0.0  # all learned: no 0/0
    with pytest.raises(ValueError, match="head balance"):
        balanced_mean(per_target, "max")


def test_balanced_heads_give_a_target_at_chance_more_of_the_embeddings_gradient():
    head = AttributeHead(4, ("brow", "yaw"))
    with torch.no_grad():
        head.linear.weight.copy_(torch.eye(2, 4))
        head.linear.bias.zero_()
    features = torch.nn.functional.normalize(torch.tensor([[1.0, 0.5, 0, 0]]), dim=1)
    targets = torch.tensor([[-1.0, features[0, 1].item() * 2]])  # yaw read exactly, brow not
    grads = {}
    for balance in ("mean", "loss"):
        f = features.clone().requires_grad_()
        factor_loss(head, f, targets, balance).backward()
        grads[balance] = f.grad[0]
    assert float(grads["mean"][1]) == pytest.approx(0.0, abs=1e-6)  # a learned target adds none
    ratio = grads["loss"][0] / grads["mean"][0]
    assert float(ratio) == pytest.approx(2.0, rel=1e-5)  # the brow holds all the loss: T = 2
    labels = torch.tensor([[1.0, 0.0]])
    with torch.no_grad():
        a, b = (attribute_loss(head, features, labels, balance) for balance in ("mean", "loss"))
        per = torch.nn.functional.binary_cross_entropy_with_logits(
            head(features), labels, reduction="none")[0]
    assert float(a) == pytest.approx(float(per.mean()), rel=1e-6)
    assert float(b) == pytest.approx(float((per ** 2).sum() / per.sum()), rel=1e-6)


def test_attribute_weight_is_checked():
    with pytest.raises(ValueError, match="attribute_weight"):
        CLIPTrainConfig(**TINY, attribute_weight=-1.0)


def _full_then_resumed_halves(tmp_path, small_sets, patch_resume=None, **heads) -> dict:
    """4 steps in tmp_path/full; 2 in tmp_path/half, resumed there to 4 (after `patch_resume()`,
    if given). `heads`: the loss weights (default the attribute head alone). Returns the
    options both share."""
    train, val = small_sets
    common = dict(**TINY, batch_size=32, threads=1, progress=False, checkpoint_minutes=0.0,
                  lr_schedule="constant", amp="none", layout="contiguous", log_every=1,
                  **(heads or {"attribute_weight": 1.0}))
    train_clip(CLIPTrainConfig(**common, max_steps=4, out=str(tmp_path / "full")),
               train_set=train, val_set=val)
    train_clip(CLIPTrainConfig(**common, max_steps=2, out=str(tmp_path / "half")),
               train_set=train, val_set=val)
    tensors, _ = read_safetensors(tmp_path / "half" / "train_state.safetensors")
    for key in ("attribute_head", "factor_head"):
        if common.get(key.replace("_head", "_weight")):
            assert sorted(k.split(f"{key}.")[1] for k in tensors if f"{key}." in k) == [
                "linear.bias", "linear.weight"]
    if patch_resume is not None:
        patch_resume()
    train_clip(CLIPTrainConfig(**common, max_steps=4, out=str(tmp_path / "half")),
               resume=True, train_set=train, val_set=val)
    return common


def test_the_attribute_head_trains_is_not_shipped_and_resumes_exactly(tmp_path, small_sets):
    # the resumed half must continue the head it saved: a fresh one would change the tower's
    # gradients in steps 3 and 4, and the weights would differ from the uninterrupted run
    common = _full_then_resumed_halves(tmp_path, small_sets)
    full, half = load_model(tmp_path / "full"), load_model(tmp_path / "half")
    assert not [k for k in full.state_dict() if "attribute" in k]  # ships as a plain CLIP
    for (name, p), q in zip(full.state_dict().items(), half.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    lines = [json.loads(line) for line in
             (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    logged = [line["attribute_loss"] for line in lines if "attribute_loss" in line]
    assert logged and all(0 < v < 2 for v in logged)  # ≈ ln 2 per label at the start
    train, val = small_sets
    with pytest.raises(ValueError, match="attribute_weight"):  # the head's optimizer slots
        train_clip(CLIPTrainConfig(**{**common, "attribute_weight": 0.0}, max_steps=5,
                                   out=str(tmp_path / "half")),
                   resume=True, train_set=train, val_set=val)


def test_a_resume_without_the_head_state_would_not_be_exact(tmp_path, small_sets, monkeypatch):
    """The exactness above is a real check: the same halves, with the saved head replaced by
    a fresh one at the resume, end elsewhere."""
    _full_then_resumed_halves(tmp_path, small_sets, patch_resume=lambda: monkeypatch.setattr(
        AttributeHead, "load_state_dict", lambda self, state: None))
    full, half = load_model(tmp_path / "full"), load_model(tmp_path / "half")
    assert any(not torch.equal(p, q) for p, q in
               zip(full.state_dict().values(), half.state_dict().values()))


def test_the_factor_head_trains_beside_the_attribute_head_is_not_shipped_and_resumes_exactly(
        tmp_path, small_sets):
    common = _full_then_resumed_halves(tmp_path, small_sets, attribute_weight=1.0,
                                       factor_weight=2.0)
    full, half = load_model(tmp_path / "full"), load_model(tmp_path / "half")
    assert not [k for k in full.state_dict() if "factor" in k or "attribute" in k]
    for (name, p), q in zip(full.state_dict().items(), half.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    train, val = small_sets
    train_clip(CLIPTrainConfig(**{**common, "factor_weight": 0.0}, max_steps=4,
                               out=str(tmp_path / "attributes_only")), train_set=train, val_set=val)
    without = load_model(tmp_path / "attributes_only")  # the factors' gradient reached the tower
    assert any(not torch.equal(p, q) for p, q in
               zip(full.state_dict().values(), without.state_dict().values()))
    lines = [json.loads(line) for line in
             (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    logged = [line["factor_loss"] for line in lines if "factor_loss" in line]
    assert logged and all(0 < v < 3 for v in logged)  # targets in [-1, 1]
    with pytest.raises(ValueError, match="factor_weight"):
        train_clip(CLIPTrainConfig(**{**common, "factor_weight": 0.0}, max_steps=5,
                                   out=str(tmp_path / "half")),
                   resume=True, train_set=train, val_set=val)
    with pytest.raises(ValueError, match="factor_weight must be"):
        CLIPTrainConfig(**TINY, factor_weight=-1.0)


def test_a_balanced_run_resumes_exactly_and_keeps_its_balance(tmp_path, small_sets):
    common = _full_then_resumed_halves(tmp_path, small_sets, attribute_weight=1.0,
                                       factor_weight=1.0, head_balance="loss")
    full, half = load_model(tmp_path / "full"), load_model(tmp_path / "half")
    for (name, p), q in zip(full.state_dict().items(), half.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    train, val = small_sets
    train_clip(CLIPTrainConfig(**{**common, "head_balance": "mean"}, max_steps=4,
                               out=str(tmp_path / "plain")), train_set=train, val_set=val)
    plain = load_model(tmp_path / "plain")  # the balance changed what the tower learned
    assert any(not torch.equal(p, q) for p, q in
               zip(full.state_dict().values(), plain.state_dict().values()))
    with pytest.raises(ValueError, match="head_balance"):
        train_clip(CLIPTrainConfig(**{**common, "head_balance": "mean"}, max_steps=5,
                                   out=str(tmp_path / "half")),
                   resume=True, train_set=train, val_set=val)
    with pytest.raises(ValueError, match="head_balance must be"):
        CLIPTrainConfig(**TINY, head_balance="max")
