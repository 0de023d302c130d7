"""Heavy handlers run their work at a lower CPU priority, with the caller's context, and
return or stream exactly what the handler itself would."""
import contextvars
import sys

import pytest

from playground.app import priority

REQUEST = contextvars.ContextVar("request", default=None)  # stands for Gradio's LocalContext


def test_a_plain_handler_returns_the_same_value_with_its_context():
    def handler(a, b=0):
        return a + b, REQUEST.get(), priority.thread_nice()

    REQUEST.set("event-1")
    before = priority.thread_nice()
    total, seen, nice = priority.background(handler)(2, b=3)
    assert (total, seen) == (5, "event-1")
    assert priority.thread_nice() == before  # the calling thread keeps its priority
    if sys.platform.startswith("linux"):
        assert nice == priority.HEAVY_NICE


def test_a_streaming_handler_yields_the_same_frames_and_is_closed_on_stop():
    closed = []

    def handler(n):
        try:
            for i in range(n):
                yield i, REQUEST.get(), priority.thread_nice()
        finally:
            closed.append(True)

    REQUEST.set("event-2")
    wrapped = priority.background(handler)
    frames = list(wrapped(3))
    assert [f[0] for f in frames] == [0, 1, 2] and {f[1] for f in frames} == {"event-2"}
    if sys.platform.startswith("linux"):
        assert {f[2] for f in frames} == {priority.HEAVY_NICE}
    assert closed == [True]
    stream = wrapped(10)
    assert next(stream)[0] == 0
    stream.close()  # what Stop does: the handler's own cleanup runs
    assert closed == [True, True]


def test_errors_reach_the_caller_unchanged():
    def handler():
        raise ValueError("seed must be between 0 and 9")

    with pytest.raises(ValueError, match="seed must be between"):
        priority.background(handler)()

    def failing_stream():
        yield 1
        raise ValueError("steps must be positive")

    stream = priority.background(failing_stream)()
    assert next(stream) == 1
    with pytest.raises(ValueError, match="steps must be positive"):
        next(stream)


def test_gradio_still_sees_the_handler_signature():
    import inspect

    import gradio as gr

    def handler(prompt, progress=gr.Progress()):  # noqa: B008 (Gradio's own idiom)
        yield prompt

    wrapped = priority.background(handler)
    assert inspect.isgeneratorfunction(wrapped)
    assert list(inspect.signature(wrapped).parameters) == ["prompt", "progress"]
