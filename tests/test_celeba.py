"""CelebADataset on a tiny fake CelebA folder written in the real file formats."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from playground.data import celeba as celeba_module
from playground.data.celeba import (
    CelebADataset,
    CelebADownloadError,
    CelebANotFoundError,
    check_celeba_folder,
)

NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()
PARTITION = [0, 0, 0, 1, 1, 2, 2]  # 3 train, 2 valid, 2 test
W, H = 178, 218  # size of the aligned CelebA images
LEFT, TOP = (W - 148) // 2, (H - 148) // 2  # the 148 x 148 center crop starts here


def green_level(i: int) -> int:
    """Each fake image has its own green level inside the crop, to tell images apart."""
    return 80 + 25 * i


def write_fake_celeba(root, seed: int = 0) -> np.ndarray:
    """Write <root>/celeba with 7 images; return the attribute table as -1/1, shape (7, 40)."""
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    table = rng.choice([-1, 1], size=(len(PARTITION), len(NAMES)))
    files = [f"{i + 1:06d}.jpg" for i in range(len(PARTITION))]
    for i, name in enumerate(files):
        pixels = np.zeros((H, W, 3), np.uint8)
        pixels[..., 0] = 255  # red border: everything outside the center crop
        pixels[TOP:TOP + 148, LEFT:LEFT + 148] = (0, green_level(i), 0)
        pixels[TOP:TOP + 74, LEFT:LEFT + 74] = (0, 0, 255)  # blue top-left quarter of the crop
        Image.fromarray(pixels).save(base / "img_align_celeba" / name, quality=95, subsampling=0)
    # Real format: count, names line (ending in a space), rows of 2-wide right-aligned values.
    lines = [str(len(files)), " ".join(NAMES) + " "]
    lines += [name + " " + " ".join(f"{v:2d}" for v in row) for name, row in zip(files, table)]
    (base / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (base / "list_eval_partition.txt").write_text(
        "".join(f"{name} {p}\n" for name, p in zip(files, PARTITION)))
    return table


@pytest.fixture
def fake_root(tmp_path):
    table = write_fake_celeba(tmp_path)
    return tmp_path, table


def test_items_shapes_dtypes_and_attributes(fake_root):
    root, table = fake_root
    data = CelebADataset(root, split="all")
    assert len(data) == 7
    assert data.attribute_names == NAMES
    for i in range(len(data)):
        item = data[i]
        assert set(item) == {"image", "attributes", "index"}
        assert item["index"] == i
        assert type(item["image"]) is torch.Tensor
        assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert item["attributes"].shape == (40,) and item["attributes"].dtype == torch.float32
        np.testing.assert_array_equal(item["attributes"].numpy(), (table[i] + 1) // 2)
    np.testing.assert_array_equal(data.attributes["Smiling"], (table[:, NAMES.index("Smiling")] + 1) // 2)
    assert data.attributes["Smiling"].dtype == np.uint8


@pytest.mark.parametrize("split, expected", [
    ("train", [0, 1, 2]), ("valid", [3, 4]), ("val", [3, 4]), ("test", [5, 6]),
])
def test_splits_follow_partition_file(fake_root, split, expected):
    root, table = fake_root
    data = CelebADataset(root, split=split)
    assert data.filenames == [f"{i + 1:06d}.jpg" for i in expected]
    for k, i in enumerate(expected):
        item = data[k]
        np.testing.assert_array_equal(item["attributes"].numpy(), (table[i] + 1) // 2)
        # The right image comes with the right row: check its green level (bottom-right area).
        green = item["image"][1, 40:, 40:].mean().item() * 255
        assert abs(green - green_level(i)) < 6


def test_center_crop_removes_border_and_keeps_orientation(fake_root):
    root, _ = fake_root
    image = CelebADataset(root, split="test")[0]["image"]
    red, green, blue = image
    assert red.max() < 0.2, "the red border outside the 148 px center crop leaked in"
    assert blue[:30, :30].min() > 0.8 and green[:30, :30].max() < 0.2  # top-left quarter blue
    assert blue[34:, 34:].max() < 0.2 and green[34:, 34:].min() > 0.5  # the rest green
    # Control: a crop that reaches the border shows it, so the check above can fail.
    wide = CelebADataset(root, split="test", crop_size=178)[0]["image"]
    assert wide[0, :3].min() > 0.8


def test_image_size_and_n(fake_root):
    root, _ = fake_root
    data = CelebADataset(root, split="all", image_size=32, n=4)
    assert len(data) == 4 and len(data.attributes["Male"]) == 4
    assert data[3]["image"].shape == (3, 32, 32)
    with pytest.raises(IndexError):
        data[4]
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["index"].tolist() == [0, 1, 2, 3]


def test_bad_arguments(fake_root):
    root, _ = fake_root
    with pytest.raises(ValueError, match="split"):
        CelebADataset(root, split="validation")
    with pytest.raises(ValueError, match="image_size"):
        CelebADataset(root, image_size=0)


def test_missing_folder_gives_one_clear_error(tmp_path):
    with pytest.raises(CelebANotFoundError) as info:
        CelebADataset(tmp_path / "nowhere")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    for name in ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"):
        assert name in message
    assert "mmlab.ie.cuhk.edu.hk/projects/CelebA.html" in message
    assert "download=True" in message and "quota" in message
    assert sorted(info.value.missing) == sorted(celeba_module.REQUIRED_FILES)


@pytest.mark.parametrize("removed", ["list_eval_partition.txt", "list_attr_celeba.txt"])
def test_partial_folder_names_the_missing_file(fake_root, removed):
    root, _ = fake_root
    (root / "celeba" / removed).unlink()
    with pytest.raises(CelebANotFoundError) as info:
        CelebADataset(root)
    assert info.value.missing == [removed]
    assert str(root / "celeba" / removed) in str(info.value)


def test_empty_image_folder_and_unpacked_zip_hint(fake_root):
    root, _ = fake_root
    for image in (root / "celeba" / "img_align_celeba").iterdir():
        image.unlink()
    (root / "celeba" / "img_align_celeba.zip").write_bytes(b"not really a zip")
    with pytest.raises(CelebANotFoundError) as info:
        check_celeba_folder(root)
    assert info.value.missing == ["img_align_celeba/"]
    assert "not unpacked" in str(info.value)


def test_root_pointing_at_the_celeba_folder_gets_a_hint(fake_root):
    root, _ = fake_root
    with pytest.raises(CelebANotFoundError, match="pass its parent"):
        CelebADataset(root / "celeba")


def test_missing_image_file_is_named(fake_root):
    root, _ = fake_root
    (root / "celeba" / "img_align_celeba" / "000002.jpg").unlink()
    data = CelebADataset(root, split="train")
    assert data[0]["image"].shape == (3, 64, 64)
    with pytest.raises(CelebANotFoundError, match="000002.jpg"):
        data[1]


def test_mismatched_annotation_files_are_rejected(fake_root):
    root, _ = fake_root
    path = root / "celeba" / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[1], lines[0]] + lines[2:]) + "\n")
    with pytest.raises(ValueError, match="different images"):
        CelebADataset(root)


def test_failed_download_raises_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def no_network(*args, **kwargs):
        raise RuntimeError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr(tv_utils, "download_file_from_google_drive", no_network)
    with pytest.raises(CelebADownloadError) as info:
        CelebADataset(tmp_path, download=True)
    assert isinstance(info.value, FileNotFoundError)
    assert "Too many users" in str(info.value) and "img_align_celeba.zip" in str(info.value)


def test_download_is_skipped_when_complete(fake_root, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def must_not_run(*args, **kwargs):
        raise AssertionError("download attempted although the folder is complete")

    monkeypatch.setattr(tv_utils, "download_file_from_google_drive", must_not_run)
    assert len(CelebADataset(fake_root[0], split="all", download=True)) == 7


def test_optional_torchvision_annotation_files_are_read_when_present(fake_root):
    """A full download also has identity/bbox/landmark files (real header formats)."""
    root, table = fake_root
    base = root / "celeba"
    files = [f"{i + 1:06d}.jpg" for i in range(len(PARTITION))]
    (base / "identity_CelebA.txt").write_text("".join(f"{f} {i % 3 + 1}\n" for i, f in enumerate(files)))
    (base / "list_bbox_celeba.txt").write_text(
        f"{len(files)}\nimage_id x_1 y_1 width height\n"
        + "".join(f"{f}    95  71 226 313\n" for f in files))
    (base / "list_landmarks_align_celeba.txt").write_text(
        f"{len(files)}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
        "leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n"
        + "".join(f"{f} 69 109 106 113 77 142 73 152 108 154\n" for f in files))
    data = CelebADataset(root, split="valid")
    assert len(data) == 2
    np.testing.assert_array_equal(data[1]["attributes"].numpy(), (table[4] + 1) // 2)


def test_attribute_rows_must_match_names(fake_root):
    root, _ = fake_root
    path = root / "celeba" / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[1] = " ".join(NAMES[:-1])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="39 attribute names but 40 values"):
        CelebADataset(root)
