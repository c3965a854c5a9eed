"""Reading a real machine's /proc files into a simulated machine.

``load_snapshot(dir)`` parses a snapshot directory; ``import_snapshot(snapshot)`` turns
it into per-pfn simulator state with a report of every inference and its check against
the kernel's own aggregate figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pagemig.snapshot.importer import ImportedState, ImportReport, ZoneLayout, import_snapshot
from pagemig.snapshot.model import Snapshot, load_snapshot
from pagemig.snapshot.parse import SnapshotFormatError

if TYPE_CHECKING:
    from pagemig.mm.machine import Machine


def machine_from_snapshot(directory: str | Path, *, allow_partial: bool = False) -> tuple[Machine, ImportedState]:
    """A simulated machine in a snapshot's state (for a scenario that starts from one),
    with the import's state and report.  Raises :class:`SnapshotFormatError` on bad input."""
    from pagemig.snapshot.simulate import build_machine

    state = import_snapshot(load_snapshot(directory, allow_partial=allow_partial))
    return build_machine(state), state


__all__ = ["ImportReport", "ImportedState", "Snapshot", "SnapshotFormatError", "ZoneLayout",
           "import_snapshot", "load_snapshot", "machine_from_snapshot"]
