"""Reproducibility: the one timestamp every artifact uses."""

from __future__ import annotations

import os
from typing import Mapping

from .errors import ConfigError

__all__ = ["DEFAULT_SOURCE_DATE_EPOCH", "source_date_epoch"]

#: hatchling's default for reproducible sdists (2020-02-02).
DEFAULT_SOURCE_DATE_EPOCH = 1580601600
_MAX = 8**11  # what a ustar mtime field can hold


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int:
    """``SOURCE_DATE_EPOCH`` as an integer, else hatchling's default; never the wall clock."""
    value = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return DEFAULT_SOURCE_DATE_EPOCH
    try:
        epoch = int(value)
    except ValueError:
        raise ConfigError(f"SOURCE_DATE_EPOCH={value!r}: must be a whole number of seconds since 1970") from None
    if not 0 <= epoch < _MAX:
        raise ConfigError(f"SOURCE_DATE_EPOCH={value!r}: must be between 0 and {_MAX - 1}")
    return epoch
