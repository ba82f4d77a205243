"""Pack a Determined AI model definition into a reproducible, hash-manifested ``.tgz``.

The pipeline — configuration → selection → entrypoint check → archive and manifest — is one code
path shared by the Hatch builder, the wheel hook and the command line.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DetmodelError
from .pipeline import build

__all__ = ["DetmodelError", "__version__", "build"]
