"""The package's front door: every name ``gpt2lib`` re-exports resolves, lazily."""
from __future__ import annotations

import subprocess
import sys

import pytest

import gpt2lib


@pytest.mark.parametrize("name", sorted(gpt2lib._EXPORTS))
def test_every_reexported_name_resolves_to_its_module_attribute(name):
    import importlib

    assert getattr(gpt2lib, name) is getattr(importlib.import_module(gpt2lib._EXPORTS[name]), name)


def test_unknown_attribute_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="no_such_thing"):
        gpt2lib.no_such_thing  # noqa: B018


def test_import_is_cheap_torch_is_loaded_only_when_needed():
    code = "import sys, gpt2lib; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)
