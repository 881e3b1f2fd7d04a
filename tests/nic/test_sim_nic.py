"""The whole NIC in Verilator and Icarus against the golden model (cocotb module sim/run/nic_cocotb.py).

Stimulus sets: ``edge`` (:func:`sim.tb.traffic.edge_case_frames`, a few thousand parser edge cases
on both ports, every 13th with ``tuser`` = RX error) and ``pcaps`` (every Ethernet frame of the
shared captures). Each cocotb case runs one flow-control combination: source idle cycles on or
off, sink backpressure on or off. The scoreboard (egress bytes per port, every record's
metadata/verdict, counters through the driver) runs inside cocotb; parser fields are also
checked against scapy (sim/tb/scapy_oracle.py) from the recorded metadata.

Budget (2 cores): the default set runs the full matrix on Verilator at W=64, all frames without
flow control plus a subset with both on elsewhere, and the sequential parser
(``NicConfig.parser="sequential"``) on the edge set at W=64 (plain, idle+backpressure) and W=512
(idle+backpressure), and the compact iCEBreaker configuration (``NicConfig.compact``) on the edge
set (Verilator: all frames plain, a subset with idle+backpressure; Icarus: subsets); the rest is
``slow``.
"""

from __future__ import annotations

import functools
import json
import re

import pytest
from conftest import require_simulator, shared_ethernet_frames

from hdl.config import NicConfig

pytestmark = pytest.mark.sim

COMBOS = {
    "plain": (False, False),
    "idle": (True, False),
    "bp": (False, True),
    "idle_bp": (True, True),
}
SUBSET = 400   # frames in the reduced sets (each set's first frames plus a spread of the rest)


@functools.cache
def _edge() -> tuple:
    from sim.tb.traffic import edge_case_frames
    frames = [f for f in edge_case_frames() if f]
    return tuple((i % 2, f, i % 13 == 7) for i, f in enumerate(frames))


@functools.cache
def _pcaps() -> tuple:
    # Files alternate between the two ports so both ingress paths see real traffic.
    files = sorted({str(p) for p, _, _ in shared_ethernet_frames()})
    port = {f: i % 2 for i, f in enumerate(files)}
    return tuple((port[str(p)], f, False) for p, _, f in shared_ethernet_frames())


def _frames(dataset: str, subset: bool) -> list:
    frames = list(_edge() if dataset == "edge" else _pcaps())
    if not frames:
        pytest.skip("no Ethernet captures in the shared data directory")
    if subset and len(frames) > SUBSET:
        head = frames[:SUBSET // 2]
        step = max(1, (len(frames) - len(head)) // (SUBSET - len(head)))
        frames = head + frames[len(head)::step][:SUBSET - len(head)]
    return frames


def _scoreboard(sim: str, width: int, dataset: str, combo: str, tmp_path, subset: bool = False,
                parser: str = "pipelined", config: NicConfig | None = None) -> dict:
    """Run one scoreboard case; return the dumped results (records, egress, counters).

    ``config`` (a whole build configuration) replaces ``width`` and ``parser``."""
    from sim.run.nic_cocotb import read_results, write_stimulus
    from sim.runner import run_cocotb
    require_simulator(sim)
    config = config or NicConfig(data_width=width, parser=parser)
    frames = _frames(dataset, subset)
    idle, bp = COMBOS[combo]
    stim = write_stimulus(tmp_path / "stim.pkl", config, [(p, f, e, None) for p, f, e in frames],
                          output=tmp_path / "results.json")
    run_cocotb(config, sim, "sim.run.nic_cocotb", env={"SECNIC_STIMULUS": str(stim)}, test_dir=tmp_path / "sim",
               test_filter=rf"sim\.run\.nic_cocotb\.scoreboard/idle={idle}/backpressure={bp}$")
    case = f"{'idle' if idle else 'noidle'}-{'bp' if bp else 'nobp'}"
    res = read_results(tmp_path / f"results.{case}.json")
    res["frames"] = frames
    return res


def _check_oracle(config: NicConfig, res: dict) -> None:
    """Parser fields of every record against scapy's dissection of the same frame."""
    from host_driver.trace import trace_record
    from sim.run.engine import decode_record
    from sim.tb.scapy_oracle import ORACLE_FIELDS, ScapyUndecided, expected_fields
    header_reasons = {"trunc_l2", "trunc_l3", "bad_ip_version", "bad_ipv4_ihl", "ip_len_mismatch", "trunc_l4",
                      "bad_tcp_offset"}
    per_port: dict[int, list[bytes]] = {}
    for port, frame, _ in res["frames"]:
        per_port.setdefault(port, []).append(frame)
    taken = dict.fromkeys(per_port, 0)
    bad = []
    for _cycle, bits in res["records"]:
        rec = decode_record(config, bits)
        port = rec["in_port"]
        frame = per_port[port][taken[port]]
        taken[port] += 1
        got = trace_record(rec["meta"], in_port_name=config.ports[port], in_file="", pcap_cnt=0,
                           verdict=rec["verdict"], reason=rec["reason"], egress_names=[])
        try:
            want = expected_fields(frame, physical=config.is_physical(port), header_window=config.header_window,
                                   max_frame=config.max_frame)
        except ScapyUndecided as exc:
            # Malformed: the model (scoreboard) and the hand-written cases hold these to the spec.
            if exc.broken_header and not header_reasons & set(got["malformed"]):
                bad.append(f"{len(frame)}-byte frame {frame[:48].hex()}: scapy saw a broken header "
                           f"({exc}), hw flags {got['malformed']}")
            continue
        diff = {k: (got[k], want[k]) for k in ORACLE_FIELDS if k in want and got.get(k) != want[k]}
        if diff:
            bad.append(f"{len(frame)}-byte frame {frame[:48].hex()}: (hw, scapy) {diff}")
    assert not bad, f"{len(bad)} frame(s) disagree with scapy; first: " + "\n".join(bad[:5])


# -- Verilator W=64: the full matrix ------------------------------------------------------------

@pytest.mark.parametrize("combo", list(COMBOS))
@pytest.mark.parametrize("dataset", ["edge", "pcaps"])
def test_verilator_w64(dataset, combo, tmp_path):
    res = _scoreboard("verilator", 64, dataset, combo, tmp_path)
    if combo == "plain":
        _check_oracle(NicConfig(data_width=64), res)


# -- Verilator W=512: all frames plain, a subset with flow control ------------------------------

@pytest.mark.parametrize("dataset", ["edge", "pcaps"])
def test_verilator_w512(dataset, tmp_path):
    res = _scoreboard("verilator", 512, dataset, "plain", tmp_path)
    _check_oracle(NicConfig(data_width=512), res)


@pytest.mark.parametrize("dataset", ["edge", "pcaps"])
def test_verilator_w512_flow_subset(dataset, tmp_path):
    _scoreboard("verilator", 512, dataset, "idle_bp", tmp_path, subset=True)


# -- Icarus W=64: all frames plain, a subset with flow control ----------------------------------

@pytest.mark.parametrize("dataset", ["edge", "pcaps"])
def test_icarus_w64(dataset, tmp_path):
    _scoreboard("icarus", 64, dataset, "plain", tmp_path)


@pytest.mark.parametrize("combo", ["idle", "bp", "idle_bp"])
def test_icarus_w64_flow_subset(combo, tmp_path):
    _scoreboard("icarus", 64, "edge", combo, tmp_path, subset=True)


# -- Icarus W=512: a subset ------------------------------------------------------------------------

@pytest.mark.parametrize("combo", ["plain", "idle_bp"])
def test_icarus_w512_subset(combo, tmp_path):
    _scoreboard("icarus", 512, "edge", combo, tmp_path, subset=True)


# -- Sequential parser (NicConfig.parser="sequential", the iCEBreaker's) on Verilator ----------------
# W=64 is the board's width; at W=512 every edge frame is one or a few beats, so the parser, not the
# stream, sets the pace and its `space` backpressure runs the whole time.

@pytest.mark.parametrize("combo", ["plain", "idle_bp"])
def test_verilator_w64_sequential(combo, tmp_path):
    res = _scoreboard("verilator", 64, "edge", combo, tmp_path, parser="sequential")
    if combo == "plain":
        _check_oracle(NicConfig(data_width=64, parser="sequential"), res)


def test_verilator_w512_sequential(tmp_path):
    _scoreboard("verilator", 512, "edge", "idle_bp", tmp_path, parser="sequential")


@pytest.mark.slow
@pytest.mark.parametrize("combo", list(COMBOS))
@pytest.mark.parametrize("dataset", ["edge", "pcaps"])
def test_verilator_sequential_slow(dataset, combo, tmp_path):
    if dataset == "edge" and combo in ("plain", "idle_bp"):
        pytest.skip("in the default set (test_verilator_w64_sequential)")
    _scoreboard("verilator", 64, dataset, combo, tmp_path, parser="sequential")


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["edge", "pcaps"])
def test_verilator_w512_sequential_slow(dataset, tmp_path):
    res = _scoreboard("verilator", 512, dataset, "plain", tmp_path, parser="sequential")
    _check_oracle(NicConfig(data_width=512, parser="sequential"), res)


# -- Compact build (NicConfig.compact): the iCEBreaker's configuration without its board I/O ------------
# Sequential parser, 32-bit counters, 1518-byte frames, 4 KiB buffer, no register slices, block-RAM
# FIFOs, the shortest buffer slack. Verilator runs every edge frame (plus the scapy oracle) and a
# subset with idle cycles and backpressure; Icarus a subset of each.

def _icebreaker() -> NicConfig:
    from hdl.board.boards import BOARDS
    config = BOARDS["icebreaker"].config({"uart_bridge": False, "line_tester": False})
    assert config.compact and config.parser == "sequential" and config.counter_width == 32
    return config


@pytest.mark.parametrize("sim,combo,subset", [
    ("verilator", "plain", False), ("verilator", "idle_bp", True),
    ("icarus", "plain", True), ("icarus", "idle_bp", True),
])
def test_compact_icebreaker(sim, combo, subset, tmp_path):
    config = _icebreaker()
    res = _scoreboard(sim, config.data_width, "edge", combo, tmp_path, subset=subset, config=config)
    if combo == "plain" and not subset:
        _check_oracle(config, res)


@pytest.mark.slow
@pytest.mark.parametrize("combo", ["idle", "bp", "idle_bp"])
def test_compact_icebreaker_slow(combo, tmp_path):
    _scoreboard("verilator", 64, "pcaps", combo, tmp_path, config=_icebreaker())


# -- the rest of the matrix: slow ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("combo", ["idle", "bp", "idle_bp"])
@pytest.mark.parametrize("dataset", ["edge", "pcaps"])
@pytest.mark.parametrize("sim,width", [("verilator", 512), ("icarus", 64), ("icarus", 512)])
def test_full_matrix_slow(sim, width, dataset, combo, tmp_path):
    _scoreboard(sim, width, dataset, combo, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("width", [128, 256])
def test_verilator_other_widths_slow(width, tmp_path):
    _scoreboard("verilator", width, "edge", "idle_bp", tmp_path)


# -- framework behaviour ------------------------------------------------------------------------------

@pytest.mark.parametrize("perturb,message", [
    ("none", None),
    ("meta", r"meta differs \(hw, model\): \{'ip_ttl': \(64, 65\)\}"),
    ("counter", r"counters differ:"),
], ids=["none", "meta", "counter"])
def test_scoreboard_mismatch_fails(perturb, message, tmp_path):
    """The gateware against a golden model with one deliberate error (tests/nic/nic_mismatch_cocotb.py):
    the scoreboard must fail, and run_cocotb must raise CocotbTestFailure naming the difference
    (the results file is checked, inside or outside pytest). Unperturbed, the same run passes."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from sim.run.nic_cocotb import write_stimulus
    from sim.runner import CocotbTestFailure, run_cocotb
    require_simulator("icarus")
    config = NicConfig()
    frames = [(i % 2, bytes(Ether() / IP(ttl=64, id=i) / UDP(sport=1000 + i) / bytes(30)), False, None)
              for i in range(4)]
    stim = write_stimulus(tmp_path / "stim.pkl", config, frames)

    def go():
        run_cocotb(config, "icarus", "nic_mismatch_cocotb",
                   env={"SECNIC_STIMULUS": str(stim), "SECNIC_PERTURB": perturb}, test_dir=tmp_path / "sim",
                   test_filter=r"sim\.run\.nic_cocotb\.scoreboard/idle=False/backpressure=False$")
    if message is None:
        go()
        return
    with pytest.raises(CocotbTestFailure, match="1 of 1 cocotb test") as info:
        go()
    assert re.search(message, str(info.value)), str(info.value)[-3000:]


def test_results_file_is_json(tmp_path):
    """The run mode's dump is plain JSON with the documented keys."""
    from sim.run.nic_cocotb import write_stimulus
    from sim.runner import run_cocotb
    require_simulator("icarus")
    config = NicConfig()
    frames = [(i % 2, bytes([i]) * (60 + i), False, 10 * i) for i in range(6)]
    stim = write_stimulus(tmp_path / "stim.pkl", config, frames, output=tmp_path / "out.json")
    run_cocotb(config, "icarus", "sim.run.nic_cocotb", env={"SECNIC_STIMULUS": str(stim)},
               test_dir=tmp_path / "sim", test_filter=r"sim\.run\.nic_cocotb\.run$")
    res = json.loads((tmp_path / "out.json").read_text())
    assert set(res) >= {"records", "ingress", "egress", "counters", "cycles", "total_cycles", "wall_s"}
    assert len(res["records"]) == 6
    assert [len(v) for v in res["egress"].values()] == [3, 3]
    # paced: frame i may not start before cycle 10*i
    assert all(ing[0] >= 10 * i for i, ing in enumerate(res["ingress"]))
