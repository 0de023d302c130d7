"""CelebA (aligned & cropped faces) as 64x64 tensors with 40 binary attributes.

Expected layout (the standard one, also what ``torchvision.datasets.CelebA`` uses)::

    <root>/celeba/
        img_align_celeba/            000001.jpg ... 202599.jpg  (178 x 218 RGB JPEGs)
        list_attr_celeba.txt         line 1: image count, line 2: the 40 attribute names,
                                     then "000001.jpg -1  1 ..." (one row per image)
        list_eval_partition.txt      "000001.jpg 0" (0 = train, 1 = valid, 2 = test)

Items have the same format as ``SynthFacesDataset``::

    {"image": float32 (3, S, S) in [0, 1], "attributes": float32 (40,) 0/1, "index": int}

Preprocessing is the usual one for aligned CelebA: center crop 148 x 148 (keeps the face,
drops most background) then resize to S x S (S = ``image_size``, default 64).

How this relates to torchvision's ``CelebA`` (checked against torchvision 0.29):
torchvision's class insists on *all* annotation files (identity, bounding boxes, landmarks
too) and verifies each one's MD5, so it rejects a folder holding only the files above and any
hand-made test folder. ``_TorchvisionCelebA`` keeps torchvision's split selection, -1/1 -> 0/1
mapping and image loading, and overrides two private hooks: ``_check_integrity`` (presence of
the files we need; MD5s are optional, see ``check_md5``) and ``_load_csv`` (tolerates the
trailing blank of the header line, and stands in zeros for the annotation files we do not use
when they are absent). If a torchvision update changes those hooks, ``tests/test_celeba.py``
fails on the fake folder.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import Dataset
from torchvision.datasets.utils import check_integrity
from torchvision.transforms import v2

BASE_FOLDER = "celeba"  # sub-folder of `root`, as in torchvision
IMAGE_FOLDER = "img_align_celeba"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
REQUIRED_FILES: tuple[str, ...] = (IMAGE_FOLDER + "/", ATTRIBUTE_FILE, PARTITION_FILE)
# Annotation files torchvision reads but this dataset never uses (target_type="attr" only).
UNUSED_ANNOTATION_FILES: tuple[str, ...] = (
    "identity_CelebA.txt", "list_bbox_celeba.txt", "list_landmarks_align_celeba.txt",
)
CROP_SIZE = 148  # center crop of the 178 x 218 aligned images, the usual choice for 64 px models
SPLITS: dict[str, str] = {"train": "train", "valid": "valid", "val": "valid", "test": "test", "all": "all"}

CELEBA_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CELEBA_DRIVE = "https://drive.google.com/drive/folders/0B7EVK8r0v71pWEZsZE9oNnFzTm8"

HOW_TO_GET_CELEBA = f"""Expected layout:
    <root>/celeba/img_align_celeba/000001.jpg ... 202599.jpg
    <root>/celeba/list_attr_celeba.txt
    <root>/celeba/list_eval_partition.txt
How to get it: CelebA is free for non-commercial research; see {CELEBA_PAGE}
(its Google Drive folder: {CELEBA_DRIVE}). Download "Img/img_align_celeba.zip",
"Anno/list_attr_celeba.txt" and "Eval/list_eval_partition.txt", then unzip the zip into
<root>/celeba/ (it creates img_align_celeba/) and put both .txt files next to it.
CelebADataset(..., download=True) tries torchvision's Google Drive download (needs the
`gdown` package), but Google Drive often refuses it ("quota exceeded"); the manual download
above is the reliable way. (Kaggle's copy ships list_attr_celeba.csv / list_eval_partition.csv,
a different format: use the original .txt files.)"""


class CelebANotFoundError(FileNotFoundError):
    """CelebA is missing or incomplete under ``root``; ``.missing`` lists the missing paths."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


class CelebADownloadError(CelebANotFoundError):
    """``download=True`` failed (no network, Google Drive quota, ``gdown`` not installed ...)."""


def missing_celeba_files(root: str | os.PathLike) -> list[str]:
    """The entries of ``REQUIRED_FILES`` absent under ``<root>/celeba/`` (empty list: complete).

    An image folder without a single ``.jpg`` counts as missing.
    """
    base = Path(root).expanduser() / BASE_FOLDER
    missing = []
    image_dir = base / IMAGE_FOLDER
    has_images = False
    if image_dir.is_dir():
        with os.scandir(image_dir) as entries:
            has_images = any(e.name.lower().endswith(".jpg") for e in entries)
    if not has_images:
        missing.append(IMAGE_FOLDER + "/")
    for name in (ATTRIBUTE_FILE, PARTITION_FILE):
        if not (base / name).is_file():
            missing.append(name)
    return missing


def check_celeba_folder(root: str | os.PathLike) -> Path:
    """Return ``<root>/celeba`` if it holds everything needed, else raise ``CelebANotFoundError``.

    The message names each missing file, the expected layout and how to get the data.
    """
    root = Path(root).expanduser()
    base = root / BASE_FOLDER
    missing = missing_celeba_files(root)
    if not missing:
        return base
    lines = [f"CelebA not found or incomplete in {base}: missing " + ", ".join(
        str(base / m) for m in missing) + "."]
    if not base.is_dir() and (root / ATTRIBUTE_FILE).is_file():
        lines.append(f"It looks like {root} is the celeba folder itself: pass its parent "
                     f"({root.parent}) as root.")
    if IMAGE_FOLDER + "/" in missing and (base / (IMAGE_FOLDER + ".zip")).is_file():
        lines.append(f"{base / (IMAGE_FOLDER + '.zip')} is there but not unpacked: unzip it "
                     f"inside {base}.")
    lines.append(HOW_TO_GET_CELEBA)
    raise CelebANotFoundError("\n".join(lines), missing)


def download_celeba(root: str | os.PathLike) -> Path:
    """Fetch the three needed CelebA files with torchvision's Google Drive helper and unzip.

    Does nothing if the folder is already complete. Raises ``CelebADownloadError`` (with the
    manual instructions) on any failure; Google Drive's download quota is the usual culprit.
    """
    root = Path(root).expanduser()
    if not missing_celeba_files(root):
        return root / BASE_FOLDER
    from torchvision.datasets.utils import download_file_from_google_drive, extract_archive

    base = root / BASE_FOLDER
    wanted = {IMAGE_FOLDER + ".zip", ATTRIBUTE_FILE, PARTITION_FILE}
    try:
        for file_id, md5, filename in torchvision.datasets.CelebA.file_list:
            if filename in wanted:
                download_file_from_google_drive(file_id, str(base), filename, md5)
        if IMAGE_FOLDER + "/" in missing_celeba_files(root):
            extract_archive(str(base / (IMAGE_FOLDER + ".zip")))
    except Exception as error:  # network, quota, gdown missing, corrupt zip: all end the same way
        missing = missing_celeba_files(root)
        raise CelebADownloadError(
            f"Downloading CelebA into {base} failed ({type(error).__name__}: {error}).\n"
            + HOW_TO_GET_CELEBA, missing) from error
    check_celeba_folder(root)
    return base


def _read_table(path: Path, header: int | None) -> tuple[list[str], list[str], torch.Tensor]:
    """Parse a CelebA annotation file: (column names, first-column file names, int64 (N, C))."""
    with open(path) as handle:
        rows = [[field for field in row if field]
                for row in csv.reader(handle, delimiter=" ", skipinitialspace=True)]
    rows = [row for row in rows if row]  # blank lines (e.g. a final newline pair)
    names: list[str] = []
    if header is not None:
        names = rows[header]
        rows = rows[header + 1:]
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ValueError(f"{path} is malformed: rows have {sorted(widths)} fields, expected "
                         "the same number on every row")
    try:
        values = torch.tensor([[int(v) for v in row[1:]] for row in rows], dtype=torch.int64)
    except ValueError as error:
        raise ValueError(f"{path} is malformed: {error}") from error
    return names, [row[0] for row in rows], values.reshape(len(rows), -1)


class _TorchvisionCelebA(torchvision.datasets.CelebA):
    """torchvision's CelebA needing only the files in ``REQUIRED_FILES`` (see module docstring)."""

    def _check_integrity(self) -> bool:
        return not missing_celeba_files(self.root)

    def _load_csv(self, filename: str, header: int | None = None):
        path = Path(self.root) / self.base_folder / filename
        if filename in UNUSED_ANNOTATION_FILES and not path.is_file():
            # One zero column per image so torchvision's split mask indexes it like the real one.
            files = getattr(self, "_partition_files", None)  # torchvision reads that file first
            if files is None:
                _, files, _ = _read_table(Path(self.root) / self.base_folder / PARTITION_FILE, None)
            return torchvision.datasets.celeba.CSV([], files, torch.zeros(len(files), 1, dtype=torch.int64))
        names, files, values = _read_table(path, header)
        if filename == ATTRIBUTE_FILE and values.shape[1] != len(names):
            raise ValueError(f"{path} is malformed: {len(names)} attribute names but "
                             f"{values.shape[1]} values per row")
        if filename == PARTITION_FILE:
            self._partition_files = files
        elif filename == ATTRIBUTE_FILE and files != getattr(self, "_partition_files", files):
            raise ValueError(f"{ATTRIBUTE_FILE} and {PARTITION_FILE} list different images "
                             f"(or in a different order) in {path.parent}")
        return torchvision.datasets.celeba.CSV(names, files, values)


def celeba_transform(image_size: int = 64, crop_size: int = CROP_SIZE) -> v2.Compose:
    """PIL image -> float32 (3, image_size, image_size) in [0, 1]: center crop, then resize."""
    return v2.Compose([
        v2.RGB(),
        v2.CenterCrop(crop_size),
        v2.Resize((image_size, image_size), antialias=True),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
    ])


class CelebADataset(Dataset):
    """CelebA faces, center-cropped and resized, with the 40 attributes as 0/1.

    Args:
        root: folder that contains ``celeba/`` (see the module docstring for the layout).
        split: "train", "valid" (or "val"), "test" or "all" (the official partition).
        image_size: side S of the square output images.
        download: try torchvision's Google Drive download first if files are missing.
        n: keep only the first ``n`` images of the split (None: all).
        crop_size: side of the center crop taken before resizing.
        check_md5: also compare the two .txt files with the official MD5s (slower; off by
            default so that partial or hand-made folders work).

    Items: ``{"image": float32 (3, S, S) in [0, 1], "attributes": float32 (40,) 0/1,
    "index": int}``. ``.attribute_names`` lists the 40 names in file order and
    ``.attributes`` maps each name to a uint8 (N,) array, as in ``SynthFacesDataset``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", image_size: int = 64,
                 download: bool = False, n: int | None = None, crop_size: int = CROP_SIZE,
                 check_md5: bool = False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        for name, value in (("image_size", image_size), ("crop_size", crop_size)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if n is not None and (not isinstance(n, int) or n < 0):
            raise ValueError(f"n must be None or a non-negative int, got {n!r}")
        root = Path(root).expanduser()
        if download:
            download_celeba(root)
        base = check_celeba_folder(root)
        if check_md5:
            official = {name: md5 for _, md5, name in torchvision.datasets.CelebA.file_list}
            bad = [name for name in (ATTRIBUTE_FILE, PARTITION_FILE)
                   if not check_integrity(str(base / name), official[name])]
            if bad:
                raise ValueError(f"MD5 mismatch with the official CelebA files: {', '.join(bad)}")
        self.root = root
        self.split = SPLITS[split]
        self.image_size = image_size
        self._celeba = _TorchvisionCelebA(str(root), split=self.split, target_type="attr",
                                          transform=celeba_transform(image_size, crop_size))
        if n is not None:
            self._celeba.filename = self._celeba.filename[:n]
            self._celeba.attr = self._celeba.attr[:n]
        self.attribute_names: list[str] = list(self._celeba.attr_names)
        attr = self._celeba.attr.numpy().astype(np.uint8)  # (N, 40), already 0/1
        self.attributes: dict[str, np.ndarray] = {
            name: attr[:, k] for k, name in enumerate(self.attribute_names)}
        self.filenames: list[str] = list(self._celeba.filename)

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index = index % len(self)
        try:
            image, attributes = self._celeba[index]
        except FileNotFoundError as error:
            path = Path(self.root) / BASE_FOLDER / IMAGE_FOLDER / self.filenames[index]
            raise CelebANotFoundError(
                f"CelebA image {path} is listed in {PARTITION_FILE} but missing; the image "
                f"folder is incomplete (re-extract {IMAGE_FOLDER}.zip).", [str(path)]) from error
        return {
            "image": image.as_subclass(torch.Tensor),
            "attributes": attributes.to(torch.float32),
            "index": index,
        }
