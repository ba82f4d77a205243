"""Hatch's entry point (``[project.entry-points.hatch] detmodel``): registers the builder and the wheel hook."""

from __future__ import annotations

from hatchling.plugin import hookimpl

from .hatch_builder import DetmodelBuilder
from .wheel_hook import DetmodelBuildHook

__all__ = ["hatch_register_build_hook", "hatch_register_builder"]


@hookimpl
def hatch_register_builder() -> type[DetmodelBuilder]:
    return DetmodelBuilder


@hookimpl
def hatch_register_build_hook() -> type[DetmodelBuildHook]:
    return DetmodelBuildHook
