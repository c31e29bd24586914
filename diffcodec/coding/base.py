"""The step-coder contract shared by the backends.

A step coder transmits x_{t-1} ~ q(x_{t-1} | x_t, x_0) given the reverse Gaussian p_theta(x_{t-1} | x_t)
that both sides compute. ``encode`` returns entropy-coding operations (see ``entropy``) and the
x_{t-1} the decoder will reconstruct; ``decode`` pulls the same operations back. Everything that
drives the entropy coder must come from ``StepContext`` fields that are bit-identical on both
sides (step index, seed, dimensions, the coder's own state), never from ``mu_p``/``var_p``, which
are network outputs and may differ in the last bits between machines.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StepContext:
    step: int                 # chain step index i >= 1 (x_i -> x_{i-1}) of the respaced chain
    seed: int
    var_q: float              # posterior variance of q(x_{i-1} | x_i, x_0) (schedule constant)
    mu_p: np.ndarray          # float64 [D], model mean (network output)
    var_p: np.ndarray         # float64 [D], model variance (network output)
    state: dict = field(default_factory=dict)  # coder state carried from step to step
    shape: tuple | None = None  # (C, H, W) of the image, for coders that work in 2-D

    @property
    def dims(self) -> int:
        return self.mu_p.size


class StepCoder:
    """A wire backend. Subclasses register with ``registry.register``, which sets ``name``."""
    name = "base"

    @classmethod
    def from_params(cls, params: bytes) -> "StepCoder":
        """The coder a file's header describes (empty params: the defaults); ValueError if bad."""
        if params:
            raise ValueError(f"unexpected {cls.name} parameters")
        return cls()

    def params(self) -> bytes:
        """Backend parameters stored in the file header (empty when they are the defaults)."""
        return b""

    def lighter(self) -> list["StepCoder"]:
        """Encoder-only variants of this coder that spend fewer bits on a step, cheapest first (their
        files decode with this coder). Rate control codes the chain's last step with the cheapest
        one that still meets the request; empty when the backend has none."""
        return []

    def encode(self, ctx: StepContext, mu_q: np.ndarray):
        """-> (ops, x_prev [D] float64, kl_bits): ops to entropy-code, the decoder's x_{i-1}, and
        the ideal KL(q || p) in bits that this backend's p implies."""
        raise NotImplementedError

    def decode(self, ctx: StepContext, dec) -> np.ndarray:
        raise NotImplementedError


def gaussian_kl_bits(mu_q, var_q, mu_p, var_p) -> np.ndarray:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) per dimension, in bits: 0.5 (log(var_p / var_q) +
    (var_q + (mu_q - mu_p)^2) / var_p - 1) / log 2. For the codec's vectors (mu_q, mu_p and
    var_p arrays of one shape, var_q a scalar or one more) each operation runs in that order in
    place: the same values with two temporaries of D values instead of six."""
    arrays = (mu_q, mu_p, var_p)
    if not all(isinstance(a, np.ndarray) and a.shape == mu_q.shape for a in arrays) or np.ndim(var_q) > mu_q.ndim:
        return (0.5 * (np.log(var_p / var_q) + (var_q + (mu_q - mu_p) ** 2) / var_p - 1.0)) / np.log(2.0)
    kl = np.subtract(mu_q, mu_p, dtype=np.float64)
    np.square(kl, out=kl)
    kl += var_q
    kl /= var_p
    log = np.true_divide(var_p, var_q, dtype=np.float64)
    np.log(log, out=log)
    kl += log
    del log
    kl -= 1.0
    kl *= 0.5
    kl /= np.log(2.0)
    return kl
