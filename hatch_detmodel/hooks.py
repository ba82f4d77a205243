"""Hatch's entry point (``[project.entry-points.hatch] detmodel``): registers the builder."""

from __future__ import annotations

from hatchling.plugin import hookimpl

from .hatch_builder import DetmodelBuilder

__all__ = ["hatch_register_builder"]


@hookimpl
def hatch_register_builder() -> type[DetmodelBuilder]:
    return DetmodelBuilder
