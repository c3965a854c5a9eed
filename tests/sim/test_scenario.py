"""Scenario files: validation, overrides, and one clear error per kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemig.mm.pages import PAGE_SIZE
from pagemig.sim.scenario import (
    ScenarioError,
    apply_overrides,
    default_scenario_name,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
)


def parse(text: str, host, **kw):  # type: ignore[no-untyped-def]
    return parse_scenario(text, host, label="test.toml", **kw)


def test_minimal_scenario_gets_defaults(host) -> None:  # type: ignore[no-untyped-def]
    sc = parse('[machine]\nmemory = "1GiB"\n', host)
    assert sc.machine.preset == "x86_64-guest"
    assert sc.machine.memory == 1 << 30
    assert sc.duration == 60.0 and sc.step == 1.0 and sc.sample_interval == 10.0
    assert sc.on_driver_error == "isolate" and sc.seed == 0
    cfg = sc.machine.config()
    assert cfg.nr_pages == (1 << 30) // PAGE_SIZE
    assert [z.name for z in cfg.zones] == ["DMA", "DMA32"]


def test_full_scenario(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    text = small_toml + """
[drivers.toy]
pages = 10

[[workloads]]
type = "frag"
name = "f"
start = "2s"
keep = 1
every = 2

[[workloads]]
name = "probe"
type = "alloc_probe"
order = 2
gfp = "GFP_KERNEL | __GFP_NORETRY"
rate = "5/s"

[[timeline]]
at = "5s"
command = "toy_grow 5"

[[timeline]]
after = "2s"
when = "used > 10%"
command = "compact"
"""
    sc = parse(text, host)
    assert [d.name for d in sc.drivers] == ["toy"]
    assert sc.drivers[0].movable is True and sc.drivers[0].options["pages"] == 10
    f, p = sc.workloads
    assert (f.name, f.type, f.start, f.options["every"]) == ("f", "frag", 2.0, 2)
    assert (p.name, p.type, p.options["order"], p.options["rate"]) == ("probe", "alloc_probe", 2, 5.0)
    assert p.options["gfp"][0] == "GFP_KERNEL | __GFP_NORETRY"
    t0, t1 = sc.timeline
    assert (t0.command, t0.args, t0.at) == ("toy_grow", ("5",), 5.0)
    assert t1.after == 2.0 and t1.when is not None and t1.when.fraction == pytest.approx(0.10)
    doc = sc.resolved()
    assert doc["machine"]["memory_bytes"] == 128 << 20
    assert doc["workloads"][1]["options"]["rate"] == 5.0


def test_explicit_zones(host) -> None:  # type: ignore[no-untyped-def]
    sc = parse("""
[machine]
pageblock_order = 10
zones = [{name = "Normal", size = "512MiB"}, {name = "HighMem", size = "256MiB"}]
reserved = [{start = "0", size = "16MiB"}]
""", host)
    cfg = sc.machine.config()
    assert [(z.name, z.start_pfn, z.nr_pages) for z in cfg.zones] == [("Normal", 0, 131072),
                                                                     ("HighMem", 131072, 65536)]
    assert cfg.reserved == ((0, 4096),) and cfg.pageblock_order == 10
    assert sc.machine.memory == 768 << 20


def test_tunables_reach_the_machine(host) -> None:  # type: ignore[no-untyped-def]
    sc = parse('[machine]\nmemory = "512MiB"\nmin_free_kbytes = 8192\nextfrag_threshold = 300\n'
               'compaction_proactiveness = 0\n', host)
    cfg = sc.machine.config()
    assert cfg.min_free_kbytes == 8192
    assert cfg.sysctl == {"extfrag_threshold": 300, "compaction_proactiveness": 0}


# ------------------------------------------------------------------ overrides
def test_overrides_dotted_glob_index_and_name() -> None:
    data = {"drivers": {"a": {"movable": True}, "b": {"movable": True}},
            "workloads": [{"type": "frag"}, {"type": "alloc_probe", "name": "fork"}],
            "machine": {"memory": "1GiB"}}
    out = apply_overrides(data, ["drivers.*.movable=false", "workloads.0.keep=2", "workloads.fork.order=4",
                                 "machine.memory=2GiB", "duration=10min", 'description="a b"'])
    assert out["drivers"] == {"a": {"movable": False}, "b": {"movable": False}}
    assert out["workloads"][0]["keep"] == 2 and out["workloads"][1]["order"] == 4
    assert out["machine"]["memory"] == "2GiB" and out["duration"] == "10min" and out["description"] == "a b"
    assert data["drivers"]["a"]["movable"] is True  # the input is left alone


@pytest.mark.parametrize(("override", "match"), [
    ("nothing", "expected KEY=VALUE"),
    ("drivers.*.movable=false", "no key of the scenario matches"),
    ("workloads.5.keep=1", "past the end"),
    ("machine..memory=1GiB", "not a dotted key"),
])
def test_bad_overrides(host, override: str, match: str) -> None:  # type: ignore[no-untyped-def]
    text = '[machine]\nmemory = "1GiB"\n[[workloads]]\ntype = "frag"\n'
    with pytest.raises(ScenarioError, match=match):
        parse(text, host, overrides=[override])


def test_override_is_validated_like_the_file(host) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScenarioError) as err:
        parse('[machine]\nmemory = "1GiB"\n', host, overrides=["machine.memory=1GB"])
    msg = str(err.value)
    assert "machine.memory" in msg and '"1GB"' in msg and '"GiB"' in msg
    assert "--set machine.memory=1GB" in msg


# ------------------------------------------------------------------ errors, one per kind
BAD = [
    # (scenario text, the key the error must name, words it must contain)
    ('[machine]\nmemory = 1024\n', "machine.memory", ["at least"]),
    ('[machine]\nmemory = "1GB"\n', "machine.memory", ["binary", "GiB"]),
    ('[machine]\nmemory = "-1GiB"\n', "machine.memory", ["negative"]),
    ('[machine]\nmemory = "1GiB"\npreset = "x86-64"\n', "machine.preset", ['"x86_64-guest"']),
    ('[machine]\nmemroy = "1GiB"\n', "machine.memroy", ['did you mean "memory"']),
    ('[machine]\nmemory = "1GiB"\ncompaction_proactiveness = 150\n', "machine.compaction_proactiveness",
     ["from 0 to 100"]),
    ('[machine]\nmemory = "1GiB"\npageblock_order = "nine"\n', "machine.pageblock_order", ["integer"]),
    ('duration = "10 parsecs"\n[machine]\nmemory = "1GiB"\n', "duration", ["unknown unit"]),
    ('durtion = "1min"\n[machine]\nmemory = "1GiB"\n', "durtion", ['did you mean "duration"']),
    ('seed = -4\n[machine]\nmemory = "1GiB"\n', "seed", ["integer"]),
    ('on_driver_error = "explode"\n[machine]\nmemory = "1GiB"\n', "on_driver_error", ['"isolate"', '"fail"']),
    ('step = "2min"\nduration = "1min"\n[machine]\nmemory = "1GiB"\n', "step", ["at most the duration"]),
    ('[machine]\nmemory = "1GiB"\n[drivers.ballon]\n', "drivers.ballon", ["unknown driver", "toy"]),
    ('[machine]\nmemory = "1GiB"\n[drivers.toy]\nmovable = "no"\n', "drivers.toy.movable", ["true or false"]),
    ('[machine]\nmemory = "1GiB"\n[drivers.toy]\npagez = 3\n', "drivers.toy.pagez", ['did you mean "pages"']),
    ('[machine]\nmemory = "1GiB"\n[[workloads]]\ntype = "fragg"\n', "workloads[0].type",
     ['did you mean "frag"', "installed workloads"]),
    ('[machine]\nmemory = "1GiB"\n[[workloads]]\nkeep = 1\n', "workloads[0].type", ["missing"]),
    ('[machine]\nmemory = "1GiB"\n[[workloads]]\ntype = "frag"\nkeep = 9\n', "workloads[0].keep", ["at most"]),
    ('[machine]\nmemory = "1GiB"\n[workloads.p]\ntype = "alloc_probe"\norder = 11\n', "workloads.p.order",
     ["from 0 to 10"]),
    ('[machine]\nmemory = "1GiB"\n[workloads.p]\ntype = "alloc_probe"\ngfp = "GFP_KERNAL"\n', "workloads.p.gfp",
     ["GFP_KERNAL"]),
    ('[machine]\nmemory = "1GiB"\n[workloads.p]\ntype = "page_churn"\nchurn = "10"\n', "workloads.p.churn",
     ["percentage"]),
    ('[machine]\nmemory = "1GiB"\n[[timeline]]\nat = "5s"\ncommand = "compakt"\n', "timeline[0].command",
     ['did you mean "compact"']),
    ('[machine]\nmemory = "1GiB"\n[[timeline]]\nat = "5s"\ncommand = "toy_grow 5"\n', "timeline[0].command",
     ["needs the driver 'toy'", "[drivers.toy]"]),
    ('[machine]\nmemory = "1GiB"\n[drivers.toy]\n[[timeline]]\nat = "5s"\ncommand = "toy_grow many"\n',
     "timeline[0].command", ["expected a number of pages", "usage: toy_grow PAGES"]),
    ('[machine]\nmemory = "1GiB"\n[[timeline]]\nat = "2h"\ncommand = "compact"\n', "timeline[0].at",
     ["after the end of the run"]),
    ('[machine]\nmemory = "1GiB"\n[[timeline]]\nat = "30s"\ncommand = "compact"\n[[timeline]]\nat = "10s"\n'
     'command = "compact"\n', "timeline[1].at", ["time order"]),
    ('[machine]\nmemory = "1GiB"\n[[timeline]]\nat = "3s"\ncommand = "set compaction_proactivness 0"\n',
     "timeline[0].command", ['did you mean "compaction_proactiveness"']),
    ('[machine]\nmemory = "1GiB"\n[[timeline]]\nwhen = "usde > 10MiB"\ncommand = "compact"\n', "timeline[0].when",
     ['did you mean "used"']),
    ('[machine]\nmemory = "1GiB"\n[[timeline]]\nwhen = "used > lots"\ncommand = "compact"\n', "timeline[0].when",
     ["size"]),
    ('[machine]\nmemory = "1GiB"\n[sample]\ninterval = "0s"\n', "sample.interval", ["more than zero"]),
    ('[machine]\npreset = "arm32-device"\nzones = [{name = "Normal", size = "1GiB"}]\n', "machine.zones",
     ["not both"]),
    ('[machine]\nmemory = "2GiB"\nzones = [{name = "Normal", size = "1GiB"}]\n', "machine.memory",
     ["the zones' end"]),
    ('[machine]\nzones = [{name = "Normal", size = "1GiB"}, {name = "DMA", size = "16MiB"}]\n',
     "machine.zones[1].name", ["kernel's order"]),
    ('[machine]\nmemory = "1GiB"\nmachine = 3\n', "machine.machine", ["unknown key"]),
    ('[machine\nmemory = "1GiB"\n', "", ["not valid TOML"]),
]


@pytest.mark.parametrize(("text", "key", "words"), BAD, ids=[b[1] or "toml" for b in BAD])
def test_bad_scenarios_name_file_key_and_expectation(host, text: str, key: str,  # type: ignore[no-untyped-def]
                                                     words: list[str]) -> None:
    with pytest.raises(ScenarioError) as err:
        parse(text, host)
    msg = str(err.value)
    assert msg.startswith("test.toml: ")
    if key:
        assert err.value.key == key, msg
        assert key in msg
    for w in words:
        assert w in msg, msg


def test_missing_file_and_unknown_name(host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(str(tmp_path / "nope.toml"), host)
    with pytest.raises(ScenarioError, match='did you mean "frag-1g"'):
        load_scenario("frag-1G", host)


def test_shipped_scenarios_and_default(host) -> None:  # type: ignore[no-untyped-def]
    shipped = shipped_scenarios(host)
    for name in ("frag-1g", "page-churn", "kernel-build-1g"):
        assert name in shipped
        assert shipped[name].read_description()
    assert default_scenario_name(shipped) == "frag-1g"  # no balloon plugin in this host
    assert default_scenario_name({"seed-balloon": shipped["frag-1g"], **shipped}) == "seed-balloon"


def test_every_shipped_scenario_validates(host) -> None:  # type: ignore[no-untyped-def]
    from pagemig.plugins import get_plugin_host

    full = get_plugin_host()
    for name in shipped_scenarios(full):
        sc = load_scenario(name, full)
        assert sc.duration > 0 and sc.name == name
