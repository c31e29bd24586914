"""The coder registry: every wire backend of the .dfc format, declared once.

A step coder (see ``base.StepCoder``) registers itself with ``@register(...)``, giving its name
(what ``--backend`` takes), its wire id (the number the container stores in the header's flags:
0..7, never reused), its default step spec and a one-line description. The container, the codec
driver, the command line and the rate-distortion evaluator all read this table; nothing else
lists backends.

Adding a backend: write ``coding/<name>.py`` with a ``StepCoder`` subclass decorated with
``@register(...)``, and import the module in ``coding/__init__.py``. The contract tests
(tests/test_coders.py) then run it through round trips, prefix decoding and rate checks.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError

MAX_WIRE_ID = 7      # the header's flags hold the wire id in 3 bits


def _tier(tiers: str | tuple, dims: int) -> str:
    """The step spec of ``tiers`` (one spec, or (max_dims, spec) tiers) for ``dims`` values."""
    if isinstance(tiers, str):
        return tiers
    return next(spec for limit, spec in tiers if limit is None or dims <= limit)


def _check_tiers(name: str, tiers: str | tuple) -> None:
    if not isinstance(tiers, str):
        limits = [limit for limit, _ in tiers]
        if not limits or limits[-1] is not None or None in limits[:-1] or limits[:-1] != sorted(limits[:-1]):
            raise ValueError(f"coder {name!r}: step tiers need ascending limits and a last limit of None")


@dataclass(frozen=True)
class CoderSpec:
    name: str
    wire_id: int
    default_steps: str | tuple   # one step spec, or (max_dims, spec) tiers by the image's C x H x W
    #                              (the last tier's max_dims None: any larger); see ``steps_for``
    cls: type
    description: str = ""
    priority: int = 0                # "auto" takes the highest-priority coder that fits the image
    auto_max_dims: int | None = None  # largest C x H x W that "auto" gives this coder (None: any)
    kind: str = "gaussian"           # the model kind it codes with: "gaussian" (a StepCoder of the
    #                                  Gaussian chain) or "masking" (a whole-image masking codec)
    encoder_steps: str | tuple | None = None  # the chain an encoder takes when none is asked for,
    #                                  where it is not ``default_steps`` (None: the same); see ``encoder_steps_for``

    def steps_for(self, dims: int) -> str:
        """The step spec a file without one implies on an image of ``dims`` (C x H x W) values.
        Part of the format: changing it needs a new format version."""
        return _tier(self.default_steps, dims)

    @property
    def encoder_tiers(self) -> str | tuple:
        return self.default_steps if self.encoder_steps is None else self.encoder_steps

    def encoder_steps_for(self, dims: int) -> str:
        """The step spec an encoder uses on an image of ``dims`` values when none is asked for. Where
        it differs from ``steps_for`` the file stores it (the header's extended fields: 3 bytes and
        the spec), so it can change without a format version and older readers decode its files."""
        return _tier(self.encoder_tiers, dims)

    def steps_text(self) -> str:
        """The encoder's default steps in words, e.g. "geo9 (geo9c20 above 4096 values)"."""
        tiers = self.encoder_tiers
        if isinstance(tiers, str):
            return tiers
        (prev, first), *rest = tiers
        above = []
        for limit, spec in rest:
            above.append(f"{spec} above {prev} values")
            prev = limit
        return f"{first} ({', '.join(above)})"

    def from_params(self, params: bytes = b""):
        """The coder for a header's parameter bytes (empty: the defaults); ValueError if they are bad."""
        return self.cls.from_params(params)


_CODERS: dict[str, CoderSpec] = {}


AUTO = "auto"


def register(name: str, wire_id: int, default_steps: str | tuple, description: str = "", priority: int = 0,
             auto_max_dims: int | None = None, kind: str = "gaussian", encoder_steps: str | tuple | None = None):
    """Class decorator: add a ``StepCoder`` subclass (or, with kind="masking", a masking-model
    codec) to the registry."""
    _check_tiers(name, default_steps)
    if encoder_steps is not None:
        _check_tiers(name, encoder_steps)

    def deco(cls):
        if name in _CODERS:
            raise ValueError(f"coder {name!r} is registered twice")
        if not 0 <= wire_id <= MAX_WIRE_ID or any(s.wire_id == wire_id for s in _CODERS.values()):
            raise ValueError(f"coder {name!r}: wire id {wire_id} is out of range or taken")
        cls.name = name
        _CODERS[name] = CoderSpec(name, wire_id, default_steps, cls, description, priority, auto_max_dims, kind,
                                  encoder_steps)
        return cls
    return deco


def names() -> tuple[str, ...]:
    """The Gaussian chain's backend names (what ``--backend`` takes), in wire-id order (the first
    is the default)."""
    return tuple(s.name for s in specs())


def specs(kind: str = "gaussian") -> list[CoderSpec]:
    return sorted((s for s in _CODERS.values() if s.kind == kind), key=lambda s: s.wire_id)


def choose(name: str, dims: int, kind: str = "gaussian") -> CoderSpec:
    """The coder ``name`` stands for on an image of ``dims`` values ("auto": the highest-priority
    coder of the model's kind whose ``auto_max_dims`` admits it)."""
    if name != AUTO:
        spec = get(name)
        if spec.kind != kind:
            raise UserError(f"backend {name!r} codes with {spec.kind} models; this model is a {kind} one")
        return spec
    fits = [s for s in specs(kind) if s.auto_max_dims is None or dims <= s.auto_max_dims]
    return max(fits, key=lambda s: s.priority)


def get(name: str) -> CoderSpec:
    try:
        return _CODERS[name]
    except KeyError:
        raise UserError(f"unknown backend {name!r}; use {' or '.join(sorted(_CODERS))}") from None


def by_wire_id(wire_id: int) -> CoderSpec | None:
    return next((s for s in _CODERS.values() if s.wire_id == wire_id), None)
