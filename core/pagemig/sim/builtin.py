"""The core's own timeline commands and shipped scenarios, registered as a plugin would
register them: the core uses its own extension points, so they are known to work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pagemig.hookspecs import hookimpl


@hookimpl
def pagemig_register_commands(register: Callable[[Any], None]) -> None:
    from pagemig.sim.commands import builtin_commands

    for info in builtin_commands():
        register(info)


@hookimpl
def pagemig_register_scenarios(register: Callable[[Any], None]) -> None:
    from pagemig.sim.scenario import package_scenarios

    for info in package_scenarios("pagemig"):
        register(info)
