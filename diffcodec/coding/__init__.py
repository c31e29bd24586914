"""Coding: shared randomness, entropy coding over constriction, the step-coder contract and its
registry, the registered wire backends, the ideal estimate, the lossless layer, bits-back chains,
and the progressive encode/decode driver.

Importing this package registers the wire backends: a new coder's module is added to this import.
"""
from . import rcc, reveal, tuq, tuqrcc, uq  # noqa: F401  (the registered coders)
