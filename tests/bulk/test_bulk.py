"""Bulk mode (sim/bulk): the same run files as the cocotb testbench, cycle for cycle; long runs
balance their counters; parallel segments change timing figures only; failures name the frame.

The cocotb path's sources and sinks are cocotbext-axi's, which nobody here wrote: bulk mode's C++
sources and sinks are held to them, frame for frame and cycle for cycle, at W=64 and W=512, at
line rate and paced, on the shared captures, the demo mix, the hand-written malformed cases and
frames with the RX error bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require_simulator, shared_ethernet_frames

from hdl.config import NicConfig
from sim.run.engine import EngineError, InputFrame, run_engine

pytestmark = pytest.mark.sim

FILES = ["trace.jsonl", "counters.json", "eve.json", "egress/phy0.pcap", "egress/vm1.pcap"]
#: run.json figures that come from the simulation and must agree to the cycle.
TIMING = ["cycles", "packets_out", "bytes_out", "gbps", "mpps", "offered", "delivered", "latency_cycles",
          "latency_ns", "latency_mean_cycles", "latency_pipeline_cycles", "latency_queueing_cycles"]


def _inputs(config: NicConfig, with_shared: bool = True) -> list[InputFrame]:
    """Shared captures on phy0 (each frame with its file and index), the demo mix, the malformed
    cases, frames of every size around one beat and a few with the RX error bit."""
    from sim.cli.demo import demo_inputs
    from sim.tb.parser_cases import malformed_cases
    from sim.tb.traffic import udp_frames
    out = []
    if with_shared:
        out += [InputFrame("phy0", path.name, idx, frame, 1000 * k)
                for k, (path, idx, frame) in enumerate(f for f in shared_ethernet_frames()
                                                       if f[0].parent.name == "pcaps")]
    out += demo_inputs(config, 300, seed=5)
    for k, case in enumerate(malformed_cases()):
        out.append(InputFrame("vm1" if k % 2 else "phy0", f"case:{case.name}", 1, case.frame))
    sizes = list(range(1, 2 * config.bytes_per_beat + 2)) + [config.max_frame, config.max_frame + 1]
    longest = udp_frames(1, config.max_frame)[0]
    for size in sizes:
        out.append(InputFrame("vm1", "sizes", size, (longest + b"\x00")[:size]))
    for k, frame in enumerate(udp_frames(6, 200, seed=9)):
        out.append(InputFrame("phy0" if k % 2 else "vm1", "rx_error", k + 1, frame, rx_error=k % 3 == 0))
    return out


def _compare(bulk: Path, cocotb: Path) -> None:
    for name in FILES:
        assert (bulk / name).read_bytes() == (cocotb / name).read_bytes(), f"{name} differs"
    b = json.loads((bulk / "run.json").read_text())
    c = json.loads((cocotb / "run.json").read_text())
    assert (b["sim_mode"], c["sim_mode"]) == ("bulk", "cocotb")
    for key in TIMING:
        assert b[key] == c[key], f"run.json {key}: bulk {b[key]} cocotb {c[key]}"


@pytest.mark.parametrize("width,pace", [(64, "line"), (64, "2.5"), (64, "pcap"), (512, "line"), (512, "pcap")])
def test_bulk_writes_the_cocotb_files(width, pace, tmp_path):
    """Every output file byte for byte, and run.json's timing to the cycle. ``pcap`` pacing uses
    the generated frames only (the captures' real gaps span seconds)."""
    require_simulator("verilator")
    config = NicConfig(data_width=width)
    inputs = _inputs(config, with_shared=pace != "pcap")
    runs = {}
    for bulk in (True, False):
        out = tmp_path / ("bulk" if bulk else "cocotb")
        runs[bulk] = run_engine(config, inputs, "verilator", pace=pace, out_dir=out, bulk=bulk)
    _compare(tmp_path / "bulk", tmp_path / "cocotb")
    assert runs[True]["packets_out"] > len(inputs) // 2, "most frames must be forwarded, or little is compared"


def test_auto_mode_follows_size(tmp_path):
    from sim.run.engine import BULK_MIN_FRAMES, use_bulk
    assert use_bulk("verilator", BULK_MIN_FRAMES) and not use_bulk("verilator", BULK_MIN_FRAMES - 1)
    assert not use_bulk("icarus", 10 * BULK_MIN_FRAMES) and not use_bulk("model", 10 * BULK_MIN_FRAMES)
    assert not use_bulk("verilator", BULK_MIN_FRAMES, waves=True)
    assert use_bulk("verilator", 5, bulk=True) and not use_bulk("verilator", 10 ** 6, bulk=False)
    for engine, bulk, waves, jobs in (("icarus", True, False, 1), ("verilator", True, True, 1),
                                      ("model", None, False, 2), ("verilator", False, False, 2)):
        with pytest.raises(ValueError):
            use_bulk(engine, 10, bulk, waves, jobs)


@pytest.mark.parametrize("argv,needle", [(["--engine", "icarus", "--bulk"], "Verilator only"),
                                         (["--engine", "verilator", "--bulk", "--waves"], "--no-bulk"),
                                         (["--engine", "model", "--jobs", "2"], "--jobs"),
                                         (["--engine", "verilator", "--jobs", "0"], "--jobs")])
def test_impossible_bulk_options_exit_2(argv, needle, tmp_path, capsys):
    from sim.cli.main import main
    from sim.run.pcapio import write_pcap
    from sim.tb.traffic import udp_frames
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [(udp_frames(1)[0], 0)])
    assert main(["run", "--pcap", str(pcap), "--out", str(tmp_path / "out"), *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_segments_change_timing_only(tmp_path):
    """``--jobs 3``: the per-frame files are those of one run; counters add up."""
    require_simulator("verilator")
    from sim.cli.demo import demo_inputs
    config = NicConfig()
    inputs = demo_inputs(config, 3000, seed=2)
    one = run_engine(config, inputs, "verilator", out_dir=tmp_path / "one", bulk=True)
    three = run_engine(config, inputs, "verilator", out_dir=tmp_path / "three", jobs=3)
    for name in FILES:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes(), name
    assert (one["segments"], three["segments"]) == (1, 3)
    assert three["packets_out"] == one["packets_out"]
    # Segments run one after another in the merged figures: the cut drains the pipeline once per
    # segment, so the merged run is a little longer, never shorter.
    assert one["cycles"] <= three["cycles"] <= one["cycles"] * 1.05


def test_split_keeps_each_port_in_order():
    from sim.bulk.run import split_segments
    config = NicConfig()
    frames = [(k % 2, bytes(60 + 40 * (k % 5)), False, None) for k in range(101)]
    segments = split_segments(config, frames, 4)
    assert sorted(i for s in segments for i in s) == list(range(101))
    for port in (0, 1):
        order = [i for s in segments for i in s if frames[i][0] == port]
        assert order == sorted(order)
    assert len(segments) == 4 and max(map(len, segments)) - min(map(len, segments)) <= 26


def test_million_frames_balance(tmp_path):
    """1,000,000 frames through bulk mode: every frame has its record, every forwarded frame left,
    and per port received = sent + dropped (by reason)."""
    require_simulator("verilator")
    from sim.bulk.run import run_bulk
    from sim.tb.parser_cases import malformed_cases
    from sim.tb.traffic import udp_frames
    config = NicConfig()
    # Minimum-size frames (8 beats: 8 million cycles in all) and the short malformed cases.
    templates = udp_frames(61, 60) + [c.frame for c in malformed_cases() if 0 < len(c.frame) <= 64][:3]
    n = 1_000_000
    frames = [(k % 2, templates[k % len(templates)], False, None) for k in range(n)]
    res = run_bulk(config, frames, tmp_path)
    assert not res["status"]["timed_out"]
    assert len(res["records"]) == n
    assert all(ing is not None for ing in res["ingress"])
    ports = res["counters"]["ports"]
    names = list(config.ports)
    assert sum(p["rx_packets"] for p in ports.values()) == n
    for i, name in enumerate(names):
        other = ports[names[1 - i]]
        drops = sum(v for k, v in ports[name].items() if k.startswith("drop_"))
        assert ports[name]["rx_packets"] == other["tx_packets"] + drops
        assert len(res["egress"][name]) == ports[name]["tx_packets"]
    assert sum(v for p in ports.values() for k, v in p.items() if k.startswith("drop_")) > 0, \
        "the mix holds malformed frames: some must be dropped"


def test_stuck_frame_named_with_its_pcap_index(tmp_path, monkeypatch):
    """A run that ends before every frame has its record names the first such frame by file and
    index (here: the simulation is given too few cycles)."""
    require_simulator("verilator")
    import sim.bulk.run as bulk_run
    from sim.tb.traffic import udp_frames
    monkeypatch.setattr(bulk_run, "timeout_cycles", lambda config, frames: 40)
    inputs = [InputFrame("vm1", "late.pcap", k + 1, f) for k, f in enumerate(udp_frames(20, 300))]
    with pytest.raises(EngineError, match=r"timed out before late\.pcap frame #\d+ \(port vm1\)"):
        run_engine(NicConfig(), inputs, "verilator", out_dir=tmp_path / "out", bulk=True)
    assert not (tmp_path / "out").exists()


def test_corrupted_egress_frame_named_with_its_pcap_index():
    """Egress that differs from the frame it forwards is reported with that frame's file and index."""
    from hdl.packet.meta import make_verdict_record
    from sim.run.engine import _collate
    config = NicConfig()
    frame = bytes(range(60))
    inputs = [InputFrame("phy0", "in.pcap", k + 1, frame) for k in range(3)]
    # in_port 0 (phy0), forwarded to port 1 (vm1); everything else zero
    record = 1 << (make_verdict_record(config.port_bits, 2)["egress"].offset + 1)
    sent = [{"data": frame, "start": 30 + k, "end": 38 + k} for k in range(3)]
    sent[1]["data"] = frame[:-1] + b"\xff"
    res = {"records": [[10 + k, record] for k in range(3)], "ingress": [[k, k + 8] for k in range(3)],
           "egress": {"phy0": [], "vm1": sent}, "counters": {}, "total_cycles": 50, "wall_s": 0.1}
    with pytest.raises(EngineError, match=r"frame 2 of port vm1 differs from in\.pcap frame #2 \(port phy0\)"):
        _collate(config, inputs, res, "verilator", {"phy0": 0, "vm1": 1})


@pytest.mark.slow
def test_million_frame_capture_through_secnic_run(tmp_path):
    """``secnic run`` on a 1,000,000-frame capture: bulk mode by itself, every file written, the
    trace one line per frame, counters balanced (``make test-slow``; about two minutes)."""
    require_simulator("verilator")
    from sim.cli.main import main
    from sim.run.pcapio import write_pcap
    from sim.tb.traffic import udp_frames
    templates = udp_frames(64, 60)
    n = 1_000_000
    pcap = tmp_path / "million.pcap"
    write_pcap(pcap, ((templates[k % 64], 1_000 * k) for k in range(n)))
    out = tmp_path / "out"
    assert main(["run", "--engine", "verilator", "--in", f"vm1={pcap}", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["sim_mode"] == "bulk" and run["packets_in"] == n == run["packets_out"]
    with open(out / "trace.jsonl") as fh:
        assert sum(1 for _ in fh) == n
    ports = json.loads((out / "counters.json").read_text())["ports"]
    assert ports["vm1"]["rx_packets"] == n == ports["phy0"]["tx_packets"]


def test_board_build_refused_by_simulators(tmp_path, capsys):
    """A configuration with the UART bridge has no AXI-Lite bus to read counters through."""
    from sim.cli.main import main
    from sim.run.pcapio import write_pcap
    from sim.tb.traffic import udp_frames
    pcap, toml = tmp_path / "in.pcap", tmp_path / "board.toml"
    write_pcap(pcap, [(udp_frames(1)[0], 0)])
    toml.write_text("[nic]\nuart_bridge = true\n")
    for engine in ("verilator", "icarus"):
        assert main(["run", "--pcap", str(pcap), "--config", str(toml), "--engine", engine,
                     "--out", str(tmp_path / engine)]) == 2
        assert "uart_bridge = false" in capsys.readouterr().err
    assert main(["run", "--pcap", str(pcap), "--config", str(toml), "--out", str(tmp_path / "model")]) == 0


def test_jobs_from_a_plain_script(tmp_path):
    """A user's script calling run_engine(jobs=2) at top level, with no ``__main__`` guard (a
    process pool once re-ran such a script in its workers and failed)."""
    require_simulator("verilator")
    import subprocess
    import sys

    from conftest import REPO_ROOT
    script = tmp_path / "sweep.py"
    script.write_text(
        "from hdl.config import NicConfig\n"
        "from sim.cli.demo import demo_inputs\n"
        "from sim.run.engine import run_engine\n"
        f"run = run_engine(NicConfig(), demo_inputs(NicConfig(), 300), 'verilator', out_dir={str(tmp_path / 'out')!r}, "
        "jobs=2)\n"
        "print(run['segments'], run['packets_in'])\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["2", "300"]
