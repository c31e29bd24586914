"""Data sets as uint8 arrays [N, C, H, W]: IDX (MNIST / Fashion-MNIST), CIFAR-10 python batches,
and folders of images (random crops for training, a deterministic tile grid for evaluation).
"""
from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from .images import to_chw

SUPPORTED_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class DataError(UserError):
    """A data set is missing or malformed; the message is meant for the user."""


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)
IDX_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


def read_idx_images(path: str | Path) -> np.ndarray:
    """Images of an IDX3 file (optionally .gz) as uint8 [N, 1, H, W]."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 16:
        raise DataError(f"{path} is too short to be an IDX image file")
    magic, n, h, w = struct.unpack(">IIII", raw[:16])
    if magic != 0x00000803:
        raise DataError(f"{path} is not an IDX3 uint8 image file (magic {magic:#010x})")
    if len(raw) != 16 + n * h * w:
        raise DataError(f"{path} is truncated or malformed: header says {n}x{h}x{w}, "
                        f"file holds {len(raw) - 16} pixel bytes")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, h, w).copy()


def find_idx(directory: Path, split: str) -> Path | None:
    for name in (IDX_FILES[split] + ".gz", IDX_FILES[split]):
        if (directory / name).is_file():
            return directory / name
    return None


# ---------------------------------------------------------------- CIFAR-10 python batches
CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a data file can never run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to load object {module}.{name} from a data file")


def read_cifar_batch(path: str | Path) -> np.ndarray:
    """One CIFAR-10 python batch as uint8 [N, 3, 32, 32]."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a malformed file
        raise DataError(f"{path} is not a CIFAR-10 python batch: {e}") from None
    data = d.get(b"data", d.get("data")) if isinstance(d, dict) else None
    if data is None:
        raise DataError(f"{path} is not a CIFAR-10 python batch (no 'data' entry)")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: expected uint8 data of shape [N, 3072], got {data.dtype} {data.shape}")
    return data.reshape(-1, 3, 32, 32)


def find_cifar(directory: Path, split: str) -> list[Path] | None:
    for d in (directory, directory / "cifar-10-batches-py"):
        files = [d / n for n in CIFAR_FILES[split]]
        if all(f.is_file() for f in files):
            return files
    return None


# ---------------------------------------------------------------- image folders
def list_images(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _gray_palette(im) -> bool:
    """Whether a palette image uses only gray colours (it is then a grayscale image)."""
    if im.mode != "P":
        return False
    rgb = np.asarray(im.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def load_image(path: str | Path, channels: int | None = None, downscale: int = 1) -> np.ndarray:
    """An 8-bit image as uint8 [C, H, W]; converted to ``channels`` (1 or 3) if given."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            # a large image is refused by its size where it is coded, not by Pillow's bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if _sixteen_bit(im):
                raise DataError(f"{path}: 16-bit images are not supported; use 8-bit grayscale or RGB")
            # an animated GIF, PNG or WebP, a multi-page TIFF; a camera's JPEG whose extra frames
            # are previews (MPO) is its first frame
            if getattr(im, "n_frames", 1) > 1 and im.format != "MPO":
                raise DataError(f"{path}: images of several frames ({im.n_frames}) are not supported; "
                                "save the frame to code as its own file")
            im.load()
            if im.mode not in SUPPORTED_MODES:
                raise DataError(f"{path}: image mode {im.mode} is not supported; "
                                "use 8-bit grayscale or RGB")
            # an alpha channel, or a palette or gray image with a transparent entry (tRNS)
            if ((im.mode in ("RGBA", "LA") or "transparency" in im.info)
                    and im.convert("RGBA").getchannel("A").getextrema()[0] < 255):
                raise DataError(f"{path}: images with transparency are not supported")
            if channels is None:
                channels = 1 if im.mode in ("1", "L", "LA") or _gray_palette(im) else 3
            im = im.convert({1: "L", 3: "RGB"}[channels])
            if downscale > 1:
                im = im.resize((max(1, im.width // downscale), max(1, im.height // downscale)),
                               Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not an image") from None
    except UnidentifiedImageError:
        raise DataError(f"{path} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    return to_chw(arr).copy()


def _sixteen_bit(im) -> bool:
    """Whether Pillow reads ``im`` (opened, not loaded) from 16-bit samples: it opens a 16-bit RGB
    PNG or PPM (maxval above 255) as 8-bit "RGB", dropping the low byte."""
    for tile in getattr(im, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        raw = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
        if isinstance(raw, str) and ";16" in raw:
            return True
        if tile[0] == "ppm" and isinstance(args, tuple) and len(args) > 1 and args[1] > 255:   # maxval
            return True
    return False


@dataclass
class DataConfig:
    """Where training/evaluation data comes from.

    kind: "auto" (detect from the directory), "idx", "cifar10" or "folder". For folders, images
    named in ``holdout`` form the test split and the rest the training split; ``crop`` is the
    training crop size, ``downscale`` an integer factor applied when loading.
    """
    path: str = ""
    kind: str = "auto"
    crop: int = 32
    downscale: int = 1
    flip: bool = True
    holdout: list[str] = field(default_factory=list)


def _check_directory(directory: Path) -> None:
    if not directory.is_dir():
        raise DataError(f"data directory {directory} " + ("is a file, not a folder" if directory.exists()
                                                          else "does not exist"))


def detect_kind(directory: Path) -> str:
    _check_directory(directory)
    if find_idx(directory, "train") or find_idx(directory, "test"):
        return "idx"
    if find_cifar(directory, "train") or find_cifar(directory, "test"):
        return "cifar10"
    if list_images(directory):
        return "folder"
    raise DataError(f"{directory} holds no IDX files, CIFAR-10 batches or images")


def load_split(cfg: DataConfig, split: str, channels: int | None = None):
    """Images of a split: a uint8 array [N, C, H, W] (IDX, CIFAR) or a list of [C, H, W] (folder)."""
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use train or test")
    directory = Path(cfg.path).expanduser()
    _check_directory(directory)
    kind = detect_kind(directory) if cfg.kind == "auto" else cfg.kind
    if kind == "idx":
        f = find_idx(directory, split)
        if f is None:
            raise DataError(f"{directory} has no {IDX_FILES[split]}[.gz] for the {split} split")
        return read_idx_images(f)
    if kind == "cifar10":
        files = find_cifar(directory, split)
        if files is None:
            raise DataError(f"{directory} lacks the CIFAR-10 {split} batches "
                            f"({', '.join(CIFAR_FILES[split])})")
        return np.concatenate([read_cifar_batch(f) for f in files])
    if kind == "folder":
        files = list_images(directory)
        held = set(cfg.holdout)
        missing = held - {f.name for f in files}
        if missing:
            raise DataError(f"held-out images not found in {directory}: {', '.join(sorted(missing))}")
        chosen = [f for f in files if (f.name in held) == (split == "test")]
        if not chosen:
            raise DataError(f"no images for the {split} split in {directory}")
        return [load_image(f, channels, cfg.downscale) for f in chosen]
    raise DataError(f"unknown data kind {kind!r}; use auto, idx, cifar10 or folder")


def tiles(images: list[np.ndarray], size: int) -> np.ndarray:
    """Non-overlapping size x size tiles of each image, row-major, as uint8 [N, C, size, size]."""
    out = [im[:, y:y + size, x:x + size]
           for im in images
           for y in range(0, im.shape[1] - size + 1, size)
           for x in range(0, im.shape[2] - size + 1, size)]
    if not out:
        raise DataError(f"all images are smaller than the {size}x{size} tile size")
    return np.stack(out)


class BatchSampler:
    """Random training batches (uint8 [B, C, H, W]) drawn with replacement from a split.

    Arrays are sampled by index; folders by a random crop of a random image. Each process of a
    distributed run seeds its own generator, so ranks see different batches.
    """

    def __init__(self, data, crop: int, flip: bool, seed: int):
        self.data, self.crop, self.flip = data, crop, flip
        self.rng = np.random.default_rng(seed)
        if isinstance(data, list):
            small = [im.shape for im in data if im.shape[1] < crop or im.shape[2] < crop]
            if small:
                raise DataError(f"{len(small)} training images are smaller than the crop size {crop}")
            self.weights = np.array([im.shape[1] * im.shape[2] for im in data], dtype=np.float64)
            self.weights /= self.weights.sum()

    def __call__(self, batch_size: int) -> np.ndarray:
        if isinstance(self.data, list):
            out = []
            for i in self.rng.choice(len(self.data), size=batch_size, p=self.weights):
                im = self.data[i]
                y = self.rng.integers(0, im.shape[1] - self.crop + 1)
                x = self.rng.integers(0, im.shape[2] - self.crop + 1)
                out.append(im[:, y:y + self.crop, x:x + self.crop])
            batch = np.stack(out)
        else:
            batch = self.data[self.rng.integers(0, len(self.data), size=batch_size)]
        if self.flip:
            mask = self.rng.random(batch_size) < 0.5
            batch = batch.copy()
            batch[mask] = batch[mask, :, :, ::-1]
        return batch


def eval_images(cfg: DataConfig, split: str, channels: int, limit: int | None = None):
    """Evaluation images: the first ``limit`` of an array data set as uint8 [N, C, H, W]; for a
    folder, ``limit`` tiles (``cfg.crop``-sized) spread evenly over the tile grids of all its
    images, or with ``cfg.crop == 0`` its first ``limit`` images whole (see ``as_batchable``)."""
    data = load_split(cfg, split, channels)
    if isinstance(data, list):
        if cfg.crop == 0:
            return as_batchable(data[:limit] if limit else data)
        data = tiles(data, cfg.crop)
        if limit and limit < len(data):
            data = data[np.linspace(0, len(data) - 1, limit).round().astype(int)]
    if data.shape[1] != channels:
        raise DataError(f"data has {data.shape[1]} channels but the model expects {channels}")
    return data[:limit] if limit else data


def as_batchable(images: list[np.ndarray]):
    """Whole images: one uint8 array [N, C, H, W] when they share a size, else the list of
    [C, H, W] arrays (evaluators batch images of equal size together, see ``same_size_batches``)."""
    if len({im.shape for im in images}) == 1:
        return np.stack(images)
    return list(images)


def size_runs(images, indices, batch_size: int):
    """Split ``indices`` into runs of at most ``batch_size`` consecutive images of one size; yields
    each run's indices. ``images``: an array [N, C, H, W] or a list of [C, H, W]."""
    run: list = []
    for i in indices:
        if run and (len(run) == batch_size or images[i].shape != images[run[0]].shape):
            yield run
            run = []
        run.append(i)
    if run:
        yield run


def same_size_batches(images, indices, batch_size: int):
    """The batches of ``size_runs``: yields (indices, uint8 [B, C, H, W])."""
    for run in size_runs(images, indices, batch_size):
        yield run, np.stack([images[j] for j in run])


def dims_of(images) -> list[int]:
    """Dimensions (C x H x W) of each image of an array [N, C, H, W] or a list of [C, H, W]."""
    return [int(np.prod(im.shape)) for im in images]


def images_for_model(stored: DataConfig, channels: int, data_dir, split: str = "test",
                     limit: int | None = None) -> np.ndarray:
    """Evaluation images for a model whose training data config is ``stored``. A folder of images
    keeps the model's held-out list only when it is the folder the model trained on (same name);
    any other folder is used whole."""
    import dataclasses

    folder = Path(data_dir).expanduser()
    cfg = dataclasses.replace(stored, path=str(folder), kind="auto")
    if detect_kind(folder) == "folder" and folder.resolve().name != Path(stored.path).resolve().name:
        cfg.holdout = [p.name for p in list_images(folder)]
        split = "test"
    return eval_images(cfg, split, channels, limit)


def images_or_file(stored: DataConfig, channels: int, data, split: str = "test",
                   limit: int | None = None, tile: int | None = None):
    """Evaluation images from a data directory (see ``images_for_model``; ``tile`` overrides the
    tile size of a folder of images, 0 takes them whole), or a single image file (any size) as a
    batch of one."""
    import dataclasses

    p = Path(data).expanduser()
    if p.is_file():
        return load_image(p, channels)[None]
    if tile is not None:
        stored = dataclasses.replace(stored, crop=tile)
    return images_for_model(stored, channels, p, split, limit)
