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
        # the bump in the wire: every frame to the other port, as the counts below say
        assert _run(paced_inputs, out, "--engine", engine, "--pace", pace, "--config", "bump-in-the-wire") == 0
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


def test_rerun_replaces_previous_run_only(inputs, tmp_path):
    """A previous run's files are replaced; a file the user put beside them survives."""
    out = tmp_path / "out"
    assert _run(inputs, out, "--engine", "model") == 0
    (out / "egress" / "old-port.pcap").write_bytes(b"")      # pretend an older run wrote another port
    manifest = json.loads((out / ".secnic-run").read_text())
    manifest["files"].append("egress/old-port.pcap")
    (out / ".secnic-run").write_text(json.dumps(manifest))
    (out / "notes.txt").write_text("mine")
    assert _run(inputs, out, "--engine", "model") == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "egress" / "old-port.pcap").exists(), "a file of the previous run was left behind"
    assert (out / "trace.jsonl").exists()
    assert "notes.txt" not in json.loads((out / ".secnic-run").read_text())["files"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary directories left behind"
    assert not [p for p in out.iterdir() if p.name.startswith(".secnic-") and p.name != ".secnic-run"]


def test_out_dot_keeps_the_users_files(tmp_path, monkeypatch, capsys):
    """The issue's report: `secnic run --pcap in.pcap --out .` deleted in.pcap and everything else."""
    monkeypatch.chdir(tmp_path)
    write_pcap(tmp_path / "in.pcap", [(bytes(range(64)), 0)])
    (tmp_path / "notes.txt").write_text("keep me")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["run", "--pcap", "in.pcap", "--out", "."]) == 2
    err = capsys.readouterr().err
    assert "--out .: directory is not empty" in err and "--force" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def _user_folder(tmp_path, name: str, text: str):
    """A ``results`` folder holding one file of the user's, and a one-frame pcap beside it."""
    out = tmp_path / "results"
    out.mkdir()
    (out / name).write_text(text)
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [(bytes(range(64)), 0)])
    return out, pcap


def test_foreign_dir_refused_naming_it(tmp_path, capsys):
    out, pcap = _user_folder(tmp_path, "thesis.tex", "x")
    assert main(["run", "--pcap", str(pcap), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: directory is not empty" in err and "thesis.tex" in err
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_force_writes_beside_foreign_files(tmp_path):
    out, pcap = _user_folder(tmp_path, "thesis.tex", "x")
    assert main(["run", "--pcap", str(pcap), "--out", str(out), "--force"]) == 0
    assert (out / "thesis.tex").read_text() == "x" and (out / "run.json").is_file()
    # a second forced run replaces only what the first one wrote
    assert main(["run", "--pcap", str(pcap), "--out", str(out), "--force"]) == 0
    assert (out / "thesis.tex").read_text() == "x"


def test_force_never_overwrites_a_foreign_file(tmp_path, capsys):
    out, pcap = _user_folder(tmp_path, "trace.jsonl", "my own trace")
    assert main(["run", "--pcap", str(pcap), "--out", str(out), "--force"]) == 2
    assert "trace.jsonl" in capsys.readouterr().err
    assert (out / "trace.jsonl").read_text() == "my own trace"
    assert sorted(p.name for p in out.iterdir()) == ["trace.jsonl"]


@pytest.mark.parametrize("where", ["under a file", "read-only file system"])
def test_unwritable_out_exits_2_with_a_message(where, tmp_path, capsys):
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [(bytes(range(64)), 0)])
    if where == "under a file":
        out, needle = tmp_path / "in.pcap" / "out", "is not a directory"
    else:
        out, needle = Path("/sys/secnic-out"), "cannot create files in /sys"
        if not Path("/sys").is_dir():
            pytest.skip("no /sys")
    assert main(["run", "--pcap", str(pcap), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}:" in err and needle in err, err
    assert "Errno" not in err and "Traceback" not in err


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
        "rules": (["--pcap", good, "--rules", str(tmp_path / "x.rules")], "x.rules: no such rule file"),
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


# -- suspicious input: counted in run.json, said once on stderr -------------------------------------------------

def _pcap_with_records(path: Path, records: list[tuple[bytes, int]]) -> None:
    """A classic pcap whose records give (captured bytes, length on the wire) as stated."""
    import struct
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 96, 1)]
    for n, (data, wire_len) in enumerate(records):
        out.append(struct.pack("<IIII", 0, n, len(data), wire_len) + data)
    path.write_bytes(b"".join(out))


def _udp_frame(size: int) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    pkt = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / IP(src="10.0.0.1", dst="10.0.0.2") / UDP()
    return bytes(pkt / bytes(size - len(pkt)))


def test_snaplen_cut_frames_counted(tmp_path, capsys):
    full = _udp_frame(200)
    pcap = tmp_path / "snap96.pcap"
    _pcap_with_records(pcap, [(full, len(full)), (full[:96], len(full)), (full[:96], len(full))])
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    sus = run["suspicious_input"]
    assert sus["snaplen_cut"] == 2
    assert sus["snaplen_cut_first"] == {"in_file": str(pcap), "pcap_cnt": 2}
    err = capsys.readouterr().err
    assert err.count("cut by the capture's snaplen") == 1 and f"{pcap} #2" in err
    # what the NIC did with them is unchanged: dropped as malformed
    trace = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    assert [t["verdict"] for t in trace] == ["forward", "drop", "drop"]


def test_short_frames_into_physical_port_counted(tmp_path, capsys):
    arp_like = _udp_frame(60)[:42]        # a host-side capture: not yet padded to 60 bytes
    pcap = tmp_path / "host.pcap"
    write_pcap(pcap, [(arp_like, 0), (_udp_frame(64), 1000)])
    out = tmp_path / "out"
    assert main(["run", "--in", f"phy0={pcap}", "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["suspicious_input"]["short_on_physical_port"] == 1
    assert "under 60 bytes entered a physical port" in capsys.readouterr().err
    out2 = tmp_path / "out2"      # into a VM port the same frames are fine
    assert main(["run", "--in", f"vm1={pcap}", "--out", str(out2)]) == 0
    assert json.loads((out2 / "run.json").read_text())["suspicious_input"]["short_on_physical_port"] == 0
    assert "physical port" not in capsys.readouterr().err


@pytest.mark.parametrize("cut", ["mid-frame", "mid-header"])
def test_truncated_pcap_named(cut, tmp_path, capsys):
    pcap = tmp_path / "cut.pcap"
    write_pcap(pcap, [(_udp_frame(100), 0), (_udp_frame(100), 1000), (_udp_frame(100), 2000)])
    raw = pcap.read_bytes()
    pcap.write_bytes(raw[:-30] if cut == "mid-frame" else raw[:-110])
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["packets_in"] == 2
    assert [t["file"] for t in run["suspicious_input"]["truncated_files"]] == [str(pcap)]
    err = capsys.readouterr().err
    assert err.count(f"{pcap}: truncated capture") == 1


def test_clean_input_has_nothing_suspicious(model_out):
    sus = json.loads((model_out / "run.json").read_text())["suspicious_input"]
    assert sus["snaplen_cut"] == 0 and sus["truncated_files"] == []


# -- the summary and run.json's load figures ---------------------------------------------------------------

def test_model_reports_no_simulation_speed(model_out):
    run = json.loads((model_out / "run.json").read_text())
    assert run["sim_cycles_per_s"] is None


def test_summary_offered_delivered_latency_split(tmp_path, capsys):
    pcap = tmp_path / "in.pcap"
    frames = [(_udp_frame(64), 1000 * i) for i in range(300)] + [(_udp_frame(50)[:30], 400_000)]
    write_pcap(pcap, frames)
    out = tmp_path / "out"
    assert main(["run", "--in", f"phy0={pcap}", "--in", f"vm1={pcap}", "--out", str(out),
                 "--config", "bump-in-the-wire"]) == 0
    text = capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    # two ports at line rate offered into one 10 Gb/s pipeline: offered is twice what is delivered
    assert run["offered"]["gbps"] == pytest.approx(2 * run["line_rate_gbps_per_port"], rel=0.01)
    assert run["delivered"]["gbps"] < 0.55 * run["offered"]["gbps"]
    assert run["packets_out"] == 600 and run["rate_note"] is None
    # one frame size: pipeline latency is one number, and each frame waits for the other port's frame
    pipe, queue, total = (run[k] for k in ("latency_pipeline_cycles", "latency_queueing_cycles", "latency_cycles"))
    assert pipe["max"] == pipe["min"] == 8 + 20
    assert queue["p50"] >= 8 and total["p50"] == pipe["p50"] + queue["p50"]
    for needle in (f"offered          {run['offered']['gbps']} Gb/s, {run['offered']['mpps']} Mpps",
                   f"delivered        {run['delivered']['gbps']} Gb/s", "drops            malformed 2",
                   "latency pipeline p50", "queueing p50", "trunc_l3 2"):
        assert needle in text, (needle, text)
    assert "note" not in text


def test_summary_notes_short_input(tmp_path, capsys):
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [(_udp_frame(64), 0)])
    assert main(["run", "--pcap", str(pcap), "--out", str(tmp_path / "out")]) == 0
    assert "note             only 1 frame(s)" in capsys.readouterr().out
    assert "only 1 frame(s)" in json.loads((tmp_path / "out" / "run.json").read_text())["rate_note"]


def test_demo_prints_the_same_summary(tmp_path, capsys):
    assert main(["demo", "--engine", "model", "--count", "200", "--out", str(tmp_path / "demo")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("secnic demo: model engine")
    for needle in ("offered", "delivered", "drops", "latency pipeline", "queueing"):
        assert needle in text


# -- options ---------------------------------------------------------------------------------------------------

def test_version(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"secnic {version('secnic')}"


@pytest.mark.parametrize("argv", [["-v", "regmap"], ["regmap", "-v"], ["regmap", "--verbose"]])
def test_verbose_before_or_after_command(argv):
    from sim.cli.main import parse_args
    assert parse_args(argv).verbose == 1
    assert parse_args(["-v", *argv]).verbose == 2


def test_bad_option_prints_command_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--pcap", "x.pcap", "--out", str(tmp_path / "o"), "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: secnic run ") and "unrecognized arguments: --bogus" in err
    with pytest.raises(SystemExit):
        main(["--bogus", "regmap"])
    assert capsys.readouterr().err.startswith("usage: secnic [-h]")


def test_every_option_help_shows_its_default():
    from sim.cli.main import build_parser
    _, parsers = build_parser()
    for name, parser in parsers.items():
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                text = parser.formatter_class("x")._get_help_string(action)
                assert "default" in text, f"secnic {name} {action.option_strings[0]}: help has no default"


def test_waves_with_model_refused(tmp_path, capsys):
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [(_udp_frame(64), 0)])
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--waves", "--out", str(out)]) == 2
    assert "--waves needs a simulator engine" in capsys.readouterr().err
    assert not out.exists()


def test_pace_above_line_rate_warned(tmp_path, capsys):
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [(_udp_frame(64), 0)])
    assert main(["run", "--pcap", str(pcap), "--pace", "25", "--out", str(tmp_path / "a")]) == 0
    assert "--pace 25 Gb/s is above a port's line rate (10 Gb/s" in capsys.readouterr().err
    assert main(["run", "--pcap", str(pcap), "--pace", "5", "--out", str(tmp_path / "b")]) == 0
    assert "line rate" not in capsys.readouterr().err


# -- progress --------------------------------------------------------------------------------------------------

def test_progress_silent_when_not_a_tty(tmp_path, capsys):
    """Under pytest stdout is captured, not a terminal: main() leaves the bars off."""
    from sim.run import progress
    progress.enable(True)     # as if a previous command had them on
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [(_udp_frame(64), 0)])
    assert main(["run", "--pcap", str(pcap), "--out", str(tmp_path / "o")]) == 0
    assert not progress.enabled()
    with progress.watch("should not show", lambda: (1, "x"), total=2, interval=0.01):
        import time
        time.sleep(0.05)
    assert "should not show" not in capsys.readouterr().err


def test_progress_bar_when_enabled(capsys):
    import time

    from sim.run import progress
    progress.enable(True)
    try:
        with progress.watch("simulating (test)", lambda: (3, "stage x"), total=4, unit="frames", interval=0.01):
            time.sleep(0.1)
    finally:
        progress.enable(False)
    err = capsys.readouterr().err
    assert "simulating (test): 3/4 frames" in err and "stage x" in err


# -- the model's timing estimate against Verilator ---------------------------------------------------------------

#: How far the model's estimate may be from Verilator on the demo mix (2000 frames; measured 2026-12-07:
#: percentiles 1 cycle apart, mean 1.1 %, cycles 0.07 %): the smallest latency exactly
#: (a lone frame: fixed pipeline plus store-and-forward), percentiles within 2 cycles, the mean
#: within 2 %, total cycles within 0.5 %.
LATENCY_PERCENTILE_BOUND = 2
LATENCY_MEAN_BOUND = 0.02
CYCLES_BOUND = 0.005


@pytest.mark.sim
def test_model_estimate_matches_verilator(tmp_path):
    require_simulator("verilator")
    runs = {}
    for engine in ("model", "verilator"):
        out = tmp_path / engine
        # the full mix, 2000 frames, through the bump in the wire (whose pipeline the constants
        # were measured on; the switch's are estimated from its stages, docs/switch.md)
        assert main(["demo", "--engine", engine, "--out", str(out), "--config", "bump-in-the-wire"]) == 0
        runs[engine] = json.loads((out / "run.json").read_text())
    est, sim = runs["model"], runs["verilator"]
    assert est["latency_cycles"]["min"] == sim["latency_cycles"]["min"]
    for p in ("p50", "p99", "max"):
        assert abs(est["latency_cycles"][p] - sim["latency_cycles"][p]) <= LATENCY_PERCENTILE_BOUND, \
            (p, est["latency_cycles"], sim["latency_cycles"])
    assert est["latency_mean_cycles"] == pytest.approx(sim["latency_mean_cycles"], rel=LATENCY_MEAN_BOUND)
    assert est["cycles"] == pytest.approx(sim["cycles"], rel=CYCLES_BOUND)
    assert est["sim_cycles_per_s"] is None and sim["sim_cycles_per_s"] > 0


def _on_pty(code: str) -> str:
    """Output of ``python -c code`` run on a pseudo-terminal with no window size (like `script`
    started from a non-terminal, or some CI runners)."""
    import os
    import pty
    import subprocess
    import sys
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=slave, stdout=slave, stderr=slave,
                            cwd=REPO_ROOT, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:      # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, out
    return out.decode(errors="replace")


def test_progress_bar_on_a_terminal_without_size():
    out = _on_pty("import time\n"
                  "from sim.run import progress\n"
                  "progress.enable(True)\n"
                  "with progress.watch('simulating (pty)', lambda: (1, None), total=2, unit='frames', "
                  "interval=0.01):\n"
                  "    time.sleep(0.2)\n")
    assert "simulating (pty): 1/2 frames" in out, out


def test_output_into_a_closed_pipe_ends_quietly():
    """``secnic ... | head``: when the reader goes away, no "Broken pipe" error (exit 141, as
    Unix tools do). A long listing fills the pipe's buffer, so the write does fail."""
    import subprocess
    import sys
    rules = SHARED_DATA / "rules" / "emerging-exploit.rules"
    if not rules.exists():
        pytest.skip(f"shared rules not found at {rules}")
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", "rules", "check", str(rules), "--all"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err, err


def test_drops_by_reason_counts_switch_losses():
    """The run summary's drops include a switch port's SWPORT counters (its drop reasons, output
    queue and ingress FIFO losses), not only the PORT block's."""
    from sim.cli.summary import drops_by_reason
    counters = {"ports": {
        "phy0": {"rx_packets": 9, "drop_malformed": 1, "drop_oversize": 0,
                 "switch": {"drop_loop_blocked": 3, "drop_storm_broadcast": 0, "tx_queue_drop": 2,
                            "ingress_full": 4, "ingress_too_long": 1}},
        "vm1": {"rx_packets": 5, "drop_malformed": 2, "switch": {"drop_loop_blocked": 1}},
    }}
    assert drops_by_reason(counters) == {"ingress_full": 4, "ingress_too_long": 1, "loop_blocked": 4,
                                         "malformed": 3, "tx_queue_drop": 2}


def test_bitstream_config_takes_profiles_and_switch_tables(tmp_path):
    """`secnic bitstream --config`: the board's own NIC, a profile by name, a [nic]-only file over
    the board's options, a file with its own [switch]; a bad key is BadInput naming it."""
    from hdl.board.boards import BOARDS
    from sim.cli.main import BadInput, board_config
    board = BOARDS["ulx3s-85f"]
    assert board_config(board, None) == board.config()
    assert board_config(board, "bump-in-the-wire").switch is None
    switch = board_config(board, "switch")
    assert len(switch.ports) == 7 and switch.switch is not None and switch.clock_mhz == board.core_mhz
    nic_only = tmp_path / "nic.toml"
    nic_only.write_text("[nic]\nmax_frame = 1518\n")
    assert board_config(board, nic_only) == board.config({"max_frame": 1518})
    own = tmp_path / "own.toml"
    own.write_text('[nic]\nmax_frame = 1518\n[switch.ports]\na = { mode = "trunk", native = 1 }\nb = { vlan = 2 }\n'
                   "[switch.table]\nsets = 64\n")
    cfg = board_config(board, own)
    assert cfg.ports == ("a", "b") and cfg.max_frame == 1518 and cfg.switch.mac_sets == 64 and cfg.line_tester
    bad = tmp_path / "bad.toml"
    bad.write_text('[switch.ports]\na = { vlan = 5000 }\n')
    with pytest.raises(BadInput, match=r"bad\.toml: switch\.ports\.a\.vlan"):
        board_config(board, bad)


def test_bitstream_switch_profile_on_a_security_board_bypasses_the_host_port():
    """A board whose own NIC has a security stage (ULX3S's profile as its options): its two-port
    build has no host port, so its bypass port resolves to None; the ``switch`` profile built from
    those options must resolve it again to the switch's ``host`` port (else the host's re-injections
    would be inspected again)."""
    import dataclasses

    from hdl.board.boards import BOARDS, ULX3S_NIC
    from sim.cli.main import board_config
    board = dataclasses.replace(BOARDS["ulx3s-85f"], nic=dict(ULX3S_NIC))
    assert board.config(bump=True).security.bypass_port is None
    cfg = board_config(board, "switch")
    assert cfg.security is not None and cfg.security.flow_sets == ULX3S_NIC["security"]["flow_sets"]
    assert cfg.security.bypass_port == cfg.ports.index("host")
