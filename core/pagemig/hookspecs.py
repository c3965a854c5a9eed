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
    """Ship scenario files: call ``register(ScenarioInfo(name, path))`` once per file.

    ``pagemig.sim.scenario.package_scenarios("your_package")`` lists every
    ``your_package/scenarios/*.toml`` as ScenarioInfo; ``pagemig scenarios`` lists them
    and ``pagemig run NAME`` runs one.
    """


# ------------------------------------------------------------------ compaction
# (owned by the compaction module, pagemig.mm.compaction; the kernel's policy is the
# default implementation, registered by pagemig.compaction_policy)
# Called per zone run and per batch of about COMPACT_CLUSTER_MAX pages, never per page.
# ``cc`` is the run's CompactControl: policy fields, scanner positions, the batch.
@hookspec
def pagemig_compaction_begin(machine: Any, cc: Any) -> None:
    """A zone's compaction run starts (after ``compaction_suitable`` let it).  Observers only."""


@hookspec(firstresult=True)
def pagemig_compaction_finished(machine: Any, cc: Any) -> Any:
    """Decide, before each batch, whether the run is over: return a ``CompactResult``
    (``COMPACT_CONTINUE`` to go on) or None to leave it to the next implementation.
    Default: ``compact_finished()`` (scanners met, a page of the order free, the
    proactive score low enough)."""


@hookspec(firstresult=True)
def pagemig_compaction_isolate_migratepages(machine: Any, cc: Any) -> Any:
    """Pick the next batch: advance ``cc.migrate_pfn``, isolate pages into
    ``cc.migratepages`` / ``cc.nr_migratepages``; return an ``IsolateMigrate``
    (ISOLATE_SUCCESS, ISOLATE_NONE, ISOLATE_ABORT) or None to pass.  Default: the
    kernel's migration scanner (``isolate_migratepages()``)."""


@hookspec(firstresult=True)
def pagemig_compaction_isolate_freepages(machine: Any, cc: Any) -> Any:
    """Pick free targets for the batch: take free blocks into ``cc.freepages`` (see
    ``pagemig.mm.compaction.isolate_freepages_block``), move ``cc.free_pfn``; return
    the number of pages isolated, or None to pass.  Default: the kernel's free scanner."""


@hookspec
def pagemig_compaction_migrated(machine: Any, cc: Any, result: Any) -> None:
    """A batch was migrated; ``result`` is its ``MigrateResult``.  Observers only."""


@hookspec
def pagemig_compaction_end(machine: Any, cc: Any, result: Any) -> None:
    """A zone's compaction run ended with ``result`` (a ``CompactResult``); every page is
    migrated or put back and every unused target released.  Observers only."""
