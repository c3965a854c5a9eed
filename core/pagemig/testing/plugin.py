"""pytest plugin of the conformance kit (entry point ``pytest11: pagemig``): fixtures for
a driver's own tests, and a report header line.

Fixtures:

``pagemig_machine``
    a freshly booted small machine (a 128 MiB x86-64 guest; override
    ``pagemig_machine_config`` in your conftest.py for another);
``pagemig_host``
    ``pagemig_host(plugin)`` or ``pagemig_host(entry_point="name")``: a plugin host holding
    only that plugin (plus the core's built-ins), as the conformance suite uses;
``pagemig_check``
    ``pagemig_check(machine)``: the checker; fails the test listing every problem.

The suite itself is a class to subclass (:class:`pagemig.testing.DriverConformance`);
it needs none of these fixtures, so it also runs with ``-p no:pagemig``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pagemig.mm.invariants import CheckReport, assert_consistent
from pagemig.mm.machine import Machine, MachineConfig
from pagemig.mm.mm_init import boot
from pagemig.plugins import PluginHost


@pytest.fixture
def pagemig_machine_config() -> MachineConfig:
    """The layout of ``pagemig_machine``; override it in a conftest.py for another."""
    from pagemig.testing.conformance import default_machine_config

    return default_machine_config()


@pytest.fixture
def pagemig_machine(pagemig_machine_config: MachineConfig) -> Machine:
    """A freshly booted machine, nothing allocated yet: the whole kernel (slow path, reclaim,
    kswapd, compaction), as the conformance suite and a run boot it, so that what a
    driver's own test sees under memory pressure is what a run would do."""
    return boot(pagemig_machine_config)


@pytest.fixture
def pagemig_host() -> Callable[..., PluginHost]:
    """``pagemig_host(plugin)`` / ``pagemig_host(entry_point="name")``: a plugin host with one plugin."""
    from pagemig.testing.conformance import host_for

    def make(plugin: Any = None, *, entry_point: str | None = None, name: str | None = None) -> PluginHost:
        return host_for(plugin, entry_point=entry_point, name=name)

    return make


@pytest.fixture
def pagemig_check() -> Callable[[Machine], CheckReport]:
    """``pagemig_check(machine)``: every page accounted for, every owner's content intact."""
    return assert_consistent


def pytest_report_header(config: pytest.Config) -> str:
    from pagemig import __version__

    return f"pagemig {__version__} (conformance kit: pagemig.testing)"
