"""Deliberately broken drivers: the reference driver (the ``pagemig new-driver`` template,
rendered as ``pagemig_kitref``) with one thing broken each, and the rule each breaks.

Kept as source text, so the same drivers can be written into a pytester session
(test_broken_drivers.py) and built in this process (test_misbehaviour.py).
"""

from __future__ import annotations

import textwrap
from typing import Any

# name -> (the broken driver's class body, the rule the kit must name)
BROKEN: dict[str, tuple[str, str]] = {
    "RaisesInIsolate": ("""
        def isolate_page(self, page, mode):
            raise RuntimeError("isolate exploded")
    """, "never-raise"),
    "RaisesInMigrate": ("""
        def migrate_page(self, dst, src, mode):
            raise RuntimeError("migrate exploded")
    """, "never-raise"),
    "RaisesInPutback": ("""
        def putback_page(self, page):
            raise RuntimeError("putback exploded")
    """, "putback-never-fails"),
    "IsolateReturnsString": ("""
        def isolate_page(self, page, mode):
            return "yes" if super().isolate_page(page, mode) else ""
    """, "isolate-returns-bool"),
    "MigrateReturnsString": ("""
        def migrate_page(self, dst, src, mode):
            return "done"
    """, "migrate-returns-errno"),
    "MigrateReturnsUnknownErrno": ("""
        def migrate_page(self, dst, src, mode):
            return -4242
    """, "migrate-returns-errno"),
    "MigrateReturnsPositiveEagain": ("""
        def migrate_page(self, dst, src, mode):
            return EAGAIN
    """, "migrate-returns-errno"),
    "SuccessWithoutTakingDst": ("""
        def migrate_page(self, dst, src, mode):
            copy_page(dst, src)
            self.held.remove(src.pfn)
            self.held.add(dst.pfn, dst.token)
            self.isolated.discard(src.pfn)
            self.idle[dst.pfn] = None
            return MIGRATEPAGE_SUCCESS          # but never set_movable(dst, self)
    """, "success-takes-dst"),
    "KeepsReferencingSrc": ("""
        def migrate_page(self, dst, src, mode):
            copy_page(dst, src)
            set_movable(dst, self)
            self.isolated.discard(src.pfn)
            self.idle[dst.pfn] = None
            return MIGRATEPAGE_SUCCESS          # self.held still points at src
    """, "migrate-moves-references"),
    "ForgetsToCopy": ("""
        def migrate_page(self, dst, src, mode):
            token = src.token
            self.held.remove(src.pfn)
            self.held.add(dst.pfn, token)
            dst.token = 0                       # the content never reached dst
            set_movable(dst, self)
            self.isolated.discard(src.pfn)
            self.idle[dst.pfn] = None
            return MIGRATEPAGE_SUCCESS
    """, "migrate-copies-content"),
    "KeepsDstOnFailure": ("""
        def migrate_page(self, dst, src, mode):
            set_movable(dst, self)
            return -EBUSY
    """, "failure-leaves-dst"),
    "ErrorForgetsSrc": ("""
        def migrate_page(self, dst, src, mode):
            self.held.remove(src.pfn)
            self.isolated.discard(src.pfn)
            return -EBUSY
    """, "eagain-leaves-src"),
    "PutbackForgetsToRelink": ("""
        def putback_page(self, page):
            self.isolated.discard(page.pfn)     # and never back on self.idle
    """, "putback-restores"),
    "UnmovableMarksMovable": ("""
        def page_gfp(self, gfp):
            return gfp | Gfp.MOVABLE

        def populate(self, n):
            movable, self.movable = self.movable, True
            try:
                return super().populate(n)
            finally:
                self.movable = movable
    """, "unmovable-stays-out"),
    "MovableFromUnmovableBlocks": ("""
        def page_gfp(self, gfp):
            return gfp & ~Gfp.MOVABLE
    """, "movable-from-movable-blocks"),
    "IgnoresContention": ("""
        def migrate_page(self, dst, src, mode):
            busy, self.busy = self.busy, False
            try:
                return super().migrate_page(dst, src, mode)
            finally:
                self.busy = busy
    """, "contended-eagain"),
    "FreedWhileIsolatedStillListed": ("""
        def release_pfn(self, pfn):
            if pfn not in self.isolated:
                return super().release_pfn(pfn)
            self.machine.free_pages(pfn)        # freed, but still in self.held
            return True
    """, "free-while-isolated"),
    "LeaksOnRelease": ("""
        def release(self, n):
            batch = list(self.idle)[-n:]
            for pfn in batch:
                del self.idle[pfn]
                self.held.remove(pfn)           # forgotten, never freed
            return len(batch)
    """, "no-page-lost"),
    "NoExerciser": ("""
        populate = None
    """, "exerciser"),
    "ReportsNoContents": ("""
        def expected_contents(self):
            return None
    """, "reports-contents"),
}

HEADER = '''
from hypothesis import Phase
from pagemig import hookimpl
from pagemig.driver import DriverInfo
from pagemig.mm.gfp import Gfp
from pagemig.mm.movable import EAGAIN, EBUSY, MIGRATEPAGE_SUCCESS, set_movable
from pagemig.mm.pages import copy_page
from pagemig.testing import DriverConformance
from pagemig_kitref.driver import KitrefDriver
from pagemig_kitref.plugin import validate_options


def plugin_for(name, factory, drivers=True):
    def pagemig_register_drivers(self, register):
        if drivers:
            register(DriverInfo(name="kitref", factory=factory, validate=validate_options))
    return type(name, (), {"pagemig_register_drivers": hookimpl(pagemig_register_drivers)})()


class Suite(DriverConformance):
    nr_pages = 64
    max_examples = 10
    step_count = 12
    # a broken driver fails at once; shrinking its example would only cost time here.
    # derandomize: whether the random test catches a bug must not depend on the day's seed
    hypothesis_settings = {"phases": (Phase.explicit, Phase.generate), "database": None, "derandomize": True}


class TestReference(Suite):
    plugin = plugin_for("reference", KitrefDriver)


class TestRegistersNothing(Suite):
    plugin = plugin_for("registers_nothing", KitrefDriver, drivers=False)
'''



IMPORTS = """
from pagemig.mm.gfp import Gfp
from pagemig.mm.movable import EAGAIN, EBUSY, MIGRATEPAGE_SUCCESS, set_movable
from pagemig.mm.pages import copy_page
from pagemig_kitref.driver import KitrefDriver
"""


def class_source(name: str) -> str:
    body = textwrap.dedent(BROKEN[name][0]).strip()
    return f"\nclass {name}(KitrefDriver):\n{textwrap.indent(body, '    ')}\n"


def build(name: str) -> type[Any]:
    """The broken driver class, built in this process (pagemig_kitref must be importable)."""
    namespace: dict[str, Any] = {}
    exec(IMPORTS + class_source(name), namespace)
    return namespace[name]
