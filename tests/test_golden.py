"""The .dfc format is a contract: a frozen file must keep decoding to the same pixels.

tests/data/golden_fmnist.dfc is models/fmnist/example.png encoded with the default settings
(format version 12, in its compact form). golden_v2_fmnist.dfc to golden_v10_fmnist.dfc are the
same image in format versions 2 to 10 (versions 8's and 10's in their compact forms, 0xD9 and
0xDB), which this version must refuse with a clear message. After a deliberate
format change (a new version) or a new shipped `fmnist`, regenerate it with
`python tests/data/make_golden.py` and commit both files in tests/data/.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
from make_golden import DFC, EXPECTED, MODEL_DIR, PIXELS, pixels_sha256  # noqa: E402

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


@pytest.mark.parametrize("version", [2, 3, 4, 5, 6, 7, 8, 10])
def test_older_golden_files_are_refused_clearly(version):
    from diffcodec.container.format import FormatError

    with pytest.raises(FormatError, match=f"format version {version}, from an older diffcodec"):
        Container.from_bytes((DATA / f"golden_v{version}_fmnist.dfc").read_bytes())
