"""Every pluggy hook spec of pagemig, in one module.

Hooks run per run, per phase and per batch, never per page (a pluggy call costs
about a microsecond): per-page driver callbacks go straight to the ops object a
driver registered for its pages, as the kernel calls ``page->mapping->a_ops``.
Specs evolve only by adding arguments, so an old plugin keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("pagemig")
hookimpl = pluggy.HookimplMarker("pagemig")


# ------------------------------------------------------------------ registration
@hookspec
def pagemig_register_drivers(register: Callable[[Any], None]) -> None:
    """Register drivers: call ``register(DriverInfo(...))`` once per driver."""


@hookspec
def pagemig_register_workloads(register: Callable[[Any], None]) -> None:
    """Register workloads: call ``register(WorkloadInfo(...))`` once per workload."""


@hookspec
def pagemig_register_commands(register: Callable[[Any], None]) -> None:
    """Register timeline commands: call ``register(CommandInfo(...))`` once per command."""


@hookspec
def pagemig_cli_commands(cli: Any) -> None:
    """Add subcommands to the ``pagemig`` click group: ``cli.add_command(...)``."""


# ------------------------------------------------------------------ a run's life
@hookspec
def pagemig_run_start(run: Any) -> None:
    """A run is about to start; ``run`` holds the machine, drivers and scenario."""


@hookspec
def pagemig_run_end(run: Any, result: Any) -> None:
    """A run ended; ``result`` is the RunResult about to be written."""


# ------------------------------------------------------------------ scenarios
# (owned by the scenario/run layer, pagemig.sim)
@hookspec
def pagemig_register_scenarios(register: Callable[[Any], None]) -> None:
    """Ship scenario files: call ``register(ScenarioInfo(...))`` (or ``register(path)``) per file.

    ``pagemig.sim.scenario.package_scenarios("your_package")`` lists every
    ``your_package/scenarios/*.toml`` as ScenarioInfo; ``pagemig scenarios`` lists them
    and ``pagemig run NAME`` runs one.
    """
