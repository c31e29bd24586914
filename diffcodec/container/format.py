"""The .dfc container: bytes only, no torch. docs/FORMAT.md is the specification, byte by byte.

Layout, format version 14 (integers are LEB128 varints unless a width is given):

    0xDE (magic 0xD0 | version) | flags (1 byte)
    | [height, unless the native flag] | [width, unless the square or native flag]
    | [if the extended flag: steps spec length, steps spec (ASCII), seed, params length, params]
    | layer table: per layer, steps << 1 | (1 if another layer follows), then its byte length
    (omitted for a file of one layer: the layer is the rest of the file)
    | the first layer's check: a CRC-16 (2 bytes, big-endian) of the network's key (the 32-byte
    sha256 of the model's weights for a float32 network run whole; for another network format, the
    sha256 of that digest and the format's name, e.g. b"bfloat16" or b"bfloat16/tile512":
    ``network_key``), the header bytes above and the first layer's bytes
    | one CRC-8 per later layer
    | layer payloads, concatenated

or, for a file at its model's defaults (a square image of the model's native size and channels,
the backend that "auto" picks for it, that backend's default steps and parameters, seed 0, no
lossless layer), the compact form: 0xDF | layer table | checks | payloads. Its header is filled
in from the model that passes the first layer's check (``Header.for_model``). 0xDF is 0xD0 | 15,
so a reader of an older version sees "format version 15" and refuses it as newer (version 12's
compact form was 0xDD, which is why 13 was skipped). What a compact file means is
the "auto" rule (``registry.choose``: each coder's priority and ``auto_max_dims``) and each
backend's default steps (``CoderSpec.steps_for``: they may depend on the image's size) and
parameters: changing any of them for an image size a model can have needs a new format version
(tests/test_bitstream.py pins them for the shipped models). A long-form file without the
extended flag likewise implies its backend's default steps for its size.

flags: bit 0 RGB (else grayscale), bit 1 the last layer is a lossless layer for x_0, bit 2
extended fields present (otherwise: the backend's default steps, seed 0, default parameters),
bits 3-5 the backend's wire id (coder registry), bit 6 square image, bit 7 native size (a square
image of the model's training crop, ``LoadedModel.native_size``: the size is the model's, read
as 0 x 0 until ``Header.for_model`` fills it in; so a model's ``data.crop`` is part of
its identity, which the weights' key does not cover). No flag bit is left: a new flag needs a
new version. Each layer's CRC covers its bytes, and the first layer's also covers the header,
which then needs no checksum of its own: a damaged header fails it (a header damaged in a file cut
before its first layer is complete reads as a file with no complete layer, which is refused).

The model is not named in the file: the first layer's CRC-16 is keyed with its weights' sha256, and
the reader finds the model, and the format the encoder ran its network in (number format, whole or
tiled), as the one key and format (of those its caller passes: the registered models', or the
model it is given) that make the check pass; the decoder then runs the network in that format,
which the pixels it decodes depend on. A file made with other weights fails it like a damaged one,
with odds of 1 in 65536 per format tried: four per model when both sides are at most 128 pixels
(whole, with and without the photo model's blank first step and rescale), ten otherwise (the
photo model's tiles of 128, with and without each of its scale schedules),
twelve above 1024 x 1024 (``core.precision.decoder_formats``). An encoder makes sure its file's
check passes its model and format alone among the registered models (``Container.settled``);
where one model passes in several formats, the reader takes the one of the earliest era if it
is alone there (``core.precision.era``: formats added since a file was made can pass by chance).
A 28x28 file of the fmnist model at default settings has a header of 4 bytes for one layer, 8
for two and 3 more per further layer (one to four more in the rare file ``settled`` pads). A one-layer file has no
stored length, so a cut (or bytes appended) is caught by its CRC-16 alone: all but about 1 in
65536 cuts.

The lossy layers are consecutive slices of one range-coded stream: layer k ends at the shortest
prefix of the stream from which every symbol of layers 1..k decodes, so cutting the file at any
byte keeps every complete layer decodable, without a coder flush per layer.
Files of older versions (1 and 2 began with b"DF"; 3 to 10 with 0xD3..0xDB) are refused with a
message that names their version; CHANGELOG.md says what each version changed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

from ..coding import registry
from ..core import precision
from ..errors import UserError
from ..io.checksums import crc8, crc16

VERSION = 14             # what each version changed: CHANGELOG.md, docs/FORMAT.md
MAGIC = 0xD0 | VERSION
COMPACT = 0xDF           # the compact form (a file at its model's defaults), also version 14 (13 was
                         # skipped: 0xDD is version 12's compact form). The next version needs a new magic
OLD_COMPACT = {0xD9: 8, 0xDB: 10, 0xDD: 12}  # the compact forms of older versions -> their version
OLD_MAGIC = b"DF"        # versions 1 and 2
KEY_BYTES = 32           # a model's key: the sha256 digest of its weights
MAX_PAD = 4              # redundant bytes ``Container.settled`` tries in the layer table's first entry
F_RGB, F_LOSSLESS, F_EXTENDED, F_SQUARE, F_NATIVE = 1, 2, 4, 64, 128


def network_key(key: bytes, network: str) -> bytes:
    """The key a file's first-layer check is keyed with: the model's key for a float32 network
    run whole, else the sha256 of the key and the format's name ("bfloat16", "float32/tile512":
    ``core.precision``), so the check names the network's format too and the decoder computes
    the network as the encoder did."""
    precision.parse(network)
    return key if network == "float32" else hashlib.sha256(key + network.encode("ascii")).digest()


def _first_check(key: bytes, head: bytes, data: bytes) -> bytes:
    """The first layer's check: CRC-16 of the model's key, the header bytes and the layer's bytes."""
    return crc16(key + head + data).to_bytes(2, "big")


def _older(version: int) -> "FormatError":
    return FormatError(f"this .dfc file has format version {version}, from an older diffcodec; "
                       f"this one reads version {VERSION}: encode the image again")


class FormatError(UserError):
    """The bytes are not a (complete, intact) .dfc file; the message is meant for the user."""


def put_varint(out: bytearray, v: int, pad: int = 0) -> None:
    """v as LEB128, followed by ``pad`` redundant groups of zero bits (``Container.settled``)."""
    if v < 0:
        raise ValueError("varints are unsigned")
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v or pad else 0))
        if not v:
            break
    if pad:
        out += b"\x80" * (pad - 1) + b"\x00"


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


class ModelProfile(NamedTuple):
    """What a file at its model's defaults leaves to the model: its native size (the side of its
    training crop), channels, and kind ("gaussian" or "masking", which "auto" backends differ by)."""
    native_size: int
    channels: int
    kind: str


@dataclass
class Layer:
    steps: int      # coded steps in this layer (0 for the lossless layer)
    data: bytes


@dataclass
class Header:
    model_name: str            # not stored: found by the key that passes the first layer's check
    model_key: bytes           # the weights' sha256 digest (KEY_BYTES), not stored; b"" when unknown
    height: int
    width: int
    channels: int
    backend: str
    steps_spec: str
    seed: int
    lossless: bool = False
    params: bytes = b""
    native: bool = False       # a square image of the model's native size, which is not stored
    auto: bool = False         # the backend is the one "auto" picks for this image and model: with
                               # the other defaults, the file takes the compact form; as read from
                               # one, channels and backend are 0 and "" until ``for_model``
    network: str = "float32"   # the network's format (``core.precision``), not stored: the
                               # first layer's check is keyed with it (``network_key``)

    def for_model(self, profile: ModelProfile) -> "Header":
        """This header with what the file leaves to its model filled in from the model's profile:
        a native-size file's height and width (read as 0), and a compact file's channels, backend
        and steps."""
        h = replace(self, height=profile.native_size, width=profile.native_size) if self.native else self
        if self.auto and not self.backend:
            coder = registry.choose(registry.AUTO, profile.channels * profile.native_size ** 2, profile.kind)
            h = replace(h, channels=profile.channels, backend=coder.name)
        if not h.steps_spec:    # the backend's default for the image's size
            h = replace(h, steps_spec=registry.get(h.backend).steps_for(h.channels * h.height * h.width))
        return h

    def compact(self) -> bool:
        """Whether the file takes the compact form (everything at its model's defaults; a header
        read from a compact file, not yet filled in by ``for_model``, is one)."""
        if self.auto and not self.backend:
            return True
        return self.native and self.auto and not self.lossless and not self.extended()

    def extended(self) -> bool:
        """Whether any field differs from what the flags imply (default steps, seed 0, no params)."""
        dims = self.channels * self.height * self.width
        return (self.steps_spec != registry.get(self.backend).steps_for(dims) or self.seed != 0
                or bool(self.params))


@dataclass
class Container:
    header: Header
    layers: list[Layer] = field(default_factory=list)
    complete: bool = True      # False when the file was cut inside a layer (or the table says more)
    read_header_bytes: int | None = None   # as read from a file: its header's size and the layers
    declared_layers: int | None = None     # its table declares (a cut file holds fewer)
    pad: int = 0               # redundant bytes in the layer table's first varint (``settled``; as read)

    def to_bytes(self) -> bytes:
        h = self.header
        if h.channels not in (1, 3) and not h.compact():
            raise ValueError("channels must be 1 or 3")
        spec = h.steps_spec.encode("ascii")
        if len(h.model_key) != KEY_BYTES:
            raise ValueError(f"model key not {KEY_BYTES} bytes")
        if h.native and h.height != h.width:
            raise ValueError("a native-size image is square")
        if h.compact():
            out = bytearray([COMPACT])
        else:
            flags = ((F_RGB if h.channels == 3 else 0) | (F_LOSSLESS if h.lossless else 0)
                     | (F_EXTENDED if h.extended() else 0) | (registry.get(h.backend).wire_id << 3)
                     | (F_SQUARE if h.height == h.width else 0) | (F_NATIVE if h.native else 0))
            out = bytearray([MAGIC, flags])
            if not h.native:
                put_varint(out, h.height)
                if h.height != h.width:
                    put_varint(out, h.width)
            if flags & F_EXTENDED:
                put_varint(out, len(spec)); out += spec
                put_varint(out, h.seed)
                put_varint(out, len(h.params)); out += h.params
        if not self.layers:
            raise ValueError("a file holds at least one layer")
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            put_varint(out, layer.steps << 1 | (k < last), pad=0 if k else self.pad)
            if last:
                put_varint(out, len(layer.data))
        head = bytes(out)
        out += _first_check(network_key(h.model_key, h.network), head, self.layers[0].data)
        out += bytes(crc8(layer.data) for layer in self.layers[1:])
        for layer in self.layers:
            out += layer.data
        return bytes(out)

    def settled(self, keys: dict[str, bytes]) -> "Container":
        """This container as a reader can attribute it (docs/FORMAT.md, "Checks": a check that
        passes several keys or formats is refused). ``keys``: name -> key of every model a reader
        may try (the registered ones and the file's own). Returns the container, complete and
        with the fewest redundant bytes in its layer table's first varint (0 to MAX_PAD; each byte
        changes how many bytes follow the key, and so which checks agree), whose check passes
        this model's key in this network format alone; with no layer yet, itself. Raises
        ValueError when the check does not pass the file's own key and format (a reader could not
        decode it), and FormatError in the rare case (about 1e-18) that every one is ambiguous."""
        h = self.header
        if not self.layers:
            return self
        own = [(name, h.network) for name, key in keys.items() if key == h.model_key]
        for pad in range(MAX_PAD + 1):
            candidate = replace(self, pad=pad, read_header_bytes=None, declared_layers=None, complete=True)
            data = candidate.to_bytes()
            header, _, r, _ = _read_head(data)
            found = _passing(keys, data[:r.pos], self.layers[0].data, r.take(2), header)
            if not set(own) <= set(found) or len(own) != 1:
                raise ValueError(f"the file's check does not name its own model and network format "
                                 f"{h.network!r} alone, whatever it holds: a reader could not decode it")
            if len(found) == 1:
                return candidate
        raise FormatError("the file's check fits other models or network formats whatever its header "
                          "holds (odds about 1e-18): encode it again with other settings")

    def header_size(self) -> int:
        """Bytes before the first layer: as read, for a container read from a file (a cut file's
        table still lists the layers it lost), else as ``to_bytes`` writes it."""
        if self.read_header_bytes is not None:
            return self.read_header_bytes
        return len(self.to_bytes()) - sum(len(layer.data) for layer in self.layers)

    @classmethod
    def from_bytes(cls, data: bytes, keys: dict[str, bytes] | None = None,
                   registered: Callable[[], dict[str, bytes]] | None = None) -> "Container":
        """Parse and check a file (or a prefix of one). ``keys``: name -> key of the models it may
        have been made with; the one whose key passes the first layer's check names the model.
        ``registered``: returns name -> key of every registered model (``training.store.model_keys``;
        the container reads no model store itself), called only when needed: for the keys when
        ``keys`` is None, and to name the file's model in the error when none of ``keys`` passes.
        A file cut before its first layer is complete parses with no layers and no model."""
        header, table, r, pad = _read_head(data)
        head = data[:r.pos]
        first_check = r.take(2)
        crcs = r.take(len(table) - 1)
        layers, pos, complete = [], r.pos, True
        for k, (steps, length) in enumerate(table):
            chunk = data[pos:] if length is None else data[pos:pos + length]
            if length is not None and len(chunk) < length:
                complete = False
                break
            if k == 0:
                header = _identify(header, head, chunk, first_check, len(table) == 1, keys, registered)
            elif crc8(chunk) != crcs[k - 1]:
                raise FormatError(f"layer {k + 1} is corrupt (checksum mismatch)")
            layers.append(Layer(steps, chunk))
            pos += len(chunk)
        if complete and pos != len(data):
            raise FormatError(f"{len(data) - pos} unexpected bytes after the last layer")
        return cls(header, layers, complete, r.pos, len(table), pad)

    def describe(self, profile: ModelProfile | None = None) -> dict:
        """The header's fields and the layer table (with cumulative bytes and bits per pixel);
        ``profile``: the model's, for what a native-size or compact file leaves to it (without it
        those fields, and the bits per pixel, are None)."""
        h = self.header.for_model(profile) if profile else self.header
        hdr = self.header_size()
        rows, total = [], hdr
        for i, layer in enumerate(self.layers):
            total += len(layer.data)
            rows.append({"layer": i + 1, "steps": layer.steps, "kind": "lossless" if layer.steps == 0 else "lossy",
                         "bytes": len(layer.data), "cumulative_bytes": total,
                         "cumulative_bpp": 8 * total / (h.height * h.width) if h.height else None})
        return {"format_version": VERSION, "model": h.model_name or None, "model_sha256": h.model_key.hex() or None,
                "height": h.height or None, "width": h.width or None, "channels": h.channels or None,
                "backend": h.backend or None, "steps": h.steps_spec or None, "compact": h.compact(),
                "seed": h.seed, "lossless_layer": h.lossless, "params": h.params.hex(),
                "native": h.native, "network": h.network if h.model_key else None, "header_bytes": hdr,
                "complete": self.complete, "layers": rows}


def _read_head(data: bytes) -> tuple[Header, list[tuple[int, int | None]], "_Reader", int]:
    """A file's header as stored (a native size reads as 0 x 0, a compact file's fields as empty),
    its layer table ((steps, byte length or None) per layer), a reader at the first check, and the
    redundant bytes of the table's first varint (``Container.settled``)."""
    if data[:2] == OLD_MAGIC and len(data) > 2 and data[2] in (1, 2):
        raise _older(data[2])
    if len(data) < 2 or data[0] >> 4 != MAGIC >> 4:
        raise FormatError("not a diffcodec (.dfc) file")
    if data[0] in OLD_COMPACT:
        raise _older(OLD_COMPACT[data[0]])
    if data[0] & 15 < VERSION:
        raise _older(data[0] & 15)
    r = _Reader(data)
    if r.byte() == COMPACT:
        header = Header("", b"", 0, 0, 0, "", "", 0, native=True, auto=True)
    else:
        header = _long_header(r)
    table, more, pad = [], 1, 0
    while more:
        if len(table) >= 1 << 20:
            raise FormatError("corrupt header (layer table)")
        start = r.pos
        code = r.varint()
        if not table:
            shortest = bytearray()
            put_varint(shortest, code)
            pad = r.pos - start - len(shortest)
        steps, more = code >> 1, code & 1
        table.append((steps, r.varint() if more or table else None))
    return header, table, r, pad


def _long_header(r: _Reader) -> Header:
    """The fields of a long-form header after its magic byte (flags, size, extended fields)."""
    flags = r.byte()
    coder = registry.by_wire_id((flags >> 3) & 7)
    native = bool(flags & F_NATIVE)
    if coder is None or (native and not flags & F_SQUARE):
        raise FormatError("corrupt header (bad flags)")
    height = 0 if native else r.varint()
    width = height if flags & F_SQUARE else r.varint()
    if not native and (not 0 < height <= 1 << 16 or not 0 < width <= 1 << 16):
        raise FormatError("corrupt header (image size)")
    channels = 3 if flags & F_RGB else 1
    # the backend's default steps for the image's size ("" until ``for_model`` knows a native size)
    spec, seed, params = ("" if native else coder.steps_for(channels * height * width)).encode(), 0, b""
    if flags & F_EXTENDED:
        spec = r.take(r.varint())
        seed = r.varint()
        params = r.take(r.varint())
    try:
        spec = spec.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("corrupt header (text fields)") from None
    return Header("", b"", height, width, channels, coder.name, spec, seed,
                  bool(flags & F_LOSSLESS), params, native)


def _identify(header: Header, head: bytes, first: bytes, check: bytes, one_layer: bool,
              keys: dict[str, bytes] | None, registered: Callable[[], dict[str, bytes]] | None) -> Header:
    """The header with the model whose key passes the first layer's check, or a FormatError that
    names the file's model when the caller's keys fail and a registered model's passes."""
    given = keys is not None
    if not given:
        if registered is None:
            raise ValueError("Container.from_bytes needs the models' keys: pass keys or registered")
        keys = registered()
    found = _passing(keys, head, first, check, header)
    if len(found) > 1 and len({n for n, _ in found}) == 1:
        # an encoder settles its file against the formats of its time (``settled``), so of one
        # model's passing formats, the one of the earliest era is the file's if it is alone there
        eras = [precision.era(f) for _, f in found]
        if eras.count(min(eras)) == 1:
            found = [found[eras.index(min(eras))]]
    if len(found) == 1:
        name, network = found[0]
        return replace(header, model_name=name, model_key=keys[name], network=network)
    if found and len({n for n, _ in found}) == 1:   # by chance, in formats of one era
        raise FormatError(f"the file's check fits model {found[0][0]!r} in several network formats "
                          f"({', '.join(f for _, f in found)}), so it cannot say which to decode with")
    if found:
        raise FormatError(f"the file's check fits several models ({', '.join(n for n, _ in found)}): pass --model")
    if given and registered is not None:
        try:
            maker = _passing(registered(), head, first, check, header)
        except UserError:
            maker = []
        if len(maker) == 1:
            raise FormatError(f"this file was made with model {maker[0][0]!r}, not with "
                              f"{'model ' + repr(next(iter(keys))) if len(keys) == 1 else 'these models'}: "
                              "decode with the same model")
    what = ("the file is cut short or extended, or its header or layer is corrupt" if one_layer
            else "the header or layer 1 is corrupt")
    whose = (f"model {next(iter(keys))!r}" if len(keys) == 1
             else f"any of the {len(keys)} registered models" if keys else "any model (none is registered)")
    hint = "" if given else "; for a model that is not registered, pass --model DIR_OR_CHECKPOINT"
    raise FormatError(f"{what}, or the file was made with other weights than {whose} (checksum mismatch){hint}")


def _passing(keys: dict[str, bytes], head: bytes, first: bytes, check: bytes,
             header: Header) -> list[tuple[str, str]]:
    """(model name, network format) of each key and format (of those an image of the header's
    size may have) that pass the first layer's check."""
    formats = precision.decoder_formats(header.height, header.width)
    return [(name, network) for name, key in keys.items() for network in formats
            if _first_check(network_key(key, network), head, first) == check]
