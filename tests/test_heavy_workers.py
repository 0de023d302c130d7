"""Heavy handlers in worker processes (playground.app.heavy_workers): the same frames and
values as in place, errors and Stop carried across, a dead worker replaced."""
from __future__ import annotations

import os
import time

import gradio as gr
import pytest

from playground.app import heavy_workers, priority


def frames_with_pid(n, marker=None):
    """Yields (i, the computing process's pid); writes `marker` when closed or finished."""
    try:
        for i in range(n):
            yield i, os.getpid()
    finally:
        if marker:
            with open(marker, "a") as f:
                f.write("closed\n")


def value_with_pid(x):
    return x * 2, os.getpid(), os.getpriority(os.PRIO_PROCESS, 0)


def user_error(message):
    raise gr.Error(message)


def failing_stream(after):
    yield 0
    if after:
        raise ValueError("the seed must be ≥ 0")


def dies():
    os._exit(3)


@pytest.fixture(scope="module")
def workers():
    heavy_workers.start(1, nice=5)
    yield
    heavy_workers.shutdown()


def test_a_worker_computes_a_value_in_another_process_at_its_nice_value(workers):
    doubled, pid, nice = heavy_workers.call(value_with_pid, 21)
    assert doubled == 42 and pid != os.getpid()
    assert nice == os.getpriority(os.PRIO_PROCESS, 0) + 5 or nice == 19


def test_a_stream_yields_the_frames_the_generator_yields_in_place(workers):
    here = [i for i, _ in frames_with_pid(4)]
    there = list(heavy_workers.stream(frames_with_pid, 4))
    assert [i for i, _ in there] == here == [0, 1, 2, 3]
    assert {pid for _, pid in there} != {os.getpid()} and len({pid for _, pid in there}) == 1


def frames_logged(n, log):
    """Yields 0..n-1, appending "computed i" to `log` as each frame is computed."""
    for i in range(n):
        with open(log, "a") as f:
            f.write(f"computed {i}\n")
        yield i


def test_the_worker_computes_the_next_frame_while_this_one_is_shown(workers, tmp_path):
    log = tmp_path / "log.txt"
    frames = heavy_workers.stream(frames_logged, 3, str(log))
    assert next(frames) == 0
    deadline = time.monotonic() + 10  # frame 1 is computed without being asked for
    while "computed 1" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.read_text().splitlines() == ["computed 0", "computed 1"]
    assert list(frames) == [1, 2]


def test_stopping_a_stream_closes_the_handler_there_and_frees_the_worker(workers, tmp_path):
    marker = tmp_path / "closed.txt"
    frames = heavy_workers.stream(frames_with_pid, 1000, str(marker))
    assert next(frames)[0] == 0 and next(frames)[0] == 1
    frames.close()  # what Stop does
    assert heavy_workers.call(value_with_pid, 1)[0] == 2  # the one worker is free again
    assert marker.read_text() == "closed\n"  # the handler's finally ran in the worker


def slow_frames(n, seconds):
    for i in range(n):
        time.sleep(seconds)
        yield i


def test_stop_returns_at_once_while_the_worker_finishes_its_frame(workers):
    frames = heavy_workers.stream(slow_frames, 10, 1.5)
    assert next(frames) == 0  # frame 1 is now being computed, 1.5 s long
    start = time.monotonic()
    frames.close()
    assert time.monotonic() - start < 0.5  # Gradio's event loop is not held for the frame
    assert heavy_workers.call(value_with_pid, 4)[0] == 8  # served once that frame is done


def test_user_errors_cross_over_as_the_same_error(workers):
    with pytest.raises(gr.Error, match="seed must be an integer"):
        heavy_workers.call(user_error, "seed must be an integer")
    frames = heavy_workers.stream(failing_stream, True)
    assert next(frames) == 0
    with pytest.raises(ValueError, match="the seed must be ≥ 0"):
        next(frames)
    assert list(heavy_workers.stream(failing_stream, False)) == [0]  # the worker still serves


def test_a_worker_that_dies_is_replaced_and_its_caller_told(workers):
    with pytest.raises(heavy_workers.WorkerDied, match="restarted"):
        heavy_workers.call(dies)
    assert heavy_workers.call(value_with_pid, 3)[0] == 6


def test_background_sends_module_level_handlers_to_the_workers_and_keeps_closures_here(workers):
    stream = priority.background(frames_with_pid)
    assert all(pid != os.getpid() for _, pid in stream(2))

    def local(n):  # a closure cannot be found by name in a worker: it runs on a thread here
        yield from frames_with_pid(n)

    assert heavy_workers.resolve(local) is None
    assert [pid for _, pid in priority.background(local)(2)] == [os.getpid()] * 2


def test_the_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_HEAVY_WORK", "thread")
    assert heavy_workers.mode_from_env() == "thread"
    monkeypatch.setenv("PLAYGROUND_HEAVY_WORK", "gpu")
    with pytest.raises(ValueError, match="PLAYGROUND_HEAVY_WORK"):
        heavy_workers.mode_from_env()


class _NeedsTwoArguments(Exception):
    def __init__(self, a, b):
        super().__init__(a)  # args keeps only `a`: rebuilding it from args fails


def test_an_error_that_cannot_cross_the_pipe_arrives_as_its_type_and_message():
    plain = ValueError("seed must be >= 0")
    assert heavy_workers._portable(plain) is plain
    converted = heavy_workers._portable(_NeedsTwoArguments("bad", "worse"))
    assert type(converted) is RuntimeError and str(converted) == "_NeedsTwoArguments: bad"
