"""Every shipped scenario computes what it computed when its result was recorded.

A refactoring must not change a single counter: each scenario runs at its default seed
and its result JSON is compared, key by key, with the one recorded in
tests/fixtures/results/ (``python tests/fixtures/results/record.py NAME`` records anew,
for a change that is meant to alter results; its commit says by how much).

``timings`` (wall-clock seconds), ``plugins`` (which modules registered, with versions)
and ``pagemig_version`` describe the program, not the simulation, and are left out.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path
from typing import Any

import pytest

from pagemig.plugins import get_plugin_host
from pagemig.sim.loop import run_scenario
from pagemig.sim.scenario import load_scenario, shipped_scenarios

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"
HOST = get_plugin_host()
NAMES = sorted(shipped_scenarios(HOST))
NOT_SIMULATION = ("timings", "plugins", "pagemig_version")


def run_default(name: str) -> dict[str, Any]:
    result = run_scenario(load_scenario(name, HOST), HOST)
    doc: dict[str, Any] = json.loads(result.to_json())
    return doc


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in NOT_SIMULATION}


def differences(want: Any, got: Any, path: str = "") -> list[str]:
    """Where two JSON documents part, as dotted paths (the first few are enough to look)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for key in sorted(set(want) | set(got)):
            if key not in got:
                out.append(f"{path}.{key}: missing now")
            elif key not in want:
                out.append(f"{path}.{key}: new key")
            else:
                out += differences(want[key], got[key], f"{path}.{key}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(want)} items recorded, {len(got)} now"]
        out = []
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            out += differences(w, g, f"{path}[{i}]")
        return out
    return [] if want == got else [f"{path}: recorded {want!r}, now {got!r}"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_shipped_scenario_result_is_unchanged(name: str) -> None:
    recorded = FIXTURES / f"{name}.json.xz"
    assert recorded.exists(), f"no recorded result for {name}: python tests/fixtures/results/record.py {name}"
    want = json.loads(lzma.decompress(recorded.read_bytes()))
    got = json.loads(json.dumps(comparable(run_default(name)), sort_keys=True))
    diff = differences(want, got)
    assert not diff, f"{name}: {len(diff)} differences, the first: " + "; ".join(diff[:8])


def test_differences_names_the_paths() -> None:
    want = {"a": [1, {"b": 2}], "c": 3}
    got = {"a": [1, {"b": 5}], "d": 3}
    assert differences(want, got) == [".a[1].b: recorded 2, now 5", ".c: missing now", ".d: new key"]
