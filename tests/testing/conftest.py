"""Shared fixtures of the kit's tests: pytester, and the reference driver rendered from the
``pagemig new-driver`` templates (the one driver the kit must pass; the broken drivers
are made from it by breaking one thing each)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagemig.testing.scaffold import write_driver

pytest_plugins = ["pytester"]

REF_NAME = "kitref"


def _load_helper(module_name: str, filename: str) -> None:
    """Make a helper module beside this file importable by the tests (which pytest imports
    with --import-mode=importlib, so this folder is not on sys.path)."""
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, Path(__file__).with_name(filename))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)


_load_helper("pagemig_kit_broken_drivers", "broken_drivers.py")


@pytest.fixture(scope="session")
def reference_driver_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The template rendered as driver ``kitref`` and importable as ``pagemig_kitref``."""
    root = tmp_path_factory.mktemp("kitref") / "pagemig-kitref"
    write_driver(REF_NAME, root)
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for mod in [m for m in sys.modules if m == "pagemig_kitref" or m.startswith("pagemig_kitref.")]:
            del sys.modules[mod]
