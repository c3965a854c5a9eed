"""The ``pagemig`` command line (click).  Results go to stdout, logs to stderr.

Every click command lives in this package, above everything it calls: the group
here, ``plugins`` in :mod:`pagemig.cli.plugins`, the run commands in
:mod:`pagemig.cli.sim`, ``snapshot`` and ``oracle`` in :mod:`pagemig.cli.snapshot`,
``new-driver`` in :mod:`pagemig.cli.new_driver`; what they share (the group's
options, one plugin host) in :mod:`pagemig.cli.state`.  Nothing below imports this
package.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from pagemig import __version__
from pagemig.cli.state import CliState, shared_host
from pagemig.logging import configure_logging


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


def _add_plugin_commands(blocked: tuple[str, ...]) -> None:
    """Let plugins add subcommands (``pagemig_cli_commands``); a failing plugin is skipped."""
    try:
        host = shared_host(blocked)
        host.hook.pagemig_cli_commands(cli=cli)
    except Exception as exc:  # noqa: BLE001 - the CLI must start even if a plugin's hook is broken
        print(f"pagemig: a plugin failed to add its commands: {exc}", file=sys.stderr)


def _add_core_commands() -> None:
    from pagemig.cli.new_driver import new_driver
    from pagemig.cli.plugins import plugins_cmd
    from pagemig.cli.sim import add_commands as add_sim_commands
    from pagemig.cli.snapshot import oracle_group, snapshot_group

    cli.add_command(plugins_cmd)
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
