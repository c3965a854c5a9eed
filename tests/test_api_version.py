"""The pagemig.api version check at discovery (issue 19 item 5): a plugin written for an
incompatible API is refused with one line naming the plugin, the version it wants and the
one found, and every other plugin still loads.

The fake distributions are real installations (a ``.dist-info`` with ``entry_points.txt``
on sys.path), so discovery goes through importlib.metadata as for the shipped plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pagemig.api import API_VERSION
from pagemig.plugins import api_incompatibility, get_plugin_host

PLUGIN = '''
from pagemig.api import Driver, DriverInfo, hookimpl
{declaration}

class TheDriver(Driver):
    name = "{name}"


@hookimpl
def pagemig_register_drivers(register):
    register(DriverInfo(name="{name}", factory=TheDriver))
'''

MAJOR = int(API_VERSION.split(".")[0])
MINOR = int(API_VERSION.split(".")[1])
PLUGINS = {
    # name: what its entry-point module declares (None: nothing)
    "current": API_VERSION,
    "older_minor": f"{MAJOR}.0",
    "undeclared": None,
    "old_major": f"{MAJOR - 1}.9" if MAJOR > 0 else "0.9",
    "next_major": f"{MAJOR + 1}.0",
    "newer_minor": f"{MAJOR}.{MINOR + 1}",
    "garbled": "one point oh",
}
REFUSED = {"old_major", "next_major", "newer_minor", "garbled"}


def make_dist(site: Path, name: str, declared: str | None) -> None:
    module = f"pm_api_{name}"
    declaration = "" if declared is None else f"PAGEMIG_API_VERSION = {declared!r}"
    (site / f"{module}.py").write_text(textwrap.dedent(PLUGIN.format(name=name, declaration=declaration)))
    info = site / f"pagemig_api_{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: pagemig-api-{name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[pagemig]\n{name} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    for name, declared in PLUGINS.items():
        make_dist(site, name, declared)
        sys.modules.pop(f"pm_api_{name}", None)
    monkeypatch.syspath_prepend(str(site))
    for var in ("PAGEMIG_PLUGINS", "PAGEMIG_DISABLE_PLUGIN_AUTOLOAD", "PAGEMIG_STRICT_PLUGINS",
                "PAGEMIG_BLOCK_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    return site


@pytest.mark.parametrize(("wanted", "found", "ok"), [
    ("1.0", "1.0", True),
    ("1.0", "1.3", True),  # a newer minor only adds names
    ("1.4", "1.3", False),  # the plugin may use a name this core lacks
    ("0.9", "1.0", False),
    ("2.0", "1.7", False),
    (None, "1.0", True),  # undeclared: loaded, shown as unknown
    ("1", "1.0", False),
    (1.0, "1.0", False),  # a float is not a version string
])
def test_semantic_versioning(wanted: object, found: str, ok: bool) -> None:
    assert (api_incompatibility(wanted, found) is None) is ok


def test_incompatible_plugins_are_refused_and_the_others_load(site: Path) -> None:
    host = get_plugin_host()
    drivers = host.drivers()
    for name, declared in PLUGINS.items():
        record = host.records[name]
        assert record.api_version == ("" if declared is None else declared)
        if name in REFUSED:
            assert name not in drivers
            assert (record.error or "").startswith("refused: "), record.error
        else:
            assert record.error is None, record.error
            assert name in drivers
    assert host.records["old_major"].error == (
        f"refused: written for pagemig.api {PLUGINS['old_major']}, this core has {API_VERSION}")
    for shipped in ("balloon", "zram", "gpu"):
        if shipped in host.records:
            assert host.records[shipped].error is None
            assert host.records[shipped].api_version == API_VERSION


def test_strict_mode_raises_on_a_refused_plugin(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGEMIG_STRICT_PLUGINS", "1")
    monkeypatch.setenv("PAGEMIG_PLUGINS", "current,next_major")
    with pytest.raises(RuntimeError, match="next_major"):
        get_plugin_host()


def _cli(args: list[str], site: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEMIG_")}
    env["PYTHONPATH"] = str(site) + os.pathsep + env.get("PYTHONPATH", "")
    env["PAGEMIG_PLUGINS"] = "current,undeclared,next_major"
    return subprocess.run([sys.executable, "-m", "pagemig.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_one_line_per_refused_plugin_and_the_listing_shows_versions(site: Path) -> None:
    proc = _cli(["plugins", "--json"], site)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines  # one refusal, nothing else
    line = lines[0]
    assert "next_major" in line and f"{MAJOR + 1}.0" in line and API_VERSION in line
    listing = {p["name"]: p for p in json.loads(proc.stdout)}
    assert listing["current"]["api_version"] == API_VERSION and listing["current"]["error"] is None
    assert listing["undeclared"]["api_version"] == "" and listing["current"]["drivers"] == ["current"]
    assert listing["next_major"]["error"].startswith("refused:")
    table = _cli(["plugins"], site).stdout
    assert "api" in table
