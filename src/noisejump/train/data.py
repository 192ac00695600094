"""Built-in data sets and the keyed data order. Nothing is downloaded.

Data sets (``load_images(spec)``), every image scaled to [-1, 1], shape (N, C, H, W):

    digits        scikit-learn's bundled 8x8 handwritten digits (1797), 1 channel; the
                  training split of a fixed split (``digits_split``)
    photos        random crops of scikit-learn's two bundled sample photos, 3 channels;
                  ``image_size`` at most ``PHOTO_MAX_SIZE``
    folder:PATH   every PNG/JPEG in PATH (not its subfolders), EXIF orientation applied,
                  transparent pixels composited on white (``ALPHA_BACKGROUND``), 16-bit
                  grayscale PNGs scaled by 65535 (8-bit images by 255), resized (shorter
                  side) and centre-cropped. PATH must not be empty (``folder:.`` is the
                  current folder); a run stores it resolved (``canonical``), so
                  ``folder:imgs`` and the same folder by its absolute path are one data set

A folder's fingerprint (``fingerprint``: the relative path, size and modification time of
each image file) is stored in every checkpoint, so a resumed run can tell that its data
changed.

Data order: the global sample index g = step * global_batch + position. Sample g is image
``perm_e[g mod N]`` of the permutation of epoch e = g div N, drawn from (seed, e). The order
is thus a function of (seed, step): a checkpoint stores nothing more, a resumed run and a
run on any number of ranks read the same images, and rank r reads positions
[r B/W, (r+1) B/W) of each global batch (a distributed sampler without state).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

DATASETS = ("digits", "photos", "folder:PATH")
FOLDER = "folder:"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: The fixed held-out split of the digits: 297 images chosen by this seed; 1500 remain.
DIGITS_SPLIT_SEED = 0
DIGITS_HELD_OUT = 297
PHOTO_CROPS = 2048
#: The largest side of a photo crop: crops span 2 to 4 x size pixels of photos 427 pixels
#: high (china.jpg and flower.jpg are 427 x 640), so size <= 427 // 4.
PHOTO_MAX_SIZE = 106
#: The colour transparent pixels of folder images are composited on (white).
ALPHA_BACKGROUND = (255, 255, 255)
#: Pillow's modes for one 16-bit channel (PNG grayscale of bit depth 16).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_images, train_labels, held_out_images, held_out_labels) of the 8x8 digits.

    Images in [-1, 1] (pixel / 8 - 1), shape (N, 1, 8, 8); the split is fixed.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    held, train = order[:DIGITS_HELD_OUT], order[DIGITS_HELD_OUT:]
    return images[train], labels[train], images[held], labels[held]


def load_images(spec: str, image_size: int | None = None) -> torch.Tensor:
    """The images of data set ``spec`` (see the module docstring), float32 in [-1, 1].

    ``image_size`` applies to ``photos`` (default 32) and ``folder:PATH`` (default 32);
    the digits are always 8x8.
    """
    if spec == "digits":
        if image_size not in (None, 8):
            raise ValueError(f"image_size for digits is 8, got {image_size}")
        return digits_split()[0]
    if spec == "photos":
        return _photo_crops(image_size or 32)
    folder = folder_of(spec)
    if folder is not None:
        return _folder(folder, image_size or 32)
    raise ValueError(f"unknown data set {spec!r}; choose one of {DATASETS}")


def folder_of(spec: str) -> Path | None:
    """The folder of a ``folder:PATH`` spec, None for a built-in set; ValueError for an
    empty PATH (``Path("")`` would be the current folder, silently)."""
    if not spec.startswith(FOLDER):
        return None
    path = spec[len(FOLDER) :]
    if not path:
        raise ValueError(
            f"data {spec!r} names no folder; write folder:PATH (folder:. for the current folder)"
        )
    return Path(path)


def canonical(spec: str) -> str:
    """``spec`` with a folder's path resolved (absolute, symbolic links followed), the form
    a run stores and compares; the built-in sets unchanged. A relative path resolves
    against the current folder, where it is read from."""
    folder = folder_of(spec)
    return spec if folder is None else f"{FOLDER}{folder.resolve()}"


def _photo_crops(size: int) -> torch.Tensor:
    """``PHOTO_CROPS`` random square crops (side 2-4 x size) resized to ``size``, seed 0."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    if size > PHOTO_MAX_SIZE:
        raise ValueError(
            f"image_size for photos must be at most {PHOTO_MAX_SIZE} (crops of 2 to 4 x size "
            f"pixels of 427-pixel-high photos), got {size}; use --data folder:PATH for larger "
            "images"
        )
    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(PHOTO_CROPS):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(2 * size, 4 * size + 1))
        top = int(rng.integers(photo.shape[0] - side + 1))
        left = int(rng.integers(photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        crops.append(np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC)))
    return _to_tensor(np.stack(crops))


def _folder(path: Path, size: int) -> torch.Tensor:
    from PIL import UnidentifiedImageError

    images = []
    for file in image_files(path):
        try:
            images.append(_read_image(file, size))
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"cannot read image {str(file)!r}: {error}") from None
    unit = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return (unit * 2.0 - 1.0).contiguous()


def image_files(path: Path) -> list[Path]:
    """The image files of folder ``path``, sorted; ValueError if there are none."""
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"image folder {str(folder)!r} does not exist or is not a directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(
            f"image folder {str(folder)!r} contains no images; expected files ending in "
            f"{', '.join(IMAGE_SUFFIXES)} (case-insensitive)"
        )
    return files


def _read_image(file: Path, size: int) -> np.ndarray:
    """One image as float32 (size, size, 3) in [0, 1]: EXIF orientation applied, 16-bit
    grayscale divided by 65535, transparency composited on ``ALPHA_BACKGROUND``."""
    from PIL import Image, ImageOps

    with Image.open(file) as opened:
        image = ImageOps.exif_transpose(opened)
        if image.mode in SIXTEEN_BIT_MODES:
            # Pillow's convert("RGB") clips these at 255; resize the exact values instead.
            plane = Image.fromarray(np.asarray(image, dtype=np.float32) / 65535.0)
            gray = np.asarray(_resize_crop(plane, size)).clip(0.0, 1.0)
            return np.repeat(gray[..., None], 3, axis=-1)
        if image.has_transparency_data:
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (*ALPHA_BACKGROUND, 255))
            image = Image.alpha_composite(background, image)
        rgb = _resize_crop(image.convert("RGB"), size)
        return np.asarray(rgb, dtype=np.float32) / 255.0


def fingerprint(spec: str) -> dict | None:
    """What identifies the data of ``spec``: for ``folder:PATH``, the number of image
    files, their total size and the SHA-256 of the sorted (name, size, mtime in ns)
    list; None for the built-in sets (fixed by the package)."""
    folder = folder_of(spec)
    if folder is None:
        return None
    listing = []
    for file in image_files(folder):
        info = file.stat()
        listing.append([file.name, info.st_size, info.st_mtime_ns])
    text = json.dumps(listing, separators=(",", ":")).encode()
    return {
        "files": len(listing),
        "bytes": sum(size for _, size, _ in listing),
        "sha256": hashlib.sha256(text).hexdigest(),
    }


def _resize_crop(image, size: int):
    """Resize so the shorter side is ``size``, then crop the centre size x size."""
    from PIL import Image

    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) to float32 (N, C, H, W) in [-1, 1]."""
    return (
        torch.from_numpy(np.array(pixels))
        .permute(0, 3, 1, 2)
        .float()
        .div(127.5)
        .sub(1.0)
        .contiguous()
    )


class DataOrder:
    """Which image each global sample index reads: epoch-wise permutations from the seed."""

    def __init__(self, num_images: int, seed: int):
        self.num_images = num_images
        self.seed = seed
        self._permutations: dict[int, torch.Tensor] = {}

    def image_indices(self, global_indices: torch.Tensor) -> torch.Tensor:
        epochs = global_indices // self.num_images
        positions = global_indices % self.num_images
        out = torch.empty_like(global_indices)
        for epoch in epochs.unique().tolist():
            chosen = epochs == epoch
            out[chosen] = self._permutation(epoch)[positions[chosen]]
        return out

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._permutations:
            self._permutations.clear()  # only the current epoch (and its successor) is live
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._permutations[epoch] = torch.randperm(self.num_images, generator=generator)
        return self._permutations[epoch]


def global_indices(step: int, global_batch: int, rank: int, world_size: int) -> torch.Tensor:
    """The global sample indices rank ``rank`` trains on at ``step`` (int64, (B / W,))."""
    local = global_batch // world_size
    start = step * global_batch + rank * local
    return torch.arange(start, start + local, dtype=torch.int64)
