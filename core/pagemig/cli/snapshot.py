"""``pagemig snapshot ...`` and ``pagemig oracle ...``: click groups the main CLI attaches.

Exit codes: 0 success; 1 a run that started and failed (the guest's own words are
printed); 2 bad input (a snapshot directory that is not one, a bad option), naming the
file and what was expected; 3 cannot run here (no User-Mode Linux, not Linux, no gcc,
simulator without compaction).  Never a traceback for any of these.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from pagemig.snapshot.parse import SnapshotFormatError

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3


class BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT


class Unavailable(click.ClickException):
    exit_code = EXIT_UNAVAILABLE


class RunFailed(click.ClickException):
    exit_code = EXIT_RUN_FAILED


def _check_output(option: str, dest: str | None, directory: bool = False) -> None:
    """Refuse an output path that cannot be written before the work starts (exit 2, one line)."""
    from pagemig.outputs import OutputPathError, check_output_dir, check_output_path

    if not dest or dest == "-":
        return
    try:
        if directory:
            check_output_dir(option, dest)
        else:
            check_output_path(option, dest)
    except OutputPathError as e:
        raise BadInput(str(e)) from None


def _write_json(dest: str, payload: dict[str, Any]) -> None:
    from pagemig.outputs import OutputPathError, atomic_write_text

    text = json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n"
    if dest == "-":
        click.echo(text, nl=False)
    else:
        try:
            atomic_write_text(dest, text)
        except OutputPathError as e:
            raise BadInput(str(e)) from None


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _load(directory: str, allow_partial: bool = False) -> tuple[Any, Any]:
    """Load and import a snapshot, turning format errors into exit code 2."""
    from pagemig.snapshot.importer import import_snapshot
    from pagemig.snapshot.model import load_snapshot

    try:
        snap = load_snapshot(directory, allow_partial=allow_partial)
        return snap, import_snapshot(snap)
    except SnapshotFormatError as e:
        raise BadInput(str(e)) from e


@click.group("snapshot")
def snapshot_group() -> None:
    """Read a real machine's memory state (/proc files) and replay it in the simulator."""


@snapshot_group.command("capture")
@click.argument("directory", type=click.Path())
@click.option("--compress", type=click.Choice(["xz", "gz", "none"]), default="xz", show_default=True,
              help="How to compress kpageflags and kpagecount.")
@click.option("--proc", default="/proc", show_default=True, hidden=True, help="Where /proc is (for tests).")
def capture_cmd(directory: str, compress: str, proc: str) -> None:
    """Save this machine's buddyinfo, pagetypeinfo, zoneinfo, vmstat and kpageflags (root)."""
    from pagemig.snapshot.capture import CaptureError, capture

    _check_output("capture", directory, directory=True)
    try:
        d = capture(directory, proc=proc, compress=compress)
    except CaptureError as e:
        raise BadInput(str(e)) from e
    click.echo(f"captured {d}: " + ", ".join(sorted(p.name for p in d.iterdir())))


ALLOW_PARTIAL = click.option(
    "--allow-partial", is_flag=True,
    help="Import a kpageflags that shows fewer pfns of a zone than it manages; the rest is inferred "
         "from buddyinfo and vmstat, and the report says how much.")


@snapshot_group.command("show")
@click.argument("directory")
@click.option("--json", "json_out", metavar="FILE", help="Also write the import report as JSON ('-': stdout).")
@ALLOW_PARTIAL
def show_cmd(directory: str, json_out: str | None, allow_partial: bool) -> None:
    """Print what a snapshot holds and how its import checks against buddyinfo and pagetypeinfo."""
    from pagemig.snapshot.render import render_show, report_json

    _check_output("--json", json_out)
    snap, state = _load(directory, allow_partial)
    if json_out != "-":
        click.echo(render_show(snap, state))
    if json_out:
        _write_json(json_out, report_json(snap, state))


@snapshot_group.command("import")
@click.argument("directory")
@ALLOW_PARTIAL
def import_cmd(directory: str, allow_partial: bool) -> None:
    """Import a snapshot into a simulated machine and check every page is accounted for."""
    from pagemig.mm.invariants import check
    from pagemig.snapshot.simulate import build_machine

    snap, state = _load(directory, allow_partial)
    machine = build_machine(state)
    rep = check(machine)
    click.echo(f"imported {snap.source}: {state.nr_pfns} pages, {len(state.free_pfns)} free blocks, "
               f"{sum(z.free_pages for z in machine.zones)} free pages, zones "
               + ", ".join(f"{z.name} [{z.start_pfn:#x}, {z.end_pfn:#x})" for z in machine.zones))
    click.echo(f"checker: {'ok' if rep.ok else '; '.join(rep.problems)} ({rep.pages_free} free, "
               f"{rep.pages_owned} owned, {rep.pages_reserved} reserved)")
    if not rep.ok:
        raise RunFailed("the imported machine failed the invariant checker")


@snapshot_group.command("compact")
@click.argument("directory")
@click.option("--json", "json_out", metavar="FILE", help="Write 'compactions' and 'vmstat' as JSON ('-': stdout).")
@ALLOW_PARTIAL
def compact_cmd(directory: str, json_out: str | None, allow_partial: bool) -> None:
    """Import a snapshot, run full compaction on it (echo 1 > /proc/sys/vm/compact_memory)."""
    from pagemig.oracle.compare import unusable_index
    from pagemig.snapshot.render import coverage_json, coverage_lines
    from pagemig.snapshot.simulate import simulate_compact_memory

    _check_output("--json", json_out)
    snap, state = _load(directory, allow_partial)
    sim = simulate_compact_memory(state)
    if json_out != "-":
        for line in coverage_lines(snap):
            click.echo(line)
        for zone in sim.before:
            b, a = sim.before[zone], sim.after[zone]
            click.echo(f"zone {zone}: free blocks per order")
            click.echo(f"  {'order':>5} {'before':>9} {'after':>9}")
            for o in range(len(b)):
                click.echo(f"  {o:>5} {b[o]:>9} {a[o]:>9}")
            for k in sorted({3, state.pageblock_order}):
                click.echo(f"  unusable index at order {k}: {unusable_index(b, k):.3f} -> {unusable_index(a, k):.3f}")
        click.echo("counters")
        for k, v in sim.counters.items():
            click.echo(f"  {k:<32} {v:>10}")
        click.echo(f"simulator time {sim.seconds:.3f} s (host)"
                   + (f", {sim.simulated_seconds:.3f} s simulated" if sim.simulated_seconds is not None else ""))
    if json_out:
        _write_json(json_out, {"compactions": [dict(sim.record)], "vmstat": dict(sim.vmstat),
                               "seconds": sim.seconds, "simulated_seconds": sim.simulated_seconds,
                               "coverage": coverage_json(snap)})


@click.group("oracle")
def oracle_group() -> None:
    """Run a workload on a real Linux kernel (User-Mode Linux) and compare with the simulator."""


@oracle_group.command("check")
def oracle_check_cmd() -> None:
    """Say whether User-Mode Linux can run here, and what is missing if not."""
    from pagemig.oracle.uml import WORKLOADS, UmlUnavailable, check_uml

    try:
        uml = check_uml()
    except UmlUnavailable as e:
        raise Unavailable(str(e)) from e
    click.echo(f"linux.uml: {uml}")
    for name, wl in WORKLOADS.items():
        try:
            check_uml(wl)
            click.echo(f"workload {name}: ready ({wl.description})")
        except UmlUnavailable as e:
            click.echo(f"workload {name}: cannot run: {e}")


@oracle_group.command("run")
@click.argument("workload")
@click.option("--mem", default="1024M", show_default=True, help="Guest memory (UML mem=).")
@click.option("--json", "json_out", metavar="FILE", help="Write the comparison as JSON ('-': stdout).")
@click.option("--keep", "keep", type=click.Path(), metavar="DIR",
              help="Keep the run (snapshots before/ and after/, console log) in DIR.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds before the guest is killed.")
@click.option("--set", "params", multiple=True, metavar="NAME=VALUE",
              help="Override a workload parameter, e.g. FRAG_PERCENT=50 (repeatable).")
@click.option("--no-sim", is_flag=True, help="Only run the real kernel; skip the simulator.")
def oracle_run_cmd(workload: str, mem: str, json_out: str | None, keep: str | None, timeout: float,
                   params: tuple[str, ...], no_sim: bool) -> None:
    """Boot UML, run WORKLOAD (frag or zram), compact_memory, and compare with the simulator."""
    from pagemig.oracle.compare import compare, counter_deltas
    from pagemig.oracle.uml import WORKLOADS, UmlRunError, UmlUnavailable, parse_mem, run_guest
    from pagemig.snapshot.capture import finalize
    from pagemig.snapshot.simulate import simulate_compact_memory

    if workload not in WORKLOADS:
        raise BadInput(f"workload {workload!r}: expected one of {', '.join(WORKLOADS)}")
    try:
        parse_mem(mem)
    except ValueError as e:
        raise BadInput(str(e)) from e
    overrides = {}
    for p in params:
        name, eq, value = p.partition("=")
        if not eq or not name.isidentifier():
            raise BadInput(f"--set {p!r}: expected NAME=VALUE")
        overrides[name] = value
    _check_output("--json", json_out)
    _check_output("--keep", keep, directory=True)
    run_dir = Path(keep) if keep else None
    try:
        run = run_guest(workload, mem=mem, timeout=timeout, run_dir=run_dir, params=overrides)
    except UmlUnavailable as e:
        raise Unavailable(str(e)) from e
    except UmlRunError as e:
        raise RunFailed(str(e)) from e
    try:
        for d in (run.before, run.after):
            finalize(d, source=f"pagemig oracle run {workload} --mem {mem}",
                     extra={"oracle": {"workload": workload, "mem": mem, "times": run.times, "info": run.info}})
        snap_b, state = _load(str(run.before))
        snap_a, _ = _load(str(run.after))

        def real_only() -> None:
            click.echo(f"real kernel {run.release}: compact_memory took {run.compact_seconds:.3f} s")
            for name, snap in (("before", snap_b), ("after", snap_a)):
                counts = [sum(c) for c in zip(*(b.counts for b in snap.buddyinfo), strict=True)]
                click.echo(f"  free blocks per order {name:<6} {' '.join(map(str, counts))}")
            for k, v in counter_deltas(snap_b, snap_a).items():
                click.echo(f"  {k:<32} {v:>10}")

        if no_sim:
            real_only()
            return
        sim = simulate_compact_memory(state)
        cmp = compare(workload, mem, snap_b, snap_a, state, sim, run.compact_seconds,
                      workload_seconds=run.workload_seconds, boot_seconds=run.boot_seconds)
        if json_out != "-":
            click.echo(cmp.render())
        if json_out:
            payload = cmp.to_json()
            payload["run_dir"] = str(run.run_dir) if keep else None
            _write_json(json_out, payload)
    finally:
        if not keep:
            shutil.rmtree(run.run_dir, ignore_errors=True)


__all__ = ["oracle_group", "snapshot_group"]


def main() -> None:  # pragma: no cover - for running this module alone
    cli = click.Group(commands={"snapshot": snapshot_group, "oracle": oracle_group})
    cli.main(args=sys.argv[1:], prog_name="pagemig")
