"""``pagemig plugins``: what is installed, as a user asks it.

By default one row per distribution (what ``pip install`` put there): its name and
version, what it provides (drivers, workloads, timeline commands, scenarios, and any
other hooks it implements) and why it failed to load, if it did.  The core is one of
them, ``pagemig``; the core's own modules that register through the hooks like a
plugin (``pagemig.sim.builtin``, ``pagemig.compaction_policy``, ...) are an
implementation detail and show only under ``--all``, one row per plugin module (with
the core's policy hooks).
``--json`` prints every plugin module's full record, for scripts.

The table fits 100 columns (fewer on a narrower terminal): long cells wrap.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence

import click

from pagemig.cli.state import CliState
from pagemig.plugins import PluginRecord

WIDTH = 100
KINDS = (("drivers", "driver"), ("workloads", "workload"), ("commands", "command"), ("scenarios", "scenario"))
# Hooks that say what a plugin provides through its registrations, not a behaviour of its own.
REGISTRATION_HOOKS = frozenset({"pagemig_register_drivers", "pagemig_register_workloads",
                                "pagemig_register_commands", "pagemig_register_scenarios"})


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def provides(records: Sequence[PluginRecord], *, core_hooks: bool = False) -> str:
    """``driver balloon; command balloon; scenario seed-balloon``: what these plugins
    registered, kind by kind, then the other hooks they implement (a third party's
    compaction policy, say; the core's own policy is how the core works, not an extra,
    and shows only with ``core_hooks``)."""
    parts = []
    for attr, label in KINDS:
        names = _unique(n for r in records for n in getattr(r, attr))
        if names:
            parts.append(f"{label}{'s' if len(names) > 1 else ''} {', '.join(names)}")
    hooks = _unique(h.removeprefix("pagemig_") for r in records if core_hooks or not r.builtin
                    for h in r.hooks if h not in REGISTRATION_HOOKS)
    if hooks:
        parts.append(f"hook{'s' if len(hooks) > 1 else ''} {', '.join(hooks)}")
    return "; ".join(parts)


def by_distribution(records: Iterable[PluginRecord]) -> dict[str, list[PluginRecord]]:
    """Plugin records grouped by the distribution that installed them, in listing order
    (a plugin registered in-process, with no distribution, stands for itself)."""
    groups: dict[str, list[PluginRecord]] = {}
    for r in records:
        groups.setdefault(r.distribution or r.name, []).append(r)
    return groups


def _errors(records: Sequence[PluginRecord]) -> str:
    errs = [r for r in records if r.error]
    if len(records) == 1 or (len(errs) <= 1 and all(r.name == errs[0].name for r in errs)):
        return "; ".join(r.error or "" for r in errs)
    return "; ".join(f"{r.name}: {r.error}" for r in errs)


def _width() -> int:
    if sys.stdout.isatty():
        import shutil

        return min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
    return WIDTH


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print every plugin module's full record as JSON.")
@click.option("--all", "show_all", is_flag=True,
              help="One row per plugin module, the core's own modules included.")
@click.pass_obj
def plugins_cmd(state: CliState, as_json: bool, show_all: bool) -> None:
    """List installed plugins: distribution, version, what each provides, load errors."""
    records = state.host.listing()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pagemig plugins")
    if show_all:
        table.add_column("plugin", no_wrap=True)
        table.add_column("distribution")
        table.add_column("provides")
        table.add_column("error", overflow="fold")
        for r in records:
            dist = " ".join(x for x in (r.distribution, r.version) if x)
            table.add_row(r.name, dist, provides([r], core_hooks=True), r.error or "")
    else:
        table.add_column("distribution", no_wrap=True)
        table.add_column("version", no_wrap=True)
        table.add_column("api", no_wrap=True)  # the pagemig.api version it was written for
        for col in ("provides", "error"):
            table.add_column(col, overflow="fold")
        for dist, group in by_distribution(records).items():
            apis = _unique(r.api_version or "?" for r in group)
            table.add_row(dist, group[0].version, ",".join(apis), provides(group), _errors(group))
    Console(width=_width()).print(table)
