"""Output paths: refused before any work, written whole or not at all.

Unwritable places are ones even root cannot write into (``/proc``, a path below a regular
file), so the tests hold whoever runs them; a mode-0500 directory is tried only when the
test does not run as root (root ignores permission bits, which is why the module probes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import pagemig.cli as cli_mod
import pagemig.cli.state as cli_state
import pagemig.sim.loop as sim_loop
from pagemig.cli.snapshot import snapshot_group
from pagemig.outputs import (
    OutputPathError,
    atomic_output,
    atomic_write_text,
    check_output_dir,
    check_output_path,
)
from pagemig.plugins import PluginHost

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots"


def _entries(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def test_check_output_path_reasons(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    cases = [
        (tmp_path, "is a directory"),
        (a_file / "r.json", f"{a_file} is not a directory"),
        (tmp_path / "missing" / "r.json", f"directory {tmp_path / 'missing'} is missing"),
        (Path("/proc/r.json"), "directory /proc is not writable"),
    ]
    for path, why in cases:
        with pytest.raises(OutputPathError) as exc:
            check_output_path("--json", path)
        msg = str(exc.value)
        assert msg.startswith(f"--json {path}: ") and why in msg and "\n" not in msg, msg
    assert _entries(tmp_path) == {"f"}  # the probe leaves nothing behind
    # a missing directory the writer will create is fine if its nearest ancestor is writable
    assert check_output_path("--json", tmp_path / "new" / "r.json", create_parents=True)
    assert not (tmp_path / "new").exists()
    with pytest.raises(OutputPathError, match="not writable"):
        check_output_path("--json", "/proc/new/r.json", create_parents=True)


def test_check_output_dir(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputPathError, match="is not a directory"):
        check_output_dir("--out", tmp_path / "f")
    with pytest.raises(OutputPathError, match="is not a directory"):
        check_output_dir("--out", tmp_path / "f" / "sub")
    with pytest.raises(OutputPathError, match="directory /proc is not writable"):
        check_output_dir("--out", "/proc/figs")
    assert check_output_dir("--out", tmp_path / "a" / "b") and not (tmp_path / "a").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_unwritable_directory_by_mode(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    try:
        with pytest.raises(OutputPathError, match="not writable"):
            check_output_path("--json", ro / "r.json")
    finally:
        ro.chmod(0o700)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "r.json"
    dest.write_text("old\n")
    dest.chmod(0o640)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OutputPathError, match="No space left on device"):
        atomic_write_text(dest, "new and much longer\n" * 1000)
    assert dest.read_text() == "old\n" and _entries(tmp_path) == {"r.json"}
    monkeypatch.undo()
    with pytest.raises(KeyboardInterrupt), atomic_output(dest) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert dest.read_text() == "old\n" and _entries(tmp_path) == {"r.json"}
    atomic_write_text(dest, "new\n")
    assert dest.read_text() == "new\n" and _entries(tmp_path) == {"r.json"}
    assert dest.stat().st_mode & 0o777 == 0o640  # replacing a file keeps its mode, as open(..., "w") does


def test_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "n.json", "{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "n.json").stat().st_mode & 0o777 == 0o640


@pytest.fixture
def invoke(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """The CLI with the test host, and a run loop that fails the test if a run starts."""
    monkeypatch.setattr(cli_state, "get_plugin_host", lambda **kw: host)
    monkeypatch.setattr(cli_state, "_HOSTS", {})  # neither use nor leave a host cached by another CLI call

    def no_run(*a: object, **kw: object) -> None:
        raise AssertionError("the run started before its output paths were checked")

    monkeypatch.setattr(sim_loop, "run_scenario", no_run)

    def _invoke(*args: str) -> Result:
        return CliRunner().invoke(cli_mod.cli, list(args), catch_exceptions=False)

    return _invoke


def _one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pagemig: error: "), result.output
    for w in words:
        assert w in lines[0], lines[0]


def test_run_refuses_unwritable_outputs_before_the_run(invoke: Callable[..., Result], tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    _one_line_error(invoke("run", "frag-1g", "--json", "/proc/r.json"), "--json /proc/r.json", "not writable")
    _one_line_error(invoke("run", "frag-1g", "--json", "/proc/sub/r.json"), "--json", "not writable")
    _one_line_error(invoke("run", "frag-1g", "--json", str(tmp_path)), "is a directory")
    _one_line_error(invoke("run", "frag-1g", "--json", str(a_file / "r.json")), "is not a directory")
    _one_line_error(invoke("run", "frag-1g", "--out", "/proc/figs"), "--out /proc/figs", "not writable")
    _one_line_error(invoke("run", "frag-1g", "--out", str(a_file)), "--out", "is not a directory")
    _one_line_error(invoke("compare", "frag-1g", "--baseline", "seed=2", "--figure", "/proc/c.png"),
                    "--figure /proc/c.png", "not writable")
    _one_line_error(invoke("compare", "frag-1g", "--baseline", "seed=2", "--json", str(tmp_path / "no" / "c.json")),
                    "--json", "is missing")
    assert _entries(tmp_path) == {"f"}


def test_snapshot_commands_refuse_unwritable_json(tmp_path: Path) -> None:
    before = FIXTURES / "uml-frag-128M" / "before"
    for cmd in ("show", "compact"):
        r = CliRunner().invoke(snapshot_group, [cmd, str(before), "--json", "/proc/r.json"])
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: --json /proc/r.json: directory /proc is not writable")
    r = CliRunner().invoke(snapshot_group, ["capture", "/proc/snap"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "not writable" in r.output, r.output
