"""Run every benchmark: ``python benchmarks/run.py`` (or ``make bench``).

Not part of the test suite: figures depend on the machine, and the project never
asserts speed in tests.  Each ``benchmarks/bench_*.py`` runs in a fresh Python
process of its own (so that one benchmark's memory and caches do not colour the
next), and reports through a small contract:

* preferred: a function ``run(quick: bool) -> list[dict]``; each dict is one
  figure with the keys ``case``, ``machine``, ``value``, ``unit`` and optionally
  ``target`` (a number: higher is better unless ``lower_is_better`` is true) and
  ``note``.  They are printed as one table and written to ``--json`` if asked;
* otherwise a ``main()`` that prints its own report; it is run and its output
  passed through.

Options: ``--quick`` (smaller machines, fewer repeats: a smoke test of the suite),
``--only alloc,memory`` (names without the ``bench_`` prefix), ``--json PATH``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _child(path: Path, quick: bool, out: Path) -> int:
    """Import one benchmark module and run it; results go to ``out`` as JSON."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    if hasattr(module, "run"):
        rows = module.run(quick)
        out.write_text(json.dumps(rows))
        return 0
    if hasattr(module, "main"):
        module.main()
        out.write_text("[]")
        return 0
    raise SystemExit(f"{path.name} has neither run(quick) nor main()")


def machine_info() -> dict[str, Any]:
    """Where the figures were measured: they mean nothing without it."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy as np

    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("benchmark", "case", "machine", "value", "unit", "target", "")
    table = [head]
    for r in rows:
        target = r.get("target")
        verdict = ""
        if target is not None:
            ok = r["value"] <= target if r.get("lower_is_better") else r["value"] >= target
            verdict = "ok" if ok else "MISS"
        table.append((r["bench"], r["case"], r["machine"], _fmt(r["value"]), r["unit"],
                      "" if target is None else _fmt(target), verdict))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(str(c).ljust(w) if i not in (3, 5) else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    notes = [(r["bench"], r["case"], r["machine"], r["note"]) for r in rows if r.get("note")]
    if notes:
        print()
        for bench, case, machine, note in notes:
            print(f"  {bench} / {case} / {machine}: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small machines, few repeats")
    parser.add_argument("--only", default="", help="comma-separated names, e.g. alloc,memory")
    parser.add_argument("--json", type=Path, help="write all figures and the machine info here")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, args.quick, args.out)

    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    paths = sorted(p for p in HERE.glob("bench_*.py") if not wanted or p.stem.removeprefix("bench_") in wanted)
    if not paths:
        print(f"no benchmarks match {args.only!r}", file=sys.stderr)
        return 2
    info = machine_info()
    print(f"# {info['cpu']} x{info['cpus']}, load {info['load_average']}, Python {info['python']}, "
          f"NumPy {info['numpy']}, {info['date']}", flush=True)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for path in paths:
        name = path.stem.removeprefix("bench_")
        print(f"# {name} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), "--out", str(out)]
            if args.quick:
                cmd.append("--quick")
            started = time.perf_counter()
            proc = subprocess.run(cmd, check=False)
            took = time.perf_counter() - started
            if proc.returncode != 0 or not out.exists():
                failed.append(name)
                print(f"# {name} FAILED (exit {proc.returncode})", file=sys.stderr)
                continue
            for row in json.loads(out.read_text()):
                rows.append({"bench": name, **row})
            print(f"# {name} done in {took:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": rows}, indent=1))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
