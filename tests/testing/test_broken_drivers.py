"""The kit run against deliberately broken drivers: each must fail, naming the rule it broke.

Every broken driver is the reference driver (the ``pagemig new-driver`` template)
with one thing broken, so a failure can only come from that one thing.  All of them
run in one inner pytest session (pytester), and so does the unbroken reference,
which must pass: a kit that fails everything would otherwise pass this test.
"""

from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

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
    # a broken driver fails at once; shrinking its example would only cost time here
    hypothesis_settings = {"phases": (Phase.explicit, Phase.generate), "database": None}


class TestReference(Suite):
    plugin = plugin_for("reference", KitrefDriver)


class TestRegistersNothing(Suite):
    plugin = plugin_for("registers_nothing", KitrefDriver, drivers=False)
'''

RULE_RE = re.compile(r"rule '([a-z-]+)' broken")


def _module_text() -> str:
    parts = [HEADER]
    for name, (body, _) in BROKEN.items():
        parts.append(f"\nclass {name}(KitrefDriver):\n{textwrap.indent(textwrap.dedent(body).strip(), '    ')}\n")
        parts.append(f"\nclass Test{name}(Suite):\n    plugin = plugin_for({name!r}, {name})\n")
    return "".join(parts)


_RESULTS: dict[str, dict[str, list[str]]] = {}


@pytest.fixture
def inner_results(reference_driver_dir: Path, pytester: pytest.Pytester) -> dict[str, dict[str, list[str]]]:
    """Run every class once (the first test that asks does it; the rest read the same
    results): per class, test name -> outcomes ("" for a pass, "skipped", or the failure)."""
    if _RESULTS:
        return _RESULTS
    pytester.syspathinsert(reference_driver_dir)
    pytester.makepyfile(test_kit_against_broken=_module_text())
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-q")
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rep in reprec.getreports("pytest_runtest_logreport"):
        if rep.when != "call" and not (rep.failed or rep.skipped):
            continue
        cls, _, test = rep.nodeid.split("::", 1)[1].partition("::")
        if rep.failed:
            out[cls][test].append(str(rep.longrepr))
        elif rep.skipped:
            out[cls][test].append("skipped")
        else:
            out[cls][test].append("")
    _RESULTS.update(out)
    return _RESULTS


def _failures(results: dict[str, dict[str, list[str]]], cls: str) -> dict[str, str]:
    return {test: text for test, texts in results[cls].items() for text in texts if text and text != "skipped"}


def test_the_reference_driver_passes_the_kit(inner_results: dict[str, dict[str, list[str]]]) -> None:
    assert "TestReference" in inner_results
    assert _failures(inner_results, "TestReference") == {}
    ran = {t for t, texts in inner_results["TestReference"].items() if "" in texts}
    # everything but the compaction test (which needs pagemig.mm.compaction) ran and passed
    assert len(ran) >= 10, inner_results["TestReference"]


def test_a_plugin_that_registers_no_driver_is_named(inner_results: dict[str, dict[str, list[str]]]) -> None:
    failures = _failures(inner_results, "TestRegistersNothing")
    assert failures, "a plugin registering no driver passed the kit"
    for text in failures.values():
        assert "rule 'registers' broken" in text
        assert "registered 0 drivers" in text


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_driver_fails_naming_its_rule(name: str, inner_results: dict[str, dict[str, list[str]]]) -> None:
    rule = BROKEN[name][1]
    failures = _failures(inner_results, f"Test{name}")
    assert failures, f"{name} passed the whole kit"
    rules_named = {test: RULE_RE.findall(text) for test, text in failures.items()}
    # every failure is the kit's own error, naming a rule (not a crash of the kit)
    assert all(rules_named.values()), {t: text[-600:] for t, text in failures.items() if not rules_named[t]}
    first_rules = {found[-1] for found in rules_named.values()}
    assert rule in first_rules, f"{name}: expected rule {rule!r}, the kit named {first_rules}"
    # and the message says the rule in words, not only its id
    from pagemig.testing.rules import RULES

    assert any(RULES[rule].text in text for text in failures.values())
