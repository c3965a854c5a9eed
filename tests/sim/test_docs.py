"""The scenario reference and the result schema document every key the code accepts
or writes (so a key added without its documentation fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemig.sim import scenario
from pagemig.sim.builtin import builtin_commands
from pagemig.workloads import alloc_probe, app_churn, frag, kernel_build, page_churn

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def scenarios_md() -> str:
    return (DOCS / "scenarios.md").read_text(encoding="utf-8")


def test_every_scenario_key_is_documented(scenarios_md: str) -> None:
    tables = [scenario.TOP_FIELDS, scenario.MACHINE_FIELDS, scenario.TIMELINE_FIELDS, scenario.SAMPLE_FIELDS]
    keys = {k for t in tables for k in t} | set(scenario.WORKLOAD_COMMON)
    missing = sorted(k for k in keys if f"`{k}`" not in scenarios_md)
    assert not missing


@pytest.mark.parametrize("mod", [kernel_build, app_churn, frag, page_churn, alloc_probe])
def test_every_workload_key_is_documented(scenarios_md: str, mod) -> None:  # type: ignore[no-untyped-def]
    name = mod.__name__.rsplit(".", 1)[1]
    section = scenarios_md.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
    for key, field in mod.FIELDS.items():
        assert f"| `{key}` | " in section, key
        if field.default_text not in ("", "none"):
            assert f"`{field.default_text}`" in section, (key, field.default_text)


def test_every_command_and_metric_is_documented(scenarios_md: str) -> None:
    for info in builtin_commands():
        assert f"`{info.usage.split()[0]}" in scenarios_md
    for metric in scenario.CONDITION_METRICS:
        assert f"`{metric}`" in scenarios_md


def test_every_result_key_is_documented(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    from pagemig.sim.loop import run_scenario

    text = small_toml + '[workloads.p]\ntype = "alloc_probe"\n[[timeline]]\nat = "2s"\ncommand = "compact"\n'
    doc = run_scenario(scenario.parse_scenario(text, host, label="t", name="t"), host).as_dict()
    results_md = (DOCS / "results.md").read_text(encoding="utf-8")
    keys = set(doc) | set(doc["compactions"][0]) | set(doc["compactions"][0]["before"]) | set(doc["samples"][0])
    keys |= set(doc["probes"][0]) | set(doc["checker"]) | set(doc["timings"]) | set(doc["machine"])
    keys |= set(doc["scenario"])
    missing = sorted(k for k in keys if f"`{k}`" not in results_md)
    assert not missing
