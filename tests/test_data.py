import pickle

import numpy as np
import pytest

from conftest import synthetic_images, write_idx
from diffcodec.io.datasets import (BatchSampler, DataConfig, DataError, eval_images, load_image, load_split,
                            read_cifar_batch, read_idx_images, tiles)
from diffcodec.io.images import save_png


def test_idx_round_trip(tmp_path):
    imgs = synthetic_images(5, size=6)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    out = read_idx_images(tmp_path / "train-images-idx3-ubyte.gz")
    assert out.shape == (5, 1, 6, 6) and np.array_equal(out[:, 0], imgs)
    assert load_split(DataConfig(path=str(tmp_path)), "train").shape == (5, 1, 6, 6)


def test_truncated_idx_is_a_clear_error(tmp_path):
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 100)
    with pytest.raises(DataError, match="truncated"):
        read_idx_images(p)
    p.write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="not an IDX3"):
        read_idx_images(p)


def write_cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    d = {b"batch_label": b"x", b"labels": [int(v) for v in rng.integers(0, 10, n)],
         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"a"] * n}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return d[b"data"]


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_batches(tmp_path):
    data = {}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        data[name] = write_cifar_batch(tmp_path / name, 4, len(data))
    train = load_split(DataConfig(path=str(tmp_path)), "train")
    assert train.shape == (20, 3, 32, 32)
    test = load_split(DataConfig(path=str(tmp_path)), "test")
    assert np.array_equal(test.reshape(4, -1), data["test_batch"])
    # channel-major layout: the first 1024 values are the red plane
    assert np.array_equal(test[0, 0].ravel(), data["test_batch"][0, :1024])


def test_cifar_loader_never_runs_code(tmp_path, capsys):
    p = tmp_path / "test_batch"
    with open(p, "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DataError):
        read_cifar_batch(p)
    assert "pwned" not in capsys.readouterr().out


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_split(DataConfig(path=str(tmp_path / "nope")), "train")
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="holds no IDX files"):
        load_split(DataConfig(path=str(tmp_path)), "train")


def test_folder_split_tiles_and_crops(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        save_png(tmp_path / f"{i}.png", rng.integers(0, 256, (3, 40, 70), dtype=np.uint8))
    cfg = DataConfig(path=str(tmp_path), holdout=["2.png"], crop=16)
    train = load_split(cfg, "train")
    assert len(train) == 2 and train[0].shape == (3, 40, 70)
    ev = eval_images(cfg, "test", 3)
    assert ev.shape == (2 * 4, 3, 16, 16)
    assert np.array_equal(ev[1], tiles([load_image(tmp_path / "2.png")], 16)[1])
    batch = BatchSampler(train, 16, True, seed=0)(5)
    assert batch.shape == (5, 3, 16, 16)
    with pytest.raises(DataError, match="held-out images not found"):
        load_split(DataConfig(path=str(tmp_path), holdout=["x.png"]), "train")


def test_load_image_errors(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="not an image"):
        load_image(tmp_path / "a.png")
    with pytest.raises(DataError, match="no such file"):
        load_image(tmp_path / "b.png")
    from PIL import Image
    Image.new("I;16", (4, 4)).save(tmp_path / "c.png")
    with pytest.raises(DataError, match="not supported"):
        load_image(tmp_path / "c.png")


def test_palette_and_transparency(tmp_path):
    """A palette image of gray colours is a grayscale image; one of colours is RGB; a transparent
    palette entry or gray level (tRNS) that the image uses is refused like an alpha channel."""
    from PIL import Image

    gray = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16).convert("P")
    gray.save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").shape == (1, 4, 4)
    colour = Image.new("RGB", (4, 4), (200, 10, 10)).convert("P")
    colour.save(tmp_path / "c.png")
    assert load_image(tmp_path / "c.png").shape == (3, 4, 4)
    gray.save(tmp_path / "t.png", transparency=0)          # palette index 0, which a pixel uses
    with pytest.raises(DataError, match="transparency"):
        load_image(tmp_path / "t.png")
    Image.new("L", (4, 4), 7).save(tmp_path / "l.png", transparency=7)
    with pytest.raises(DataError, match="transparency"):
        load_image(tmp_path / "l.png")
    Image.new("L", (4, 4), 7).save(tmp_path / "k.png", transparency=9)   # a level no pixel has
    assert load_image(tmp_path / "k.png").shape == (1, 4, 4)
