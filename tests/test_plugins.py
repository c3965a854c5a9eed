"""Plugin discovery: entry points load one by one, a broken one is reported and the rest load.

The fake distributions here are real installations (a ``.dist-info`` with
``entry_points.txt`` on sys.path is exactly what pip leaves behind), so discovery
goes through importlib.metadata as it does for the shipped plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pagemig.plugins import get_plugin_host

GOOD = '''
from pagemig import hookimpl
from pagemig.driver import Driver, DriverInfo


class GoodDriver(Driver):
    name = "good"


@hookimpl
def pagemig_register_drivers(register):
    register(DriverInfo(name="good", factory=GoodDriver, description="a driver that loads"))
'''

BROKEN_IMPORT = "raise ImportError('this plugin is broken on purpose')\n"

BROKEN_HOOK = '''
from pagemig import hookimpl


@hookimpl
def pagemig_register_drivers(register):
    raise RuntimeError("registration blew up")
'''


def make_dist(site: Path, dist: str, ep_name: str, module: str, source: str) -> None:
    """Install a one-module distribution with a ``pagemig`` entry point into ``site``."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[pagemig]\n{ep_name} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "pagemig-good", "good", "pm_test_good", GOOD)
    make_dist(site, "pagemig-broken", "broken", "pm_test_broken", BROKEN_IMPORT)
    make_dist(site, "pagemig-badhook", "badhook", "pm_test_badhook", BROKEN_HOOK)
    monkeypatch.syspath_prepend(str(site))
    for var in ("PAGEMIG_PLUGINS", "PAGEMIG_DISABLE_PLUGIN_AUTOLOAD", "PAGEMIG_STRICT_PLUGINS",
                "PAGEMIG_BLOCK_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    for mod in ("pm_test_good", "pm_test_broken", "pm_test_badhook"):
        sys.modules.pop(mod, None)
    return site


def test_broken_plugin_does_not_stop_the_others(site: Path) -> None:
    host = get_plugin_host()
    records = {r.name: r for r in host.listing()}
    assert records["broken"].distribution == "pagemig-broken"
    assert "this plugin is broken on purpose" in (records["broken"].error or "")
    assert records["good"].error is None
    assert "good" in host.drivers()
    assert host.drivers()["good"].plugin == "good"
    assert records["good"].drivers == ["good"]
    assert records["good"].hooks == ["pagemig_register_drivers"]


def test_failing_registration_hook_costs_only_its_plugin(site: Path) -> None:
    host = get_plugin_host()
    drivers = host.drivers()
    assert "good" in drivers
    assert "registration blew up" in (host.records["badhook"].error or "")


def test_strict_mode_reraises(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGEMIG_STRICT_PLUGINS", "1")
    with pytest.raises(ImportError, match="broken on purpose"):
        get_plugin_host()


def test_only_listed_plugins_load(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGEMIG_PLUGINS", "good")
    names = set(get_plugin_host().records)
    assert "good" in names and "broken" not in names and "badhook" not in names
    monkeypatch.setenv("PAGEMIG_PLUGINS", "")
    assert not [r for r in get_plugin_host().records.values() if not r.builtin]


def test_autoload_can_be_disabled(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGEMIG_DISABLE_PLUGIN_AUTOLOAD", "1")
    host = get_plugin_host()
    assert not [r for r in host.records.values() if not r.builtin]
    assert "good" not in host.drivers()


def test_one_plugin_can_be_blocked(site: Path) -> None:
    host = get_plugin_host(blocked=["good"])
    assert "good" not in host.drivers()
    assert host.records["good"].error == "blocked"


def _cli(args: list[str], site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEMIG_")}
    full_env["PYTHONPATH"] = str(site) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "pagemig.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=120, check=False)


def test_cli_lists_plugins_with_their_errors(site: Path) -> None:
    proc = _cli(["plugins", "--json"], site)
    assert proc.returncode == 0, proc.stderr
    listing = {p["name"]: p for p in json.loads(proc.stdout)}
    assert listing["good"]["drivers"] == ["good"]
    assert listing["good"]["distribution"] == "pagemig-good"
    assert listing["good"]["version"] == "1.0"
    assert "broken on purpose" in listing["broken"]["error"]
    # the warning goes to stderr, as a log event naming the distribution
    assert "pagemig-broken" in proc.stderr


def test_cli_blocks_a_plugin(site: Path) -> None:
    proc = _cli(["--no-plugin", "good", "plugins", "--json"], site)
    listing = {p["name"]: p for p in json.loads(proc.stdout)}
    assert listing["good"]["error"] == "blocked"
    assert listing["good"]["drivers"] == []


def test_shipped_plugins_are_discovered() -> None:
    """On a full install (make install), the three driver plugins are found by entry point."""
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="pagemig")}
    if not {"balloon", "zram", "gpu"} <= names:
        pytest.skip("the driver plugins are not installed (core-only install)")
    host = get_plugin_host()
    drivers = host.drivers()
    for name in ("balloon", "zram", "gpu"):
        assert host.records[name].error is None, host.records[name].error
        assert name in drivers, f"plugin {name} registered no driver {name!r}"


def test_hook_calls_can_be_traced(site: Path) -> None:
    proc = _cli(["plugins", "--json"], site, PAGEMIG_TRACE_PLUGINS="1")
    assert proc.returncode == 0, proc.stderr
    assert "pagemig_register_drivers" in proc.stderr  # the trace, on stderr
    json.loads(proc.stdout)  # stdout still holds only the result


POLICY = '''
from pagemig import hookimpl


@hookimpl
def pagemig_compaction_finished(machine, cc):
    return None
'''


def _table_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def _row(lines: list[str], first_cell: str) -> str:
    """A table row's cells, its wrapped continuation lines joined on, as one string."""
    rows: list[list[str]] = []
    for line in lines:
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells[0]:
            rows.append(cells)
        elif rows:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return next((" | ".join(r) for r in rows if r[0] == first_cell), "")


def test_listing_shows_distributions_not_the_cores_modules(site: Path) -> None:
    """Issue 19 item 6: by default one row per distribution, with what it provides and why
    it failed; the core is one row, ``pagemig``, its plugin modules hidden."""
    make_dist(site, "pagemig-policy", "policy", "pm_test_policy", POLICY)
    lines = _table_lines(_cli(["plugins"], site))
    text = "\n".join(lines)
    for internal in ("pagemig.sim.builtin", "pagemig.workloads.builtin", "pagemig.compaction_policy"):
        assert internal not in text
    assert "driver good" in _row(lines, "pagemig-good") and "1.0" in _row(lines, "pagemig-good")
    assert "broken on purpose" in _row(lines, "pagemig-broken")
    assert "registration blew up" in _row(lines, "pagemig-badhook")
    assert "hook compaction_finished" in _row(lines, "pagemig-policy")  # a third party's hook is what it provides
    core = _row(lines, "pagemig")
    assert "commands compact" in core and "frag-1g" in core and "compaction_" not in core
    assert max(len(line) for line in lines) <= 100


def test_listing_all_shows_every_plugin_module(site: Path) -> None:
    lines = _table_lines(_cli(["plugins", "--all"], site))
    assert "hooks compaction_finished" in _row(lines, "pagemig.compaction_policy")
    assert "workloads" in _row(lines, "pagemig.workloads.builtin")
    assert "pagemig-good 1.0" in _row(lines, "good")
    assert "broken on purpose" in _row(lines, "broken")
    assert max(len(line) for line in lines) <= 100
