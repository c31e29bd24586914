"""The network over tiles (diffcodec.nets.tiling): the tile grid, tiles that are independent of
each other, a local network that tiles exactly, and files whose network format is tiled: recorded,
decoded on 1, 2 and 4 threads to the same pixels, and whole-network files of the same size still
decoding."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from diffcodec.coding.progressive import decode_container, encode_image
from diffcodec.container.format import Container, network_key
from diffcodec.core import precision
from diffcodec.evaluation.metrics import psnr
from diffcodec.nets import tiling
from diffcodec.nets.tiling import spans, tiled_forward


@pytest.mark.parametrize("n,core,halo,grid", [(10, 16, 4, 4), (100, 32, 8, 4), (1000, 512, 32, 4),
                                              (1023, 256, 32, 8), (4000, 512, 32, 4)])
def test_the_cores_cover_the_image_once_on_the_grid(n, core, halo, grid):
    pieces = spans(n, core, halo, grid)
    assert len(pieces) == -(-n // core)
    assert pieces[0][2] == 0 and pieces[-1][3] == n
    for (ia, ib, ca, cb), nxt in zip(pieces, pieces[1:] + [None]):
        assert ca % grid == 0 and 0 < cb - ca <= core + grid
        assert ia == max(0, ca - halo) and ib == min(n, cb + halo)
        if nxt:
            assert nxt[2] == cb


class _Local(torch.nn.Module):
    """Three 3x3 convolutions: each output sees 3 pixels around it, no image-wide statistics."""
    multiple = 4

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.Sequential(*(torch.nn.Conv2d(c, 4, 3, padding=1) for c in (3, 4, 4)))

    def forward(self, x, t):
        return self.convs(x)


def test_a_local_network_tiles_to_its_whole_output():
    torch.manual_seed(0)
    net = _Local()
    x = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        assert torch.allclose(tiled_forward(net, x, None, core=16, halo=4), net(x, None), atol=1e-6)
        # with too little context the edges of the cores see the padding instead of the image
        assert not torch.allclose(tiled_forward(net, x, None, core=16, halo=0), net(x, None), atol=1e-3)


def test_each_tile_sees_only_its_core_and_halo(tinyrgb):
    """The U-Net tiled: changing pixels outside a tile's input leaves that tile's output as it was,
    and the tiled output differs from the whole network's (each tile has its own statistics)."""
    net = tinyrgb.inference_net
    x = torch.randn(1, 3, 40, 64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([300])
    with torch.no_grad():
        before = tiled_forward(net, x, t, core=32, halo=8)
        far = x.clone()
        far[..., 44:] += 1.0           # the right tile's core starts at 32, its input at 24
        after = tiled_forward(net, far, t, core=32, halo=8)
        whole = net(x.contiguous(memory_format=torch.channels_last), t)
    assert torch.equal(after[..., :32], before[..., :32])
    assert not torch.equal(after[..., 32:], before[..., 32:])
    assert not torch.allclose(before, whole, atol=1e-4)


def test_network_format_names():
    assert precision.parse("bfloat16/tile512") == ("bfloat16", 512, precision.HALO, "")
    assert precision.parse("float32/tile128/halo4") == ("float32", 128, 4, "")
    assert precision.parse("float32") == ("float32", 0, precision.HALO, "")
    for bad in ("float16", "float32/tile", "float32/tile0", "float32/tiles512", "bfloat16/512",
                "float32/tile512/halo32", "float32/tile128/halo08", "float32/halo4"):
        with pytest.raises(ValueError):
            precision.parse(bad)
    for number, tile, halo in [("float32", 0, 8), ("bfloat16", 512, 32), ("float32", 128, 4),
                               ("float32", 64, 0)]:
        name = precision.network_format(number, tile, halo)
        assert precision.parse(name) == (number, tile, halo if tile else precision.HALO, "")
    # memory alone tiles above WHOLE_MAX_PIXELS; a model's tiling applies once the image is larger
    assert precision.tile_for(1024, 1024) == (0, 0) and precision.tile_for(1024, 1028) == (512, 32)
    assert precision.tile_for(128, 128, (128, 4)) == (0, 0)
    assert precision.tile_for(100, 129, (128, 4)) == (128, 4)
    assert precision.tile_for(3000, 4000, (128, 4)) == (128, 4)
    assert precision.decoder_formats(100, 128) == (*precision.NETWORK_FORMATS, "float32/scales0t999-v",
                                                   "bfloat16/scales0t999-v")
    assert precision.decoder_formats(512, 768) == (*precision.NETWORK_FORMATS, "float32/tile128/halo4",
                                                   "bfloat16/tile128/halo4",
                                                   "float32/tile128/halo4/scales2t400-4t700",
                                                   "bfloat16/tile128/halo4/scales2t400-4t700",
                                                   "float32/tile128/halo4/scales2t400-4t700-0t999",
                                                   "bfloat16/tile128/halo4/scales2t400-4t700-0t999",
                                                   "float32/tile128/halo4/scales2t400-4t700-0t999-v",
                                                   "bfloat16/tile128/halo4/scales2t400-4t700-0t999-v")
    assert len(precision.decoder_formats(3000, 4000)) == 12
    assert {"float32/tile512", "bfloat16/tile128/halo4"} <= set(precision.decoder_formats(3000, 4000))
    key = bytes(32)
    names = ("float32", "float32/tile512", "bfloat16", "bfloat16/tile512", "bfloat16/tile128/halo4",
             "bfloat16/tile128/halo4/scales2t400-4t700", "bfloat16/tile128/halo4/scales2t400-4t700-0t999",
             "bfloat16/tile128/halo4/scales2t400-4t700-0t999-v")
    assert len({network_key(key, n) for n in names}) == len(names)


def test_tiles_of_one_shape_run_as_batches_of_bounded_size(monkeypatch):
    """Each tile once, batches of one input shape, at most BATCH_PIXELS input pixels unless one tile
    is larger; and batched tiles compute what the tiles compute one by one."""
    monkeypatch.setattr(tiling, "BATCH_PIXELS", 3 * 20 * 20)
    got = tiling.batches(50, 70, 16, 4, 4)
    tiles = [tile for batch in got for tile in batch]
    assert len(tiles) == len(set(tiles)) == len(spans(50, 16, 4, 4)) * len(spans(70, 16, 4, 4))
    for batch in got:
        (h, w), = {(ys[1] - ys[0], xs[1] - xs[0]) for ys, xs in batch}
        assert len(batch) == 1 or len(batch) * h * w <= tiling.BATCH_PIXELS
    assert max(len(b) for b in got) == 3
    assert max(len(b) for b in tiling.batches(50, 70, 16, precision.HALO, 4)) == 1
    torch.manual_seed(0)
    net, x = _Local(), torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        batched = tiled_forward(net, x, None, core=16, halo=0)
        monkeypatch.setattr(tiling, "BATCH_PIXELS", 1)
        assert torch.allclose(tiled_forward(net, x, None, core=16, halo=0), batched, atol=1e-6)


def _image(h=40, w=64):
    return (np.random.default_rng(7).random((3, h, w)) * 255).astype(np.uint8)


def _coded_in(model, image, network):
    """Encodes image at full rate: the file records ``network`` and decodes to the encoder's
    reconstruction on 1, 2 and 4 threads. -> (encode result, decoded image)."""
    res = encode_image(model, image, backend="rcc", quality=100, precision="float32")
    assert res.header.network == network
    container = Container.from_bytes(res.data, model.keys)
    assert container.header.network == network
    threads = torch.get_num_threads()
    try:
        decoded = []
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            decoded.append(decode_container(model, container).image)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(decoded[0], decoded[1]) and np.array_equal(decoded[0], decoded[2])
    assert psnr(decoded[0], image) == pytest.approx(res.psnr, abs=1e-9)
    return res, decoded[0]


def test_a_large_image_is_coded_with_the_tiled_network_and_decodes_exactly(tinyrgb, monkeypatch):
    """Memory tiling made to start at this test's small image (with a small halo): the file names
    the tiled format, decodes to the encoder's reconstruction on 1, 2 and 4 threads, and a file of
    the same size made with the whole network (as before tiling) still decodes, whole."""
    monkeypatch.setattr(precision, "WHOLE_MAX_PIXELS", 40 * 40)
    monkeypatch.setattr(precision, "TILE", 32)
    monkeypatch.setattr(precision, "HALO", 4)
    image = _image()
    assert max(len(b) for b in tiling.batches(40, 64, 32, precision.HALO, 4)) == 1   # one at a time
    res, decoded = _coded_in(tinyrgb, image, "float32/tile32")

    monkeypatch.setattr(precision, "WHOLE_MAX_PIXELS", 10 ** 9)
    old = encode_image(tinyrgb, image, backend="rcc", quality=100, precision="float32")
    monkeypatch.setattr(precision, "WHOLE_MAX_PIXELS", 40 * 40)
    container = Container.from_bytes(old.data, tinyrgb.keys)
    assert container.header.network == "float32"
    assert psnr(decode_container(tinyrgb, container).image, image) == pytest.approx(old.psnr, abs=1e-9)
    # the two networks are different functions: other step sizes, and the tiled file decoded with
    # the whole network moves pixels
    assert [r.kl_model_bits for r in old.records] != [r.kl_model_bits for r in res.records]
    tiled = Container.from_bytes(res.data, tinyrgb.keys)
    moved = decode_container(tinyrgb, replace(tiled, header=replace(tiled.header, network="float32")))
    assert not np.array_equal(moved.image, decoded)


def test_a_model_tiling_codes_photos_over_its_tiles_on_one_two_and_four_threads(tinyrgb, monkeypatch):
    """A model whose config names a tiling: an image larger than its tile is coded over it (the
    file names it, batches of several tiles included) and decodes to the encoder's pixels on 1, 2
    and 4 threads (edge tiles of odd sizes); the bound ``bpd`` reports is the tiled network's."""
    from diffcodec.evaluation.bpd import network_for

    monkeypatch.setattr(precision, "TILINGS", ((16, 4),))
    monkeypatch.setattr(tinyrgb.config.inference, "tile", 16)
    monkeypatch.setattr(tinyrgb.config.inference, "halo", 4)
    image = _image(41, 67)          # edge tiles of odd sizes, not on the network's grid
    assert max(len(b) for b in tiling.batches(41, 67, 16, 4, 4)) > 1
    _coded_in(tinyrgb, image, "float32/tile16/halo4")
    x, t = torch.randn(2, 3, 40, 64), torch.tensor([300, 300])
    with torch.no_grad():
        tiled = network_for(tinyrgb, 40, 64)(x, t)
        assert torch.allclose(tiled[1:], tiled_forward(tinyrgb.net, x[1:], t[1:], 16, 4))
        assert not torch.allclose(tiled, tinyrgb.net(x, t), atol=1e-4)
    assert network_for(tinyrgb, 16, 16) is tinyrgb.net


def test_a_check_that_fits_one_model_in_several_formats_is_refused_in_words(tinyrgb, monkeypatch):
    """When one model's key passes the first check in more than one network format (a chance
    collision of the CRC-16), the reader says so instead of naming the same model twice."""
    from diffcodec.container import format as container_format
    from diffcodec.container.format import FormatError

    res = encode_image(tinyrgb, _image(), backend="rcc", quality=50, precision="float32")
    end = res.header_bytes - (len(res.layer_bytes) - 1)     # the first check, then a CRC-8 per later layer
    check = res.data[end - 2:end]
    monkeypatch.setattr(container_format, "_first_check", lambda key, head, data: check)
    with pytest.raises(FormatError, match="in several network formats"):
        Container.from_bytes(res.data, tinyrgb.keys)
    # an encoder whose every header gives such a check says so, and writes nothing
    with pytest.raises(FormatError, match="encode it again with other settings"):
        encode_image(tinyrgb, _image(), backend="rcc", quality=50, precision="float32")


def test_an_encoder_settles_a_file_whose_check_fits_several_formats(tinyrgb, monkeypatch):
    """Where the first check of the shortest file would pass its model in several network formats
    (here forced: every format gets the same check for that header), the encoder writes one
    redundant byte in the layer table, and the file reads back to its model and format and
    decodes to the encoder's pixels."""
    from conftest import first_header_collides
    from diffcodec.container import format as container_format

    real = first_header_collides(monkeypatch)
    res = encode_image(tinyrgb, _image(), backend="rcc", quality=50, precision="float32")
    monkeypatch.setattr(container_format, "_first_check", real)
    c = Container.from_bytes(res.data, tinyrgb.reader_keys)
    assert c.pad == 1 and c.header.network == res.header.network and c.header.model_name == tinyrgb.name
    assert c.header_size() == res.header_bytes
    out = decode_container(tinyrgb, c)
    assert out.steps_decoded == len(res.records) and psnr(out.image, _image()) == pytest.approx(res.psnr, abs=1e-9)


def test_an_encoder_settles_its_check_against_the_registered_models(tinyrgb, monkeypatch):
    """The encoder checks its file against every model a reader may try (``reader_keys``), not
    its own alone: where only another model's key passes the shortest file's check too, it pads
    the file, which then names its model alone among them."""
    from diffcodec.container import format as container_format
    from diffcodec.training.store import LoadedModel

    rival = bytes([7] * 32)
    network = encode_image(tinyrgb, _image(), backend="rcc", quality=50, precision="float32").header.network
    monkeypatch.setattr(LoadedModel, "reader_keys", property(lambda self: {**self.keys, "rival": rival}))
    real, heads = container_format._first_check, []
    own_key = network_key(tinyrgb.key, network)

    def rival_collides_first(key, head, data):
        heads.append(head) if not heads else None
        if head == heads[0] and key == network_key(rival, network):
            return real(own_key, head, data)
        return real(key, head, data)

    monkeypatch.setattr(container_format, "_first_check", rival_collides_first)
    res = encode_image(tinyrgb, _image(), backend="rcc", quality=50, precision="float32")
    c = Container.from_bytes(res.data, tinyrgb.reader_keys)
    assert c.pad == 1 and c.header.model_name == tinyrgb.name and c.header.network == network
