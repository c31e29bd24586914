import gzip
import struct

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def first_header_collides(monkeypatch):
    """Make the first layer's check of the first header an encoder writes the same for every key
    and network format (an ambiguous file, as chance gives about once in 7300), and every later
    header's the real one. -> the real ``_first_check``, to put back before reading."""
    from diffcodec.container import format as container_format

    real, heads = container_format._first_check, []

    def collide_first_header(key, head, data):
        heads.append(head) if not heads else None
        return b"\x12\x34" if head == heads[0] else real(key, head, data)

    monkeypatch.setattr(container_format, "_first_check", collide_first_header)
    return real


def write_idx(path, images: np.ndarray):
    """Write uint8 [N, H, W] as a gzipped IDX3 file."""
    n, h, w = images.shape
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, h, w) + images.astype(np.uint8).tobytes())


def synthetic_images(n, size=8, seed=0):
    """Blobs on a black background: learnable structure, like tiny garments."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(2, size - 2, 2)
        r = rng.uniform(1.5, size / 3)
        out[i] = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, rng.integers(120, 255), 0)
    return out


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("idx")
    write_idx(d / "train-images-idx3-ubyte.gz", synthetic_images(256, seed=1))
    write_idx(d / "t10k-images-idx3-ubyte.gz", synthetic_images(32, seed=2))
    return d


TINY_CONFIG = """
[model]
in_channels = 1
base_channels = 8
channel_mult = [1, 2]
num_res_blocks = 1
attention_ds = [2]

[diffusion]
schedule = "cosine"
num_timesteps = 40
var_type = "learned_range"
loss = "hybrid"

[data]
kind = "idx"
crop = 8
flip = true

[train]
batch_size = 16
lr = 2e-3
warmup_steps = 10
max_steps = 60
checkpoint_every_steps = 1000
log_every = 10
threads = 1
"""


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    p.write_text(TINY_CONFIG)
    return p


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_config, idx_dir):
    """A tiny learned-variance model trained for 60 steps (a few seconds)."""
    from diffcodec.training.config import load_config
    from diffcodec.training.loop import train

    cfg = load_config(tiny_config, [f'data.path="{idx_dir}"'])
    out = tmp_path_factory.mktemp("run")
    return train(cfg, out, progress=False)


TINY_RGB_CONFIG = """
[model]
in_channels = 3
base_channels = 8
channel_mult = [1, 2]
num_res_blocks = 1
attention_ds = []

[diffusion]
schedule = "linear"
num_timesteps = 40
var_type = "fixedsmall"
loss = "simple"

[data]
kind = "folder"
crop = 8

[train]
batch_size = 8
lr = 2e-3
warmup_steps = 5
max_steps = 20
log_every = 10
threads = 1
"""


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    from diffcodec.io.images import save_png

    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(3):
        yy, xx = np.mgrid[:24, :30]
        img = np.stack([(xx * 8 + i * 40) % 256, (yy * 10) % 256, rng.integers(0, 256, (24, 30))])
        save_png(d / f"p{i}.png", img.astype(np.uint8))
    return d


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, tiny_checkpoint, photo_dir):
    """A model store with `tiny` (grayscale 8x8, learned variance, attention) and `tinyrgb`
    (RGB, fully convolutional, fixed variance), selected through $DIFFCODEC_MODELS."""
    import os

    from diffcodec.training.checkpoint import export_model, load_checkpoint
    from diffcodec.training.config import load_config
    from diffcodec.training.loop import train
    from diffcodec.training.store import register_model

    root = tmp_path_factory.mktemp("models")
    p = tmp_path_factory.mktemp("cfg") / "rgb.toml"
    p.write_text(TINY_RGB_CONFIG)
    rgb_ckpt = train(load_config(p, [f'data.path="{photo_dir}"']), tmp_path_factory.mktemp("rgbrun"),
                     progress=False)
    for name, ckpt in (("tiny", tiny_checkpoint), ("tinyrgb", rgb_ckpt)):
        state = load_checkpoint(ckpt)
        export_model(state["ema"], state["config"], root / name, {"train_steps": state["step"]})
        register_model(name, root, f"test model {name}")
    old = os.environ.get("DIFFCODEC_MODELS")
    os.environ["DIFFCODEC_MODELS"] = str(root)
    yield root
    if old is None:
        os.environ.pop("DIFFCODEC_MODELS", None)
    else:
        os.environ["DIFFCODEC_MODELS"] = old


@pytest.fixture(scope="session")
def tiny(tiny_store):
    """The `tiny` model of the store, loaded on the CPU."""
    from diffcodec.training.store import load_model

    return load_model("tiny", "cpu")


@pytest.fixture(scope="session")
def tinyrgb(tiny_store):
    from diffcodec.training.store import load_model

    return load_model("tinyrgb", "cpu")


@pytest.fixture(scope="session")
def tiny_masking(tmp_path_factory, tiny_config, idx_dir):
    """A tiny T = D masking diffusion (the tiny U-Net on 8x8 grayscale), trained 15 steps and
    exported to a model directory."""
    from diffcodec.training.checkpoint import export_model, load_checkpoint
    from diffcodec.training.config import load_config
    from diffcodec.training.loop import train

    cfg = load_config(tiny_config, [f'data.path="{idx_dir}"', 'diffusion.kind="masking"',
                                    'diffusion.var_type="fixedsmall"', 'diffusion.loss="simple"',
                                    "train.max_steps=15", "train.checkpoint_every_steps=15"])
    ckpt = train(cfg, tmp_path_factory.mktemp("mrun"), progress=False)
    state = load_checkpoint(ckpt)
    out = tmp_path_factory.mktemp("mmodel") / "tinymask"
    export_model(state["ema"], state["config"], out, {"train_steps": state["step"]})
    return out
