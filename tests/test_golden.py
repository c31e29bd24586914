"""The .dfc format is a contract: a frozen file must keep decoding to the same pixels, and the
encoder must keep writing it byte for byte.

tests/data/golden_fmnist.dfc is models/fmnist/example.png (copied to golden_fmnist_input.png)
encoded with the default settings (make_golden.SETTINGS; format version 14, in its compact form).
golden_v2_fmnist.dfc to golden_v12_fmnist.dfc are the same image in format versions 2 to 12
(versions 8's, 10's and 12's in their compact forms, 0xD9, 0xDB and 0xDD), which this version must refuse with
a clear message. After a deliberate format change (a new version), a new shipped `fmnist` or a
deliberate change of what the encoder writes, regenerate it with `python tests/data/make_golden.py`
and commit the files it writes in tests/data/.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
from make_golden import DFC, EXPECTED, INPUT, MODEL_DIR, PIXELS, SETTINGS, pixels_sha256  # noqa: E402

from diffcodec.coding.progressive import decode_container  # noqa: E402
from diffcodec.container.format import MAGIC, VERSION, Container  # noqa: E402


@pytest.fixture(scope="module")
def golden():
    return DFC.read_bytes(), json.loads(EXPECTED.read_text())


@pytest.fixture(scope="module")
def fmnist():
    from diffcodec.training.store import load_model

    return load_model(str(MODEL_DIR), "cpu")


def test_golden_file_parses_and_reserializes_byte_for_byte(golden, fmnist):
    data, expected = golden
    c = Container.from_bytes(data, fmnist.keys)
    assert data[0] == MAGIC + 1 and VERSION == expected["format_version"]   # the compact form
    assert len(data) == expected["bytes"] and c.complete
    h = c.header.for_model(fmnist.profile)
    assert (h.backend, h.steps_spec) == (expected["backend"], expected["steps"])
    assert c.to_bytes() == data


def test_golden_file_decodes_to_the_same_pixels(golden, fmnist):
    data, expected = golden
    out = decode_container(fmnist, Container.from_bytes(data, fmnist.keys))
    assert list(out.image.shape) == expected["shape"]
    if pixels_sha256(out.image) == expected["pixels_sha256"]:
        return          # bit-exact, as on the machine that wrote it
    # Another CPU may round the network's float32 arithmetic (or numpy's SIMD float32 log/cos)
    # differently in the last bit; the stream cannot desynchronise (see README, Determinism), so
    # the pixels may move by a grey level here and there, but a broken format gives garbage.
    from diffcodec.io.datasets import load_image

    ref = load_image(PIXELS, out.image.shape[0]).astype(int)
    diff = np.abs(out.image.astype(int) - ref)
    assert diff.max() <= 2 and np.mean(diff > 0) < 0.02


def test_golden_input_reencodes_to_the_golden_bytes(golden, fmnist):
    """Encoding the golden input again with the recorded settings writes the golden file byte for
    byte: any change to what the encoder writes (its choice of steps, the coder's selection or aim,
    the layer cuts, the header) shows here, where the decode test above sees only changes that
    stop an old file decoding. (The encoder's choices follow the network's float32 outputs; the
    file was written on x86-64 with PyTorch's CPU kernels. Should another machine round one of
    them differently in the last bit, the bytes can differ while the decoder still reads both.)"""
    from diffcodec import api
    from diffcodec.io.datasets import load_image
    from diffcodec.io.images import to_hwc

    data, expected = golden
    res = api.encode(to_hwc(load_image(INPUT)), fmnist, **SETTINGS)
    assert (res.header.backend, res.header.steps_spec) == (expected["backend"], expected["steps"])
    assert res.data == data, (len(res.data), len(data), res.data.hex(), data.hex())


@pytest.mark.parametrize("version", [2, 3, 4, 5, 6, 7, 8, 10, 12])
def test_older_golden_files_are_refused_clearly(version):
    from diffcodec.container.format import FormatError

    with pytest.raises(FormatError, match=f"format version {version}, from an older diffcodec"):
        Container.from_bytes((DATA / f"golden_v{version}_fmnist.dfc").read_bytes())
