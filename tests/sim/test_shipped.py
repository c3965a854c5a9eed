"""Every shipped scenario (the core's and the installed plugins') runs to the end with
the checker's blessing.  They are shortened for the test: smaller memory when the
scenario allows it, and the timeline squeezed into the first seconds, order kept."""

from __future__ import annotations

import pytest

from pagemig.plugins import get_plugin_host
from pagemig.sim.loop import run_scenario
from pagemig.sim.scenario import ScenarioError, load_scenario, shipped_scenarios

HOST = get_plugin_host()
NAMES = sorted(shipped_scenarios(HOST))


def shortened(name: str) -> list[str]:
    sc = load_scenario(name, HOST)
    sets = ["duration=8s", "sample.interval=2s"]
    for i, entry in enumerate(sc.timeline):
        if entry.at is not None:
            sets.append(f"timeline.{i}.at={min(entry.at, 4.0 + i * 0.5)}s")
        if entry.after is not None:
            sets.append(f"timeline.{i}.after=500ms")
    for w, spec in enumerate(sc.workloads):
        if spec.start > 0:
            sets.append(f"workloads.{w}.start=1s" if isinstance(sc.raw.get("workloads"), list)
                        else f"workloads.{spec.name}.start=1s")
    return sets


@pytest.mark.parametrize("name", NAMES)
def test_shipped_scenario_runs(name: str) -> None:
    sets = shortened(name)
    try:
        sc = load_scenario(name, HOST, overrides=[*sets, "machine.memory=256MiB"])
    except ScenarioError:  # the scenario's own sizes need its memory: keep it
        sc = load_scenario(name, HOST, overrides=sets)
    result = run_scenario(sc, HOST)
    assert result.error is None, result.error
    assert result.checker["ok"], result.checker["problems"]
    if not any(t.when for t in sc.timeline):  # squeezed into the run: every entry fired
        assert [e["command"] for e in result.timeline] == [t.line for t in sc.timeline]
    assert result.samples[-1]["time_s"] == 8.0


def test_core_scenarios_are_shipped() -> None:
    for name in ("frag-1g", "page-churn", "kernel-build-1g"):
        assert name in NAMES
