"""Shared pieces of the VAE tabs: model choice, face source, upload handling, error mapping.

The tabs stay thin: a handler turns widget values into one `playground.pipelines.vae` call and the
result into images. The core raises ValueError; `user_errors` shows it as a `gr.Error`.
"""
from __future__ import annotations

import functools
import inspect
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from playground.data import pictures
from playground.pipelines import face_sources
from playground.pipelines import vae as ops
from playground.pipelines.inputs import MAX_SEED, in_range, shown, whole_number
from playground.store import checkpoints, files

SOURCES = ("random", "data", "upload")  # where a face comes from
DATA_SIZE = 5_000  # faces in the SynthFaces test split ("a face from the data")
SHOW_SCALE = 4  # one 64 px face is shown at 256 px (nearest neighbour: the pixels stay honest)
LATEX = [{"left": "$$", "right": "$$", "display": True},
         {"left": "$", "right": "$", "display": False}]
UPLOAD_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"]


# ------------------------------------------------------------------------------ errors
def user_errors(fn):
    """Decorator for handlers: a ValueError from the core becomes a `gr.Error` with its message.

    (gr.Error is what the browser shows as a toast and what `gradio_client` raises; any other
    exception is a bug and is left alone.)
    """
    if inspect.isgeneratorfunction(fn):  # a streaming handler: errors come while iterating
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except ValueError as err:
                raise gr.Error(error_message(err)) from err

        return stream

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as err:
            raise gr.Error(error_message(err)) from err

    return wrapper


def error_message(err: Exception) -> str:
    """What the user sees for a core ValueError: its message, capitalised, cut to
    `MAX_ERROR_CHARS` (a message may echo a huge input)."""
    return _first_line_capitalised(str(err))


MAX_ERROR_CHARS = 500  # a message echoing a huge input (a 1 MB name) is cut to this length


def _first_line_capitalised(message: str) -> str:
    message = message.strip() or "invalid input"
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS - 1] + "…"
    return message[0].upper() + message[1:]


# ------------------------------------------------------------------------------ fields
def number_box(value, label: str, low: float, high: float, whole: bool = True,
               **kwargs) -> gr.Number:
    """A number field whose range is checked by `field_validator`, which writes a bad value's
    message under the field itself and leaves every output as it was. (gr.Number's own
    minimum/maximum would refuse the value before any validator runs, with a message that
    names no field, and mark every output of the event as failed.)"""
    # no precision either: Gradio would round 2.5 to 2 before the validator could say so
    box = gr.Number(value, label=label, **kwargs)
    box.valid_range = (low, high, whole)
    return box


def field_message(value, label: str, low: float, high: float, whole: bool) -> str | None:
    """What is wrong with `value` for the field `label` (None when nothing is)."""
    if value is None or value == "":
        kind = "a whole number" if whole else "a number"
        return f"{label} is empty: enter {kind} between {shown(low)} and {shown(high)}"
    try:
        in_range(value, label, low, high, whole=whole)
    except ValueError as err:
        return str(err)
    return None


def field_validator(inputs: list):
    """The ``validator=`` of an event: a bad value among `inputs` (a `number_box` out of range
    or empty; from an API client, a slider past its ends or a choice not offered) stops the
    event before it is queued, with the message under that field (and, for `gradio_client`, a
    ValidationError naming it); every output stays as it was. None when nothing is checked."""
    checks = [_field_check(component) for component in inputs]
    if not any(checks):
        return None

    def validate(*values):
        out = []
        for value, check in zip(values, checks):
            message = check(value) if check else None
            out.append(gr.validate(message is None, message or ""))
        return out

    return validate


def _field_check(component):
    """value → message or None, for the inputs a validator checks. A slider's or a choice's
    own check moves here: Gradio runs it before any validator, and an API client would get a
    bare HTTP 400 from it (the browser clamps sliders and offers only the choices)."""
    label = re.sub(r"\s*\(.*\)\s*$", "", getattr(component, "label", None) or "") or "value"
    if getattr(component, "valid_range", None):
        return functools.partial(_range_message, label=label, spec=component.valid_range)
    if isinstance(component, gr.Slider):
        low, high = component.minimum, component.maximum
        whole = float(component.step).is_integer() and float(low).is_integer()
        component.preprocess = functools.partial(gr.Number.round_to_precision,
                                                 precision=component.precision)
        return functools.partial(_range_message, label=label, spec=(low, high, whole))
    offered = isinstance(component, gr.Radio) or (
        isinstance(component, gr.Dropdown) and not component.allow_custom_value
        and not component.multiselect)
    if offered and component.type == "value":
        component.preprocess = _unchanged

        def check(value, choices=component):
            values = [v for _, v in choices.choices]
            return None if value in values else f"{label} must be one of {values}, got {value!r}"

        return check
    return None


def _unchanged(payload):
    return payload


def _range_message(value, label: str, spec: tuple) -> str | None:
    return field_message(value, label, *spec)


# ------------------------------------------------------------------------------ models
def model_names() -> list[str]:
    """The β-VAE models available now (trained/ then runs/), less those whose files are
    broken (see `unavailable_models`)."""
    return [m["name"] for m in checkpoints.list_models(kind="vae")
            if checkpoints.model_problem(m["path"]) is None]


def unavailable_models() -> list[tuple[str, str]]:
    """Model folders in trained/ and runs/ that a β-VAE tab cannot load → [(name, why)].

    A folder counts when its config.json says kind "vae" or cannot be read at all (then its
    kind is unknown); `checkpoints.model_problem` says what is wrong (missing or truncated
    weights, corrupt config.json).
    """
    broken, seen = [], set()
    for root in (checkpoints.trained_dir(), checkpoints.runs_dir()):
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            name = folder.name
            if (name in seen or not checkpoints.is_valid_name(name)
                    or not (folder / checkpoints.CONFIG_FILE).is_file()):
                continue
            seen.add(name)  # a runs/ folder of the same name is shadowed
            try:
                kind = files.read_json(folder / checkpoints.CONFIG_FILE).get("kind")
            except (ValueError, OSError, AttributeError):
                kind = None
            problem = checkpoints.model_problem(folder) if kind in ("vae", None) else None
            if problem:
                broken.append((name, problem))
    return sorted(broken)


def no_models_message() -> str:
    """Markdown shown at the top of a VAE tab: that there is no model to use, and which model
    folders are unavailable (broken files); "" when all is well."""
    parts = []
    if not model_names():
        parts.append("**" + _first_line_capitalised(ops.no_models_hint()) +
                     "** Then press ↻ to refresh the list. The other tabs work without it.")
    broken = unavailable_models()
    if broken:
        parts.append("**Unavailable** (their files cannot be loaded): " +
                     "; ".join(f"`{name}` — {why}" for name, why in broken) +
                     ". Retrain or re-ship them; the other models work.")
    return "\n\n".join(parts)


# The model a tab opens on: β = 1 reconstructs eyes and mouths, so the first face a student
# sees is one they recognise (the latent map opens on β = 10, the assignment's t-SNE model).
FIRST_MODEL = "vae-beta1"


def model_dropdown(label: str = "β-VAE model", preferred: str = FIRST_MODEL) -> gr.Dropdown:
    """Dropdown of the available β-VAEs, `preferred` first choice when present.

    Custom values are accepted on purpose: the choice is checked by `pipelines.vae.get_model`, whose
    error lists the models that exist (and a run trained after start-up can be typed in).
    """
    names = model_names()
    return gr.Dropdown(names, value=ops.default_model(names, preferred), label=label,
                       allow_custom_value=True, interactive=True, scale=4)


def refresh_models(current: str | None, preferred: str = FIRST_MODEL):
    """↻ handler: a new choices list for a model dropdown (keeps `current` if it still exists,
    else `preferred`)."""
    names = model_names()
    value = current if current in names else ops.default_model(names, preferred)
    return gr.update(choices=names, value=value)


# ------------------------------------------------------------------------------ face source
@dataclass
class FacePicker:
    """The widgets that say where a face comes from: `inputs` feed `load_face`."""

    source: gr.Radio
    seed: gr.Number
    index: gr.Number
    upload: gr.File

    @property
    def inputs(self) -> list:
        return [self.source, self.seed, self.index, self.upload]


def face_picker(label: str, seed: int = 0, index: int = 0) -> FacePicker:
    """Radio (random / data / upload) with a seed, a test-split index and an upload box."""
    source = gr.Radio(list(SOURCES), value="random", label=label,
                      info="random: a new SynthFaces face from the seed · data: face number "
                           "`index` of the SynthFaces test split · upload: your picture")
    with gr.Row():
        seed_box = number_box(seed, "seed", 0, MAX_SEED, min_width=80)
        index_box = number_box(index, f"data index (0–{DATA_SIZE - 1})", 0, DATA_SIZE - 1,
                               min_width=80)
    upload = gr.File(label="upload a picture (centre-cropped, resized to 64×64)",
                     file_types=UPLOAD_TYPES, type="filepath", height=90)
    return FacePicker(source, seed_box, index_box, upload)


def wire_upload(picker: FacePicker, api_name: str):
    """Uploading a file selects "upload" as the source; returns the event (for ``.then``)."""
    return picker.upload.upload(_select_upload, None, picker.source, api_name=api_name,
                                show_progress="hidden")


def _select_upload() -> str:
    return "upload"


def load_face(source: str, seed, index, upload) -> tuple[np.ndarray, str]:
    """The face a picker describes → (uint8 (64, 64, 3), Markdown note of where it came from).

    Raises ValueError for an unknown source, a bad seed/index, a missing or unreadable upload.
    """
    if source == "random":
        seed = _number(seed, "seed")
        return face_sources.random_face(seed), f"random SynthFaces face, seed {seed}"
    if source == "data":
        index = _number(index, "data index")
        return face_sources.dataset_face(index), f"SynthFaces test face #{index}"
    if source == "upload":
        if not upload:
            raise ValueError("upload a picture first (PNG, JPEG, WebP, …), or choose "
                             "'random' or 'data'")
        face, notice = face_sources.prepare_upload(upload)
        return face, f"uploaded {Path(str(upload)).name}: {notice}"
    raise ValueError(f"face source must be one of {list(SOURCES)}, got {source!r}")


def _number(value, name: str) -> int:
    if value is None or value == "":
        raise ValueError(f"{name} is empty: enter a whole number")
    return whole_number(value, name)


# ------------------------------------------------------------------------------ pictures
def show(face: np.ndarray, scale: int = SHOW_SCALE) -> np.ndarray:
    """One uint8 (64, 64, 3) face enlarged for display (nearest neighbour)."""
    return pictures.upscale(np.asarray(face), scale)


_FONT = None


def _font():
    """DejaVu Sans from matplotlib's data (it has β), else Pillow's default font."""
    global _FONT
    if _FONT is None:
        import importlib.util

        spec = importlib.util.find_spec("matplotlib")
        for folder in (spec.submodule_search_locations or []) if spec else []:
            try:
                _FONT = ImageFont.truetype(str(Path(folder, "mpl-data/fonts/ttf/DejaVuSans.ttf")),
                                           12)
                break
            except OSError:
                continue
        if _FONT is None:
            _FONT = ImageFont.load_default()
    return _FONT


def _drawable(text: str) -> str:
    """Spell out β where the font cannot draw it."""
    font = _font()
    if isinstance(font, ImageFont.FreeTypeFont) and "DejaVu" in (font.getname()[0] or ""):
        return text
    return text.replace("β", "beta")


LABEL_BADGE_PX = 28  # a gr.Image draws its label over the picture's top-left corner


def labelled_grid(cells: np.ndarray, row_labels: list[str], col_labels: list[str] | None = None,
                  scale: int = 2, pad: int = 2, label_width: int = 120) -> np.ndarray:
    """uint8 (R, C, 64, 64, 3) → one picture with a label left of every row (and on top of
    column when `col_labels` is given), below a white band the gr.Image label badge covers."""
    body = pictures.grid(cells, scale=scale, pad=pad)
    header = LABEL_BADGE_PX + (18 if col_labels else 0)
    canvas = Image.new("RGB", (label_width + body.shape[1], header + body.shape[0]), "white")
    canvas.paste(Image.fromarray(body), (label_width, header))
    draw = ImageDraw.Draw(canvas)
    cell_h, cell_w = cells.shape[2] * scale + pad, cells.shape[3] * scale + pad
    for i, text in enumerate(row_labels):
        draw.text((4, header + pad + i * cell_h + cell_h // 2 - 8), _drawable(text),
                  fill="black", font=_font())
    for j, text in enumerate(col_labels or []):
        draw.text((label_width + pad + j * cell_w + 2, LABEL_BADGE_PX + 2), _drawable(text),
                  fill="black", font=_font())
    return np.asarray(canvas)


# ------------------------------------------------------------------------------ files
_GIF_DIR: Path | None = None
_GIF_LOCK = threading.Lock()
KEEP_GIFS = 32  # gradio copies returned files into its cache; older temporaries are removed


def script_tag(path: str | Path) -> str:
    """A page script (a .js file next to its tab) as a <script> element for `launch(head=...)`."""
    return f"<script>\n{Path(path).read_text(encoding='utf-8')}</script>"


def save_gif(data: bytes, stem: str) -> str:
    """Write GIF bytes to a temporary file for a `gr.File` output → its path."""
    global _GIF_DIR
    with _GIF_LOCK:
        if _GIF_DIR is None or not _GIF_DIR.is_dir():
            _GIF_DIR = Path(tempfile.mkdtemp(prefix="playground-gifs-"))
        fd, path = tempfile.mkstemp(dir=_GIF_DIR, prefix=f"{stem}-", suffix=".gif")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        old = sorted(_GIF_DIR.glob("*.gif"), key=lambda p: p.stat().st_mtime)[:-KEEP_GIFS]
        for p in old:
            p.unlink(missing_ok=True)
    return path
