import pickle
from pathlib import Path

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



def _png(path, width: int, height: int, depth: int, body: bytes) -> None:
    """An RGB PNG of ``depth``-bit samples written by hand (Pillow writes no 16-bit RGB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))


def test_sixteen_bit_rgb_and_decompression_bombs_are_refused(tmp_path):
    """Pillow opens a 16-bit RGB PNG or PPM as 8-bit RGB (the low bytes dropped, so even --lossless
    would lose them) and raises its own errors on an image too large to be safe: all are one-line
    data errors, and an 8-bit image of the same kinds still loads."""
    rows = np.arange(4 * 3 * 3, dtype=">u2").reshape(3, 12) * 1000
    _png(tmp_path / "a.png", 4, 3, 16, b"".join(b"\0" + r.tobytes() for r in rows))
    (tmp_path / "a.ppm").write_bytes(b"P6 4 3 65535\n" + rows.tobytes())
    for name in ("a.png", "a.ppm"):
        with pytest.raises(DataError, match="16-bit images are not supported"):
            load_image(tmp_path / name)
    _png(tmp_path / "b.png", 4, 3, 8, b"".join(b"\0" + bytes(range(12)) for _ in range(3)))
    (tmp_path / "b.ppm").write_bytes(b"P6 4 3 255\n" + bytes(range(36)))
    assert load_image(tmp_path / "b.png")[:, 0, 1].tolist() == [3, 4, 5]
    assert load_image(tmp_path / "b.ppm")[:, 1, 0].tolist() == [12, 13, 14]
    _png(tmp_path / "bomb.png", 20000, 20000, 8, b"")
    with pytest.raises(DataError, match="cannot read image .*decompression bomb"):
        load_image(tmp_path / "bomb.png")


def test_images_of_several_frames_are_refused(tmp_path):
    """An animated GIF, PNG or WebP, or a TIFF of several pages, would be coded as its first frame
    alone: refused in one line. A one-frame GIF loads, and so does a JPEG carrying a preview image
    (MPO, as cameras write them), as its main image."""
    from PIL import Image

    frames = [Image.fromarray(np.full((6, 8, 3), (v, v // 2, 30), np.uint8)) for v in (0, 200)]
    for name in ("a.gif", "a.png", "a.webp", "a.tiff"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        with pytest.raises(DataError, match=r"several frames \(2\) are not supported"):
            load_image(tmp_path / name)
    frames[1].save(tmp_path / "one.gif")
    assert load_image(tmp_path / "one.gif").shape == (3, 6, 8)
    frames[1].save(tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=[frames[0].resize((4, 3))])
    assert load_image(tmp_path / "camera.jpg").shape == (3, 6, 8)


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


def _load_extra_photos():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "eval" / "extra_photos.py"
    spec = importlib.util.spec_from_file_location("extra_photos", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extra_photos_list_is_complete():
    """Every listed photo names its source at a commit, a licence and whether it is used (with a
    reason when not); file names are unique."""
    import csv

    rows = list(csv.DictReader((Path(__file__).resolve().parents[1] / "eval/data/extra_photos.csv").open()))
    assert len({r["name"] for r in rows}) == len(rows) > 0
    for r in rows:
        assert r["repo"].count("/") == 1 and len(r["commit"]) == 40 and r["path"] and r["licence"]
        assert r["use"] == "yes" or (r["use"].startswith("no: ") and len(r["use"]) > 4)


def test_extra_photos_build_reads_the_listed_commit(tmp_path):
    """eval/extra_photos.py takes each used photo from the listed commit (not the branch's newest),
    crops it to a multiple of f = max(2, short side // 512) and takes the mean of each f x f block,
    skips rows marked "no", writes
    SOURCES.md and links the other folder's photos except the validation ones."""
    import subprocess

    from PIL import Image

    extra = _load_extra_photos()
    repo = tmp_path / "src"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (1101, 1301, 3), dtype=np.uint8)   # not a multiple of the factor
    Image.fromarray(first).save(repo / "a.png")     # PNG: lossless, so the reduction can be checked
    Image.fromarray(first[:600, :700]).save(repo / "b.png")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    Image.fromarray(255 - first).save(repo / "a.png")
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    mirrors = tmp_path / "mirrors" / "owner+name"
    mirrors.mkdir(parents=True)
    (mirrors / "repo").symlink_to(repo / ".git")
    listing = tmp_path / "list.csv"
    listing.write_text("name,repo,commit,path,licence,use\n"
                       f"x001.png,owner/name,{commit},a.png,CC0 1.0,yes\n"
                       f"x002.png,owner/name,{commit},b.png,CC0 1.0,no: graphic\n")
    others = tmp_path / "photos"
    others.mkdir()
    for name in ("001.png", "045.png"):
        Image.fromarray(first[:64, :64]).save(others / name)
    out = tmp_path / "out"
    assert extra.build(tmp_path / "mirrors", out, others, listing) == 1
    got = np.asarray(Image.open(out / "x001.png"))
    assert got.shape == (550, 650, 3)                # 1100 // 512 = 2
    want = first[:1100, :1300].reshape(550, 2, 650, 2, 3).mean(axis=(1, 3))
    assert np.abs(got - want).max() <= 0.5 + 1e-9     # the first commit's pixels, box-averaged
    assert not (out / "x002.png").exists()
    assert "x001.png" in (out / "SOURCES.md").read_text()
    assert (out / "001.png").is_symlink() and not (out / "045.png").exists()
    assert extra.reduce_factor(3840, 2160) == 4 and extra.reduce_factor(1920, 1080) == 2


def test_photos_webp_parts_are_pixel_identical_and_capped(tmp_path):
    """eval/gpu/photos_webp.py: every photo of the folders once (a link to one already taken is
    skipped, another file of the same name refused), none of the validation photos,
    pixel-identical, in parts whose totals stay under the cap, several photos to a part."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.spec_from_file_location(
        "photos_webp", Path(__file__).resolve().parents[1] / "eval" / "gpu" / "photos_webp.py")
    webp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(webp)
    rng = np.random.default_rng(1)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    sizes = {"001": 20, "002": 30, "003": 25, "004": 40, "045": 30, "x001": 35, "x002": 20}
    images = {n: rng.integers(0, 256, (w, w, 3), dtype=np.uint8) for n, w in sizes.items()}
    for n in ("001", "002", "003", "004", "045"):
        Image.fromarray(images[n]).save(a / f"{n}.png")
    for n in ("x001", "x002"):
        Image.fromarray(images[n]).save(b / f"{n}.png")
    (b / "001.png").symlink_to(a / "001.png")      # the same file again: skipped
    cap = 9000                                        # about three small noise WebPs
    webp.main(str(a), str(b), dest=str(tmp_path / "out"), part_bytes=cap)
    parts = sorted((tmp_path / "out").iterdir())
    got = {p.stem: p for part in parts for p in part.glob("*.webp")}
    assert sorted(got) == ["001", "002", "003", "004", "x001", "x002"]
    assert all(sum(p.stat().st_size for p in part.iterdir()) <= cap for part in parts)
    assert 1 < len(parts) < len(got)                  # several photos share a part
    for n, p in got.items():
        assert np.array_equal(np.asarray(Image.open(p).convert("RGB")), images[n])
    assert not list((tmp_path / "out").rglob("*.part"))
    with pytest.raises(SystemExit):                   # the destination is not empty
        webp.main(str(a), dest=str(tmp_path / "out"), part_bytes=cap)
    (b / "001.png").unlink()
    Image.fromarray(255 - images["001"]).save(b / "001.png")
    with pytest.raises(SystemExit):                   # another file of a name already taken
        webp.main(str(a), str(b), dest=str(tmp_path / "out2"), part_bytes=cap)
