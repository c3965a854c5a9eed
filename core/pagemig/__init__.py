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

API_VERSION = "1.0"
"""The version of this module's promise, ``MAJOR.MINOR``.  A minor release only adds
names; a major one may remove or change them.  A plugin written for ``W`` loads on a
core whose API is ``F`` when their majors are equal and ``W``'s minor is not above
``F``'s (it may use names added up to its own minor)."""

__all__ = ["API_VERSION", "__version__", "hookimpl", "hookspec"]
