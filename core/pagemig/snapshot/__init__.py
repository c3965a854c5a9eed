"""Reading a real machine's /proc files into a simulated machine.

``load_snapshot(dir)`` parses a snapshot directory; ``import_snapshot(snapshot)`` turns
it into per-pfn simulator state with a report of every inference and its check against
the kernel's own aggregate figures.
"""

from pagemig.snapshot.importer import ImportedState, ImportReport, ZoneLayout, import_snapshot
from pagemig.snapshot.model import Snapshot, load_snapshot
from pagemig.snapshot.parse import SnapshotFormatError

__all__ = ["ImportReport", "ImportedState", "Snapshot", "SnapshotFormatError", "ZoneLayout",
           "import_snapshot", "load_snapshot"]
