"""A driver that misbehaves costs a migration, never a page: checked through the core's own
paths (full compaction and a whole run), not the kit's.

For each misbehaviour: one structured log event naming the plugin, the callback and
the pfn; the page put back, or quarantined when that is all that is left; nothing
left isolated or locked; the fault counted by kind; under ``on_driver_error =
"isolate"`` everything goes on, under ``"fail"`` the operation stops with a message
that says who broke which rule, after every page was put back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pagemig_kit_broken_drivers as broken_drivers  # loaded by conftest.py
import pytest
import structlog.testing

from pagemig import hookimpl
from pagemig.driver import DriverInfo
from pagemig.mm.compaction import compact_memory
from pagemig.mm.invariants import check
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.movable import FAULT_LOG_BURST, DriverError
from pagemig.testing.conformance import scatter_among_filler

# broken driver -> (callback, fault kind as counted)
KINDS: dict[str, tuple[str, str]] = {
    "RaisesInIsolate": ("isolate_page", "raised"),
    "RaisesInMigrate": ("migrate_page", "raised"),
    "FailsThenPutbackRaises": ("putback_page", "putback_failed"),
    "IsolateReturnsString": ("isolate_page", "bad_return"),
    "MigrateReturnsString": ("migrate_page", "bad_return"),
    "MigrateReturnsUnknownErrno": ("migrate_page", "bad_return"),
    "MigrateReturnsPositiveEagain": ("migrate_page", "bad_return"),
    "SuccessWithoutTakingDst": ("migrate_page", "false_success"),
    "KeepsDstOnFailure": ("migrate_page", "kept_dst_on_failure"),
    "KeepsReferencingSrc": ("migrate_page", "kept_src"),
}
# whose own records end up wrong (the checker then says so, naming the driver); the
# others leave every page where the driver believes it is
CORRUPTS_ITSELF = {"SuccessWithoutTakingDst", "KeepsReferencingSrc"}
PLUGIN = "broken-plugin"
PUTBACK_CALLS = {"n": 0}  # putback_page calls of FailsThenPutbackForgets, counted by the driver itself


def driver_class(name: str) -> type[Any]:
    if name == "FailsThenPutbackRaises":
        base = broken_drivers.build("RaisesInPutback")

        class FailsThenPutbackRaises(base):  # type: ignore[misc, valid-type]
            def migrate_page(self, dst: Any, src: Any, mode: Any) -> int:
                return -16  # -EBUSY: compaction puts the page back, and putback raises

        return FailsThenPutbackRaises
    if name == "FailsThenPutbackForgets":
        base = broken_drivers.build("PutbackForgetsToRelink")

        class FailsThenPutbackForgets(base):  # type: ignore[misc, valid-type]
            def migrate_page(self, dst: Any, src: Any, mode: Any) -> int:
                return -16  # -EBUSY: compaction puts the page back, and putback forgets it

            def putback_page(self, page: Any) -> None:
                PUTBACK_CALLS["n"] += 1
                super().putback_page(page)

        return FailsThenPutbackForgets
    return broken_drivers.build(name)


def make(name: str, reference_driver_dir: Path, policy: str) -> tuple[Machine, Any]:
    machine = Machine(MachineConfig.x86_64_guest(128 * MiB))
    machine.movable.on_driver_error = policy
    driver = driver_class(name)(machine, {"movable": True, "_plugin": PLUGIN})
    scatter_among_filler(machine, driver, 256)
    assert check(machine).ok
    return machine, driver


@pytest.mark.parametrize("name", sorted(KINDS))
def test_under_isolate_compaction_goes_on_and_every_fault_is_one_event(name: str, reference_driver_dir: Path) -> None:
    callback, kind = KINDS[name]
    machine, driver = make(name, reference_driver_dir, "isolate")
    with structlog.testing.capture_logs() as logs:
        compact_memory(machine)  # no exception: the run would go on
    events = [e for e in logs if e["event"] == "driver_misbehaved"]
    counted = machine.movable.faults_by_kind()
    assert counted.get(kind, 0) >= 1, counted
    mine = [e for e in events if e["fault"] == kind]
    assert mine
    for e in mine:
        assert e["plugin"] == PLUGIN and e["driver"] == "kitref" and e["callback"] == callback
        assert isinstance(e["pfn"], int) and 0 <= e["pfn"] < machine.nr_pages
        assert e["log_level"] == "warning"
    if kind != "kept_src":  # one event per fault up to the burst, the rest only counted
        # (kept_src: one per driver per audit, with the count)
        assert len(mine) == min(counted[kind], FAULT_LOG_BURST)
    report = check(machine)
    assert report.pages_isolated == 0
    assert not any("locked" in p or "isolated" in p for p in report.problems)
    assert not any("lost" in p or "free block" in p or "no registered owner" in p for p in report.problems)
    quarantine = machine.movable.quarantine
    for e in mine:
        pfn = e["pfn"]
        if kind in ("raised", "putback_failed") and callback != "migrate_page":
            assert pfn in quarantine  # the driver could not take it back: held apart, still the driver's
            assert machine.pages.owner[pfn] == driver.owner_id
        elif callback == "migrate_page" and kind in ("raised", "bad_return", "kept_dst_on_failure"):
            # migration failed: src went back to the driver, on its list again
            assert pfn in driver.idle or pfn in quarantine
    if kind == "kept_dst_on_failure":
        assert quarantine  # the dst the driver grabbed is held apart, not lost
    if name in CORRUPTS_ITSELF:
        assert not report.ok and all("kitref" in p for p in report.problems)
    else:
        assert report.ok, report.problems


@pytest.mark.parametrize("name", ["RaisesInIsolate", "MigrateReturnsString", "SuccessWithoutTakingDst",
                                  "FailsThenPutbackRaises", "KeepsReferencingSrc"])
def test_under_fail_compaction_stops_with_a_clear_message_after_putting_everything_back(
        name: str, reference_driver_dir: Path) -> None:
    callback, kind = KINDS[name]
    machine, _ = make(name, reference_driver_dir, "fail")
    with pytest.raises(DriverError) as err:
        compact_memory(machine)
    msg = str(err.value)
    assert f"driver 'kitref' (plugin {PLUGIN!r})" in msg
    assert f"in {callback}() on pfn 0x" in msg and kind in msg
    assert 'on_driver_error = "isolate"' in msg
    report = check(machine)
    assert report.pages_isolated == 0
    assert not any("locked" in p for p in report.problems)


# ------------------------------------------------------------------ a whole run
SCENARIO = """
description = "a broken driver in a run"
on_driver_error = "{policy}"
duration = "12s"
step = "1s"

[machine]
memory = "128MiB"

[drivers.kitref]
movable = true

[[timeline]]
at = "1s"
command = "kitref 12000"

[[timeline]]
at = "2s"
command = "kitref 4000"

[[timeline]]
at = "4s"
command = "compact"

[[timeline]]
at = "6s"
command = "kitref 6000"
"""


def broken_plugin(name: str) -> object:
    from pagemig_kitref import plugin as ref

    factory = driver_class(name)

    class Plugin:
        @hookimpl
        def pagemig_register_drivers(self, register: Callable[[Any], None]) -> None:
            register(DriverInfo(name="kitref", factory=factory, validate=ref.validate_options))

        @hookimpl
        def pagemig_register_commands(self, register: Callable[[Any], None]) -> None:
            ref.pagemig_register_commands(register)

    return Plugin()


def run(name: str, policy: str) -> Any:
    from pagemig.plugins import get_plugin_host
    from pagemig.sim.loop import run_scenario
    from pagemig.sim.scenario import parse_scenario

    host = get_plugin_host(autoload=False, extra_plugins=[(PLUGIN, broken_plugin(name))])
    scenario = parse_scenario(SCENARIO.format(policy=policy), host, label="broken.toml", name="broken")
    return run_scenario(scenario, host)


def test_a_run_goes_on_and_its_result_counts_each_fault(reference_driver_dir: Path) -> None:
    result = run("MigrateReturnsString", "isolate")
    assert result.error is None
    assert set(result.driver_faults) == {"kitref/migrate_page/bad_return"}
    assert result.driver_faults["kitref/migrate_page/bad_return"] > 0
    assert result.checker["ok"], result.checker
    assert [t["command"] for t in result.timeline] == ["kitref 12000", "kitref 4000", "compact", "kitref 6000"]


def test_a_run_under_fail_stops_at_the_first_fault_with_the_message(reference_driver_dir: Path) -> None:
    result = run("RaisesInIsolate", "fail")
    assert result.error is not None
    assert "isolate_page() on pfn 0x" in result.error and "plugin 'broken-plugin'" in result.error
    assert "kitref 6000" not in [t["command"] for t in result.timeline]  # it stopped at the compaction
    assert result.checker["pages_isolated"] == 0
    assert result.checker["ok"], result.checker


def test_a_run_counts_each_putback_that_leaves_the_page_off_the_drivers_lists(reference_driver_dir: Path) -> None:
    """putback_page that does nothing: each page it was handed stays off the driver's list
    (the driver's own is_isolated says so), and the run counts every one as putback/lost."""
    PUTBACK_CALLS["n"] = 0
    result = run("FailsThenPutbackForgets", "isolate")
    putbacks = PUTBACK_CALLS["n"]
    assert putbacks > 0
    assert result.error is None
    assert result.driver_faults == {"kitref/putback/lost": putbacks}
    assert result.checker["ok"], result.checker  # lost to the driver, not to memory


def test_a_putback_that_relinks_is_not_counted(reference_driver_dir: Path) -> None:
    result = run("MigrateReturnsPositiveEagain", "isolate")  # fails, then the reference putback relinks
    assert result.driver_faults and not any(k.endswith("/lost") for k in result.driver_faults)
