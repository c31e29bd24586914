"""Round trips of the progressive codec on tiny models."""
import subprocess
import sys

import numpy as np
import pytest

from diffcodec.container.format import Container, FormatError
from diffcodec.coding.progressive import coded_steps, decode_container, encode_image
from diffcodec.coding import registry
from diffcodec.evaluation.metrics import psnr
from diffcodec.coding.entropy import CorruptStream, Decoder, encode_ops, gauss_op, table_op, zipf_table
from diffcodec.coding.randomness import candidate, candidates, chunk_maps, codebook, codebook_rows, dither
from diffcodec.errors import UserError
from diffcodec.training.store import load_model
from conftest import synthetic_images


@pytest.fixture(scope="module")
def gray_image():
    return synthetic_images(1, size=8, seed=5)[0][None]


def test_candidate_jump_matches_full_generation():
    full = candidates(3, 17, 2, 64, 5)
    for j in (0, 1, 33, 63):
        assert np.array_equal(candidate(3, 17, 2, j, 5), full[j])
    assert abs(full.mean()) < 0.2 and abs(full.std() - 1) < 0.15
    u = dither(1, 2, 10000)
    assert -0.5 < u.min() and u.max() < 0.5 and abs(u.mean()) < 0.02


def test_stacked_maps_are_the_same_on_one_thread_and_two(monkeypatch):
    """``stacked_maps`` reads the chunks' streams (and sorts) in two halves on two threads from
    PARALLEL_MIN values on: the same columns, signs and offsets as on one thread, for chunks
    of one segment and of two."""
    from diffcodec.coding import randomness

    chunks = np.arange(3, 40)
    monkeypatch.setattr(randomness, "numpy_threads", lambda: 2)
    for lengths in ([50], [30, 29]):
        monkeypatch.setattr(randomness, "PARALLEL_MIN", 1)     # first: no buffer left to reuse
        two = randomness.stacked_maps(5, 7, chunks, lengths, 64)
        monkeypatch.setattr(randomness, "PARALLEL_MIN", 10 ** 9)
        one = randomness.stacked_maps(5, 7, chunks, lengths, 64)
        for a, b in zip(one, two):
            assert all(np.array_equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("two_threads", [False, True])
def test_stable_order_is_the_stable_argsort_with_and_without_ties(two_threads, monkeypatch):
    """On one thread, and with every sort split between two (``sort_distinct``; torch's sort in
    ``stable_order`` on the threads torch has)."""
    from diffcodec.coding import randomness
    from diffcodec.coding.randomness import stable_order, stable_orders

    if two_threads:
        monkeypatch.setattr(randomness, "PARALLEL_MIN", 1)
        monkeypatch.setattr(randomness, "numpy_threads", lambda: 2)
    else:
        monkeypatch.setattr(randomness, "PARALLEL_MIN", 10 ** 9)
    rng = np.random.default_rng(2)
    few = rng.integers(0, 40, 5000).astype(np.uint64)
    for keys in (rng.integers(0, 2 ** 63, 5000, dtype=np.uint64),        # no ties
                 rng.integers(0, 2 ** 64, 5000, dtype=np.uint64),        # top bits set too
                 few,                                                    # many ties
                 few << np.uint64(62),                                   # ties, some with the top bit
                 rng.integers(0, 2 ** 16, 196608, dtype=np.uint64) << np.uint64(48),  # a 256x256
                 # image's length, where torch sorts another way (a parallel radix sort), with ties
                 (few << np.uint64(40)) | rng.integers(0, 2 ** 40, 5000, dtype=np.uint64),  # ties in
                 rng.integers(0, 2 ** 63, 1, dtype=np.uint64)):          # the high bits alone; one key
        assert np.array_equal(stable_order(keys), np.argsort(keys, kind="stable"))
    # rows sorted together, only some with ties in their high bits (rows 1 and 3)
    rows = rng.integers(0, 2 ** 63, (4, 300), dtype=np.uint64)
    rows[1] = (rng.integers(0, 9, 300).astype(np.uint64) << np.uint64(50)) | rows[1] >> np.uint64(20)
    rows[3] = rng.integers(0, 5, 300).astype(np.uint64)
    assert np.array_equal(stable_orders(rows), np.argsort(rows, axis=-1, kind="stable"))


def test_codebook_rows_are_prefixes_of_one_table():
    """Format 14: a chunk of m dimensions reads the first m values of the codebook's rows, and row
    r alone is what the decoder regenerates."""
    wide = codebook(3, 8192, 4, start=10)
    for m in (1, 37, 1000, 8192):
        assert np.array_equal(codebook(3, m, 4, start=10), wide[:, :m])
        assert np.array_equal(codebook(3, m, 1, start=12)[0], wide[2, :m])
        # the decoder's batch of rows at any starts (rcc._sample): row by row the same values
        assert np.array_equal(codebook_rows(3, m, [13, 10, 13]), wide[[3, 0, 3], :m])
    with pytest.raises(ValueError):
        codebook(3, 8193, 1)


def test_the_encoders_codebook_is_the_table_and_only_the_main_thread_runs_torch(monkeypatch):
    """rcc._book holds the codebook's rows in the scores' format, and its worker threads run no
    torch op: one torch copy from a worker thread once left every later network call of the
    process much slower."""
    import threading

    import torch

    from diffcodec.coding import rcc

    seen = []
    real = torch.from_numpy
    monkeypatch.setattr(torch, "from_numpy", lambda a: seen.append(threading.current_thread()) or real(a))
    monkeypatch.setattr(rcc, "_BOOKS", type(rcc._BOOKS)())
    book = rcc._book(5, 700, 64, torch.float32)
    assert torch.equal(book, torch.from_numpy(codebook(5, 700, 64)).float())
    assert seen and all(t is threading.main_thread() for t in seen)

def test_codebook_rows_regenerate_alone_and_chunk_maps_are_signed_permutations():
    """rcc's decoder regenerates one codebook row; each (step, chunk) reads the rows through its own
    column order and signs."""
    book = codebook(3, 37, 300)
    for j in (0, 1, 150, 299):
        assert np.array_equal(codebook(3, 37, 1, start=j)[0], book[j])
    assert abs(book.mean()) < 0.05 and abs(book.std() - 1) < 0.05
    assert not np.array_equal(codebook(4, 37, 2), book[:2])
    maps = [chunk_maps(3, step, chunk, [37], 300)[0] for step, chunk in ((1, 0), (1, 1), (2, 0))]
    for columns, signs, offset in maps:
        assert sorted(columns) == list(range(37)) and set(signs) == {-1.0, 1.0} and 0 <= offset < 300
    assert np.array_equal(chunk_maps(3, 1, 0, [37], 300)[0][0], maps[0][0])
    assert not np.array_equal(maps[0][0], maps[1][0]) and not np.array_equal(maps[0][0], maps[2][0])
    offsets = [chunk_maps(3, 1, c, [37], 1 << 13)[0][2] for c in range(200)]
    assert len(set(offsets)) > 190     # the chunks' index 0 falls on different rows
    # a chunk of segments: the first segment's map is the one-segment chunk's; each has its own
    parts = chunk_maps(3, 1, 0, [37, 36, 36], 300)
    assert np.array_equal(parts[0][0], maps[0][0]) and parts[0][2] == maps[0][2]
    assert [len(p[0]) for p in parts] == [37, 36, 36] and len({p[2] for p in parts}) == 3
    assert not np.array_equal(parts[1][0], parts[2][0])


def test_a_steps_maps_read_each_chunks_stream_as_specified():
    """stacked_maps (chunks that share their segments' lengths, each segment's rows sorted
    together) against the maps' definition spelled out with numpy's stable argsort: segment after
    segment of the chunk's Philox stream, m + 1 outputs each (the file format depends on it)."""
    from diffcodec.coding.randomness import PURPOSE_BOOKMAP, _key, stacked_maps

    for chunks, ls in (([0, 1, 2, 9], [37]), ([5, 6], [37, 36, 36]), ([7], [1]), ([4, 8], [2, 2])):
        got = stacked_maps(3, 4, np.array(chunks), ls, 300)
        for i, c in enumerate(chunks):
            gen = np.random.Philox(key=_key(3, PURPOSE_BOOKMAP, 4, c))
            for m, (columns, signs, offsets) in zip(ls, got):
                raw = gen.random_raw(m + 1)
                assert np.array_equal(columns[i], np.argsort(raw[:m] >> np.uint64(1), kind="stable"))
                assert np.array_equal(signs[i], np.where(raw[:m] & np.uint64(1), -1.0, 1.0).astype(np.float32))
                assert offsets[i] == int(raw[m] % np.uint64(300))
            assert [m[0].tolist() for m in chunk_maps(3, 4, c, ls, 300)] == [m[0][i].tolist() for m in got]


def test_a_rekeyed_stream_is_numpys_generator_for_that_key():
    """raw_outputs re-keys one generator in place: its outputs must be a fresh
    np.random.Philox(key) advanced by the blocks asked, whatever was read before (partial blocks,
    other keys, a counter past 2^64 blocks, keys with their high bits set)."""
    from diffcodec.coding.randomness import PURPOSE_BOOK, _key, raw_outputs

    keys = [0, 1, _key(3, PURPOSE_BOOK, 0), _key(2 ** 63 - 1, 9, 2 ** 24 - 1, 2 ** 32 - 1)]
    for key in keys:
        for n, blocks in [(1, 0), (7, 0), (3, 5), (600, 8191 * 1024), (5, 2 ** 64 + 3)]:
            want = np.random.Philox(key=key)
            want.advance(blocks)
            assert np.array_equal(raw_outputs(key, n, blocks), want.random_raw(n)), (key, n, blocks)


def test_entropy_ops_round_trip():
    rng = np.random.default_rng(0)
    k = rng.integers(-3, 4, 50).astype(np.int32)
    idx = rng.integers(0, 16, 7)
    ops = [gauss_op(k, -5, 5, rng.uniform(-.5, .5, 50), np.full(50, 1.3)), table_op(idx, zipf_table(16, 1.2))]
    dec = Decoder(encode_ops(ops))
    assert np.array_equal(dec.gauss(-5, 5, ops[0][4], ops[0][5]), k)
    assert np.array_equal(dec.table(ops[1][2], 7), idx)


@pytest.mark.parametrize("backend,steps", [(n, "12" if n == "rcc" else "6") for n in registry.names()])
def test_round_trip_every_prefix(tiny, gray_image, backend, steps):
    res = encode_image(tiny, gray_image, backend, steps, seed=3, lossless=True)
    data = res.data
    c = Container.from_bytes(data, tiny.keys)
    assert len(c.layers) == len(res.layer_bytes) and c.layers[-1].steps == 0
    # the full file is lossless
    full = decode_container(tiny, c)
    assert full.lossless and np.array_equal(full.image, gray_image)
    # every layer count: quality never drops
    qualities = [psnr(decode_container(tiny, c, layers=n).image, gray_image) for n in range(len(c.layers) + 1)]
    assert all(b >= a - 1e-9 for a, b in zip(qualities, qualities[1:])), qualities
    assert qualities[-1] == float("inf")
    # every byte prefix past the header decodes the layers it holds
    ends = np.cumsum([res.header_bytes] + res.layer_bytes)
    for n in range(res.header_bytes, len(data) + 1):
        cut = Container.from_bytes(data[:n], tiny.keys)
        out = decode_container(tiny, cut)
        assert out.layers_used == int(np.sum(ends[1:] <= n))
        assert out.image.shape == gray_image.shape


def test_encoder_psnr_is_what_the_decoder_gets(tiny, gray_image):
    for backend in registry.names():
        res = encode_image(tiny, gray_image, backend, "8", seed=1)
        out = decode_container(tiny, Container.from_bytes(res.data, tiny.keys))
        assert psnr(out.image, gray_image) == pytest.approx(res.psnr, abs=0.05)


def test_rgb_fully_convolutional_any_size(tinyrgb):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 7, 10), dtype=np.uint8)
    for backend in registry.names():
        res = encode_image(tinyrgb, img, backend, "5", lossless=True)
        out = decode_container(tinyrgb, Container.from_bytes(res.data, tinyrgb.keys))
        assert np.array_equal(out.image, img)


def test_the_encoders_default_chain_is_stored_and_decoded(tinyrgb, monkeypatch):
    """Where rcc's encoder chain (``encoder_steps``) is not the one a file implies, a default
    encode takes it, the file stores it and the decoder runs it (here with tiers made small, so a
    16x16 image takes them)."""
    from dataclasses import replace

    img = np.random.default_rng(2).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    spec = registry.get("rcc")
    monkeypatch.setitem(registry._CODERS, "rcc", replace(spec, encoder_steps=((300, "geo9"), (None, "geo20c5"))))
    res = encode_image(tinyrgb, img, "rcc", quality=100)
    assert res.header.steps_spec == "geo20c5" and res.header.extended()
    back = Container.from_bytes(res.data, tinyrgb.keys)
    assert back.header.steps_spec == "geo20c5"
    out = decode_container(tinyrgb, back)
    assert psnr(out.image, img) == pytest.approx(res.psnr, abs=1e-9)
    assert len(res.records) == tinyrgb.diffusion("geo20c5").num_timesteps - 1 != \
        tinyrgb.diffusion(spec.steps_for(img.size)).num_timesteps - 1
    assert coded_steps(tinyrgb, "rcc", None, img.shape) == len(res.records)   # what progress bars count


def test_rcc_caps_a_steps_chunk_count(tinyrgb, monkeypatch):
    """A step never has more than rcc.MAX_CHUNKS chunks (constriction codes a count on at most 2^24
    values; a 12-megapixel image has more dimensions): with the cap made 3, steps that would take
    more chunks take larger ones, and the file still decodes to the encoder's image."""
    from diffcodec.coding import rcc

    img = np.random.default_rng(1).integers(0, 256, (3, 24, 32), dtype=np.uint8)
    counts = []
    real = rcc.RCCCoder._choose_count
    monkeypatch.setattr(rcc.RCCCoder, "_choose_count", lambda self, *a: counts.append(real(self, *a)) or counts[-1])
    encode_image(tinyrgb, img, "rcc", quality=100)
    assert max(counts) > 3
    counts.clear()
    monkeypatch.setattr(rcc, "MAX_CHUNKS", 3)
    res = encode_image(tinyrgb, img, "rcc", quality=100)
    assert max(counts) == 3
    out = decode_container(tinyrgb, Container.from_bytes(res.data, tinyrgb.keys))
    assert psnr(out.image, img) == pytest.approx(res.psnr, abs=1e-9)
    assert rcc.RCCCoder._new_count_prior(2, 10 ** 9)[1] == 3

def test_rate_control(tiny, gray_image):
    full = encode_image(tiny, gray_image, "uq", "10", quality=100)
    assert len(full.records) == 9
    early = encode_image(tiny, gray_image, "uq", "10", stop_step=20)  # T = 40
    assert early.records[-1].t <= 20 < early.records[-2].t
    target = full.records[4].psnr
    by_psnr = encode_image(tiny, gray_image, "uq", "10", target_psnr=target)
    assert by_psnr.records[-1].psnr >= target and all(r.psnr < target for r in by_psnr.records[:-1])
    budget = 8 * len(full.data) / 64 - 0.5
    by_bpp = encode_image(tiny, gray_image, "uq", "10", bpp=budget)
    assert 8 * len(by_bpp.data) / 64 <= budget and len(by_bpp.records) < 9


def test_quality_and_targets_that_cannot_be_met(tiny, gray_image):
    from diffcodec.coding.progressive import DEFAULT_QUALITY, quality_psnr

    qs = [quality_psnr(q) for q in range(101)]
    assert all(b > a for a, b in zip(qs, qs[1:])) and qs[DEFAULT_QUALITY] == pytest.approx(38.0)
    full = encode_image(tiny, gray_image, "uq", "10", quality=100)
    low = encode_image(tiny, gray_image, "uq", "10", quality=0)
    assert len(low.records) < len(full.records) and low.records[-1].psnr >= quality_psnr(0)
    assert all(r.psnr < quality_psnr(0) for r in low.records[:-1])
    # the tiny model never reaches 55 dB: quality 100 codes every step and says so
    assert len(full.records) == 9 and "quality 100 asks for 55.00 dB" in full.note
    # an explicit request that cannot be met is an error, not a silently different file
    with pytest.raises(UserError, match="cannot be reached: every step coded gives"):
        encode_image(tiny, gray_image, "uq", "10", target_psnr=200)
    with pytest.raises(UserError, match="fits no coded step"):
        encode_image(tiny, gray_image, "uq", "10", bpp=0.01)
    with pytest.raises(UserError, match="only one of"):
        encode_image(tiny, gray_image, "uq", "10", quality=50, bpp=1)


def test_stop_step_and_reconstructions(tiny, gray_image):
    res = encode_image(tiny, gray_image, "uq", "10", seed=2)
    c = Container.from_bytes(res.data, tiny.keys)
    part = decode_container(tiny, c, stop_step=20)
    assert part.t <= 20 and part.steps_decoded < 9
    for how in ("flow", "ancestral"):
        out = decode_container(tiny, c, stop_step=20, reconstruct=how)
        assert out.image.shape == gray_image.shape


def test_wrong_model_and_wrong_input(tiny, tinyrgb, gray_image):
    data = encode_image(tiny, gray_image, "uq", "4").data
    with pytest.raises(UserError, match=rf"made with model '{tiny.name}', not with model '{tinyrgb.name}'"):
        decode_container(tinyrgb, Container.from_bytes(data, tiny.keys))
    with pytest.raises(UserError, match="codes RGB images"):
        encode_image(tinyrgb, gray_image, "uq", "4")
    with pytest.raises(UserError, match=r"global attention .* this one is 20x12, width x height"):
        encode_image(tiny, np.zeros((1, 12, 20), np.uint8), "uq", "4")


def test_lossless_layer_detects_model_mismatch(tiny, gray_image):
    """A decoder whose network differs slightly must report it, not return a wrong image."""
    import copy

    res = encode_image(tiny, gray_image, "uq", "4", lossless=True)
    other = copy.copy(tiny)
    other.net = copy.deepcopy(tiny.net)
    for p in other.net.parameters():
        p.data += 1e-2 * torch_randn_like(p)
    with pytest.raises(CorruptStream, match="checksum"):
        decode_container(other, Container.from_bytes(res.data, other.keys))


def torch_randn_like(p):
    import torch

    return torch.randn_like(p)


def test_decoding_is_identical_across_threads_and_processes(tiny_store, gray_image, tmp_path):
    tiny = load_model("tiny", "cpu")
    res = encode_image(tiny, gray_image, "rcc", "10", seed=4)
    (tmp_path / "a.dfc").write_bytes(res.data)
    script = f"""
import sys, torch, numpy as np
torch.set_num_threads(int(sys.argv[1]))
from diffcodec.container.format import Container
from diffcodec.coding.progressive import decode_container
from diffcodec.training.store import load_model
m = load_model("tiny", "cpu")
out = decode_container(m, Container.from_bytes(open(r"{tmp_path / 'a.dfc'}", "rb").read(), m.keys))
np.save(sys.argv[2], out.image)
"""
    images = []
    for threads in (1, 2):
        target = tmp_path / f"out{threads}.npy"
        subprocess.run([sys.executable, "-c", script, str(threads), str(target)], check=True)
        images.append(np.load(target))
    here = decode_container(tiny, Container.from_bytes(res.data, tiny.keys)).image
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[0], here)


@pytest.mark.parametrize("backend", registry.names())
def test_corrupted_payload_is_an_error(tiny, gray_image, backend):
    data = bytearray(encode_image(tiny, gray_image, backend, "4").data)
    data[-1] ^= 0xFF
    with pytest.raises(FormatError):
        decode_container(tiny, Container.from_bytes(bytes(data), tiny.keys))


def test_psnr_request_codes_only_as_much_of_the_last_step_as_it_needs(tinyrgb):
    """tuq's lighter variants: the step that reaches a PSNR request is re-coded with the highest
    band threshold that still reaches it. The file decodes to the PSNR the encoder reports, meets
    the request, is never larger than coding that step whole, and is smaller for some request."""
    from diffcodec.coding.tuq import TUQCoder

    class Whole(TUQCoder):
        def lighter(self):
            return []

    yy, xx = np.mgrid[:16, :16]
    img = np.stack([(yy * 15) % 256, (xx * 15) % 256, ((xx + yy) * 8) % 256]).astype(np.uint8)
    full = encode_image(tinyrgb, img, "tuq", "12", quality=100)
    saved = []
    for a, b in zip(full.records, full.records[1:]):
        if b.psnr - a.psnr < 0.5:
            continue
        target = (a.psnr + b.psnr) / 2
        light = encode_image(tinyrgb, img, "tuq", "12", target_psnr=target)
        whole = encode_image(tinyrgb, img, "tuq", "12", target_psnr=target, coder=Whole())
        out = decode_container(tinyrgb, Container.from_bytes(light.data, tinyrgb.keys))
        assert psnr(out.image, img) == pytest.approx(light.psnr, abs=0.01)
        assert light.psnr >= target and len(light.records) == len(whole.records)
        assert len(light.data) <= len(whole.data)
        saved.append(len(whole.data) - len(light.data))
    assert saved and max(saved) > 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", registry.names())
def test_every_stopped_file_decodes_to_the_full_files_preview(backend, tmp_path):
    """`eval rd` writes one stopped file per step of each image's chain and decodes only a few of
    them on their own (rd_curves.CHECKED_FILES); here every one, for one image (the shipped
    fmnist's example, 28x28) with each backend at its default steps: decoded alone, the file of k
    steps gives the full file's x0_hat preview after step k, pixel for pixel; its point's PSNR is
    that preview's, computed here, and its bits the file's size on disk. (About a minute for rcc's
    39 steps on 2 CPU cores; run with -m slow.)"""
    from pathlib import Path

    from diffcodec.evaluation.rd_curves import evaluate_codec
    from diffcodec.io.datasets import load_image

    root = Path(__file__).resolve().parents[1]
    fmnist = load_model(str(root / "models" / "fmnist"), "cpu")
    img = load_image(root / "models" / "fmnist" / "example.png")            # [1, 28, 28]
    doc = evaluate_codec(backend, img[None], tmp_path, fmnist)
    rows = sorted(doc["per_image"], key=lambda r: r["point"])
    n = len(rows)
    assert [r["point"] for r in rows] == list(range(1, n + 1)) and n == fmnist.diffusion(
        registry.get(backend).encoder_steps_for(img.size)).num_timesteps - 1
    full = Path(rows[-1]["file"]).read_bytes()
    previews = {}
    decode_container(fmnist, Container.from_bytes(full, fmnist.keys),
                     on_step=lambda k, px: previews.__setitem__(k, px.reshape(img.shape)))
    assert sorted(previews) == list(range(1, n + 1))
    for r in rows:
        data = Path(r["file"]).read_bytes()
        alone = decode_container(fmnist, Container.from_bytes(data, fmnist.keys))
        assert alone.steps_decoded == r["point"] and alone.complete
        assert np.array_equal(alone.image, previews[r["point"]]), r["file"]
        mse = np.mean((previews[r["point"]].astype(np.float64) - img) ** 2)
        assert r["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / mse) if mse else float("inf"), abs=1e-9)
        assert r["bits"] == 8 * len(data)

