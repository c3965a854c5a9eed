"""The kit run against deliberately broken drivers: each must fail, naming the rule it broke.

Every broken driver is the reference driver (the ``pagemig new-driver`` template)
with one thing broken, so a failure can only come from that one thing.  All of them
run in one inner pytest session (pytester), and so does the unbroken reference,
which must pass: a kit that fails everything would otherwise pass this test.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pagemig_kit_broken_drivers as broken_drivers  # loaded by conftest.py
import pytest

from pagemig.testing import DriverConformance

BROKEN = broken_drivers.BROKEN
HEADER = broken_drivers.HEADER

RULE_RE = re.compile(r"rule '([a-z-]+)' broken")
RANDOM_TEST_FOR = {"RaisesInMigrate", "FreedWhileIsolatedStillListed", "LeaksOnRelease", "KeepsReferencingSrc"}


def _module_text() -> str:
    parts = [HEADER]
    for name in BROKEN:
        parts.append(broken_drivers.class_source(name))
        parts.append(f"\nclass Test{name}(Suite):\n    plugin = plugin_for({name!r}, {name})\n")
        if name not in RANDOM_TEST_FOR:  # the random test is slow; a few show it catches bugs too
            parts.append("    test_random_operations_never_lose_a_page = None\n")
        else:  # enough fixed (derandomized) examples to reach each bug every time
            parts.append("    max_examples = 40\n")
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
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-q", "--tb=native")
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
    kit = {n for n in dir(DriverConformance) if n.startswith("test_")}
    assert ran == kit, inner_results["TestReference"]  # every test of the kit ran and passed, none skipped


def test_a_plugin_that_registers_no_driver_is_named(inner_results: dict[str, dict[str, list[str]]]) -> None:
    failures = _failures(inner_results, "TestRegistersNothing")
    assert failures, "a plugin registering no driver passed the kit"
    for text in failures.values():
        assert "rule 'registers' broken" in text
        assert "registered 0 drivers" in text


def test_the_random_test_catches_broken_drivers_too(inner_results: dict[str, dict[str, list[str]]]) -> None:
    for name in RANDOM_TEST_FOR:
        text = _failures(inner_results, f"Test{name}").get("test_random_operations_never_lose_a_page", "")
        assert RULE_RE.search(text), f"the random operations test did not catch {name}"


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
