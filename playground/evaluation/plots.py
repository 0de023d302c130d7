"""Static figures as PNG: labelled image grids (Pillow) and charts (matplotlib, Agg canvas).

matplotlib is used through ``Figure`` + ``FigureCanvasAgg`` only, so no global backend is set
and nothing here needs a display.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from playground.data import pictures

BACKGROUND = (255, 255, 255)  # grid background and blank cells
TEXT = (20, 20, 20)
LABEL_WIDTH = 120  # px reserved left of the grid for row labels (when there are any)
HEADER_HEIGHT = 18  # px reserved above the grid for column labels (when there are any)
PAD = 2  # px between cells
CLASS_COLOURS = ("#4C72B0", "#DD8452")  # label 0, label 1 in scatter plots


def _font(size: int = 12):
    """DejaVu Sans from matplotlib's data (it has Greek letters such as β), else Pillow's own."""
    try:
        import matplotlib

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(ttf), size)
    except (ImportError, OSError):
        pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def grid_size(n_rows: int, n_cols: int, image_size: int = 64, scale: int = 2,
              row_labels: bool = False, col_labels: bool = False) -> tuple[int, int]:
    """(width, height) in px of an :func:`image_grid` with these settings."""
    cell = image_size * scale
    width = (LABEL_WIDTH if row_labels else 0) + n_cols * (cell + PAD) + PAD
    height = (HEADER_HEIGHT if col_labels else 0) + n_rows * (cell + PAD) + PAD
    return width, height


def image_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    scale: int = 2,
) -> Image.Image:
    """A labelled grid of equally sized images, upscaled with nearest-neighbour.

    Args:
        rows: rows of (H, W, 3) uint8 images (e.g. the items of `tensor_to_images` output);
            ``None`` leaves a blank cell; shorter rows are padded with blanks.
        row_labels: one short label per row, drawn in a left margin of ``LABEL_WIDTH`` px.
        col_labels: one short label per column, drawn in a top margin of ``HEADER_HEIGHT`` px.
        scale: integer upscaling factor (2 turns 64x64 faces into 128x128 cells).
    Returns:
        an RGB PIL image of size :func:`grid_size`.
    """
    cells = [c for row in rows for c in row if c is not None]
    if not cells:
        raise ValueError("image_grid needs at least one image")
    h, w = cells[0].shape[:2]
    if h != w or any(c.shape != cells[0].shape for c in cells):
        raise ValueError("all grid images must be square and of the same shape")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows")
    n_cols = max(len(row) for row in rows)
    if col_labels is not None and len(col_labels) != n_cols:
        raise ValueError(f"{len(col_labels)} column labels for {n_cols} columns")
    width, height = grid_size(len(rows), n_cols, h, scale, row_labels is not None,
                              col_labels is not None)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    x0 = (LABEL_WIDTH if row_labels is not None else 0) + PAD
    y0 = (HEADER_HEIGHT if col_labels is not None else 0) + PAD
    cell = h * scale
    for j, label in enumerate(col_labels or []):
        draw.text((x0 + j * (cell + PAD) + cell // 2, HEADER_HEIGHT // 2), str(label), fill=TEXT,
                  font=font, anchor="mm")
    for i, row in enumerate(rows):
        y = y0 + i * (cell + PAD)
        if row_labels is not None:
            draw.multiline_text((4, y + cell // 2), str(row_labels[i]), fill=TEXT, font=font,
                                anchor="lm")
        for j, img in enumerate(row):
            if img is not None:
                canvas.paste(Image.fromarray(pictures.upscale(img, scale)), (x0 + j * (cell + PAD), y))
    return canvas


def save_png(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


# --------------------------------------------------------------------------------------------
# matplotlib charts
# --------------------------------------------------------------------------------------------


def new_figure(width_in: float, height_in: float, dpi: int = 100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def scatter_panels(
    panels: Sequence[Mapping],
    path: str | Path,
    class_names: Sequence[str] = ("not smiling", "smiling"),
    panel_size: float = 4.2,
    dpi: int = 100,
) -> Path:
    """Side-by-side 2-D scatter plots coloured by a binary label, one panel per entry.

    Args:
        panels: dicts with "points" (M, 2), "labels" (M,) in {0, 1} and "title" (str; may
            contain newlines for the numbers).
        path: PNG file to write.
        class_names: legend names of label 0 and label 1.
    """
    if not panels:
        raise ValueError("scatter_panels needs at least one panel")
    fig = new_figure(panel_size * len(panels), panel_size + 0.6, dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        xy, y = np.asarray(panel["points"]), np.asarray(panel["labels"])
        for cls in (0, 1):
            sel = y == cls
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.6, color=CLASS_COLOURS[cls],
                       label=f"{class_names[cls]} ({int(sel.sum())})", linewidths=0)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(loc="lower right", fontsize=8, markerscale=3, framealpha=0.8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return Path(path)


def kl_bars(
    kl_by_model: Mapping[str, np.ndarray],
    path: str | Path,
    threshold: float = 0.01,
    floor: float = 1e-4,
    dpi: int = 100,
) -> Path:
    """Per-dimension KL, sorted in decreasing order, one bar chart per model (log scale).

    Args:
        kl_by_model: {panel title: (D,) KL per dimension in nats}.
        path: PNG file to write.
        threshold: the "active dimension" line (nats).
        floor: smallest value shown on the log axis (collapsed dimensions sit on it).
    """
    if not kl_by_model:
        raise ValueError("kl_bars needs at least one model")
    fig = new_figure(9.0, 2.4 * len(kl_by_model), dpi)
    axes = fig.subplots(len(kl_by_model), 1, squeeze=False)[:, 0]
    for ax, (title, kl) in zip(axes, kl_by_model.items()):
        kl = np.sort(np.asarray(kl, dtype=np.float64))[::-1]
        active = int((kl > threshold).sum())
        colours = np.where(kl > threshold, "#4C72B0", "#B0B0B0")
        ax.bar(np.arange(len(kl)), np.maximum(kl, floor), width=0.85, color=colours)
        ax.axhline(threshold, color="#C44E52", linestyle="--", linewidth=1,
                   label=f"active threshold {threshold:g} nats")
        ax.set_yscale("log")
        ax.set_ylim(floor, max(kl.max() * 2, threshold * 10))
        ax.set_xlim(-0.5, len(kl) - 0.5)
        ax.set_ylabel("KL (nats)")
        ax.set_title(f"{title}: {active} active dims, total KL {kl.sum():.1f} nats", fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("latent dimension, sorted by KL")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return Path(path)
