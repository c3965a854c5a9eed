"""Random operation sequences against one driver (a hypothesis state machine).

The per-rule tests walk one path each; real drivers break where paths cross:
a page released while another is isolated, a populate that reuses a pfn that was
just released, a putback after the driver freed the page, a fault on the second
pass.  Hypothesis picks the order, the pages and the injected faults, and shrinks a
failure to the shortest sequence that still fails.

Injected faults answer *for* the driver at the VM's level (the driver is not
called): isolate is simply not attempted, migrate answers -EAGAIN, -EBUSY or
-ENOMEM on the first passes.  They stand for the conditions a real driver answers
that way (a busy page, an object in use, memory short), so the driver under test
must survive them; they are never counted as its fault.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from pagemig.driver import Driver
from pagemig.mm.machine import Machine
from pagemig.mm.movable import EAGAIN, EBUSY, ENOMEM, MigrateMode
from pagemig.mm.pages import PageFlag
from pagemig.testing import vm
from pagemig.testing.checks import assert_no_page_lost, guard, migrate_and_verify
from pagemig.testing.exerciser import call_count

ISOLATED = int(PageFlag.ISOLATED)
PICKS = st.lists(st.integers(min_value=0, max_value=1 << 16), min_size=1, max_size=12)
FAULTS = st.sampled_from([None, -EAGAIN, -EBUSY, -ENOMEM])


class RandomOperationsSuite(Protocol):
    """What the state machine needs of the suite that runs it
    (:class:`~pagemig.testing.conformance.DriverConformance` is one)."""

    @property
    def max_examples(self) -> int: ...

    @property
    def step_count(self) -> int: ...

    @property
    def hypothesis_settings(self) -> Mapping[str, Any]: ...

    def new_machine(self) -> Machine: ...

    def new_driver(self, machine: Machine) -> Driver: ...


def run_random_operations(suite: RandomOperationsSuite) -> None:
    """Run the state machine for ``suite``'s driver with the suite's example budget."""
    class DriverOperations(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.machine = suite.new_machine()
            self.driver = suite.new_driver(self.machine)
            self.isolated: list[int] = []  # pages this "VM" holds isolated
            self.in_step = False  # set while a step runs: still set in teardown if it raised

        @contextlib.contextmanager
        def step(self) -> Iterator[None]:
            self.in_step = True
            yield
            self.in_step = False

        def _live_isolated(self) -> list[int]:
            flags = self.machine.pages._flags
            self.isolated = [p for p in self.isolated if flags[p] & ISOLATED]
            return self.isolated

        @staticmethod
        def _choose(pool: list[int], picks: list[int]) -> list[int]:
            if not pool:
                return []
            return sorted({pool[i % len(pool)] for i in picks})

        @initialize(n=st.integers(min_value=8, max_value=64))
        def start_with_pages(self, n: int) -> None:
            with self.step(), guard(self.machine, self.driver, f"populate({n})"):
                call_count(self.driver, "populate", n)

        @rule(n=st.integers(min_value=1, max_value=48))
        def populate(self, n: int) -> None:
            with self.step(), guard(self.machine, self.driver, f"populate({n})"):
                call_count(self.driver, "populate", n)

        @rule(n=st.integers(min_value=1, max_value=48))
        def release(self, n: int) -> None:
            with self.step(), guard(self.machine, self.driver, f"release({n})"):
                call_count(self.driver, "release", n)

        @rule(picks=PICKS, mode=st.sampled_from(MigrateMode))
        def isolate(self, picks: list[int], mode: MigrateMode) -> None:
            idle = vm.movable_idle_pages(self.machine, self.driver.owner_id).tolist()
            chosen = self._choose(idle, picks)
            with self.step(), guard(self.machine, self.driver, "isolate_page"):
                self.isolated.extend(vm.isolate(self.machine, chosen, mode))

        @rule(picks=PICKS, mode=st.sampled_from(MigrateMode), fault=FAULTS,
              fault_passes=st.integers(min_value=0, max_value=3))
        def migrate(self, picks: list[int], mode: MigrateMode, fault: int | None, fault_passes: int) -> None:
            self._migrate(self._choose(self._live_isolated(), picks), mode, fault, fault_passes)

        @rule(picks=PICKS, mode=st.sampled_from(MigrateMode), fault=FAULTS,
              fault_passes=st.integers(min_value=0, max_value=3))
        def isolate_and_migrate(self, picks: list[int], mode: MigrateMode, fault: int | None,
                                fault_passes: int) -> None:
            """What compaction does with a batch: isolate, then migrate at once."""
            idle = vm.movable_idle_pages(self.machine, self.driver.owner_id).tolist()
            with self.step(), guard(self.machine, self.driver, "isolate_page"):
                chosen = vm.isolate(self.machine, self._choose(idle, picks), mode)
            self.isolated.extend(chosen)
            self._migrate(chosen, mode, fault, fault_passes)

        def _migrate(self, chosen: list[int], mode: MigrateMode, fault: int | None, fault_passes: int) -> None:
            if not chosen:
                return

            def inject(src: int, attempt: int) -> int | None:
                return fault if fault is not None and attempt < fault_passes else None

            what = (f"migrate_page (the kit answered {fault} for the first {fault_passes} attempt(s))"
                    if fault is not None and fault_passes else "migrate_page")
            with self.step():
                migrate_and_verify(self.machine, self.driver, chosen, mode, inject=inject, what=what)
            done = set(chosen)
            self.isolated = [p for p in self.isolated if p not in done]

        @rule(picks=PICKS)
        def putback(self, picks: list[int]) -> None:
            chosen = self._choose(self._live_isolated(), picks)
            with self.step(), guard(self.machine, self.driver, "putback_page"):
                vm.putback(self.machine, chosen)
            self.isolated = [p for p in self.isolated if p not in set(chosen)]

        @rule(picks=PICKS)
        def free_while_isolated(self, picks: list[int]) -> None:
            release_pfn = getattr(self.driver, "release_pfn", None)
            if not callable(release_pfn):
                return
            owner = self.machine.pages._owner
            chosen = [p for p in self._choose(self._live_isolated(), picks) if owner[p] == self.driver.owner_id]
            with self.step(), guard(self.machine, self.driver, "release_pfn of isolated pages"):
                for pfn in chosen:
                    release_pfn(pfn)

        @rule()
        def compact(self) -> None:
            with self.step(), guard(self.machine, self.driver, "full compaction"):
                vm.compact_all(self.machine)

        @invariant()
        def nothing_lost(self) -> None:
            with self.step():
                assert_no_page_lost(self.machine, self.driver, allow_isolated=True, when="between operations")

        def teardown(self) -> None:
            # Runs after a failing step too (hypothesis calls it in a finally): then only
            # tidy up, so the step's own error is the one reported.
            if self.in_step:
                return
            with guard(self.machine, self.driver, "putback_page at the end"):
                vm.putback(self.machine, self._live_isolated())
            assert_no_page_lost(self.machine, self.driver, when="after putting every page back")

    # derandomize: the same examples on every run, so a failure of the kit is a bug in the
    # driver (or the core), never the luck of a seed; a driver's suite may widen the search
    # through hypothesis_settings (e.g. derandomize=False and more examples, in a soak).
    chosen: dict[str, Any] = {
        "max_examples": suite.max_examples, "stateful_step_count": suite.step_count, "deadline": None,
        "derandomize": True, "database": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
    }
    chosen.update(suite.hypothesis_settings)
    run_state_machine_as_test(DriverOperations, settings=settings(**chosen))
