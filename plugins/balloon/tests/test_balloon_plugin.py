"""The plugin as pagemig loads it: the driver, QEMU's `balloon N` command, the seed-balloon
scenario as the default, and one run of it with the host's record checked at every sample."""

from __future__ import annotations

from typing import Any

import pytest

from pagemig.plugins import PluginHost, get_plugin_host
from pagemig.sim.loop import run_scenario
from pagemig.sim.scenario import ScenarioError, default_scenario_name, load_scenario, parse_scenario, shipped_scenarios
from pagemig_balloon.plugin import balloon_validate


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return get_plugin_host()


def test_registers_driver_command_and_scenario(host: PluginHost) -> None:
    assert "balloon" in host.drivers()
    cmd = host.commands()["balloon"]
    assert cmd.driver == "balloon" and cmd.usage == "balloon MIB"
    shipped = shipped_scenarios(host)
    assert shipped["seed-balloon"].plugin == "balloon"
    assert default_scenario_name(shipped) == "seed-balloon"


@pytest.mark.parametrize(("args", "message"), [
    ((), "one argument"),
    (("512", "1024"), "one argument"),
    (("512MiB",), "whole number of MiB"),
    (("0",), "positive"),
    (("-1",), "positive"),
])
def test_balloon_command_refuses_bad_arguments(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        balloon_validate(args)


def test_a_timeline_balloon_without_the_driver_is_refused(host: PluginHost) -> None:
    text = """
duration = "10s"
[machine]
memory = "1GiB"
[[timeline]]
at = "1s"
command = "balloon 512"
"""
    with pytest.raises(ScenarioError, match=r"needs the driver 'balloon'"):
        parse_scenario(text, host)


def test_bad_driver_options_name_the_key(host: PluginHost) -> None:
    text = """
duration = "10s"
[machine]
memory = "1GiB"
[drivers.balloon]
inflate_rate = "fast"
"""
    with pytest.raises(ScenarioError, match=r"drivers\.balloon\.inflate_rate"):
        parse_scenario(text, host)


@pytest.fixture(scope="module")
def seed_run(host: PluginHost) -> dict[str, Any]:
    scenario = load_scenario("seed-balloon", host)
    return run_scenario(scenario, host).as_dict()


def test_seed_balloon_inflates_to_512_mib_and_the_host_agrees_at_every_sample(seed_run: dict[str, Any]) -> None:
    assert seed_run["checker"]["ok"], seed_run["checker"]["problems"]
    fired = [t for t in seed_run["timeline"] if t["command"] == "balloon 512"]
    assert len(fired) == 1
    ballooned = [s for s in seed_run["samples"] if s["time_s"] > fired[0]["time_s"] + 5]
    assert ballooned
    for s in seed_run["samples"]:
        d = s["drivers"]["balloon"]
        # stats() raises if the host's record differs from the list; the figures agree too
        assert d["host_matches_list"] == 1
        assert d["host_pages"] == d["balloon_pages"]
    for s in ballooned:
        assert s["drivers"]["balloon"]["balloon_pages"] == 131072  # 1 GiB - 512 MiB, in 4 KiB pages


def test_seed_balloon_compaction_migrates_balloon_and_other_pages(seed_run: dict[str, Any]) -> None:
    vm = seed_run["vmstat"]
    drv = seed_run["drivers"]["balloon"]
    assert vm["balloon_inflate"] == drv["balloon_inflate"] == 131072
    assert drv["balloon_migrate"] == vm.get("balloon_migrate", 0) > 0
    assert vm["pgmigrate_success"] > vm["balloon_migrate"]  # page cache and anon move too
    # every balloon migration is one inflate and one deflate request of one PFN at the host
    assert drv["inflate_requests"] == 131072 // 256 + drv["balloon_migrate"]
    assert drv["deflate_requests"] == drv["balloon_migrate"]
    compact = [c for c in seed_run["compactions"] if c["trigger"] == "compact_memory"]
    assert len(compact) == 1
    assert compact[0]["after"]["free_pages_order_ge_pageblock"] >= compact[0]["before"]["free_pages_order_ge_pageblock"]
