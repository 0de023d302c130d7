"""The sampling-time compiled U-Net: padding changes nothing, callers never wait in
"background" mode, the faster path is chosen by timing, failures stay eager (with a fake
compiler), and Inductor's frozen graph agrees with the eager U-Net (slow: it compiles)."""
import time

import pytest
import torch

from playground.pipelines import compiled_unet
from playground.pipelines.compiled_unet import CompileConfig, FastUNet, pad_tokens
from playground.pipelines.inference import inference
from tests.helpers import tiny_models


@pytest.fixture(scope="module")
def unet():
    return tiny_models(seed=3)[2].eval()


def _inputs(n=2, length=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(n, 4, 8, 8, generator=g)
    t = torch.tensor([3, 11][:n])
    context = torch.randn(n, length, 16, generator=g)
    mask = torch.ones(n, length, dtype=torch.bool)
    mask[-1, -1] = False  # prompts of different lengths
    return x_t, t, context, mask


class CountingCompiler:
    """A stand-in for Inductor: the eager U-Net behind a counter, optionally slowed down."""

    def __init__(self, delay=0.0, error=None):
        self.delay, self.error, self.builds, self.calls = delay, error, [], 0

    def __call__(self, unet, inputs):
        if self.error:
            raise self.error
        self.builds.append(tuple(inputs[0].shape))

        def compiled(*args):
            self.calls += 1
            time.sleep(self.delay)
            return unet(*args)

        compiled(*inputs)
        return compiled


def test_masked_padding_tokens_change_no_output(unet):
    x_t, t, context, mask = _inputs(length=3)
    padded = pad_tokens(context, mask, 8)
    assert padded[0].shape == (2, 8, 16) and padded[1][:, 3:].sum() == 0
    assert pad_tokens(*padded, 8)[0] is padded[0]  # already a multiple: untouched
    with inference():
        torch.testing.assert_close(unet(x_t, t, *padded), unet(x_t, t, context, mask),
                                   atol=1e-5, rtol=1e-5)


def test_background_mode_answers_eagerly_then_uses_the_faster_compiled_graph(unet):
    compiler = CountingCompiler()
    fast = FastUNet(unet, CompileConfig(mode="background", min_speedup=0.0), compile_fn=compiler)
    x_t, t, context, mask = _inputs()
    with inference():
        expected = unet(x_t, t, context, mask)
        first = fast(x_t, t, context, mask)  # eager; the shape is queued
        fast.wait(60)
        used_before = compiler.calls
        second = fast(x_t, t, context, mask)
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, expected, atol=1e-5, rtol=1e-5)
    assert compiler.builds == [(2, 4, 8, 8)] and compiler.calls == used_before + 1
    (decision,) = fast.decisions.values()
    assert decision.startswith("compiled")
    with inference():  # another token length is another graph
        fast(*_inputs(length=9))
    fast.wait(60)
    assert len(compiler.builds) == 2


def test_a_slower_compiled_graph_or_a_failing_compiler_leaves_the_eager_unet(unet):
    x_t, t, context, mask = _inputs()
    slow = CountingCompiler(delay=0.05)
    fast = FastUNet(unet, CompileConfig(mode="wait", timing_calls=2), compile_fn=slow)
    with inference():
        fast(x_t, t, context, mask)
        calls = slow.calls
        fast(x_t, t, context, mask)
    assert slow.calls == calls  # timed, found slower, not used
    assert next(iter(fast.decisions.values())).startswith("eager (compiled only 0.")

    broken = FastUNet(unet, CompileConfig(mode="wait"),
                      compile_fn=CountingCompiler(error=RuntimeError("no C++ compiler")))
    with inference():
        out = broken(x_t, t, context, mask)
    torch.testing.assert_close(out, unet(x_t, t, context, mask), atol=1e-5, rtol=1e-5)
    assert next(iter(broken.decisions.values())) == "failed: RuntimeError: no C++ compiler"


def test_only_inference_mode_calls_are_compiled_and_bad_shapes_still_raise(unet):
    compiler = CountingCompiler()
    fast = FastUNet(unet, CompileConfig(mode="wait", min_speedup=0.0), compile_fn=compiler)
    x_t, t, context, mask = _inputs()
    with torch.no_grad():
        fast(x_t, t, context, mask)
    assert compiler.builds == [] and fast.decisions == {}
    with inference(), pytest.raises(ValueError, match="x_t"):
        fast(x_t[:, :3], t, context, mask)
    assert compiler.builds == []


def test_the_mode_comes_from_the_environment(unet, monkeypatch):
    monkeypatch.setenv(compiled_unet.ENV, "off")
    assert compiled_unet.fast(unet) is unet
    monkeypatch.setenv(compiled_unet.ENV, "background")
    wrapper = compiled_unet.fast(unet)
    assert isinstance(wrapper, FastUNet) and compiled_unet.fast(unet) is wrapper
    monkeypatch.setenv(compiled_unet.ENV, "fastest")
    with pytest.raises(ValueError, match="PLAYGROUND_UNET_COMPILE"):
        compiled_unet.fast(unet)


@pytest.mark.slow
def test_inductor_frozen_graph_matches_the_eager_unet(unet):
    fast = FastUNet(unet, CompileConfig(mode="wait", min_speedup=0.0))
    x_t, t, context, mask = _inputs()
    with inference():
        expected = unet(x_t, t, context, mask)
        out = fast(x_t, t, context, mask)
    assert next(iter(fast.decisions.values())).startswith("compiled"), fast.decisions
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
