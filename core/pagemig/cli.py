"""The ``pagemig`` command line (click).  Results go to stdout, logs to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pagemig import __version__
from pagemig.logging import configure_logging
from pagemig.plugins import PluginHost, get_plugin_host


class CliState:
    """What the group's options decided, shared with the subcommands."""

    def __init__(self, blocked: tuple[str, ...], log_format: str, log_level: str) -> None:
        self.blocked = blocked
        self.log_format = log_format
        self.log_level = log_level
        self._host: PluginHost | None = None

    @property
    def host(self) -> PluginHost:
        if self._host is None:
            self._host = _shared_host(self.blocked)
        return self._host


_HOSTS: dict[tuple[str, ...], PluginHost] = {}


def _shared_host(blocked: tuple[str, ...]) -> PluginHost:
    """One plugin host per process and block list, so a broken plugin is reported once."""
    key = tuple(sorted(blocked))
    if key not in _HOSTS:
        _HOSTS[key] = get_plugin_host(blocked=key)
    return _HOSTS[key]


def _blocked_from_argv(argv: list[str]) -> tuple[str, ...]:
    """The ``--no-plugin`` values, read before click parses, so that plugin subcommands can be added."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--no-plugin" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith("--no-plugin="):
            out.append(arg.split("=", 1)[1])
    return tuple(out)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="pagemig")
@click.option("--no-plugin", "blocked", multiple=True, metavar="NAME",
              help="Do not load this plugin (repeatable), like pytest's -p no:NAME.")
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]), default="auto",
              show_default=True, help="Log format on stderr: console on a terminal, JSON otherwise.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True)
@click.pass_context
def cli(ctx: click.Context, blocked: tuple[str, ...], log_format: str, log_level: str) -> None:
    """pagemig: what making driver pages movable does to fragmentation, simulated."""
    configure_logging(log_format, log_level)
    ctx.obj = CliState(blocked, log_format, log_level)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@click.pass_obj
def plugins_cmd(state: CliState, as_json: bool) -> None:
    """List plugins: distribution, version, hooks, what they register, load errors."""
    records = state.host.listing()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pagemig plugins")
    for col in ("name", "distribution", "version", "api", "registers", "hooks", "error"):
        table.add_column(col)
    for r in records:
        regs = ", ".join([f"driver:{d}" for d in r.drivers] + [f"workload:{w}" for w in r.workloads]
                         + [f"command:{c}" for c in r.commands] + [f"scenario:{s}" for s in r.scenarios])
        hooks = ", ".join(h.removeprefix("pagemig_") for h in r.hooks)
        table.add_row(r.name, r.distribution, r.version, r.api_version or "?", regs, hooks,
                      r.error or "")
    Console(width=160).print(table)


def _add_plugin_commands(blocked: tuple[str, ...]) -> None:
    """Let plugins add subcommands (``pagemig_cli_commands``); a failing plugin is skipped."""
    try:
        host = _shared_host(blocked)
        host.hook.pagemig_cli_commands(cli=cli)
    except Exception as exc:  # noqa: BLE001 - the CLI must start even if a plugin's hook is broken
        print(f"pagemig: a plugin failed to add its commands: {exc}", file=sys.stderr)


def _add_core_commands() -> None:
    from pagemig.sim.cli import add_commands as add_sim_commands
    from pagemig.snapshot.cli import oracle_group, snapshot_group
    from pagemig.testing.cli import new_driver

    add_sim_commands(cli)
    cli.add_command(new_driver)
    cli.add_command(snapshot_group)
    cli.add_command(oracle_group)


_add_core_commands()


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else argv
    # Plugins load before click parses the command line: their warnings must already go to stderr.
    fmt = "auto"
    for i, arg in enumerate(args):
        if arg == "--log-format" and i + 1 < len(args):
            fmt = args[i + 1]
        elif arg.startswith("--log-format="):
            fmt = arg.split("=", 1)[1]
    configure_logging(fmt if fmt in ("auto", "console", "json") else "auto", "warning")
    _add_plugin_commands(_blocked_from_argv(args))
    return cli.main(args=args, prog_name="pagemig")


if __name__ == "__main__":  # pragma: no cover
    main()
