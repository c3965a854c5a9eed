"""Fixtures for the scenario and run tests: a plugin host without third-party plugins,
plus a toy driver plugin whose driver holds movable pages and has a command."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pagemig import hookimpl
from pagemig.driver import Driver, DriverInfo
from pagemig.mm.gfp import GFP_KERNEL
from pagemig.mm.machine import Machine
from pagemig.mm.movable import MIGRATEPAGE_SUCCESS, MigrateMode, clear_movable, set_movable
from pagemig.mm.owner import PageSet
from pagemig.mm.pages import Page, PageKind
from pagemig.plugins import PluginHost, get_plugin_host
from pagemig.sim import schema
from pagemig.sim.commands import CommandInfo

TOY_FIELDS = {
    "movable": schema.boolean(True),
    "pages": schema.integer(0, minimum=0),
    "faulty": schema.boolean(False),  # migrate_page raises: a driver bug the core must contain
}


class ToyDriver(Driver):
    """Holds pages in a PageSet; movable ones follow migration through the protocol."""

    name = "toy"

    def __init__(self, machine: Machine, options: Mapping[str, Any]) -> None:
        super().__init__(machine, options)
        self.set = PageSet(machine)
        self.rng: np.random.Generator = options["_rng"]
        self.grow(int(options.get("pages", 0)))

    def grow(self, n: int) -> int:
        got = 0
        for _ in range(n):
            pfn = self.machine.alloc_pages(self.page_gfp(GFP_KERNEL), 0, self.owner_id, PageKind.DRIVER)
            if pfn < 0:
                break
            self.set.add(pfn, int(self.rng.integers(1, 2**62)))
            if self.movable:
                set_movable(Page(self.machine, pfn), self)
            got += 1
        return got

    # movable operations
    def isolate_page(self, page: Page, mode: MigrateMode) -> bool:
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> int:
        if self.options.get("faulty"):
            raise RuntimeError("toy driver bug")
        slot = src.private
        dst.private = slot
        dst.token = src.token
        self.set.pfn[slot] = dst.pfn
        clear_movable(src)
        set_movable(dst, self)
        return MIGRATEPAGE_SUCCESS

    def putback_page(self, page: Page) -> None:
        """Nothing to relink: the page never left the set."""

    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        return self.set.contents()

    def stats(self) -> dict[str, int | float]:
        return {"pages": len(self.set)}


def _toy_grow(run: Any, args: Sequence[str]) -> dict[str, Any]:
    return {"grown": run.drivers["toy"].grow(int(args[0]))}


def _toy_grow_validate(args: Sequence[str]) -> None:
    if len(args) != 1 or not args[0].isdigit():
        raise ValueError("expected a number of pages")


class ToyPlugin:
    @hookimpl
    def pagemig_register_drivers(self, register: Callable[[Any], None]) -> None:
        register(DriverInfo("toy", ToyDriver, "a toy driver for tests", schema.validator(TOY_FIELDS)))

    @hookimpl
    def pagemig_register_commands(self, register: Callable[[Any], None]) -> None:
        register(CommandInfo("toy_grow", _toy_grow, "grow the toy driver", driver="toy",
                             validate=_toy_grow_validate, usage="toy_grow PAGES"))


@pytest.fixture
def host() -> PluginHost:
    """The core's built-ins plus the toy plugin; no installed third-party plugin."""
    return get_plugin_host(autoload=False, extra_plugins=[("toy", ToyPlugin())])


SMALL = """
seed = 3
duration = "20s"
step = "1s"

[machine]
preset = "x86_64-guest"
memory = "128MiB"
compaction_proactiveness = 0

[sample]
interval = "5s"
"""


@pytest.fixture
def small_toml() -> str:
    """A small machine and nothing on it: tests append workloads, drivers and timelines."""
    return SMALL


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def _write(text: str, name: str = "scenario.toml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return _write
