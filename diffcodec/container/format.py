"""The .dfc container: bytes only, no torch.

Layout (all integers are LEB128 varints unless a width is given):

    b"DF" | version (1 byte) | flags (1 byte) | name length (1 byte) | name | weights sha256 (4 bytes)
    | height | width | steps spec length (1 byte) | steps spec (ASCII) | seed
    | params length | params (backend-specific bytes)
    | layer count | per layer: steps in it, byte length, CRC-8 of its bytes
    | CRC-16 of everything above (2 bytes, big-endian) | layer payloads, concatenated

flags: bits 0-1 channel code (0: grayscale, 1: RGB), bits 2-4 the backend's wire id (from the
coder registry: 0 uq, 1 rcc), bit 5: the last layer is a lossless layer for x_0.
Cutting the file at any byte keeps every complete layer decodable: the header says where each
layer ends, and layers after the cut are simply missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..coding import registry
from ..errors import UserError
from ..io.checksums import crc8, crc16

MAGIC = b"DF"
VERSION = 2   # 2: rcc chunk-count prior 0.35 + 0.18 n (version 1 files are refused)
CHANNEL_CODES = {1: 0, 3: 1}


class FormatError(UserError):
    """The bytes are not a (complete, intact) .dfc file; the message is meant for the user."""


def put_varint(out: bytearray, v: int) -> None:
    if v < 0:
        raise ValueError("varints are unsigned")
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FormatError("file is truncated inside its header")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        v, shift = 0, 0
        while True:
            b = self.byte()
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7
            if shift > 63:
                raise FormatError("corrupt header (varint too long)")


@dataclass
class Layer:
    steps: int      # coded steps in this layer (0 for the lossless layer)
    data: bytes


@dataclass
class Header:
    model_name: str
    model_hash: bytes          # first 4 bytes of the weights' sha256
    height: int
    width: int
    channels: int
    backend: str
    steps_spec: str
    seed: int
    lossless: bool = False
    params: bytes = b""


@dataclass
class Container:
    header: Header
    layers: list[Layer] = field(default_factory=list)
    complete: bool = True      # False when the file was cut inside a layer (or the table says more)

    def to_bytes(self) -> bytes:
        h = self.header
        if h.channels not in CHANNEL_CODES:
            raise ValueError("channels must be 1 or 3")
        name = h.model_name.encode()
        spec = h.steps_spec.encode("ascii")
        if len(name) > 255 or len(spec) > 255 or len(h.model_hash) != 4:
            raise ValueError("model name or steps spec too long, or hash not 4 bytes")
        out = bytearray(MAGIC)
        out.append(VERSION)
        out.append(CHANNEL_CODES[h.channels] | (registry.get(h.backend).wire_id << 2) | (int(h.lossless) << 5))
        out.append(len(name)); out += name; out += h.model_hash
        put_varint(out, h.height); put_varint(out, h.width)
        out.append(len(spec)); out += spec
        put_varint(out, h.seed)
        put_varint(out, len(h.params)); out += h.params
        put_varint(out, len(self.layers))
        for layer in self.layers:
            put_varint(out, layer.steps); put_varint(out, len(layer.data)); out.append(crc8(layer.data))
        out += crc16(bytes(out)).to_bytes(2, "big")
        for layer in self.layers:
            out += layer.data
        return bytes(out)

    def header_size(self) -> int:
        return len(self.to_bytes()) - sum(len(layer.data) for layer in self.layers)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Container":
        if len(data) < 3 or data[:2] != MAGIC:
            raise FormatError("not a diffcodec (.dfc) file")
        r = _Reader(data)
        r.take(2)
        version = r.byte()
        if version != VERSION:
            raise FormatError(f"unsupported .dfc format version {version} (this diffcodec reads {VERSION})")
        flags = r.byte()
        chan = {v: k for k, v in CHANNEL_CODES.items()}.get(flags & 3)
        coder = registry.by_wire_id((flags >> 2) & 7)
        if chan is None or coder is None or flags >> 6:
            raise FormatError("corrupt header (bad flags)")
        name = r.take(r.byte())
        model_hash = r.take(4)
        height, width = r.varint(), r.varint()
        spec = r.take(r.byte())
        seed = r.varint()
        params = r.take(r.varint())
        n_layers = r.varint()
        if n_layers > 1 << 20:
            raise FormatError("corrupt header (layer count)")
        table = [(r.varint(), r.varint(), r.byte()) for _ in range(n_layers)]
        stored_crc = int.from_bytes(r.take(2), "big")
        if crc16(data[:r.pos - 2]) != stored_crc:
            raise FormatError("corrupt header (checksum mismatch)")
        try:
            header = Header(name.decode(), model_hash, height, width, chan, coder.name,
                            spec.decode("ascii"), seed, bool(flags & 32), params)
        except UnicodeDecodeError:
            raise FormatError("corrupt header (text fields)") from None
        layers, pos, complete = [], r.pos, True
        for i, (steps, length, crc) in enumerate(table):
            chunk = data[pos:pos + length]
            if len(chunk) < length:
                complete = False
                break
            if crc8(chunk) != crc:
                raise FormatError(f"layer {i + 1} is corrupt (checksum mismatch)")
            layers.append(Layer(steps, chunk))
            pos += length
        if complete and pos != len(data):
            raise FormatError(f"{len(data) - pos} unexpected bytes after the last layer")
        return cls(header, layers, complete)

    def describe(self) -> dict:
        """The header's fields and the layer table (with cumulative bytes and bits per pixel)."""
        h = self.header
        hdr = self.header_size()
        rows, total = [], hdr
        for i, layer in enumerate(self.layers):
            total += len(layer.data)
            rows.append({"layer": i + 1, "steps": layer.steps, "kind": "lossless" if layer.steps == 0 else "lossy",
                         "bytes": len(layer.data), "cumulative_bytes": total,
                         "cumulative_bpp": 8 * total / (h.height * h.width)})
        return {"format_version": VERSION, "model": h.model_name, "model_hash": h.model_hash.hex(),
                "height": h.height, "width": h.width, "channels": h.channels, "backend": h.backend,
                "steps": h.steps_spec, "seed": h.seed, "lossless_layer": h.lossless, "params": h.params.hex(),
                "header_bytes": hdr, "complete": self.complete, "layers": rows}
