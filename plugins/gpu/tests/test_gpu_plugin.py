"""The plugin as pagemig loads it: the GPU driver, `gpu_compact`, and a shortened gpu-arm-1g run."""

from __future__ import annotations

from typing import Any

import pytest

from pagemig.plugins import PluginHost, get_plugin_host
from pagemig.sim.loop import run_scenario
from pagemig.sim.scenario import load_scenario, shipped_scenarios


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return get_plugin_host()


def test_registers_driver_command_and_scenario(host: PluginHost) -> None:
    assert "gpu" in host.drivers()
    assert host.commands()["gpu_compact"].driver == "gpu"
    assert shipped_scenarios(host)["gpu-arm-1g"].plugin == "gpu"


@pytest.fixture(scope="module")
def short_run(host: PluginHost) -> dict[str, Any]:
    scenario = load_scenario("gpu-arm-1g", host, overrides=[
        "duration=30s", "timeline.0.at=20s", "timeline.1.at=22s", "timeline.2.at=25s",
    ])
    return run_scenario(scenario, host).as_dict()


def test_the_arm_device_runs_with_gpu_and_zram(short_run: dict[str, Any]) -> None:
    assert short_run["checker"]["ok"], short_run["checker"]["problems"]
    assert short_run["machine"]["pageblock_order"] == 10
    g = short_run["drivers"]["gpu"]
    managed = short_run["machine"]["managed_pages"]
    assert 0.3 * managed <= g["gpu_pages"] <= 0.35 * managed
    assert g["jobs_submitted"] > 0 and g["pinned_pages"] > 0
    assert short_run["drivers"]["zram"]["num_writes"] > 0
    assert sorted(p["order"] for p in short_run["probes"]) == [3, 8]  # fork, and the camera's 1 MiB tries
    triggers = [c["trigger"] for c in short_run["compactions"]]
    assert {"zram_compact", "gpu_compact", "compact_memory"} <= set(triggers)
    moved = next(t for t in short_run["timeline"] if t["command"] == "gpu_compact")["result"]["pages_moved"]
    assert moved == g["gpu_compact_moved"]
