"""The faces a tab starts from (no UI): a SynthFaces face by seed or by index, or any uploaded
picture made into a 64×64 RGB face the models can encode.

    random_face(7)                         # uint8 (64, 64, 3): the face of SynthFaces stream 7
    dataset_face(3)                        # face #3 of the SynthFaces test split
    face, notice = prepare_upload(path)    # and a notice: "cropped 300×200 → 200×200, …"
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from playground.data.images import IMAGE_SIZE
from playground.pipelines.inputs import check_seed, whole_number

TEST_SPLIT = "test"  # the split "a face from the data" indexes into


# --------------------------------------------------------------------------------- start faces
def random_face(seed: int) -> np.ndarray:
    """The SynthFaces face of stream `seed` (the first face of ``generate(1, seed)``)
    → uint8 (64, 64, 3)."""
    from playground.data import synthfaces as sf

    return sf.render(sf.generate_factors(1, check_seed(seed)))[0]


def dataset_face(index: int, split: str = TEST_SPLIT) -> np.ndarray:
    """Face number `index` of a SynthFaces split → uint8 (64, 64, 3).

    Renders just that face: the same pixels as ``SynthFacesDataset(split).images[index]``
    without generating (or loading) the whole split.
    """
    from playground.data import synthfaces as sf

    if split not in sf.SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; choose one of {list(sf.SPLIT_SIZES)}")
    index, size = whole_number(index, "index"), sf.SPLIT_SIZES[split]
    if not 0 <= index < size:
        raise ValueError(f"data index must be between 0 and {size - 1} (the SynthFaces "
                         f"{split} split has {size} faces), got {index}")
    factors = sf.generate_factors(index + 1, sf.SPLIT_SEEDS[split])
    return sf.render({k: v[index:index + 1] for k, v in factors.items()})[0]


# --------------------------------------------------------------------------------- uploads
_MAX_UPLOAD_PIXELS = 40_000_000  # refuse larger pictures (decompression bombs)


def prepare_upload(source) -> tuple[np.ndarray, str]:
    """Any picture → a 64×64 RGB face the models can encode, and a note of what was done.

    Steps: first frame of an animation; EXIF rotation applied; any mode to RGB (transparent
    areas on white; 16-bit and 32-bit grey scaled to 8 bits); centre crop to a square; resize to
    64×64 with an antialiasing (Lanczos) filter.

    Args:
        source: a file path, a PIL image, or a uint8 numpy array (H, W), (H, W, 3) or (H, W, 4).
    Returns:
        (uint8 (64, 64, 3), notice such as "cropped 300×200 → 200×200, resized to 64×64").
    Raises:
        ValueError: "not an image …" for anything Pillow cannot read as a raster picture
            (text, HTML, SVG, PDF, a truncated file), or a picture that is too large.
    """
    if isinstance(source, np.ndarray):
        image = _array_to_pil(source)
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (str, Path)):
        image = _open_image(Path(source))
    else:
        raise ValueError(f"not an image: expected a file path, a PIL image or a numpy array, "
                         f"got {type(source).__name__}")
    notes = []
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
        notes.append(f"first of {image.n_frames} frames")
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # a broken EXIF block is no reason to refuse the picture
        pass
    rgb, conversion = _to_rgb(image)
    if conversion:
        notes.append(conversion)
    w, h = rgb.size
    if w < 1 or h < 1:
        raise ValueError("not an image: it has no pixels")
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        rgb = rgb.crop((left, top, left + side, top + side))
        notes.append(f"cropped {w}×{h} → {side}×{side}")
    if side != IMAGE_SIZE:
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
        verb = "resized" if side > IMAGE_SIZE else "enlarged"
        size_note = f"{w}×{h} " if w == h else ""  # a crop already named the size
        notes.append(f"{verb} {size_note}to {IMAGE_SIZE}×{IMAGE_SIZE}")
    if not notes:
        notes.append(f"already {IMAGE_SIZE}×{IMAGE_SIZE} RGB, used as is")
    return np.asarray(rgb, dtype=np.uint8).copy(), ", ".join(notes)


def _open_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise ValueError(f"not an image: no file at {path}")
    head = path.read_bytes()[:512].lstrip().lower()
    if head.startswith((b"<?xml", b"<svg", b"<!doctype", b"<html")) or b"<svg" in head:
        raise ValueError(f"not an image: {path.name} is SVG/HTML/XML text; upload a raster "
                         "picture (PNG, JPEG, WebP, GIF, BMP, TIFF)")
    try:
        image = Image.open(path)
        if image.width * image.height > _MAX_UPLOAD_PIXELS:
            raise ValueError(f"image too large: {image.width}×{image.height} pixels "
                             f"(at most {_MAX_UPLOAD_PIXELS // 1_000_000} megapixels)")
        image.load()
    except ValueError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as e:
        detail = str(e).replace(str(path), path.name)  # no server paths in the message
        raise ValueError(f"not an image: Pillow cannot read {path.name} as a picture "
                         f"(PNG, JPEG, WebP, GIF, BMP, TIFF) — {detail}") from None
    return image


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"not an image: arrays must be uint8 (H, W), (H, W, 3) or (H, W, 4), "
                         f"got {arr.dtype} {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr))


def _to_rgb(image: Image.Image) -> tuple[Image.Image, str]:
    """Any PIL mode → RGB, and a short note (empty for an RGB picture)."""
    mode = image.mode
    if mode == "RGB":
        return image, ""
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float grey
        arr = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            top, how = 65535.0, "16-bit grey scaled to 8 bits"
        elif mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
            top, how = 1.0, "float grey scaled to 8 bits"
        else:
            top = 255.0 if (arr.size and np.nanmax(arr) <= 255) else max(np.nanmax(arr), 1.0)
            how = f"{'32-bit' if mode == 'I' else 'float'} grey scaled to 8 bits"
        grey = np.clip(np.nan_to_num(arr) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB"), how
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return (Image.alpha_composite(background, rgba).convert("RGB"),
                f"{mode} → RGB (transparent areas on white)")
    return image.convert("RGB"), f"{mode} → RGB"
