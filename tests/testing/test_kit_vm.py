"""The kit's own machinery, against hand-worked expectations: its VM side (attempts, injected
answers, -ENOMEM, orphans, the watch on migrate_page) and its pytest fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pagemig.mm.invariants import check
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.movable import EAGAIN, EBUSY, ENOMEM, MigrateMode, is_orphan
from pagemig.testing import vm


@pytest.fixture
def setup(reference_driver_dir: Path) -> tuple[Machine, Any, list[int]]:
    """A machine, the reference driver holding 8 pages, all of them isolated."""
    from pagemig_kitref.driver import KitrefDriver

    machine = Machine(MachineConfig.x86_64_guest(128 * MiB))
    driver = KitrefDriver(machine, {"movable": True})
    driver.populate(8)
    iso = vm.isolate(machine, sorted(driver.idle), MigrateMode.SYNC)
    assert len(iso) == 8 and not driver.idle
    return machine, driver, iso


def test_eagain_twice_then_the_driver_is_called_on_the_third_attempt(setup: tuple[Machine, Any, list[int]]) -> None:
    machine, driver, iso = setup
    outs = vm.migrate(machine, iso, inject=lambda src, attempt: -EAGAIN if attempt < 2 else None)
    assert all(o.migrated and o.passes == 3 and o.calls == 1 for o in outs)
    assert driver.counters["kitref_migrate"] == 8
    assert sorted(driver.expected_contents()[0].tolist()) == sorted(o.dst for o in outs)
    assert check(machine).ok


def test_eagain_on_every_pass_gives_up_after_ten_and_puts_back(setup: tuple[Machine, Any, list[int]]) -> None:
    machine, driver, iso = setup
    outs = vm.migrate(machine, iso, inject=lambda src, attempt: -EAGAIN)
    assert all(o.rc == -EAGAIN and o.passes == 10 and o.calls == 0 and not o.migrated for o in outs)
    assert sorted(driver.idle) == iso  # all back on the driver's list
    assert check(machine).ok


def test_a_permanent_error_fails_at_once_and_puts_back(setup: tuple[Machine, Any, list[int]]) -> None:
    machine, driver, iso = setup
    outs = vm.migrate(machine, iso, inject=lambda src, attempt: -EBUSY if src == iso[0] else None)
    first = next(o for o in outs if o.src == iso[0])
    assert first.rc == -EBUSY and first.passes == 1 and not first.migrated
    assert iso[0] in driver.idle
    assert sum(o.migrated for o in outs) == 7
    assert check(machine).ok


def test_enomem_stops_everything_and_the_untried_fail_with_it(setup: tuple[Machine, Any, list[int]]) -> None:
    machine, driver, iso = setup
    outs = {o.src: o for o in vm.migrate(machine, iso, inject=lambda src, attempt: -ENOMEM if src == iso[3] else None)}
    assert [outs[p].migrated for p in iso] == [True, True, True, False, False, False, False, False]
    assert all(outs[p].rc == -ENOMEM for p in iso[3:])
    assert all(outs[p].calls == 0 for p in iso[3:])
    assert set(iso[3:]) <= set(driver.idle)
    assert check(machine).ok


def test_a_page_freed_while_isolated_is_released_without_a_driver_call(setup: tuple[Machine, Any, list[int]]) -> None:
    machine, driver, iso = setup
    assert driver.release_pfn(iso[0])
    assert is_orphan(machine, iso[0])
    outs = {o.src: o for o in vm.migrate(machine, iso)}
    assert outs[iso[0]].orphan and outs[iso[0]].calls == 0 and not outs[iso[0]].migrated
    assert sum(o.migrated for o in outs.values()) == 7
    assert check(machine).ok


def test_an_injected_success_is_refused(setup: tuple[Machine, Any, list[int]]) -> None:
    machine, driver, iso = setup
    with pytest.raises(ValueError, match="must be an error"):
        vm.migrate(machine, iso, inject=lambda src, attempt: 0)
    assert not machine.movable.faults  # the kit's mistake is not counted as the driver's
    assert sorted(driver.idle) == iso and check(machine).ok


def test_an_error_in_the_kits_own_callback_is_the_kits_not_the_drivers(setup: tuple[Machine, Any, list[int]]) -> None:
    machine, driver, iso = setup

    def before_retry(src: int, attempt: int) -> None:
        raise AssertionError("the kit's check failed")

    with pytest.raises(AssertionError, match="the kit's check failed"):
        vm.migrate(machine, iso, inject=lambda src, attempt: -EAGAIN if attempt == 0 else None,
                   before_retry=before_retry)
    assert not machine.movable.faults
    assert sorted(driver.idle) == iso and check(machine).ok  # everything put back first


def test_the_watch_leaves_the_driver_as_it_found_it(setup: tuple[Machine, Any, list[int]]) -> None:
    machine, driver, iso = setup
    vm.migrate(machine, iso[:2], inject=lambda src, attempt: -EAGAIN if attempt == 0 else None)
    assert "migrate_page" not in vars(driver)  # no wrapper left behind on the instance
    assert type(driver).migrate_page is not None


def test_observe_sees_every_answer_in_order(setup: tuple[Machine, Any, list[int]]) -> None:
    machine, _, iso = setup
    seen: list[tuple[int, int, int]] = []
    vm.migrate(machine, iso[:1], inject=lambda src, attempt: -EAGAIN if attempt == 0 else None,
               observe=lambda src, attempt, rc: seen.append((src, attempt, rc)))
    assert seen == [(iso[0], 0, -EAGAIN), (iso[0], 1, 0)]


def test_the_pytest_fixtures(pytester: pytest.Pytester, reference_driver_dir: Path) -> None:
    pytester.syspathinsert(reference_driver_dir)
    pytester.makepyfile("""
        import pagemig_kitref.plugin
        from pagemig.mm.machine import MachineConfig, MiB
        import pytest

        @pytest.fixture
        def pagemig_machine_config():
            return MachineConfig.arm32_device(64 * MiB)

        def test_machine(pagemig_machine, pagemig_check):
            from pagemig.mm.slowpath import FullSlowPath

            assert isinstance(pagemig_machine.slowpath, FullSlowPath)  # booted, not the bare allocator
            assert pagemig_machine.nr_pages == 64 * MiB // 4096
            assert pagemig_machine.pageblock_order == 10
            assert pagemig_check(pagemig_machine).ok

        def test_host(pagemig_host):
            host = pagemig_host(pagemig_kitref.plugin)
            assert "kitref" in host.drivers()
            assert "pagemig_kitref.plugin" in host.records

        def test_check_fails_loudly(pagemig_machine, pagemig_check):
            pagemig_machine.pages.kind[5000] = 1  # an anon page nobody owns
            with pytest.raises(AssertionError, match="no registered owner"):
                pagemig_check(pagemig_machine)
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert any("conformance kit" in line for line in result.outlines)  # the report header
