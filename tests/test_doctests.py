"""The docstring examples of every contextd module run, so they cannot drift from the code.

Examples marked `# doctest: +SKIP` need a model, a server or data; every other one runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import contextd

MODULES = sorted(m.name for m in pkgutil.walk_packages(contextd.__path__, "contextd."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
