"""The plugin as pagemig loads it: the driver, QEMU's `balloon N` command, the seed-balloon
scenario as the default, and a shortened run of it, movable and unmovable: the host's
record checked at every sample, and the seed's claim checked as a property."""

from __future__ import annotations

from typing import Any

import pytest

from pagemig.plugins import PluginHost, get_plugin_host
from pagemig.sim.loop import run_scenario
from pagemig.sim.result import RunResult
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


# The seed's experiment shortened for the tests: half the guest, half of every compiler
# process's heap and of the hot headers, so the build fills the guest with page cache in
# about half the time; the balloon then leaves the guest half its memory, as `balloon
# 512` does in 1 GiB.  Everything else (the build's rate, its 2015 link, the probe, the
# order of the timeline) is the shipped scenario's.
SHORT = ["machine.memory=512MiB", "workloads.build.job_anon=24MiB", "workloads.build.headers=24MiB",
         "duration=160s", "workloads.build.duration=130s", "timeline.0.at=100s",
         'timeline.0.when="used > 256MiB"', 'timeline.0.command="balloon 256"', "timeline.1.at=150s"]
BALLOON_PAGES = (512 - 256) * 256  # 4 KiB pages the balloon holds once inflated
MOVABLE_MT = 1  # MIGRATE_MOVABLE


@pytest.fixture(scope="module")
def seed_runs(host: PluginHost) -> dict[bool, RunResult]:
    """The shortened seed-balloon with a movable balloon (True) and a pre-v3.8 one (False)."""
    return {movable: run_scenario(load_scenario(
        "seed-balloon", host, overrides=[*SHORT, f"drivers.balloon.movable={str(movable).lower()}"]), host)
        for movable in (True, False)}


@pytest.fixture(scope="module")
def seed_run(seed_runs: dict[bool, RunResult]) -> dict[str, Any]:
    return seed_runs[True].as_dict()


def final_compact(result: dict[str, Any]) -> dict[str, Any]:
    compact = [c for c in result["compactions"] if c["trigger"] == "compact_memory"]
    assert len(compact) == 1
    return compact[0]


def test_seed_balloon_inflates_to_its_target_and_the_host_agrees_at_every_sample(
        seed_run: dict[str, Any]) -> None:
    assert seed_run["checker"]["ok"], seed_run["checker"]["problems"]
    fired = [t for t in seed_run["timeline"] if t["command"] == "balloon 256"]
    assert len(fired) == 1
    ballooned = [s for s in seed_run["samples"] if s["time_s"] > fired[0]["time_s"] + 5]
    assert ballooned
    for s in seed_run["samples"]:
        d = s["drivers"]["balloon"]
        # stats() raises if the host's record differs from the list; the figures agree too
        assert d["host_matches_list"] == 1
        assert d["host_pages"] == d["balloon_pages"]
    for s in ballooned:
        assert s["drivers"]["balloon"]["balloon_pages"] == BALLOON_PAGES


def test_seed_balloon_compaction_migrates_balloon_and_other_pages(seed_run: dict[str, Any]) -> None:
    vm = seed_run["vmstat"]
    drv = seed_run["drivers"]["balloon"]
    assert vm["balloon_inflate"] == drv["balloon_inflate"] == BALLOON_PAGES
    assert drv["balloon_migrate"] == vm.get("balloon_migrate", 0) > 0
    assert vm["pgmigrate_success"] > vm["balloon_migrate"]  # page cache and anon move too
    # every balloon migration is one inflate and one deflate request of one PFN at the host
    assert drv["inflate_requests"] == BALLOON_PAGES // 256 + drv["balloon_migrate"]
    assert drv["deflate_requests"] == drv["balloon_migrate"]
    compact = final_compact(seed_run)
    assert compact["after"]["free_pages_order_ge_pageblock"] >= compact["before"]["free_pages_order_ge_pageblock"]


def test_the_run_reports_balloon_and_other_migrations_separately(seed_runs: dict[bool, RunResult]) -> None:
    """The result's `migration` splits pgmigrate_success into the balloon's pages (the
    balloon's own balloon_migrate counter, an independent count) and the rest."""
    for movable, run in seed_runs.items():
        doc = run.as_dict()
        mig, vm = doc["migration"], doc["vmstat"]
        assert mig["pages"] == vm["pgmigrate_success"]
        balloon = mig["driver_pages"].get("balloon", {"pages": 0, "mib": 0.0})
        assert balloon["pages"] == vm.get("balloon_migrate", 0)
        assert (balloon["pages"] > 0) is movable
        assert mig["other_pages"] == mig["pages"] - balloon["pages"]
        assert balloon["mib"] == pytest.approx(balloon["pages"] * 4096 / 2**20, abs=1e-3)


def test_the_balloon_inflates_into_a_guest_full_of_page_cache(seed_runs: dict[bool, RunResult]) -> None:
    """The seed's world: when `balloon` is typed the build's page cache has filled the
    guest (kswapd is already reclaiming it) and is its largest user, so the balloon's
    pages come from reclaimed page cache scattered over the pageblocks."""
    for result in seed_runs.values():
        doc = result.as_dict()
        at = next(t for t in doc["timeline"] if t["command"].startswith("balloon"))["time_s"]
        before = [s for s in doc["samples"] if s["time_s"] <= at][-1]
        vm = before["vmstat"]
        assert vm["pgsteal_kswapd"] > 0
        assert vm["nr_file_pages"] > max(vm.get("nr_anon_pages", 0), vm["nr_free_pages"])


def test_the_seeds_claim_movable_balloon_pages_migrate_and_leave_more_free_pageblocks(
        seed_runs: dict[bool, RunResult]) -> None:
    """The seed's claim as a property of the model: after the final `compact`, the movable
    balloon has had pages migrated and leaves at least as much memory free in whole
    pageblocks as the unmovable one.  The mechanism: unmovable balloon pages that fell
    back into MOVABLE pageblocks without claiming them (fewer than half the block free or
    alike) pin those blocks, which compaction then can never empty."""
    movable, unmovable = (seed_runs[k].as_dict() for k in (True, False))
    for doc in (movable, unmovable):
        assert doc["checker"]["ok"], doc["checker"]["problems"]
        assert doc["drivers"]["balloon"]["balloon_pages"] == BALLOON_PAGES
    assert movable["drivers"]["balloon"]["balloon_migrate"] > 0
    assert unmovable["drivers"]["balloon"]["balloon_migrate"] == 0
    free_pb = {k: final_compact(d)["after"]["free_pages_order_ge_pageblock"]
               for k, d in (("movable", movable), ("unmovable", unmovable))}
    assert free_pb["movable"] >= free_pb["unmovable"]
    end = seed_runs[False].maps["end"]
    pinned = (end.migratetype == MOVABLE_MT) & (end.driver > 0)
    assert pinned.any()  # unmovable balloon pages inside MOVABLE pageblocks
