"""pagemig: Linux compaction with movable driver pages, simulated.

The public surface for plugin authors is re-exported here: the ``hookimpl`` marker,
the driver base class and the movable-page protocol.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from pagemig.hookspecs import hookimpl, hookspec

try:
    __version__ = version("pagemig")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "hookimpl", "hookspec"]
