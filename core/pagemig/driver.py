"""What a driver plugin registers, and a base class that does the bookkeeping every driver needs.

A driver is an :class:`~pagemig.mm.owner.Owner` (it holds pages) and, when its pages
are movable, a :class:`~pagemig.mm.movable.MovableOperations` (it answers isolate,
migrate and putback).  ``movable = false`` in a scenario gives the world before
Linux v4.8: the driver's pages are plain unmovable allocations that compaction
cannot touch, and they come from UNMOVABLE pageblocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from pagemig.mm.gfp import Gfp
from pagemig.mm.machine import Machine
from pagemig.mm.owner import Owner


@attrs.frozen
class DriverInfo:
    """A driver as a plugin registers it.

    ``factory(machine, options)`` builds the driver for a run; ``options`` is the
    driver's scenario table after ``validate`` (which raises ``ValueError`` with a
    message naming the key, the value and what was expected).
    """

    name: str
    factory: Callable[[Machine, Mapping[str, Any]], Driver]
    description: str = ""
    validate: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    plugin: str = ""  # filled in by the plugin host: which plugin registered it


class Driver(Owner):
    """Base class for drivers: registers the owner, knows whether its pages are movable."""

    name = "driver"

    def __init__(self, machine: Machine, options: Mapping[str, Any] | None = None) -> None:
        self.machine = machine
        self.options: dict[str, Any] = dict(options or {})
        self.movable: bool = bool(self.options.get("movable", True))
        self.plugin: str = str(self.options.get("_plugin", ""))
        machine.register_owner(self)

    def page_gfp(self, gfp: int) -> int:
        """The GFP mask for this driver's pages: ``__GFP_MOVABLE`` only when they are movable."""
        if self.movable:
            return gfp | Gfp.MOVABLE
        return gfp & ~Gfp.MOVABLE

    def stats(self) -> dict[str, int | float]:
        """Per-driver figures for the run's result (pages held, migrations, ...)."""
        return {}

    def tick(self, now: float) -> None:
        """Called by the event loop at each step of simulated time; drivers with no
        background work leave it alone."""
