"""Click commands of the sim layer: ``run``, ``compare``, ``scenarios``, ``show``.

A bad scenario (file, key, value) is the user's to fix, not a crash: it prints one
``pagemig: error: ...`` line on stderr and exits with status 2, without a traceback.
A run whose checker fails, or that a driver stopped under ``on_driver_error =
"fail"``, exits with status 1 after printing its summary.  Results go to stdout,
logs and the progress bar to stderr.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from pagemig.cli.state import CliState

LOG_FORMATS = click.Choice(["console", "json"])


class ScenarioFailure(click.ClickException):
    """A scenario that cannot run: exit status 2, one line, no traceback."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"pagemig: error: {self.format_message()}", err=True, file=file)


def _state(ctx: click.Context) -> Any:
    """The group's CliState, or a fresh one when the command runs outside the group (tests)."""
    obj = ctx.find_object(object)
    if obj is None or not hasattr(obj, "host"):
        obj = CliState((), "auto", "warning")
        ctx.obj = obj
    return obj


def _relog(state: Any, log_format: str | None) -> None:
    if log_format:
        from pagemig.logging import configure_logging

        configure_logging(log_format, getattr(state, "log_level", "warning"))


def _load(host: Any, scenario: str | None, overrides: tuple[str, ...], seed: int | None) -> Any:
    from pagemig.sim.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(scenario, host, overrides=overrides, seed=seed)
    except ScenarioError as exc:
        raise ScenarioFailure(str(exc)) from None


@contextlib.contextmanager
def _progress(enabled: bool, label: str, total: float) -> Iterator[Any]:
    """A rich progress bar of simulated time on stderr, only when stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        TextColumn("{task.completed:>8.0f}/{task.total:.0f} s simulated"), TimeElapsedColumn(),
                        console=Console(file=sys.stderr), transient=True)
    with progress:
        task = progress.add_task(label, total=total)

        def update(now: float, total: float) -> None:
            progress.update(task, completed=now, total=total)

        yield update


def _stdout_console() -> Any:
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=140, force_terminal=False, no_color=True)


def _execute(host: Any, scenario: Any, quiet: bool, label: str) -> Any:
    from pagemig.sim.loop import run_scenario

    with _progress(not quiet, label, scenario.duration) as update:
        return run_scenario(scenario, host, progress=update)


def run_options(f: Any) -> Any:
    f = click.option("--log-format", type=LOG_FORMATS, default=None,
                     help="Log format on stderr (also a `pagemig --log-format` option).")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="No summary and no progress bar.")(f)
    f = click.option("--out", "out_dir", type=click.Path(), default=None,
                     help="Write result.json and the PNG figures into this directory.")(f)
    f = click.option("--json", "json_path", type=click.Path(allow_dash=True), default=None,
                     help="Write the result as JSON to this file ('-' for stdout, which then holds only JSON).")(f)
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a scenario key before validation (repeatable; dotted, globs allowed: "
                          "'drivers.*.movable=false').")(f)
    f = click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (overrides the file's).")(f)
    return f


@contextlib.contextmanager
def _outputs() -> Iterator[None]:
    """An output that cannot be written (checked up front, or failing later) is one line, exit 2."""
    from pagemig.outputs import OutputPathError

    try:
        yield
    except OutputPathError as exc:
        raise ScenarioFailure(str(exc)) from None


def _check_outputs(json_path: str | None, out_dir: str | None, json_parents: bool = True,
                   figure: Path | None = None) -> None:
    """Every path the command will write, refused before the run rather than after it."""
    from pagemig.outputs import check_output_dir, check_output_path

    with _outputs():
        if json_path and json_path != "-":
            check_output_path("--json", json_path, create_parents=json_parents)
        if out_dir:
            check_output_dir("--out", out_dir)
        if figure is not None:
            check_output_path("--figure", figure, create_parents=True)


def _proc_names(values: tuple[str, ...]) -> list[str]:
    """``--proc`` values, repeatable and comma-separated, checked before any work is done."""
    from pagemig.report.procfs import PROC_FILES

    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    for n in names:
        if n not in PROC_FILES:
            raise ScenarioFailure(f"--proc {n}: expected one of {', '.join(PROC_FILES)}")
    return names


def proc_option(f: Any) -> Any:
    return click.option(
        "--proc", "proc", multiple=True, metavar="FILE",
        help="Also print these files as the kernel does (buddyinfo, pagetypeinfo, vmstat, extfrag_index, "
             "unusable_index; repeatable or comma-separated), before and after each compaction.")(f)


def _print_proc(doc: dict[str, Any], names: list[str], which: str = "compactions") -> None:
    from pagemig.report.procfs import ProcUnavailable, proc_text

    try:
        click.echo(proc_text(doc, names, which), nl=False)
    except ProcUnavailable as exc:
        raise ScenarioFailure(f"--proc: {exc}") from None


@click.command("run")
@click.argument("scenario", required=False)
@run_options
@proc_option
@click.pass_context
def run_cmd(ctx: click.Context, scenario: str | None, seed: int | None, overrides: tuple[str, ...],
            json_path: str | None, out_dir: str | None, quiet: bool, log_format: str | None,
            proc: tuple[str, ...]) -> None:
    """Run SCENARIO (a file, or a shipped scenario's name; default: the seed's experiment).

    \b
    Examples:
      pagemig run                                  # the default scenario
      pagemig run frag-1g --json frag.json --out figures/
      pagemig run my.toml --set machine.memory=2GiB --set 'drivers.*.movable=false'
      pagemig run frag-1g --proc pagetypeinfo      # and /proc/pagetypeinfo before and after compaction
    """
    state = _state(ctx)
    _relog(state, log_format)
    host = state.host
    proc_names = _proc_names(proc)
    if proc_names and json_path == "-":
        raise ScenarioFailure("--proc prints on stdout, which --json - keeps for the JSON alone")
    _check_outputs(json_path, out_dir)
    sc = _load(host, scenario, overrides, seed)
    result = _execute(host, sc, quiet or json_path == "-", sc.name)
    doc = result.as_dict()
    if json_path == "-":
        click.echo(result.to_json(), nl=False)
    elif json_path:
        with _outputs():
            result.write_json(json_path)
    written: list[Path] = []
    if out_dir:
        from pagemig.report.figures import write_figures

        with _outputs():
            written.append(result.write_json(Path(out_dir) / "result.json"))
            written += write_figures(result, out_dir)
    if not quiet and json_path != "-":
        from pagemig.report.tables import print_summary

        console = _stdout_console()
        print_summary(doc, console)
        for p in written:
            console.print(f"wrote {p}")
    if proc_names:
        _print_proc(doc, proc_names)
    if not result.ok:
        ctx.exit(1)


def _read_result(path: str) -> dict[str, Any]:
    """A result file written by ``pagemig run --json``/``--out``, or a one-line error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioFailure(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioFailure(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    missing = [k for k in ("schema_version", "machine", "scenario", "samples", "compactions", "checker")
               if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise ScenarioFailure(f"{path}: not a pagemig run result (no {', '.join(missing)}); "
                              "expected a file written by pagemig run --json or --out")
    result: dict[str, Any] = doc
    return result


@click.command("show")
@click.argument("result_path", metavar="RESULT", type=click.Path(dir_okay=False))
@proc_option
@click.option("--at", "which", type=click.Choice(["compactions", "samples", "end"]), default="compactions",
              show_default=True,
              help="Which recorded states --proc prints: before and after each timeline compaction, "
                   "every sample, or the end of the run.")
def show_cmd(result_path: str, proc: tuple[str, ...], which: str) -> None:
    """Print a saved result again: its summary, or with --proc the /proc files it recorded.

    \b
    Examples:
      pagemig show frag.json
      pagemig show frag.json --proc pagetypeinfo --proc extfrag_index
      pagemig show out/result.json --proc vmstat --at end
    """
    names = _proc_names(proc)
    doc = _read_result(result_path)
    if names:
        _print_proc(doc, names, which)
        return
    from pagemig.report.tables import print_summary

    print_summary(doc, _stdout_console())


@click.command("compare")
@click.argument("scenario", required=False)
@click.option("--baseline", "baselines", multiple=True, required=True, metavar="KEY=VALUE",
              help="What the second run changes (repeatable), e.g. drivers.balloon.movable=false.")
@click.option("--figure", "figure_path", type=click.Path(), default=None,
              help="Where to write the figure (default: compare-SCENARIO.png, or DIR/compare.png with --out).")
@run_options
@click.pass_context
def compare_cmd(ctx: click.Context, scenario: str | None, baselines: tuple[str, ...], figure_path: str | None,
                seed: int | None, overrides: tuple[str, ...], json_path: str | None, out_dir: str | None,
                quiet: bool, log_format: str | None) -> None:
    """Run SCENARIO twice with one seed, as given and with the --baseline overrides, side by side.

    \b
    Example:
      pagemig compare seed-balloon --baseline drivers.balloon.movable=false
    """
    state = _state(ctx)
    _relog(state, log_format)
    host = state.host
    _check_outputs(json_path, out_dir, json_parents=False, figure=Path(figure_path) if figure_path else None)
    sc_a = _load(host, scenario, overrides, seed)
    sc_b = _load(host, scenario, overrides + baselines, seed)
    if not figure_path and not out_dir:
        _check_outputs(None, None, figure=Path(f"compare-{sc_a.name}.png"))
    label_a, label_b = "as given", "baseline: " + " ".join(baselines)
    a = _execute(host, sc_a, quiet, f"{sc_a.name} (as given)")
    b = _execute(host, sc_b, quiet, f"{sc_b.name} (baseline)")
    da, db = a.as_dict(), b.as_dict()
    from pagemig.report.compare import compare_rows, compare_table
    from pagemig.report.figures import write_compare_figure

    fig = Path(figure_path) if figure_path else (Path(out_dir) / "compare.png" if out_dir
                                                 else Path(f"compare-{sc_a.name}.png"))
    with _outputs():
        if out_dir:
            a.write_json(Path(out_dir) / "result-as-given.json")
            b.write_json(Path(out_dir) / "result-baseline.json")
        write_compare_figure(da, db, label_a, label_b, fig)
    if json_path:
        doc = {"scenario": sc_a.name, "seed": sc_a.seed, "baseline": list(baselines),
               "rows": [{"figure": k, "as_given": va, "baseline": vb} for k, va, vb in compare_rows(da, db)],
               "as_given": da, "baseline_run": db}
        text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
        if json_path == "-":
            click.echo(text, nl=False)
        else:
            from pagemig.outputs import atomic_write_text

            with _outputs():
                atomic_write_text(json_path, text)
    if not quiet and json_path != "-":
        from pagemig.report.tables import checker_text

        console = _stdout_console()
        console.print(compare_table(da, db, label_a, label_b))
        console.print(checker_text(da["checker"], da.get("error")))
        console.print(checker_text(db["checker"], db.get("error")))
        console.print(f"wrote {fig}")
    if not (a.ok and b.ok):
        ctx.exit(1)


@click.command("scenarios")
@click.option("--json", "as_json", is_flag=True, help="List them as JSON.")
@click.option("--show", "show", metavar="NAME", default=None, help="Print one scenario's file, to copy and edit.")
@click.pass_context
def scenarios_cmd(ctx: click.Context, as_json: bool, show: str | None) -> None:
    """List the shipped scenarios (the core's and the plugins'), a line each."""
    from pagemig.sim.scenario import ScenarioError, default_scenario_name, locate, shipped_scenarios

    host = _state(ctx).host
    shipped = shipped_scenarios(host)
    if show:
        try:
            text, _, _ = locate(show, shipped)
        except ScenarioError as exc:
            raise ScenarioFailure(str(exc)) from None
        click.echo(text, nl=not text.endswith("\n"))
        return
    try:
        default = default_scenario_name(shipped)
    except ScenarioError:
        default = ""
    rows: list[dict[str, Any]] = [{"name": n, "plugin": "core" if i.plugin.startswith("pagemig.") else i.plugin,
             "default": n == default, "description": i.read_description()} for n, i in sorted(shipped.items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("scenario", style="bold")
    table.add_column("from")
    table.add_column("description")
    for r in rows:
        table.add_row(r["name"] + (" (default)" if r["default"] else ""), r["plugin"], r["description"])
    _stdout_console().print(table)


def add_commands(cli: click.Group) -> None:
    """Attach this module's commands to the ``pagemig`` group."""
    cli.add_command(run_cmd)
    cli.add_command(compare_cmd)
    cli.add_command(scenarios_cmd)
    cli.add_command(show_cmd)
