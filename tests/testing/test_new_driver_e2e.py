"""End to end, as a driver author lives it: ``pagemig new-driver``, ``pip install`` into a fresh
virtual environment, the distribution's own tests (the conformance kit included), then
``pagemig plugins`` and a run of its scenario, whose result shows its pages migrated.

The fresh environment has no pip of its own and no network: it sees the test
environment's packages through a ``.pth`` file (as ``--system-site-packages`` would
show a system's), and the outer pip installs into it with ``--python``,
``--no-deps --no-build-isolation --no-index``.  Nothing else is shared: the driver
is found only because its entry point is in the new environment's metadata.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

NAME = "e2edrv"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGEMIG_", "PYTEST_", "PYTHONPATH"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, (f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _new_driver_cmd(python: str) -> list[str]:
    """``pagemig new-driver`` through the real CLI."""
    return [python, "-m", "pagemig.cli", "new-driver"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the written distribution, the fresh environment's python), installed."""
    try:
        import wheel  # noqa: F401 - setuptools < 70.1 builds wheels with it
    except ImportError:
        import setuptools

        major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
        if (major, minor) < (70, 1):
            pytest.fail("pip install --no-build-isolation needs the `wheel` package (or setuptools >= 70.1) "
                        "in the test environment: install the core's test extras")
    root = tmp_path_factory.mktemp("e2e")
    dist = root / f"pagemig-{NAME}"
    _run([*_new_driver_cmd(sys.executable), NAME, "--dir", str(dist)], cwd=root)
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=root).stdout.strip())
    outer = sysconfig.get_paths()["purelib"]
    (purelib / "_pagemig_test_outer.pth").write_text(f"import site; site.addsitedir({outer!r})\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps",
          "--no-build-isolation", "--no-index", str(dist)], cwd=root)
    return dist, py


def test_the_distribution_is_installed_where_only_its_entry_point_can_reveal_it(installed: tuple[Path, Path]) -> None:
    dist, py = installed
    out = _run([str(py), "-c", "from importlib.metadata import entry_points, distribution;"
                               f"print([e.value for e in entry_points(group='pagemig') if e.name == {NAME!r}]);"
                               f"print(distribution('pagemig-{NAME}').version)"], cwd=dist.parent).stdout.split()
    assert out == [f"['pagemig_{NAME}.plugin']", "0.1.0"]
    # the outer test environment knows nothing of it
    from importlib.metadata import entry_points

    assert NAME not in {e.name for e in entry_points(group="pagemig")}


def test_its_own_tests_pass_conformance_kit_included(installed: tuple[Path, Path]) -> None:
    dist, py = installed
    proc = _run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"], cwd=dist, timeout=300)
    assert "passed" in proc.stdout and "failed" not in proc.stdout
    assert "SKIPPED" not in proc.stdout, proc.stdout  # the template exercises every test of the kit
    assert "TestConformance" in _run([str(py), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                                     cwd=dist).stdout


def test_pagemig_plugins_lists_it_with_what_it_registers(installed: tuple[Path, Path]) -> None:
    dist, py = installed
    records = json.loads(_run([str(py), "-m", "pagemig.cli", "plugins", "--json"], cwd=dist).stdout)
    mine = next(r for r in records if r["name"] == NAME)
    assert mine["distribution"] == f"pagemig-{NAME}"
    assert mine["drivers"] == [NAME] and mine["commands"] == [NAME]
    assert mine["error"] is None


def test_its_scenario_runs_and_its_pages_are_migrated(installed: tuple[Path, Path]) -> None:
    dist, py = installed
    out = dist.parent / "result.json"
    _run([str(py), "-m", "pagemig.cli", "run", f"{NAME}-demo", "--json", str(out), "--quiet"], cwd=dist.parent)
    result = json.loads(out.read_text())
    mine = result["drivers"][NAME]
    assert mine["movable"] is True
    assert mine[f"{NAME}_migrate"] > 1000  # thousands of its pages moved by the compaction
    assert result["vmstat"]["pgmigrate_success"] >= mine[f"{NAME}_migrate"]
    assert result["checker"]["ok"], result["checker"]
    assert any(p["name"] == NAME and p["distribution"] == f"pagemig-{NAME}" for p in result["plugins"])
    assert [c["trigger"] for c in result["compactions"]][-1:] == ["compact_memory"]
    # compaction turned the driver's scattered pages into free pageblocks
    before, after = result["compactions"][-1]["before"], result["compactions"][-1]["after"]
    assert after["free_blocks"][10] > before["free_blocks"][10]


def test_with_movable_false_compaction_cannot_touch_its_pages(installed: tuple[Path, Path]) -> None:
    dist, py = installed
    out = dist.parent / "result-unmovable.json"
    _run([str(py), "-m", "pagemig.cli", "run", f"{NAME}-demo", "--set", f"drivers.{NAME}.movable=false",
          "--json", str(out), "--quiet"], cwd=dist.parent)
    result = json.loads(out.read_text())
    assert result["drivers"][NAME]["movable"] is False
    assert result["drivers"][NAME][f"{NAME}_migrate"] == 0
    assert result["checker"]["ok"]
