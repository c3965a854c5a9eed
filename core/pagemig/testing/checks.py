"""What the conformance kit checks after each step, shared by the per-rule tests
(:mod:`pagemig.testing.conformance`) and the random operation sequences
(:mod:`pagemig.testing.stateful`): the driver's own account of its pages, the
checker's "no page lost", the core's caught faults turned into the broken rule, and
the outcome of a migration verified page by page.

Its own module so that both suites import it and neither imports the other.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import structlog.testing

from pagemig.driver import Driver
from pagemig.mm.invariants import check
from pagemig.mm.machine import Machine
from pagemig.mm.movable import MigrateMode
from pagemig.mm.pages import PageFlag
from pagemig.testing import vm
from pagemig.testing.rules import ConformanceError, rule_for_fault

ISOLATED = int(PageFlag.ISOLATED)


def expected(driver: Driver) -> tuple[np.ndarray, np.ndarray]:
    """The driver's own account of its pages, refusing the owners' "do not check me" answer."""
    got = driver.expected_contents()
    if got is None:
        raise ConformanceError("reports-contents", "expected_contents() returned None",
                               driver=driver.name, plugin=driver.plugin)
    pfns, tokens = got
    return np.asarray(pfns, dtype=np.int64), np.asarray(tokens, dtype=np.uint64)


def listed(driver: Driver) -> dict[int, int]:
    """pfn -> content the driver believes the page holds."""
    pfns, tokens = expected(driver)
    return dict(zip(pfns.tolist(), tokens.tolist(), strict=True))


def assert_no_page_lost(machine: Machine, driver: Driver, *, allow_isolated: bool = False, when: str = "") -> None:
    """The checker, its findings turned into the kit's error."""
    report = check(machine, allow_isolated=allow_isolated)
    if not report.ok:
        raise ConformanceError("no-page-lost", (f"{when}: " if when else "") + "; ".join(report.problems),
                               driver=driver.name, plugin=driver.plugin)


@contextlib.contextmanager
def guard(machine: Machine, driver: Driver, what: str) -> Iterator[None]:
    """Turn what the core's protocol wrappers caught during the block into the broken rule.

    The core contains a misbehaving driver (the page is put back or quarantined and
    the fault counted and logged); the kit's job is to fail loudly instead, naming
    the callback, the pfn and the rule, from the core's own log event.
    """
    before = Counter(machine.movable.faults)
    pending: BaseException | None = None
    with structlog.testing.capture_logs() as logs:
        try:
            yield
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the faults are read
            pending = exc
        machine.movable.audit_references()  # "keeps referencing src", as the core finds it
    machine.movable.failure = None  # the kit reports faults itself, whatever the policy
    new = machine.movable.faults - before
    if new:
        (driver_name, callback, fault), n = next(iter(new.items()))
        event = next((e for e in logs if e.get("event") == "driver_misbehaved"
                      and e.get("callback") == callback and e.get("fault") == fault), {})
        # the log is rate-limited per kind: past the first few, the registry remembers the latest
        last_pfn, last_detail = machine.movable.last_fault.get((driver_name, callback, fault), (None, ""))
        pfn = event.get("pfn", last_pfn)
        where = f" on pfn {pfn:#x}" if isinstance(pfn, int) else ""
        detail = event.get("detail") or last_detail or fault
        others = sum(new.values()) - 1
        seen = (f"{callback}(){where} during {what}: {detail}"
                + (f" ({n} times)" if n > 1 else "") + (f"; and {others} other fault(s)" if others else ""))
        raise ConformanceError(rule_for_fault(callback, fault), seen,
                               driver=driver.name, plugin=driver.plugin) from pending
    if pending is not None:
        raise pending


def verify_outcomes(machine: Machine, driver: Driver, outcomes: list[vm.Outcome],
                    tokens_before: Mapping[int, int], listed_before: Mapping[int, int]) -> None:
    """After a migration: migrated pages moved with their content and the driver's
    references; failed pages are still the driver's, unchanged and no longer isolated."""
    now = listed(driver)
    token = machine.pages.token
    owner = machine.pages.owner
    dsts = {o.dst for o in outcomes if o.migrated}
    for o in outcomes:
        src = o.src
        if o.orphan:
            continue
        if o.migrated:
            dst = o.dst
            keeps_src = src in now and src not in dsts
            if keeps_src or dst not in now:
                what = " and ".join(x for x in (f"still lists src {src:#x}" if keeps_src else "",
                                                f"does not list dst {dst:#x}" if dst not in now else "") if x)
                raise ConformanceError("migrate-moves-references",
                                       f"migrate_page moved pfn {src:#x} to {dst:#x} and returned success, "
                                       f"but expected_contents() {what}", driver=driver.name, plugin=driver.plugin)
            if int(token[dst]) != tokens_before[src]:
                raise ConformanceError("migrate-copies-content",
                                       f"pfn {src:#x} held {tokens_before[src]:#x}; after migrating it to "
                                       f"{dst:#x} the new page holds {int(token[dst]):#x}",
                                       driver=driver.name, plugin=driver.plugin)
            if now[dst] != listed_before.get(src, tokens_before[src]):
                raise ConformanceError("migrate-copies-content",
                                       f"the driver recorded content {listed_before.get(src, 0):#x} for pfn "
                                       f"{src:#x} but {now[dst]:#x} for its new page {dst:#x}",
                                       driver=driver.name, plugin=driver.plugin)
        else:
            if machine.pages._flags[src] & ISOLATED:
                raise ConformanceError("no-page-lost", f"pfn {src:#x} is still isolated after its migration "
                                       f"failed with {o.rc}", driver=driver.name, plugin=driver.plugin)
            if owner[src] != driver.owner_id or src not in now:
                raise ConformanceError("eagain-leaves-src",
                                       f"migrate_page answered {o.rc} for pfn {src:#x}, after which the page "
                                       f"is {'no longer listed by the driver' if src not in now else 'not its'}",
                                       driver=driver.name, plugin=driver.plugin)
            if int(token[src]) != tokens_before[src] or now[src] != listed_before.get(src, now[src]):
                raise ConformanceError("eagain-leaves-src",
                                       f"migrate_page answered {o.rc} for pfn {src:#x} but changed its content "
                                       f"({tokens_before[src]:#x} -> {int(token[src]):#x})",
                                       driver=driver.name, plugin=driver.plugin)


def migrate_and_verify(machine: Machine, driver: Driver, pfns: list[int], mode: MigrateMode, *,
                       what: str, **kw: Any) -> list[vm.Outcome]:
    """Migrate isolated pages under the guard, then verify every outcome."""
    tokens_before = {p: int(machine.pages.token[p]) for p in pfns}
    listed_before = listed(driver)
    with guard(machine, driver, what):
        outcomes = vm.migrate(machine, pfns, mode, **kw)
    verify_outcomes(machine, driver, outcomes, tokens_before, listed_before)
    return outcomes


__all__ = ["assert_no_page_lost", "expected", "guard", "listed", "migrate_and_verify", "verify_outcomes"]
