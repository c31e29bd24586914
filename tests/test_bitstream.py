from dataclasses import replace

import pytest

from diffcodec.coding import registry
from diffcodec.container.format import (Container, FormatError, Header, Layer, ModelProfile, put_varint,
                                        _Reader)

KEY = bytes(range(32))            # a model's key: the sha256 digest of its weights
KEYS = {"m": KEY, "other": bytes(range(1, 33))}


def make(layers=((2, b"abc"), (3, b"12345"), (0, b"zz")), **kw):
    h = dict(model_name="m", model_key=KEY, height=28, width=28, channels=1,
             backend="uq", steps_spec="8", seed=7, lossless=True, params=b"")
    h.update(kw)
    return Container(Header(**h), [Layer(s, d) for s, d in layers])


def test_round_trip_and_small_header():
    c = make()
    data = c.to_bytes()
    back = Container.from_bytes(data, KEYS)
    assert back.header == c.header and back.layers == c.layers and back.complete
    # magic+version (1), flags (1), square size (1), spec (2), seed (1), params (1), layer table
    # (steps and length per layer: 6), the first layer's keyed CRC-16 (2), a CRC-8 per later layer (2)
    assert c.header_size() == 17


def test_default_settings_imply_their_fields():
    """A registered backend at its default steps, seed 0 and default parameters needs no extended
    fields: for a square image under 128 pixels, 6 bytes for one layer (whose length is implied),
    and 10 for two (4 more: the first layer's length, and the second's steps, length and CRC-8);
    at the model's native size, which stores no size, 5 and 9."""
    c = make(layers=((5, b"abc"),), steps_spec="quad8", seed=0, lossless=False)
    assert c.header_size() == 6
    assert make(layers=((5, b"abc"), (6, b"de")), steps_spec="quad8", seed=0, lossless=False).header_size() == 10
    assert Container.from_bytes(c.to_bytes(), KEYS).header == c.header
    wide = make(height=28, width=300, seed=0, steps_spec="quad8")
    assert Container.from_bytes(wide.to_bytes(), KEYS).header == wide.header
    native = make(layers=((5, b"abc"),), steps_spec="quad8", seed=0, lossless=False, native=True)
    assert native.header_size() == 5
    assert make(layers=((5, b"abc"), (6, b"de")), steps_spec="quad8", seed=0, lossless=False,
                native=True).header_size() == 9


def test_native_size_is_the_models():
    """A native-size file stores no size: it reads as 0 x 0 until the decoding model's size is
    filled in, and describes its bits per pixel only then."""
    c = make(native=True)
    back = Container.from_bytes(c.to_bytes(), KEYS)
    assert (back.header.height, back.header.width) == (0, 0) and back.header.native
    profile = ModelProfile(28, 1, "gaussian")
    assert back.header.for_model(profile) == c.header
    assert back.describe()["layers"][0]["cumulative_bpp"] is None
    assert back.describe(profile)["layers"] == c.describe()["layers"]
    with pytest.raises(ValueError):
        make(native=True, width=30).to_bytes()


def test_a_file_at_its_models_defaults_is_compact():
    """Native size, the backend "auto" picks, its default steps and parameters, seed 0 and no
    lossless layer: one byte (0xDF) replaces magic and flags, and the model that passes the first
    check fills the fields in; 4 bytes of header for one layer, 8 for two. Anything else is the
    long form."""
    for backend, steps, size, channels in (("rcc", "geo9", 28, 1), ("rcc", "geo9c20", 64, 3)):
        kw = dict(backend=backend, steps_spec=steps, seed=0, lossless=False, native=True, auto=True,
                  height=size, width=size, channels=channels)
        one, two = make(layers=((5, b"abc"),), **kw), make(layers=((5, b"abc"), (6, b"de")), **kw)
        assert (one.header_size(), two.header_size()) == (4, 8)
        for c in (one, two):
            data = c.to_bytes()
            back = Container.from_bytes(data, KEYS)
            assert data[0] == 0xDF and back.header.compact() and back.to_bytes() == data
            assert (back.header.channels, back.header.backend) == (0, "")
            assert back.header.for_model(ModelProfile(size, channels, "gaussian")) == c.header
        for change in (dict(seed=1), dict(lossless=True), dict(steps_spec="geo13"), dict(auto=False)):
            long = make(layers=((5, b"abc"),), **{**kw, **change})
            assert long.to_bytes()[0] == 0xDE and not long.header.compact()
            back = Container.from_bytes(long.to_bytes(), KEYS).header
            assert back.for_model(ModelProfile(size, channels, "gaussian")) == replace(long.header, auto=False)


def test_what_a_compact_file_implies_for_the_shipped_models():
    """A compact file names neither backend nor steps: they are what "auto" picks for the model's
    native size and that backend's defaults. Changing them changes what existing files mean, so
    it needs a new format version; this pins them."""
    from pathlib import Path

    from diffcodec.training.store import profile_for

    shipped = Path(__file__).resolve().parents[1] / "models"   # not $DIFFCODEC_MODELS, which tests set
    compact = Header("", b"", 0, 0, 0, "", "", 0, native=True, auto=True)
    for name, implied in (("fmnist", ("rcc", "geo9", 28)), ("photo", ("rcc", "geo9", 32))):
        h = compact.for_model(profile_for(name, shipped))
        assert (h.backend, h.steps_spec, h.height) == implied
        assert registry.get(h.backend).from_params(b"").params() == b""


def test_rcc_default_steps_by_image_size():
    """The chain a file without a step spec implies depends on the image's size: geo9 up to 4096
    values (Fashion-MNIST, 32x32 RGB), finer at high noise above (where a coarse first jump costs
    thousands of bits), geo9c40 above 256x256 RGB. It is part of the format, so this pins it;
    another size's implied chain written out is the long, extended form. Above 256x256 RGB the
    encoder takes a shorter chain (geo12c40): such a file stores its spec (11 bytes more), so a
    reader of this format version decodes it with the encoder's chain; up to 256x256 the
    encoder's chain is the implied one and the header stays short."""
    rcc = registry.get("rcc")
    sizes = {(1, 28, 28): ("geo9", "geo9"), (3, 32, 32): ("geo9", "geo9"), (1, 64, 64): ("geo9", "geo9"),
             (3, 64, 64): ("geo9c20", "geo9c20"), (3, 256, 256): ("geo9c20", "geo9c20"),
             (3, 257, 256): ("geo9c40", "geo12c40"), (3, 512, 768): ("geo9c40", "geo12c40")}
    for (c, h, w), (steps, encoder) in sizes.items():
        assert rcc.steps_for(c * h * w) == steps and rcc.encoder_steps_for(c * h * w) == encoder
        kw = dict(backend="rcc", seed=0, lossless=False, native=False, auto=True, height=h, width=w,
                  channels=c)
        plain = make(layers=((5, b"abc"),), steps_spec=steps, **kw)
        assert not plain.header.extended()
        back = Container.from_bytes(plain.to_bytes(), KEYS).header
        assert back.steps_spec == steps and back.for_model(ModelProfile(28, 1, "gaussian")).steps_spec == steps
        other = "geo9c40" if steps == "geo9" else "geo9"
        assert make(layers=((5, b"abc"),), steps_spec=other, **kw).header.extended()
        made = make(layers=((5, b"abc"),), steps_spec=encoder, **kw)
        assert made.header.extended() == (encoder != steps)
        back = Container.from_bytes(made.to_bytes(), KEYS).header
        assert back.for_model(ModelProfile(28, 1, "gaussian")).steps_spec == encoder
        if encoder != steps:
            assert len(made.to_bytes()) - len(plain.to_bytes()) == 3 + len(encoder)
    # the decoder splits a chunk into segments of at most this many dimensions: also the format's
    from diffcodec.coding import rcc as rcc_module
    assert rcc_module.SEGMENT_DIMS == 8192
    with pytest.raises(ValueError, match="tiers"):
        registry.register("bad-tiers", 7, ((100, "geo9"), (50, "geo6")))
    with pytest.raises(ValueError, match="tiers"):
        registry.register("bad-encoder-tiers", 7, "geo9", encoder_steps=((100, "geo9"),))
    assert rcc.steps_text() == "geo9 (geo9c20 above 4096 values, geo12c40 above 196608 values)"


def test_a_step_list_of_any_length_fits():
    """The step spec's length is a varint: a 100-step list (388 bytes) round-trips."""
    spec = ",".join(str(t) for t in range(0, 1000, 10))
    c = make(steps_spec=spec)
    assert Container.from_bytes(c.to_bytes(), KEYS).header.steps_spec == spec


def test_a_cut_one_layer_file_is_an_error():
    """A one-layer file has no layer length to tell a cut from damage: a cut fails its checksum
    (here every cut; in general all but about 1 in 65536, the odds of any damage under a CRC-16)."""
    data = make(layers=((5, b"abcdef"),)).to_bytes()
    for n in range(len(data)):
        with pytest.raises(FormatError):
            Container.from_bytes(data[:n], KEYS)

@pytest.mark.parametrize("v", [0, 1, 127, 128, 300, 2 ** 40])
def test_varint(v):
    out = bytearray()
    put_varint(out, v)
    assert _Reader(bytes(out)).varint() == v
    for pad in (1, 3):      # redundant zero groups (Container.settled) read as the same value
        padded = bytearray()
        put_varint(padded, v, pad=pad)
        assert len(padded) == len(out) + pad and _Reader(bytes(padded)).varint() == v


def test_every_cut_decodes_the_complete_layers():
    c = make()
    data = c.to_bytes()
    hdr = c.header_size()
    ends = [hdr + 3, hdr + 8, hdr + 10]
    for n in range(len(data) + 1):
        if n < hdr:
            with pytest.raises(FormatError):
                Container.from_bytes(data[:n], KEYS)
            continue
        back = Container.from_bytes(data[:n], KEYS)
        assert len(back.layers) == sum(n >= e for e in ends)
        assert back.complete == (n == len(data))
        # what a cut file reports: its own header and every layer its table declares
        assert back.header_size() == hdr and back.declared_layers == 3


def test_corruption_is_detected():
    """Any damaged byte is an error, except where a damaged header's table claims more bytes for
    the first layer than the file has: that reads as a cut file with no complete layer, which the
    decoder refuses (tests/test_cli.py). Elsewhere the first layer's CRC covers the header."""
    for layers in (((2, b"abc"), (3, b"12345"), (0, b"zz")), ((5, b"abcdef"),)):
        data = bytearray(make(layers).to_bytes())
        for pos in range(len(data)):
            bad = bytearray(data)
            bad[pos] ^= 0x10
            try:
                back = Container.from_bytes(bytes(bad), KEYS)
            except FormatError:
                continue
            assert back.layers == [] and not back.complete


@pytest.mark.parametrize("version", [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
def test_versions_3_to_13_are_refused_clearly(version):
    """(0xD9, 0xDB and 0xDD, read as 9, 11 and 13, were versions 8's, 10's and 12's compact forms:
    refused as versions 8, 10 and 12.)"""
    data = bytearray(make().to_bytes())
    data[0] = 0xD0 | version
    version = {9: 8, 11: 10, 13: 12}.get(version, version)
    with pytest.raises(FormatError, match=f"format version {version}, from an older diffcodec"):
        Container.from_bytes(bytes(data), KEYS)


def test_not_ours():
    with pytest.raises(FormatError, match="not a diffcodec"):
        Container.from_bytes(b"\x89PNG\r\n\x1a\n....", KEYS)


@pytest.mark.parametrize("version", [1, 2])
def test_older_formats_are_refused_clearly(version):
    old = b"DF" + bytes([version, 0, 6]) + b"fmnist" + bytes(20)
    with pytest.raises(FormatError, match=f"format version {version}, from an older diffcodec"):
        Container.from_bytes(old, KEYS)


def test_trailing_garbage_is_rejected():
    with pytest.raises(FormatError, match="unexpected bytes"):
        Container.from_bytes(make().to_bytes() + b"x", KEYS)


def test_the_model_is_the_key_that_passes_the_first_check():
    """No model is named in the file: the reader finds it among the keys it is given, and a file
    made with other weights fails like a damaged one, with a message that says both."""
    data = make().to_bytes()
    assert Container.from_bytes(data, {"a": bytes(32), "m": KEY}).header.model_name == "m"
    with pytest.raises(FormatError, match="other weights than model 'a'"):
        Container.from_bytes(data, {"a": bytes(32)})
    with pytest.raises(FormatError, match="other weights than any of the 2 registered models"):
        Container.from_bytes(data, {"a": bytes(32), "b": bytes([1] * 32)})
    with pytest.raises(FormatError, match="several models"):
        Container.from_bytes(data, {"m": KEY, "m2": KEY})
    cut = Container.from_bytes(data[:make().header_size() + 2], KEYS)   # layer 1 incomplete
    assert cut.layers == [] and cut.header.model_name == "" and cut.header.model_key == b""


def _lengths_whose_check_also_passes(base, keys, network):
    """{other key label: the first layer length (zeros) whose check, keyed with ``keys[network]``,
    also passes that key}: found by search, as the CRC is affine (whether two keys' checks agree
    depends on the keys and on the length of what follows them, not on its bytes)."""
    import zlib

    head = base.to_bytes()[:base.header_size() - 2]
    running = {name: zlib.crc32(key + head) for name, key in keys.items()}
    found = {}
    for length in range(1, 1 << 21):
        running = {name: zlib.crc32(b"\0", c) for name, c in running.items()}
        for name, c in running.items():
            if name != network and c & 0xFFFF == running[network] & 0xFFFF:
                found.setdefault(name, length)
        if len(found) == len(keys) - 1:
            break
    return found


def test_an_encoder_settles_a_check_that_would_be_ambiguous():
    """The first check passes a wrong key or network format once in 65536 tries, so a file of a
    size with ten formats is ambiguous about once in 7300. ``settled`` writes such a file with a
    redundant byte in its layer table's first varint (another header, another check), which then
    reads back to its model and format alone, with the same header and layers; a file that reads
    back already is left as it is. Found by search over layer lengths: a check that also passes
    another format of the same era (refused), one of an earlier era (which a reader would take:
    readers prefer the earliest era, so the encoder must settle this too), and another model's key."""
    from diffcodec.container.format import network_key
    from diffcodec.core import precision

    network = "float32/tile128/halo4/scales2t400-4t700-0t999-v"
    base = make(layers=((9, b""),), height=256, width=256, channels=3, backend="rcc",
                steps_spec=registry.get("rcc").steps_for(3 * 256 * 256), seed=0, lossless=False, network=network)
    formats = precision.decoder_formats(256, 256)
    assert network in formats and len(formats) == 10 and precision.era(network) == 2
    keys = {f: network_key(KEY, f) for f in formats}
    keys["other"] = network_key(KEYS["other"], network)
    lengths = _lengths_whose_check_also_passes(base, keys, network)
    found = {"model": lengths["other"], "format": lengths["bfloat16/tile128/halo4/scales2t400-4t700-0t999-v"],
             "earlier": min(n for f, n in lengths.items() if f in formats and precision.era(f) < 2)}
    for kind, length in found.items():
        c = replace(base, layers=[Layer(9, bytes(length))])
        if kind == "earlier":
            assert Container.from_bytes(c.to_bytes(), KEYS).header.network != network
        else:
            with pytest.raises(FormatError, match="several network formats" if kind == "format" else "several models"):
                Container.from_bytes(c.to_bytes(), KEYS)
        settled = c.settled(KEYS)
        assert settled.pad >= 1 and len(settled.to_bytes()) == len(c.to_bytes()) + settled.pad
        back = Container.from_bytes(settled.to_bytes(), KEYS)
        assert back.header == c.header and back.layers == c.layers
        assert back.pad == settled.pad and back.to_bytes() == settled.to_bytes()   # kept when rewritten
        with pytest.raises(ValueError, match="its own model"):       # keys without the file's own
            c.settled({"other": KEYS["other"]})
    plain = replace(base, layers=[Layer(9, b"plain")])
    assert Container.from_bytes(plain.to_bytes(), KEYS).header == plain.header
    assert plain.settled(KEYS).pad == 0 and plain.settled(KEYS).to_bytes() == plain.to_bytes()


def test_a_file_from_before_a_format_was_added_reads_as_made():
    """A file settled against the formats of its time (here: before the blank schedule, era 0) may
    also pass a format added since; the reader takes the one of the earliest era. Formats of one
    era that both pass are still refused."""
    from diffcodec.container.format import network_key
    from diffcodec.core import precision

    network = "float32/tile128/halo4/scales2t400-4t700"
    base = make(layers=((9, b""),), height=256, width=256, channels=3, backend="rcc",
                steps_spec=registry.get("rcc").steps_for(3 * 256 * 256), seed=0, lossless=False, network=network)
    formats = precision.decoder_formats(256, 256)
    assert precision.era(network) == 0
    keys = {f: network_key(KEY, f) for f in formats}
    lengths = _lengths_whose_check_also_passes(base, keys, network)
    newer = [n for f, n in lengths.items() if precision.era(f) >= 1]
    older = [n for f, n in lengths.items() if precision.era(f) == 0]
    c = replace(base, layers=[Layer(9, bytes(min(newer)))])
    assert Container.from_bytes(c.to_bytes(), KEYS).header == c.header
    with pytest.raises(FormatError, match="several network formats"):
        Container.from_bytes(replace(base, layers=[Layer(9, bytes(min(older)))]).to_bytes(), KEYS)


def test_an_encoder_checks_its_file_against_every_registered_model(monkeypatch):
    """LoadedModel.reader_keys: the registered models' keys and the model's own, which keeps its
    name unless a registered model with another key has it (both are then tried); a registered
    name for the same weights is the model's own; an unreadable index is a ModelError."""
    from types import SimpleNamespace

    from diffcodec.training import store
    from diffcodec.training.checkpoint import ModelError

    a, b, c = bytes([1] * 32), bytes([2] * 32), bytes([3] * 32)
    monkeypatch.setattr(store, "model_keys", lambda root=None: {"photo": a, "fmnist": b})

    def reader_keys(name, key):
        model = SimpleNamespace(name=name, sha256=key.hex(), key=key, keys={name: key})
        return store.LoadedModel.reader_keys.fget(model)

    assert reader_keys("mine", c) == {"photo": a, "fmnist": b, "mine": c}
    assert reader_keys("photo", c) == {"photo": a, "fmnist": b, f"photo ({c.hex()[:12]})": c}
    assert reader_keys("copy", a) == {"fmnist": b, "copy": a}

    def unreadable(root=None):
        raise ModelError("cannot read model index")
    monkeypatch.setattr(store, "model_keys", unreadable)
    with pytest.raises(ModelError):
        reader_keys("mine", c)


def test_padding_reads_back_and_is_kept_in_every_form():
    """A compact file and long-form files of one and of three layers, written with 1 to 3
    redundant bytes in the table's first varint: each reads back to the same header and layers
    with its padding, and writes the same bytes again; settled refuses a file its own key and
    format would not pass (a format no reader tries at its size)."""
    compact = make(layers=((5, b"abc"),), backend="rcc", steps_spec="geo9", seed=0, lossless=False,
                   native=True, auto=True)
    for c in (compact, make(layers=((5, b"abc"),)), make()):
        for pad in (1, 3):
            data = replace(c, pad=pad).to_bytes()
            back = Container.from_bytes(data, KEYS)
            assert len(data) == len(c.to_bytes()) + pad and back.pad == pad and back.to_bytes() == data
            assert back.layers == c.layers and Container.from_bytes(c.to_bytes(), KEYS).header == back.header
    with pytest.raises(ValueError, match="its own model"):
        replace(make(), header=replace(make().header, network="float32/tile999")).settled(KEYS)


def test_a_model_index_that_is_not_an_object_is_a_model_error(tmp_path):
    from diffcodec.training.checkpoint import ModelError
    from diffcodec.training.store import model_keys

    (tmp_path / "index.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a JSON object"):
        model_keys(tmp_path)


def test_the_caller_gives_the_keys():
    """The container reads no model store: the keys are the caller's, and ``registered`` (the
    store's ``model_keys``, in the library) is asked only when they are not given, or to name the
    file's model when they all fail."""
    data, calls = make().to_bytes(), []

    def registered():
        calls.append(1)
        return {"m": KEY}
    assert Container.from_bytes(data, KEYS, registered).header.model_name == "m" and not calls
    assert Container.from_bytes(data, registered=registered).header.model_name == "m" and calls
    with pytest.raises(FormatError, match="made with model 'm', not with model 'a'"):
        Container.from_bytes(data, {"a": bytes(32)}, registered)
    with pytest.raises(FormatError, match="other weights than model 'a'"):
        Container.from_bytes(data, {"a": bytes(32)})
    with pytest.raises(ValueError, match="pass keys or registered"):
        Container.from_bytes(data)


def test_a_bad_model_index_is_a_one_line_error(tmp_path, monkeypatch):
    """The registered models' keys come from models/index.json: an entry without a valid sha256 is
    a UserError naming it, not a traceback."""
    from diffcodec.errors import UserError
    from diffcodec.training.store import model_keys

    (tmp_path / "index.json").write_text('{"m": {"dir": "m", "sha256": "not hex"}}')
    monkeypatch.setenv("DIFFCODEC_MODELS", str(tmp_path))
    with pytest.raises(UserError, match="model 'm' has no valid sha256"):
        Container.from_bytes(make().to_bytes(), registered=model_keys)
