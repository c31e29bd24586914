"""Regenerate the golden .dfc file that tests/test_golden.py decodes.

    python tests/data/make_golden.py

Run it only after a deliberate change of the file format (a new format version), of the
shipped `fmnist` model or of what the encoder writes: it copies models/fmnist/example.png to
golden_fmnist_input.png (the input tests/test_golden.py re-encodes), encodes it with the default
settings (as `diffcodec encode models/fmnist/example.png` does: backend auto, quality 75, seed 0),
writes golden_fmnist.dfc, decodes it, and stores the decoded pixels' sha256 in golden_fmnist.json.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE.parents[1] / "models" / "fmnist"
IMAGE = MODEL_DIR / "example.png"
DFC, EXPECTED, PIXELS = HERE / "golden_fmnist.dfc", HERE / "golden_fmnist.json", HERE / "golden_fmnist_decoded.png"
INPUT = HERE / "golden_fmnist_input.png"     # a copy of IMAGE, so that the golden test does not follow it
SETTINGS = {"backend": "auto", "quality": 75, "seed": 0}   # what the golden file was encoded with


def pixels_sha256(image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def main() -> None:
    from diffcodec import api
    from diffcodec.coding.progressive import decode_container
    from diffcodec.container.format import VERSION, Container
    from diffcodec.io.datasets import load_image
    from diffcodec.io.images import to_hwc
    from diffcodec.training.store import load_model

    loaded = load_model(str(MODEL_DIR), "cpu")
    INPUT.write_bytes(IMAGE.read_bytes())
    res = api.encode(to_hwc(load_image(INPUT)), loaded, **SETTINGS)
    DFC.write_bytes(res.data)
    out = decode_container(loaded, Container.from_bytes(res.data, loaded.keys))
    doc = {"source": "models/fmnist/example.png, default settings (auto backend, quality 75), seed 0",
           "format_version": VERSION, "bytes": len(res.data), "backend": res.header.backend,
           "steps": res.header.steps_spec, "shape": list(out.image.shape),
           "pixels_sha256": pixels_sha256(out.image)}
    EXPECTED.write_text(json.dumps(doc, indent=2) + "\n")
    from diffcodec.io.images import save_png

    save_png(PIXELS, out.image)
    print(f"wrote {DFC.name} ({len(res.data)} bytes) and {EXPECTED.name}")


if __name__ == "__main__":
    main()
