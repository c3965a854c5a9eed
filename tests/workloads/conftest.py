"""Workloads are tested on a bare machine with the full memory manager, without the
event loop, so that each test says exactly what happened to memory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.mm_init import boot
from pagemig.mm.vmscan import background_tick
from pagemig.workload import Workload


@pytest.fixture
def machine() -> Callable[[int], Machine]:
    def make(mib: int = 256) -> Machine:
        return boot(MachineConfig.x86_64_guest(mib * MiB))

    return make


def build(cls: type[Workload], machine: Machine, validate: Callable[[Mapping[str, Any]], Mapping[str, Any]],
          seed: int = 1, **options: Any) -> Workload:
    opts = dict(validate(options))
    opts["name"] = cls.__name__.lower()
    return cls(machine, opts, np.random.default_rng(seed))


def drive(w: Workload, machine: Machine, seconds: float, dt: float = 1.0, daemons: bool = True) -> None:
    """Step a workload as the event loop would (workload, then the daemons)."""
    w.start(machine.now)
    t = machine.now
    end = t + seconds
    while t < end - 1e-9:
        machine.now = t
        w.step(t, dt)
        if daemons:
            background_tick(machine, t)
        t += dt
    machine.now = t
