"""`pagemig run`, `compare` and `scenarios` as a user meets them: exit codes, output, files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import pagemig.cli as cli_mod
import pagemig.cli.state as cli_state
from pagemig.plugins import PluginHost


@pytest.fixture
def invoke(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run the CLI with the test host (built-ins and the toy plugin only)."""
    monkeypatch.setattr(cli_state, "get_plugin_host", lambda **kw: host)
    monkeypatch.setattr(cli_state, "_HOSTS", {})  # a host cached by an earlier CLI call in this process

    def _invoke(*args: str) -> Result:
        return CliRunner().invoke(cli_mod.cli, list(args), catch_exceptions=False)

    return _invoke


def assert_clean_error(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    out = result.stderr if hasattr(result, "stderr") else result.output
    assert "Traceback" not in result.output
    assert out.startswith("pagemig: error: "), out
    assert len(out.strip().splitlines()) == 1, out
    for w in words:
        assert w in out, out


@pytest.mark.parametrize(("text", "words"), [
    ('[machine]\nmemory = "lots"\n', ["machine.memory", '"lots"', "size"]),
    ('[machine]\nmemory = "1GiB"\n[machine.extra]\n', ["machine.extra", "unknown key"]),
    ('[machine]\nmemory = "-2GiB"\n', ["machine.memory", "negative"]),
    ('[machine]\nmemory = "1GiB"\nextfrag_threshold = "high"\n', ["machine.extfrag_threshold", "integer"]),
    ('[machine]\nmemory = "1GiB"\n[drivers.nosuch]\n', ["unknown driver", "toy"]),
    ('[machine]\nmemory = "1GiB"\n[[timeline]]\nat = "1s"\ncommand = "toy_grow 3"\n', ["needs the driver 'toy'"]),
    ('[machine]\nmemory = "1GiB"\n[[workloads]]\ntype = "frag"\nkepe = 1\n', ['did you mean "keep"']),
    ("this is = not toml [", ["not valid TOML"]),
])
def test_bad_files_exit_2_with_one_line(invoke, write, text: str, words: list[str]) -> None:  # type: ignore[no-untyped-def]
    path = write(text)
    assert_clean_error(invoke("run", str(path)), str(path), *words)


def test_bad_set_and_unknown_scenario(invoke, write) -> None:  # type: ignore[no-untyped-def]
    assert_clean_error(invoke("run", "frag-1g", "--set", "machine.memory=1GB"), "--set machine.memory=1GB")
    assert_clean_error(invoke("run", "frag-1gb"), 'did you mean "frag-1g"')
    assert_clean_error(invoke("run", "no/such/file.toml"), "no such file")
    assert_clean_error(invoke("compare", "frag-1g", "--baseline", "drivers.*.movable=false"), "no key")


def test_run_writes_json_and_figures(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    result = invoke("run", "frag-1g", "--set", "duration=12s", "--seed", "7", "--json", str(tmp_path / "r.json"),
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["seed"] == 7 and doc["scenario"]["overrides"] == ["duration=12s"]
    assert json.loads((out / "result.json").read_text())["checker"]["ok"]
    for name in ("memory_map.png", "free_blocks.png", "over_time.png"):
        assert (out / name).stat().st_size > 10_000
    text = result.output
    assert "compaction #0: compact_memory at 10s" in text
    assert "Node 0, zone    DMA32" in text  # buddyinfo as /proc prints it
    assert "checker: OK" in text


def test_run_default_scenario_and_json_on_stdout(invoke) -> None:  # type: ignore[no-untyped-def]
    result = invoke("run", "--set", "duration=3s", "--set", "timeline=[]", "--json", "-")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["scenario"]["name"] == "frag-1g"  # the default without the balloon plugin


def test_quiet_prints_nothing(invoke) -> None:  # type: ignore[no-untyped-def]
    result = invoke("run", "frag-1g", "--set", "duration=2s", "--set", "timeline=[]", "--quiet",
                    "--log-format", "json")
    assert result.exit_code == 0 and result.output == ""


def test_compare_table_and_figure(invoke, write, small_toml: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(small_toml + '[drivers.toy]\npages = 3000\n[[workloads]]\ntype = "frag"\n'
                              '[[timeline]]\nat = "15s"\ncommand = "compact"\n')
    fig = tmp_path / "cmp.png"
    result = invoke("compare", str(path), "--baseline", "drivers.toy.movable=false", "--figure", str(fig),
                    "--json", str(tmp_path / "cmp.json"))
    assert result.exit_code == 0, result.output
    assert "free MiB in blocks of order >= 3" in result.output
    assert "B = baseline: drivers.toy.movable=false" in result.output
    assert fig.stat().st_size > 10_000
    doc = json.loads((tmp_path / "cmp.json").read_text())
    assert doc["as_given"]["scenario"]["drivers"]["toy"]["movable"] is True
    assert doc["baseline_run"]["scenario"]["drivers"]["toy"]["movable"] is False
    rows = {r["figure"]: r for r in doc["rows"]}
    assert rows["driver toy: pages"]["as_given"] == rows["driver toy: pages"]["baseline"] == 3000


def test_scenarios_listing(invoke) -> None:  # type: ignore[no-untyped-def]
    result = invoke("scenarios", "--json")
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert {"frag-1g", "page-churn", "kernel-build-1g"} <= set(rows)
    assert rows["frag-1g"]["default"] and rows["frag-1g"]["plugin"] == "core"
    shown = invoke("scenarios", "--show", "frag-1g").output
    assert 'command = "compact"' in shown
    table = invoke("scenarios").output
    assert "frag-1g (default)" in table


@pytest.mark.parametrize(("policy", "code"), [("isolate", 0), ("fail", 1)])
def test_on_driver_error(invoke, write, small_toml: str, tmp_path: Path, policy: str,  # type: ignore[no-untyped-def]
                         code: int) -> None:
    """A driver whose migrate_page raises: "isolate" counts the faults and runs on; "fail"
    stops the run after compaction put every page back, and the exit status says so."""
    text = small_toml.replace("seed = 3", f'seed = 3\non_driver_error = "{policy}"')
    path = write(text + '[drivers.toy]\nfaulty = true\n[[workloads]]\ntype = "frag"\n'
                        '[[timeline]]\nat = "2s"\ncommand = "toy_grow 3000"\n'  # into the holes frag left
                        '[[timeline]]\nat = "3s"\ncommand = "compact"\n')
    result = invoke("run", str(path), "--json", str(tmp_path / "r.json"))
    assert result.exit_code == code, result.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["checker"]["ok"], doc["checker"]["problems"]
    assert doc["driver_faults"] and all(k.startswith("toy/") for k in doc["driver_faults"])
    if policy == "fail":
        assert "toy" in doc["error"] and doc["samples"][-1]["time_s"] == 3.0
        assert "run stopped" in result.output
    else:
        assert doc["error"] is None and doc["samples"][-1]["time_s"] == 20.0


def test_a_faulty_driver_logs_a_few_lines_and_counts_every_fault(invoke, write, small_toml: str,  # type: ignore[no-untyped-def]
                                                                  tmp_path: Path) -> None:
    """migrate_page raising on every page: stderr shows the first few events and one
    summary line per kind with the full count, as the kernel rate-limits; the result
    counts every fault."""
    path = write(small_toml + '[drivers.toy]\nfaulty = true\n[[workloads]]\ntype = "frag"\n'
                              '[[timeline]]\nat = "2s"\ncommand = "toy_grow 3000"\n'
                              '[[timeline]]\nat = "3s"\ncommand = "compact"\n')
    result = invoke("run", str(path), "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "r.json").read_text())
    faults = doc["driver_faults"]
    assert faults.get("toy/migrate_page/raised", 0) > 20  # enough faults that one line each would drown
    lines = result.stderr.strip().splitlines()
    assert len(lines) < 20, lines
    events = [json.loads(x) for x in lines if x.startswith("{")]
    raised = [e for e in events if e.get("event") == "driver_misbehaved" and e.get("fault") == "raised"]
    assert len(raised) == 3 and all(e["driver"] == "toy" and e["callback"] == "migrate_page" for e in raised)
    totals = {f"{e['driver']}/{e['callback']}/{e['fault']}": e["count"] for e in events
              if e.get("event") == "driver_faults_total"}
    assert totals == faults


def test_same_seed_gives_the_same_file(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pagemig.sim.result import without_timings

    docs = []
    for i in range(2):
        invoke("run", "page-churn", "--set", "machine.memory=128MiB", "--set", "duration=6s", "--set",
               "timeline.0.at=5s", "--quiet", "--json", str(tmp_path / f"{i}.json"))
        docs.append(json.loads((tmp_path / f"{i}.json").read_text()))
    assert json.dumps(without_timings(docs[0])) == json.dumps(without_timings(docs[1]))


@pytest.mark.parametrize(("table", "warned"), [("[drivers.toy]\n", True), ("[drivers.toy]\npages = 64\n", False)])
def test_a_driver_that_never_holds_a_page_is_named_in_one_line(invoke, write, small_toml, tmp_path, table,
                                                               warned) -> None:
    """A driver added by --set or a copied table, with nothing in the scenario to make it
    allocate, says so once on stderr; one that holds pages does not."""
    out = tmp_path / "r.json"
    result = invoke("run", str(write(small_toml + table)), "-q", "--json", str(out), "--log-format", "json")
    assert result.exit_code == 0, result.output
    err = result.stderr if hasattr(result, "stderr") else result.output
    lines = [json.loads(line) for line in err.splitlines() if "driver_held_no_pages" in line]
    assert len(lines) == (1 if warned else 0), err
    if warned:
        assert lines[0]["driver"] == "toy" and lines[0]["level"] == "warning"
        assert json.loads(out.read_text())["drivers"]["toy"]["pages"] == 0
