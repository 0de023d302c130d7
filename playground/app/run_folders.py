"""The Train tab's run folders: run names (checked, reserved, free), the folders ``runs/<name>/``
the app creates, and which of them were started here.

A marker file ``app_run.json`` in every folder this app creates lets Resume touch only runs
started in the Train tab, never a command-line run; names are never those of a shipped model in
trained/, nor a folder the command-line trainers use by default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from playground.store import checkpoints, files
from playground.training.runs import LOG_FILE, TRAIN_STATE_JSON

APP_MARKER = "app_run.json"  # written into every run folder this module creates
# Names the command-line trainers write to by default (runs/<name>): the app never uses them.
RESERVED_NAMES = frozenset({"vae", "autoencoder", "judge", "clip", "ldm", "unet"})


# =========================================================================== names
def check_name(name: Any) -> str:
    """A valid run name, or ValueError saying what is allowed."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("run name is empty: type one, e.g. my-vae-beta4")
    name = name.strip()
    if len(name) > 64 or not checkpoints.is_valid_name(name):
        raise ValueError(f"invalid run name {name!r}: use up to 64 letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit (no '..', no '/')")
    return name


def free_name(beta: float) -> str:
    """``my-vae-beta<β>`` or the first ``my-vae-beta<β>-<k>`` that no folder uses yet."""
    base = f"my-vae-beta{beta:g}".replace("+", "")
    k = 1
    while True:
        name = base if k == 1 else f"{base}-{k}"
        if not (checkpoints.runs_dir() / name).exists() and not (
                checkpoints.trained_dir() / name).exists():
            return name
        k += 1


# =========================================================================== run folders
def run_folder(name: str) -> Path:
    """runs/<name> for a checked run name (it may not exist yet)."""
    return checkpoints.runs_dir() / check_name(name)


def require_run(folder: Path) -> None:
    """ValueError naming the runs started here when `folder` (a `run_folder`) does not exist."""
    if not folder.is_dir():
        raise ValueError(f"there is no run named {folder.name!r} in {checkpoints.runs_dir()}; "
                         f"runs started here: {', '.join(app_runs()) or 'none yet'}")


def is_app_run(folder: Path) -> bool:
    """Whether the Train tab created `folder` (its marker file is there)."""
    return (folder / APP_MARKER).is_file()


def app_runs() -> list[str]:
    """Names of the runs started from the app, newest first."""
    root = checkpoints.runs_dir()
    if not root.is_dir():
        return []
    found = [f for f in root.iterdir() if f.is_dir() and checkpoints.is_valid_name(f.name)
             and is_app_run(f)]
    found.sort(key=lambda f: (f / APP_MARKER).stat().st_mtime, reverse=True)
    return [f.name for f in found]


def make_run_folder(name: str, max_runs: int | None) -> Path:
    """Create runs/<name> for a new app run (or reuse an app run's folder that never reached
    its first step); ValueError for a reserved name, a shipped model's name, a run that exists
    already, or `max_runs` app runs kept already (None: no cap)."""
    check_name(name)
    if name in RESERVED_NAMES:
        raise ValueError(f"run name {name!r} is reserved for the command-line trainers: "
                         "choose another")
    if (checkpoints.trained_dir() / name).exists():
        raise ValueError(f"{name!r} is the name of a shipped model in trained/: choose "
                         "another name (runs never overwrite trained/)")
    folder = checkpoints.runs_dir() / name
    if folder.exists():
        empty_app_run = (is_app_run(folder) and not (folder / TRAIN_STATE_JSON).exists()
                         and not (folder / checkpoints.WEIGHTS_FILE).exists())
        if not empty_app_run:
            hint = "press Resume to continue it, or " if is_app_run(folder) else ""
            raise ValueError(f"a run named {name!r} exists already: {hint}choose another "
                             "name")
        (folder / LOG_FILE).unlink(missing_ok=True)  # a start that failed before any step
    if max_runs is not None and len(app_runs()) >= max_runs:
        raise ValueError(f"this server keeps at most {max_runs} runs and has them "
                         "all: resume one of them instead")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def read_json_or_none(path: Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing, unreadable or not an object
    (a run folder may be mid-write or half made)."""
    try:
        data = files.read_json(path)
    except (FileNotFoundError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of `path`, None when it does not exist: changes whenever it is rewritten."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)
