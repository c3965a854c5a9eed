"""The rules a movable-page driver must keep, and the error that names the one it broke.

A driver author who sees a red test should learn from its first line which rule
was broken and what to do about it, without reading the kit's source: every
failure the kit reports is a :class:`ConformanceError` whose message starts with
the rule's id and says the rule in one sentence, then what was seen.  The ids are
stable (docs/writing-a-driver.md lists them), so a test can check for them.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

DOCS = "docs/writing-a-driver.md"


@attrs.frozen
class Rule:
    """One rule of the protocol, or of the kit's exerciser interface."""

    id: str
    text: str


_RULES = (
    Rule("exerciser", "the driver implements the kit's exerciser interface: populate(n) -> int and "
                      "release(n) -> int, each returning how many pages it added or freed"),
    Rule("reports-contents", "expected_contents() returns the pfns the driver holds and the content it last "
                             "wrote to each: the checker and the kit compare them with memory"),
    Rule("registers", "the plugin registers the driver through pagemig_register_drivers with a DriverInfo "
                      "whose factory(machine, options) returns a pagemig.driver.Driver"),
    Rule("marks-movable", "with movable = true every page the driver holds is a DRIVER page it owns, "
                          "marked with set_movable(page, ops)"),
    Rule("movable-from-movable-blocks", "with movable = true the driver allocates with driver.page_gfp(...), "
                                        "so its pages come from MOVABLE pageblocks"),
    Rule("unmovable-stays-out", "with movable = false the driver marks no page movable and allocates with "
                                "driver.page_gfp(...), so its pages stay out of MOVABLE pageblocks"),
    Rule("isolate-returns-bool", "isolate_page(page, mode) returns True or False"),
    Rule("pages-move", "an idle page the driver holds can be isolated and migrated: a driver that refuses "
                       "every isolation or fails every migration has made its pages unmovable in effect"),
    Rule("never-raise", "isolate_page, migrate_page and putback_page never raise: they answer with return codes"),
    Rule("migrate-returns-errno", "migrate_page(dst, src, mode) returns MIGRATEPAGE_SUCCESS (0) or a negative "
                                  "errno such as -EAGAIN or -EBUSY"),
    Rule("success-takes-dst", "migrate_page returns MIGRATEPAGE_SUCCESS only after it took dst with "
                              "set_movable(dst, ops)"),
    Rule("failure-leaves-dst", "a migrate_page that fails leaves dst alone (no set_movable(dst))"),
    Rule("putback-never-fails", "putback_page(page) relinks the page into the driver's structures and never raises"),
    Rule("migrate-moves-references", "after a successful migrate_page the driver references dst, and no longer src"),
    Rule("migrate-copies-content", "migrate_page copies the page's content to dst (copy_page(dst, src)) "
                                   "before it returns success"),
    Rule("putback-restores", "isolate_page followed by putback_page leaves the driver's structures as they were, "
                             "and the page can be isolated again"),
    Rule("eagain-leaves-src", "after migrate_page returned -EAGAIN (or any error) src is still the driver's, "
                              "unchanged, so a later pass can migrate it"),
    Rule("contended-eagain", "while the driver is contended (inside its contended() context), migrate_page "
                             "answers -EAGAIN instead of blocking"),
    Rule("free-while-isolated", "a page the driver frees while it is isolated leaves the driver's records at "
                                "once; the VM then releases it without calling the driver"),
    Rule("no-page-lost", "every page is in exactly one place and every page the driver holds carries what it "
                         "last wrote (pagemig.mm.invariants)"),
)

RULES: Mapping[str, Rule] = {r.id: r for r in _RULES}

# What the core's movable-page wrappers detect (pagemig.mm.movable.DriverFault values),
# per callback, mapped to the rule the driver broke.
FAULT_RULES: Mapping[tuple[str, str], str] = {
    ("isolate_page", "raised"): "never-raise",
    ("migrate_page", "raised"): "never-raise",
    ("putback_page", "putback_failed"): "putback-never-fails",
    ("isolate_page", "bad_return"): "isolate-returns-bool",
    ("migrate_page", "bad_return"): "migrate-returns-errno",
    ("migrate_page", "false_success"): "success-takes-dst",
    ("migrate_page", "kept_dst_on_failure"): "failure-leaves-dst",
    ("migrate_page", "kept_src"): "migrate-moves-references",
    ("putback", "lost"): "putback-restores",
}


class ConformanceError(AssertionError):
    """A driver broke a rule of the movable-page protocol (or of the kit's exerciser).

    ``rule`` is the broken rule's id; the message says the rule and what was seen.
    """

    def __init__(self, rule: str, seen: str, *, driver: str = "", plugin: str = "") -> None:
        self.rule = rule
        self.seen = seen
        r = RULES[rule]
        who = f" by driver {driver!r}" if driver else ""
        if plugin and plugin != driver:
            who += f" (plugin {plugin!r})"
        super().__init__(f"pagemig conformance: rule {rule!r} broken{who}:\n"
                         f"  rule: {r.text}\n"
                         f"  seen: {seen}\n"
                         f"  see {DOCS}, section 'The rules'")


def rule_for_fault(callback: str, fault: str) -> str:
    """The rule behind a fault the core counted (``MovableRegistry.faults`` keys)."""
    return FAULT_RULES.get((callback, fault), "never-raise" if fault == "raised" else "no-page-lost")
