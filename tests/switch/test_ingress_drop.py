"""Ingress FIFOs that drop whole frames (``ingress = "drop"``), in the whole NIC on both simulators.

Three ports send 64-byte frames back to back (100 % of line rate each) to one host port, three
times what the shared pipeline carries (one frame per FRAME_CYCLES), and never wait: each port
must take every beat, and its ingress FIFO drop whole frames when it is full. One port also sends
a 9216-byte jumbo frame, longer than its 1 KiB FIFO. The run goes through the engine (``secnic
run``), which checks the gateware against the golden model fed the frames that passed the FIFOs
and reconciles every counter; on top of that this test holds the run files to what was sent:
every frame out is byte for byte a frame sent, and per port, frames sent = frames forwarded +
frames dropped (by reason).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from host_driver.switch_config import SwitchConfig, nic_config
from sim.run.engine import InputFrame, run_engine
from sim.run.pcapio import read_pcap

pytestmark = pytest.mark.sim

PORTS = ("phy0", "vm1", "vm2", "host")
SENDERS = ("phy0", "vm1", "vm2")
HOST = bytes.fromhex("02000000ff01")
ETH_LOCAL = b"\x88\xb5"
BURST = 60          # frames per sending port
FIFO_BYTES = 1024   # 16 frames of 64 bytes
JUMBO = 9216


def config():
    table = {"ports": {"phy0": {"mode": "trunk", "native": 1}, "vm1": {"vlan": 1}, "vm2": {"vlan": 1},
                       "host": {"vlan": 1}},
             "loop_guard": False, "table": {"sets": 64}, "ingress": "drop", "ingress_fifo_bytes": FIFO_BYTES}
    return nic_config(SwitchConfig.from_toml(table), {"data_width": 64, "ports": list(PORTS)})


def frame(port: int, seq: int, length: int = 64) -> bytes:
    src = bytes([2, 0, 0, 0, port + 1, 1])
    body = bytes([port, seq]) + bytes((port * 31 + seq + k) & 0xFF for k in range(length - 16))
    return HOST + src + ETH_LOCAL + body


def inputs() -> list[InputFrame]:
    """The host announces itself (a broadcast, learned), then the senders burst from cycle ~156."""
    learn = b"\xff" * 6 + HOST + ETH_LOCAL + bytes(50)
    out = [InputFrame("host", "t.pcap", 1, learn, ts_ns=0)]
    for seq in range(BURST):
        for p, name in enumerate(SENDERS):
            length = JUMBO if (name, seq) == ("vm1", BURST // 2) else 64
            out.append(InputFrame(name, "t.pcap", len(out) + 1, frame(p, seq, length), ts_ns=1000))
    return out


def check_run(out, frames: list[InputFrame]) -> None:
    counters = json.loads((out / "counters.json").read_text())["ports"]
    trace = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    assert len(trace) == len(frames)
    sent_on = Counter(f.port for f in frames)
    by_bytes = {f.frame: f for f in frames}
    # Every frame out is a frame sent, whole; and each port's frames leave in the order sent.
    forwarded = Counter()
    last_seq: dict[str, int] = {}
    for name in PORTS:
        for pf in read_pcap(out / "egress" / f"{name}.pcap"):
            data = pf.data
            f = by_bytes.get(bytes(data))
            assert f is not None, f"{name} sent {len(data)} bytes that are no frame sent: {bytes(data[:20]).hex()}"
            if name == "host":
                assert f.port in SENDERS
                assert f.pcap_cnt > last_seq.get(f.port, 0), "frames of one port left out of order"
                last_seq[f.port] = f.pcap_cnt
                forwarded[f.port] += 1
    dropped = {name: Counter(r["reason"] for r in trace if r["in_port"] == name and r["verdict"] == "drop")
               for name in PORTS}
    for name in SENDERS:
        c = counters[name]
        sw = c["switch"]
        full, too_long = sw["ingress_full"], sw["ingress_too_long"]
        assert full > 0, f"{name}: three ports at line rate into a pipeline that carries one must drop"
        assert too_long == (1 if name == "vm1" else 0), f"{name}: {too_long} too long"
        # Received = forwarded + dropped, exactly, counted by the gateware and by frame.
        assert c["rx_packets"] + full + too_long == sent_on[name]
        assert forwarded[name] + full + too_long == sent_on[name]
        assert dropped[name] == Counter({"ingress_full": full, "ingress_too_long": too_long}), dropped[name]
        assert c["rx_packets"] == forwarded[name]
    jumbo = next(r for r, f in zip(trace, frames, strict=True) if len(f.frame) == JUMBO)
    assert jumbo["reason"] == "ingress_too_long"
    assert counters["host"]["tx_packets"] == sum(forwarded.values())


@pytest.mark.parametrize("engine", ["verilator", "icarus"])
def test_line_rate_bursts_drop_whole_frames_at_ingress(tmp_path, engine):
    cfg = config()
    frames = inputs()
    run = run_engine(cfg, frames, engine=engine, pace="pcap", out_dir=tmp_path / "out", bulk=False)
    assert run["packets_in"] == len(frames) and run["sim_mode"] == "cocotb"
    check_run(tmp_path / "out", frames)


#: Run files a bulk run and a cocotb run of the same frames must agree on byte for byte.
FILES = ["trace.jsonl", "counters.json", *(f"egress/{p}.pcap" for p in PORTS)]


@pytest.mark.slow      # builds the bulk-mode model: over a minute
def test_bulk_mode_records_the_same_ingress_drops(tmp_path):
    """Bulk mode's C++ capture of the ingress fates, held to the cocotb testbench's (whose sources
    are cocotbext-axi's): the same files byte for byte and the same cycle count."""
    cfg = config()
    frames = inputs()
    runs = {bulk: run_engine(cfg, frames, engine="verilator", pace="pcap", out_dir=tmp_path / str(bulk), bulk=bulk)
            for bulk in (True, False)}
    assert (runs[True]["sim_mode"], runs[False]["sim_mode"]) == ("bulk", "cocotb")
    assert runs[True]["cycles"] == runs[False]["cycles"]
    for name in FILES:
        assert (tmp_path / "True" / name).read_bytes() == (tmp_path / "False" / name).read_bytes(), name
    check_run(tmp_path / "True", frames)
