"""The run folder and the clock of a run: log.jsonl, checkpoint names, time budgets, stop
requests, progress bars.

A run folder holds:
    config.json, model.safetensors     the model so far (`playground.load(<folder>)` opens it)
    train_state.safetensors            model + optimizer tensors, with the JSON state below
                                       embedded in its metadata (one file = one consistent state)
    train_state.json                   the same JSON state, readable: epoch, step, elapsed, args
    log.jsonl                          one JSON object per line: {"type": "train" | "val" |
                                       "probe" | "speed", ...}
    metrics.json                       written at the end
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from playground.store.files import atomic_write_bytes

TRAIN_STATE_TENSORS = "train_state.safetensors"
TRAIN_STATE_JSON = "train_state.json"
LOG_FILE = "log.jsonl"


class RunFolder:
    """The output folder of one run; only the main process writes to it."""

    def __init__(self, path: str | os.PathLike, is_main: bool = True):
        self.path = Path(path)
        self.is_main = is_main
        if is_main:
            self.path.mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    def has_checkpoint(self) -> bool:
        return (self.path / TRAIN_STATE_TENSORS).is_file()

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to log.jsonl (flushed, so a UI tailing the file sees it now)."""
        if not self.is_main:
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")
            f.flush()

    def truncate_log(self, last_step: int) -> None:
        """Drop log lines after `last_step` (written after the checkpoint a run resumes from),
        and any torn last line, so a resumed run's curve has no duplicates."""
        if not self.is_main or not self.log_path.is_file():
            return
        kept = [r for r in read_log(self.path) if int(r.get("step", 0)) <= last_step]
        text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept)
        atomic_write_bytes(self.log_path, text.encode("utf-8"))

    def remove_stale_temp_files(self) -> None:
        """Delete ``.<name>.*.tmp`` files left by a process killed in the middle of a save."""
        if self.is_main:
            for tmp in self.path.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``<run_dir>/log.jsonl`` (a torn or corrupt line is skipped)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class Stopwatch:
    """Training seconds, counting the time of earlier (resumed) sessions too."""

    def __init__(self, already: float = 0.0):
        self.already = float(already)
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.already + time.perf_counter() - self.start


class Every:
    """True every `seconds` of wall time (e.g. periodic checkpoints); None/≤0 = never."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.last = time.perf_counter()

    def due(self) -> bool:
        return bool(self.seconds) and self.seconds > 0 and time.perf_counter() - self.last >= self.seconds

    def reset(self) -> None:
        self.last = time.perf_counter()


class GracefulStop:
    """Stop at the next step boundary on request, with a checkpoint instead of lost work.

    Inside ``with GracefulStop() as stop:``, the first SIGINT (Ctrl-C) or SIGTERM (a UI's
    cancel) sets ``stop.requested``; a second one acts as usual (aborts). `event` (a
    ``threading.Event``) is a second way to ask, for a run started in a thread. Signal
    handlers are only installed from the main thread, and restored on exit.
    """

    def __init__(self, event: Any = None):
        self.event = event
        self._requested = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self._requested or (self.event is not None and self.event.is_set())

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        self._requested = True
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        print("\nstopping after this step with a checkpoint (signal again to abort)", flush=True)


def progress_bar(total: int, initial: int = 0, desc: str = "", enabled: bool = True):
    """A tqdm bar over the steps of one epoch (disabled on non-main ranks)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled,
                dynamic_ncols=True, mininterval=0.5, unit="step")
