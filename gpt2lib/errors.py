"""The errors gpt2lib raises on purpose, under one base class.

Every expected failure (a bad setting, a damaged file, an interrupted run) is a :class:`GPT2LibError`
whose message names the file or option concerned, so the command line can report it in one line with an
exit status instead of a traceback. Subclasses also derive from the matching built-in type
(``ValueError``, ``FloatingPointError``, ...), so code that caught those before still catches them.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["GPT2LibError", "ConfigError", "MissingPackageError", "optional_import"]


class GPT2LibError(Exception):
    """Base class of gpt2lib's own errors; the message says what is wrong and where."""


class ConfigError(GPT2LibError, ValueError):
    """A setting with a value it cannot have; ``option`` is the setting's (field's) name."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option
        self.detail = message

    def __reduce__(self):  # picklable, so that it crosses process pools and Dask workers intact
        return type(self), (self.option, self.detail)


class MissingPackageError(GPT2LibError, ImportError):
    """An optional package a feature needs is not installed; the message gives the pip command."""


def optional_import(module: str, extra: str = "experiments") -> ModuleType:
    """``module``, imported on first use: an optional dependency the base package does not install. When it is
    missing, :class:`MissingPackageError` names the pip command (the ``gpt2lib[extra]`` that brings it)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackageError(f"{module} is not installed ({e}); pip install \"gpt2lib[{extra}]\"") from None
