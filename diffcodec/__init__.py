"""diffcodec: progressive lossy image coding with denoising diffusion models (Ho et al. 2020)."""

__version__ = "0.1.0"

from .api import (Decoded, FileOutcome, bits_per_dim, decode, decode_files, encode, fit_steps,  # noqa: E402
                  encode_files, load_model, rd_curve)
from .errors import UserError  # noqa: E402
from .container.format import FormatError  # noqa: E402

__all__ = ["load_model", "encode", "decode", "bits_per_dim", "fit_steps", "rd_curve", "encode_files", "decode_files",
           "Decoded", "FileOutcome", "UserError", "FormatError", "__version__"]
