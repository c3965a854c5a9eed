"""Timeline commands: what a scenario does at given moments, and what plugins add.

A command is a line such as ``balloon 512`` or ``set compaction_proactiveness 0``,
split like a shell line.  The core's own (``compact``, ``drop_caches``, ``sample``,
``set``, in :mod:`pagemig.sim.builtin`) are registered through
``pagemig_register_commands`` like any plugin's.
A plugin command that needs a driver names it in ``CommandInfo.driver``; the
scenario loader refuses a timeline that uses it without loading that driver, so
the mistake shows at once and not ten simulated minutes into a run.

``validate(args)`` runs when the scenario is loaded (raise ``ValueError`` saying
what was expected); ``handler(run, args)`` runs at the command's time and may
return a dict of figures that goes into the result's ``timeline`` record.

This module is the registration vocabulary only, below the scenario loader and the
event loop that both use it: a handler is typed by :class:`CommandRun`, what it may
use of a run, not by the loop's ``Run`` class, so nothing here imports the loop.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    import numpy as np

    from pagemig.driver import Driver
    from pagemig.mm.machine import Machine
    from pagemig.sim.result import CompactionRecord


class CommandRun(Protocol):
    """What a command's handler (and ``pagemig_run_start``) may use of the run:
    the event loop's ``Run`` provides it."""

    @property
    def machine(self) -> Machine:
        """The simulated machine."""
        ...

    @property
    def drivers(self) -> Mapping[str, Driver]:
        """The scenario's drivers by name."""
        ...

    @property
    def now(self) -> float:
        """Simulated seconds since the run began."""
        ...

    def sample(self, reason: str = "interval") -> dict[str, Any]:
        """Record a sample now."""
        ...

    def compaction(self, trigger: str) -> AbstractContextManager[CompactionRecord]:
        """Record free memory before and after whatever runs inside it as one compaction."""
        ...

    def rng(self, name: str, kind: str = "plugin") -> np.random.Generator:
        """A random stream of the caller's own, derived from the scenario's seed."""
        ...


Handler = Callable[[CommandRun, Sequence[str]], "Mapping[str, Any] | None"]


@attrs.frozen
class CommandInfo:
    """A timeline command as a plugin registers it (``pagemig_register_commands``)."""

    name: str
    handler: Handler
    description: str = ""
    driver: str | None = None  # the driver this command needs loaded, if any
    validate: Callable[[Sequence[str]], None] | None = None
    usage: str = ""  # e.g. "balloon MIB"; shown by `pagemig scenarios --commands` and in errors
    plugin: str = ""  # filled in by the plugin host


def split_command(line: str) -> tuple[str, tuple[str, ...]]:
    """``"balloon 512"`` -> ``("balloon", ("512",))``; raises ValueError on an empty or unbalanced line."""
    try:
        parts = shlex.split(line)
    except ValueError as exc:
        raise ValueError(f"cannot split the command line: {exc}") from None
    if not parts:
        raise ValueError("empty command")
    return parts[0], tuple(parts[1:])


__all__ = ["CommandInfo", "CommandRun", "Handler", "split_command"]
