"""The plugin as pagemig loads it: the zram driver, `zram_compact`, and a shortened zram-1g run."""

from __future__ import annotations

from typing import Any

import pytest

from pagemig.plugins import PluginHost, get_plugin_host
from pagemig.sim.loop import run_scenario
from pagemig.sim.scenario import load_scenario, shipped_scenarios
from pagemig_zram.plugin import zram_compact_validate


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return get_plugin_host()


def test_registers_driver_command_and_scenario(host: PluginHost) -> None:
    assert "zram" in host.drivers()
    assert host.commands()["zram_compact"].driver == "zram"
    assert shipped_scenarios(host)["zram-1g"].plugin == "zram"
    zram_compact_validate(())
    with pytest.raises(ValueError, match="no arguments"):
        zram_compact_validate(("1",))


@pytest.fixture(scope="module")
def short_run(host: PluginHost) -> dict[str, Any]:
    # 40 s instead of 3 min, and zsmalloc's own compaction just before the kernel's
    scenario = load_scenario("zram-1g", host, overrides=[
        "duration=40s", "workloads.apps.apps=15",
        'timeline=[{at = "30s", command = "zram_compact"}, {at = "32s", command = "compact"}]',
    ])
    return run_scenario(scenario, host).as_dict()


def test_zram_swaps_and_everything_comes_back_consistent(short_run: dict[str, Any]) -> None:
    assert short_run["checker"]["ok"], short_run["checker"]["problems"]
    z = short_run["drivers"]["zram"]
    assert short_run["vmstat"]["pswpout"] == z["num_writes"] > 0
    assert z["failed_writes"] == 0
    assert z["mem_used_total"] == z["pages_allocated"] * 4096
    assert z["orig_data_size"] / max(1, z["compr_data_size"]) > 1.0
    triggers = [c["trigger"] for c in short_run["compactions"]]
    assert "zram_compact" in triggers and "compact_memory" in triggers
    zc = next(t for t in short_run["timeline"] if t["command"] == "zram_compact")
    assert zc["result"]["pages_compacted"] == z["pages_compacted"]
