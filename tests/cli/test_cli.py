"""The ``secnic`` command line: engines agree byte for byte, bad input exits 2 and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SHARED_DATA, non_ethernet_pcap, require_simulator

from sim.cli.main import main
from sim.run.pcapio import read_pcap, write_pcap

COMPARED = ["trace.jsonl", "counters.json", "eve.json", "egress/phy0.pcap", "egress/vm1.pcap"]
SHARED_PCAP = SHARED_DATA / "pcaps" / "tcpdump-802.1ad_QinQ.pcap"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """``--in`` arguments: a shared capture on phy0 (if present) and a generated one on vm1."""
    from sim.tb.traffic import edge_case_frames
    d = tmp_path_factory.mktemp("inputs")
    gen = d / "generated.pcap"
    frames = [f for f in edge_case_frames(seed=3) if f][::12][:250]
    write_pcap(gen, [(f, 1_700_000_000_000_000_000 + 1000 * i) for i, f in enumerate(frames)])
    args = ["--in", f"vm1={gen}"]
    if SHARED_PCAP.exists():
        args += ["--in", f"phy0={SHARED_PCAP}"]
    else:
        args += ["--in", f"phy0={gen}"]
    return args


def _run(args, out: Path, *extra) -> int:
    return main(["run", *args, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def model_out(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "out"
    assert _run(inputs, out, "--engine", "model") == 0
    return out


def test_model_run_writes_every_file(model_out):
    for name in COMPARED + ["run.json"]:
        assert (model_out / name).is_file(), name
    run = json.loads((model_out / "run.json").read_text())
    assert run["engine"] == "model" and run["timing"] == "estimate"
    assert run["packets_in"] == len((model_out / "trace.jsonl").read_text().splitlines())
    for key in ("latency_cycles", "latency_ns"):
        assert set(run[key]) == {"min", "p50", "p99", "max"}
    assert (model_out / "eve.json").read_text() == ""
    # egress pcaps are readable and hold what the trace says went out
    trace = [json.loads(line) for line in (model_out / "trace.jsonl").read_text().splitlines()]
    for port in ("phy0", "vm1"):
        n = sum(port in r["egress"] for r in trace)
        assert len(read_pcap(model_out / "egress" / f"{port}.pcap")) == n


@pytest.mark.sim
@pytest.mark.parametrize("engine", ["verilator", "icarus"])
def test_engines_agree(engine, inputs, model_out, tmp_path):
    require_simulator(engine)
    out = tmp_path / "out"
    assert _run(inputs, out, "--engine", engine) == 0
    for name in COMPARED:
        assert (out / name).read_bytes() == (model_out / name).read_bytes(), \
            f"{engine}: {name} differs from model"
    run = json.loads((out / "run.json").read_text())
    assert run["engine"] == engine and run["timing"] == "simulated"
    assert run["cycles"] > 0 and run["sim_cycles_per_s"] > 0
    assert run["latency_cycles"]["min"] > 0


#: Paced inputs: PACED_FRAMES frames of PACED_LEN bytes per port, PACED_GAP_NS apart in the capture.
PACED_FRAMES, PACED_LEN, PACED_GAP_NS = 16, 102, 2000


@pytest.fixture(scope="module")
def paced_inputs(tmp_path_factory) -> list[str]:
    """Two small captures (well-formed UDP, so every frame is forwarded) for the pacing tests."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    d = tmp_path_factory.mktemp("paced")
    args = []
    for port in ("phy0", "vm1"):
        frames = [bytes(Ether() / IP(id=i) / UDP(sport=i) / bytes(PACED_LEN - 42)) for i in range(PACED_FRAMES)]
        path = d / f"{port}.pcap"
        write_pcap(path, [(f, 1_700_000_000_000_000_000 + PACED_GAP_NS * i) for i, f in enumerate(frames)])
        args += ["--in", f"{port}={path}"]
    return args


_paced_runs: dict = {}


def _paced_run(engine, pace, paced_inputs, tmp_path_factory) -> Path:
    """One run per (engine, pace), shared by the tests below."""
    if (engine, pace) not in _paced_runs:
        out = tmp_path_factory.mktemp(f"paced-{engine}-{pace}") / "out"
        assert _run(paced_inputs, out, "--engine", engine, "--pace", pace) == 0
        _paced_runs[engine, pace] = out
    return _paced_runs[engine, pace]


@pytest.mark.parametrize("engine", ["model", pytest.param("verilator", marks=pytest.mark.sim),
                                    pytest.param("icarus", marks=pytest.mark.sim)])
@pytest.mark.parametrize("pace", ["pcap", "1.25"])
def test_pace_changes_timing_only(engine, pace, paced_inputs, tmp_path_factory):
    """Pacing leaves every output file but run.json as at line rate, and stretches the run to the
    schedule: the capture's 2 us gaps, or 1.25 Gb/s per port."""
    if engine != "model":
        require_simulator(engine)
    line = _paced_run(engine, "line", paced_inputs, tmp_path_factory)
    out = _paced_run(engine, pace, paced_inputs, tmp_path_factory)
    for name in COMPARED:
        assert (out / name).read_bytes() == (line / name).read_bytes(), name
    run = json.loads((out / "run.json").read_text())
    line_run = json.loads((line / "run.json").read_text())
    assert run["pace"] == (pace if pace == "pcap" else 1.25)
    assert run["packets_out"] == line_run["packets_out"] == 2 * PACED_FRAMES
    clock_mhz = run["clock_mhz"]
    if pace == "pcap":
        # the last frames start (PACED_FRAMES - 1) gaps after the first ones
        span = (PACED_FRAMES - 1) * PACED_GAP_NS * clock_mhz / 1000
    else:
        # each port sends a PACED_LEN-byte frame every PACED_LEN * 8 / 1.25 ns: both ports offer
        # 2.5 Gb/s, and the run (first to last frame) holds PACED_FRAMES frames in one interval less
        span = (PACED_FRAMES - 1) * PACED_LEN * 8 / 1.25 * clock_mhz / 1000
        assert run["gbps"] <= 2.5 * PACED_FRAMES / (PACED_FRAMES - 1)
        assert line_run["gbps"] > 5.0, "line rate must beat 2 x 1.25 Gb/s by far, or the test proves nothing"
    assert run["cycles"] >= span, f"{engine} --pace {pace}: {run['cycles']} cycles, schedule spans {span:.0f}"
    assert line_run["cycles"] < span / 2, f"{engine} at line rate takes {line_run['cycles']} cycles"


def test_rerun_replaces_output(inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert _run(inputs, out, "--engine", "model") == 0
    assert not (out / "stale.txt").exists()
    assert (out / "trace.jsonl").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary directories left behind"


# -- bad input: exit 2, message on stderr, nothing written -------------------------------------------

def _bad_cases(tmp_path: Path, good: str):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture file at all" * 3)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[nic]\ndata_width = 64\nports = [\"phy0\" \"vm1\"]\n")
    bad_opt = tmp_path / "opt.toml"
    bad_opt.write_text("[nic]\ndata_width = 63\n")
    unknown_opt = tmp_path / "unknown.toml"
    unknown_opt.write_text("[nic]\nwidth = 64\n")
    long_pcap = tmp_path / "long.pcap"
    write_pcap(long_pcap, [(bytes(64), 0), (bytes(64), 1000 * 10**9)])   # 1000 s apart
    cases = {
        "too long to simulate": (["--pcap", str(long_pcap), "--engine", "icarus", "--pace", "pcap"],
                                 "too long to simulate"),
        "missing file": (["--in", f"phy0={tmp_path / 'nope.pcap'}"], "nope.pcap"),
        "garbage pcap": (["--in", f"phy0={garbage}"], "garbage.pcap"),
        "unknown port": (["--in", f"eth7={good}"], "unknown port 'eth7'"),
        "no equals": (["--in", good], "PORT=FILE"),
        "bad pace": (["--pcap", good, "--pace", "fast"], "pace"),
        "negative pace": (["--pcap", good, "--pace", "-3"], "pace"),
        "bad toml": (["--pcap", good, "--config", str(bad_toml)], "at line 3, column"),
        "bad option": (["--pcap", good, "--config", str(bad_opt)], "data_width"),
        "unknown option": (["--pcap", good, "--config", str(unknown_opt)], "unknown NIC option"),
        "rules": (["--pcap", good, "--rules", "x.rules"], "not yet supported"),
        "bad engine": (["--pcap", good, "--engine", "modelsim"], "invalid choice"),
    }
    other = non_ethernet_pcap()
    if other is not None:
        cases["non-ethernet"] = (["--pcap", str(other)], "not Ethernet")
    return cases


def test_bad_inputs_exit_2(tmp_path, capsys):
    good = tmp_path / "good.pcap"
    write_pcap(good, [(bytes(range(64)), 0)])
    for name, (args, needle) in _bad_cases(tmp_path, str(good)).items():
        out = tmp_path / f"out-{name.replace(' ', '_')}"
        try:
            code = main(["run", *args, "--out", str(out)])
        except SystemExit as exc:   # argparse errors
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2, f"{name}: exit {code}, stderr {err!r}"
        assert needle in err, f"{name}: {needle!r} not in {err!r}"
        assert not out.exists(), f"{name}: output directory was created"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary directories left behind"


def test_bad_input_keeps_previous_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    assert main(["run", "--in", f"phy0={tmp_path / 'missing.pcap'}", "--out", str(out)]) == 2
    assert (out / "keep.txt").read_text() == "previous run"


def test_bad_toml_message_names_file_line_column(tmp_path, capsys):
    cfg = tmp_path / "nic.toml"
    cfg.write_text("[nic]\ndata_width = = 64\n")
    assert main(["regmap", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "line 2" in err and "column" in err


# -- regmap --------------------------------------------------------------------------------------------------

def test_regmap_markdown_matches_docs(capsys):
    doc = REPO_ROOT / "docs" / "registers.md"
    if not doc.exists():
        pytest.skip("docs/registers.md not generated yet (secnic regmap --format md > docs/registers.md)")
    assert main(["regmap", "--format", "md"]) == 0
    assert capsys.readouterr().out == doc.read_text()


def test_regmap_json(capsys):
    assert main(["regmap", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["blocks"][0]["type"] == "IDENTITY"


def test_regmap_follows_config(tmp_path, capsys):
    cfg = tmp_path / "nic.toml"
    cfg.write_text('[nic]\ndata_width = 512\nports = ["up", "down"]\nphysical_ports = ["up"]\n')
    assert main(["regmap", "--format", "json", "--config", str(cfg)]) == 0
    data = json.loads(capsys.readouterr().out)
    ident = next(r for r in data["blocks"][0]["registers"] if r["name"] == "DATA_WIDTH")
    assert ident["value"] == 512


# -- waves ---------------------------------------------------------------------------------------------------

@pytest.mark.sim
@pytest.mark.parametrize("engine", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_waves_fst(engine, tmp_path):
    """``--waves`` leaves an FST next to the run files (Verilator needs its own traced build: slow)."""
    require_simulator(engine)
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [(bytes(range(60)) + bytes(i), 1000 * i) for i in range(4)])
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--engine", engine, "--waves", "--out", str(out)]) == 0
    from sim.runner import verilator_fst_supported
    if engine == "verilator" and not verilator_fst_supported():
        vcd = out / "waves.vcd"   # fallback without the lz4 headers
        assert vcd.is_file() and b"$enddefinitions" in vcd.read_bytes()[:1_000_000]
        return
    fst = out / "waves.fst"
    assert fst.is_file() and fst.stat().st_size > 100
    assert fst.read_bytes()[:1] == b"\x00"   # FST header block type
