"""Heavy handlers computed in worker processes, so that a slider move never waits for them.

A low CPU priority (`playground.app.priority`) is not enough while the heavy work shares the
server's interpreter: a diffusion step holds the GIL between torch ops, and a nice-10 thread
that holds the GIL while the scheduler has parked it stalls every light event behind it. In its
own process the heavy work holds no lock the server needs, and the OS scheduler alone decides.

    heavy_workers.start()                    # python app.py does this (PLAYGROUND_HEAVY_WORK)
    frames = heavy_workers.stream(run_ddim, *inputs)   # the same frames, computed in a worker

Each worker is a fresh Python process at `nice` (not a fork, which would copy the server's
threads; not multiprocessing's spawn, which re-runs the server's main script). It imports each
handler by its module and name (so only module-level handlers travel; `priority.background`
keeps the others on threads), loads the models it needs once and keeps them. A streaming
handler computes one frame ahead of the page (the next frame is sampled while this process
encodes the last): Stop closes it in the worker, after the frame in flight. A worker that
dies is replaced and its caller gets an error that says so; nothing else is lost.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

MODES = ("process", "thread")
# where heavy handlers run when the app is served: "process" (here) or "thread" (priority.py)
DEFAULT_MODE = "process"

_pool: queue.Queue | None = None
_pool_lock = threading.Lock()
_started_nice = 0  # how the running pool was started (a dead worker's replacement starts alike)
_warm_up: tuple[str, str] | None = None


def mode_from_env() -> str:
    """``$PLAYGROUND_HEAVY_WORK`` ("process" or "thread"; default "process")."""
    mode = os.environ.get("PLAYGROUND_HEAVY_WORK", DEFAULT_MODE).strip().lower()
    if mode not in MODES:
        raise ValueError(f"PLAYGROUND_HEAVY_WORK must be one of {MODES}, got {mode!r}")
    return mode


def resolve(handler):
    """(module, qualified name) by which a worker finds `handler`, or None where it cannot
    (a closure, a lambda, a function replaced after import)."""
    module, name = getattr(handler, "__module__", None), getattr(handler, "__qualname__", "")
    if not module or "<" in name:
        return None
    try:
        found = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return (module, name) if found is handler else None


def _portable(err: BaseException) -> BaseException:
    """`err` if it can cross the pipe, else a RuntimeError with its type and message.

    ``pickle.dumps`` catches unpicklable attributes; ``copy.copy`` rebuilds the exception
    through the same ``__reduce_ex__`` path the receiving side would (it fails, as the
    receiver would, for exceptions whose ``__init__`` needs arguments that ``args`` lacks)
    without unpickling any bytes.
    """
    try:
        pickle.dumps(err)
        copy.copy(err)
        return err
    except Exception:  # noqa: BLE001 - any unpicklable exception is reported by its text
        return RuntimeError(f"{type(err).__name__}: {err}")


def _serve(conn, nice: int, warm_up: tuple[str, str] | None) -> None:
    """A worker's loop: answer ("call", module, name, args, kwargs), ("next",), ("close",)."""
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    if warm_up:
        try:
            getattr(importlib.import_module(warm_up[0]), warm_up[1])()
        except Exception:  # noqa: BLE001 - a model that fails to load fails again, visibly, on use
            pass
    frames = None
    while True:
        try:
            op, *rest = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if op == "call":
                module, name, args, kwargs = rest
                fn = importlib.import_module(module)
                for part in name.split("."):
                    fn = getattr(fn, part)
                result = fn(*args, **kwargs)
                if inspect.isgenerator(result):
                    frames = result
                    conn.send(("stream", None))
                else:
                    conn.send(("value", result))
            elif op == "next":
                try:
                    conn.send(("value", next(frames)))
                except StopIteration:
                    frames = None
                    conn.send(("done", None))
            elif op == "close":
                if frames is not None:
                    frames.close()
                frames = None
                conn.send(("closed", None))
        except BaseException as err:  # noqa: BLE001 - the caller re-raises it
            frames = None
            conn.send(("error", _portable(err)))


def _exit_with_parent(parent: int) -> None:
    """End this worker when the server that started it is gone (even mid-run)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


class Worker:
    """One worker process and the socket to it."""

    def __init__(self, nice: int, warm_up: tuple[str, str] | None = None):
        mine, theirs = socket.socketpair()
        # the worker imports what this process can import (tests' modules too)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno()), str(int(nice)),
             ":".join(warm_up or ())], pass_fds=(theirs.fileno(),), env=env)
        theirs.close()
        self.conn = Connection(mine.detach())

    def send(self, *message) -> None:
        """Send `message`; its answer is read by `answer`."""
        try:
            self.conn.send(message)
        except (EOFError, OSError, BrokenPipeError) as err:
            raise WorkerDied(DIED_MESSAGE) from err

    def answer(self):
        """The next answer's (kind, value), re-raising the handler's error."""
        try:
            kind, value = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as err:
            raise WorkerDied(DIED_MESSAGE) from err
        if kind == "error":
            raise value
        return kind, value

    def ask(self, *message):
        """Send `message`, return its answer (re-raising the handler's error)."""
        self.send(*message)
        return self.answer()

    def stop(self) -> None:
        self.conn.close()  # the worker's recv ends: it returns
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class WorkerDied(RuntimeError):
    """The worker process ended while computing a call."""


DIED_MESSAGE = ("the worker computing this run stopped unexpectedly (out of memory?); it has "
                "been restarted: please run again")


def start(workers: int, nice: int = 0, warm_up: tuple[str, str] | None = None) -> None:
    """Start `workers` processes at `nice` (each first calls ``module.function()`` of `warm_up`,
    e.g. to load the models); idempotent."""
    global _pool, _started_nice, _warm_up
    with _pool_lock:
        if _pool is not None:
            return
        _started_nice, _warm_up = nice, warm_up
        pool = queue.Queue()
        for _ in range(workers):
            pool.put(Worker(nice, warm_up))
        _pool = pool



def running() -> bool:
    return _pool is not None


def shutdown() -> None:
    """Stop every idle worker (busy ones end with the server)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    while pool is not None and not pool.empty():
        pool.get_nowait().stop()


def _checkout() -> Worker:
    if _pool is None:
        raise RuntimeError("heavy_workers.start() has not been called")
    return _pool.get()  # as many workers as the "diffusion" queue runs at once: rarely waits


def _give_back(worker: Worker, healthy: bool) -> None:
    if not healthy:
        worker.stop()
        worker = Worker(_started_nice, _warm_up)
    if _pool is not None:
        _pool.put(worker)
    else:
        worker.stop()


def call(handler, *args, **kwargs):
    """handler(*args, **kwargs) computed in a worker → its return value."""
    where = resolve(handler)
    worker, healthy = _checkout(), True
    try:
        _, value = worker.ask("call", *where, args, kwargs)
        return value
    except WorkerDied:
        healthy = False
        raise
    finally:
        _give_back(worker, healthy)


def stream(handler, *args, **kwargs):
    """The frames of the generator handler(*args, **kwargs), computed in a worker one frame
    ahead: while this process encodes a frame for the page, the worker already samples the
    next, so the two overlap instead of adding up. Closing this generator (Stop) returns at
    once; the handler's is closed there, after the frame in flight, on a thread of its own."""
    where = resolve(handler)
    worker, healthy, open_stream, pending = _checkout(), True, False, False
    try:
        worker.ask("call", *where, args, kwargs)
        open_stream = True
        worker.send("next")
        pending = True
        while True:
            pending = False  # the answer is consumed, whatever it holds
            kind, frame = worker.answer()
            if kind == "done":
                open_stream = False
                return
            worker.send("next")
            pending = True
            yield frame
    except WorkerDied:
        healthy = False
        raise
    except GeneratorExit:  # closed early (Stop)
        raise
    except BaseException:
        open_stream = False  # the handler raised: the worker has dropped it
        raise
    finally:
        if healthy and open_stream:
            # Gradio closes a stopped stream on its event loop: waiting there for the frame
            # in flight would stall every session, so the worker is freed beside it
            threading.Thread(target=_close_stream, args=(worker, pending), daemon=True,
                             name="heavy-close").start()
        else:
            # an answer left unread (an exception thrown in at `yield`) would reach the next
            # caller: such a worker is replaced
            _give_back(worker, healthy and not pending)


def _close_stream(worker: Worker, pending: bool) -> None:
    """Stop's cleanup: read the frame still in flight (nobody waits for it now), close the
    handler in the worker (its own cleanup runs there), give the worker back. A worker that
    fails at any of this is replaced: there is no caller left to tell."""
    healthy = False
    try:
        if pending:
            try:
                worker.answer()
            except Exception:  # noqa: BLE001 - the stream's end or the handler's error (a
                pass  # dead worker fails again at "close" below)
        worker.ask("close")
        healthy = True
    except BaseException:  # noqa: BLE001 - see the docstring
        pass
    finally:
        _give_back(worker, healthy)


if __name__ == "__main__":  # a worker: python -m playground.app.heavy_workers FD NICE [MODULE:FN]
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _fd, _nice, _warm = sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""
    _serve(Connection(int(_fd)), _nice, tuple(_warm.split(":", 1)) if _warm else None)
