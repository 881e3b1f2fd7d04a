"""The line tester: its host driver (host_driver/blocks/linetest.py) and NicTop with it, end to end.

* Pure Python: argument validation of :class:`host_driver.blocks.linetest.LineTester` (over the golden
  model's register file, :class:`host_driver.model.nic.ModelBus`), the reference signature and the
  reference frames (tests/test_linetest_amaranth.py checks the latter against
  :class:`hdl.board.linetest.FrameGenerator` in Amaranth's simulator).
* cocotb (``linetest_cocotb``), Verilator and Icarus: NicTop built with ``line_tester=True`` and
  the AXI-Lite bus, driven through the real driver; see that module for what is checked,
  stopping and restarting without a reset included.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from hdl.board.linetest import TEMPLATE_BYTES, default_template
from hdl.config import NicConfig
from host_driver.blocks.linetest import (
    DEFAULT_SEED,
    LineTester,
    LineTesterError,
    clamp_frame_len,
    expected_frames,
    expected_signature,
    lfsr_step,
)
from host_driver.driver import Nic
from host_driver.model.nic import ModelBus, NicModel

#: The build the cocotb tests simulate: the default NIC with the line tester and the AXI-Lite bus.
SIM_CONFIG = NicConfig(line_tester=True, uart_bridge=False)


def _icebreaker() -> NicConfig:
    """The iCEBreaker's build (``compact``: the generator without its output slice, sequential
    parser, 1518-byte frames, 32-bit counters) with the AXI-Lite bus instead of the UART bridge."""
    from hdl.board.boards import BOARDS
    return BOARDS["icebreaker"].config({"uart_bridge": False, "line_tester": True})


def _switch() -> NicConfig:
    """A board's switch (hdl.board.boards.linetest_switch) of three ports: a peer pair in VLAN 1
    and the monitor port, with a small MAC table."""
    from hdl.board.boards import linetest_switch, switch_port_names
    return NicConfig(ports=switch_port_names(3), line_tester=True, uart_bridge=False,
                     switch=linetest_switch(3, 156.25, mac_sets=64, mac_ways=2, recorder_depth=16))


#: (simulator, build) pairs: the default build on both simulators, the compact one on Icarus only
#: (a second Verilator build costs more than the whole Icarus run), a switch on Verilator.
SIM_CASES = [("verilator", "default"), ("icarus", "default"), ("icarus", "icebreaker"), ("verilator", "switch")]


def run(coro):
    return asyncio.run(coro)


class RecordingBus(ModelBus):
    """The model's register file, logging every write as (offset in the LINETEST block, value)."""

    def __init__(self, model: NicModel):
        super().__init__(model)
        self.linetest_base = model.regmap.block("LINETEST").base
        self.writes: list[tuple[int, int]] = []

    async def write32(self, addr: int, value: int) -> None:
        await super().write32(addr, value)
        self.writes.append((addr - self.linetest_base, value))


#: LINETEST register offsets as docs/registers.md documents them (not looked up by name, so a
#: driver and a register file that agree on a wrong name-to-offset mapping do not pass).
CONTROL, FRAME_LEN, GAP, SEED = 0x10, 0x14, 0x18, 0x1C


def SIGNATURE(i):  # noqa: N802 (register name)
    return 0x20 + 4 * i


def TEMPLATE(i):  # noqa: N802 (register name)
    return 0x40 + 4 * i


async def _tester(config: NicConfig = SIM_CONFIG) -> tuple[LineTester, RecordingBus]:
    bus = RecordingBus(NicModel(config))
    nic = Nic(bus)
    await nic.discover()
    return LineTester(nic), bus


# -- the reference ------------------------------------------------------------------------------------

def test_signature_of_nothing_and_of_one_beat():
    assert expected_signature([], 8) == 0
    # One beat: the xor of its 32-bit lanes; the next beat rotates it left by one first.
    beat = bytes(range(8))
    lanes = int.from_bytes(beat[:4], "little") ^ int.from_bytes(beat[4:], "little")
    assert expected_signature([beat], 8) == lanes
    assert expected_signature([beat, b"\x01"], 8) == ((lanes << 1 | lanes >> 31) & 0xFFFFFFFF) ^ 1
    # Same bytes, other beat boundaries: another signature (each frame starts a beat).
    assert expected_signature([beat[:5], beat[5:]], 8) != expected_signature([beat], 8)
    # A continuation from a value read before equals the whole computation.
    frames = [bytes(range(n, n + 70)) for n in range(5)]
    assert expected_signature(frames[2:], 8, expected_signature(frames[:2], 8)) == expected_signature(frames, 8)


@pytest.mark.parametrize("bpb,initial,match", [
    (0, 0, "bytes_per_beat must be a positive multiple of 4, not 0"),
    (6, 0, "bytes_per_beat must be a positive multiple of 4, not 6"),
    (8, -1, "initial must be a 32-bit unsigned integer, not -1"),
    (8, 1 << 32, "initial must be a 32-bit unsigned integer, not 4294967296"),
])
def test_signature_arguments(bpb, initial, match):
    with pytest.raises(ValueError, match=f"^{match}$"):
        expected_signature([b"x"], bpb, initial)


def test_expected_frames_layout():
    bpb = 8
    frames = expected_frames(3, 100, bpb, seed=0x1234)
    assert [len(f) for f in frames] == [100] * 3
    assert all(f[:TEMPLATE_BYTES] == default_template() for f in frames)
    # Beat 8 of frame 0 (the first payload beat) is the LFSR after 8 steps from the seed,
    # lane 0 as is, lane 1 rotated right by 7.
    state = 0x1234
    for _ in range(8):
        state = lfsr_step(state)
    rotr7 = (state >> 7 | state << 25) & 0xFFFFFFFF
    assert frames[0][64:72] == state.to_bytes(4, "little") + rotr7.to_bytes(4, "little")
    # The LFSR runs on across frames (13 beats a frame), so payloads differ.
    assert frames[0][64:] != frames[1][64:]
    # Seed 0 is replaced by 0xACE1 in the gateware; a short frame is a template prefix.
    assert expected_frames(2, 200, bpb, seed=0) == expected_frames(2, 200, bpb, seed=DEFAULT_SEED)
    assert expected_frames(1, 60, 64, template=b"\xAA" * 4) == [b"\xAA" * 4 + bytes(56)]
    assert expected_frames(0, 60, 8) == []


@pytest.mark.parametrize("args,match", [
    ((1, 0, 8), "frame_len must be an integer in 1..16383"),
    ((1, 16384, 8), "frame_len must be an integer in 1..16383"),
    ((1, 60, 6), "bytes_per_beat must be a positive multiple of 4, not 6"),
    ((1, 60, 12), "bytes_per_beat must divide the 64-byte template, not 12"),
    ((1, 60, 128), "bytes_per_beat must divide the 64-byte template, not 128"),
    ((-1, 60, 8), "count must be a non-negative integer, not -1"),
])
def test_expected_frames_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        expected_frames(*args)
    with pytest.raises(ValueError, match="template must be at most 64 bytes, not 65"):
        expected_frames(1, 60, 8, template=bytes(65))
    with pytest.raises(ValueError, match="seed must be a 32-bit unsigned integer"):
        expected_frames(1, 60, 8, seed=1 << 32)


def test_clamp():
    assert [clamp_frame_len(n, 1518) for n in (0, 10, 59, 60, 61, 1518, 1519, 1 << 31)] == \
        [60, 60, 60, 60, 61, 1518, 1518, 1518]


# -- the driver over the model's register file --------------------------------------------------------

def test_configure_writes_registers(caplog):
    async def go():
        lt, bus = await _tester()
        template = bytes(range(1, 11))
        with caplog.at_level(logging.WARNING, logger="host_driver.blocks.linetest"):
            s = await lt.configure(10, gap=7, seed=0xABCD, template=template)
        assert "frame_len 10 is outside 60..9216: the NIC generates 60-byte frames" in caplog.text
        assert (s.frame_len, s.effective_len, s.gap, s.seed) == (10, 60, 7, 0xABCD)
        assert s.template == template + bytes(54)
        # FRAME_LEN as given (the NIC clamps), then the template in 32-bit words, first byte low.
        assert bus.writes == [(FRAME_LEN, 10), (GAP, 7), (SEED, 0xABCD), (TEMPLATE(0), 0x04030201),
                              (TEMPLATE(1), 0x08070605), (TEMPLATE(2), 0x0A09)] + \
            [(TEMPLATE(i), 0) for i in range(3, 16)]
        assert lt.expected_frames(2) == expected_frames(2, 60, 8, seed=0xABCD, template=template)
        bus.writes.clear()
        await lt.configure(20000)                   # template None: the reset template again
        reset = default_template()
        assert bus.writes[:3] == [(FRAME_LEN, 20000), (GAP, 0), (SEED, DEFAULT_SEED)]
        assert bus.writes[3:] == [(TEMPLATE(i), int.from_bytes(reset[4 * i:4 * i + 4], "little"))
                                  for i in range(16)]
        assert lt.settings.effective_len == 9216
        bus.writes.clear()
        await lt.start()
        await lt.stop()
        assert bus.writes == [(CONTROL, 1), (CONTROL, 0)]
    run(go())


def test_running_and_signatures_read_the_hardware():
    """running() and signatures() report what the registers hold, set here behind the driver's back."""
    async def go():
        lt, bus = await _tester()
        base = bus.linetest_base
        for control, on in ((1, True), (3, True), (2, False), (0, False)):
            await bus.write32(base + CONTROL, control)
            assert await lt.running() is on, f"CONTROL={control}"
        with pytest.raises(LineTesterError, match=r"^the line tester is running: stop\(\) it before configure\(\)$"):
            await bus.write32(base + CONTROL, 1)
            await lt.configure(100)
        # STATUS words the gateware drives: distinct values per port, read in port order.
        for i, value in enumerate((0x1234_5678, 0x9ABC_DEF0)):
            bus.status[("LINETEST", 0, f"SIGNATURE_{i}")] = value
        bus.status[("LINETEST", 0, "SIGNATURE_2")] = 0xBAD   # no port 2 in this build
        assert await lt.signatures() == [0x1234_5678, 0x9ABC_DEF0]
        assert bus.model.regmap.block("LINETEST").addr("SIGNATURE_1") == base + SIGNATURE(1)
    run(go())


@pytest.mark.parametrize("kwargs,match", [
    ({"frame_len": -1}, "frame_len must be an integer in 0..4294967295 (the NIC clamps it to 60..max_frame), not -1"),
    ({"frame_len": 1 << 32}, "frame_len must be an integer in 0..4294967295"),
    ({"frame_len": 100.0}, "frame_len must be an integer in 0..4294967295 (the NIC clamps it to 60..max_frame), "
                           "not 100.0"),
    ({"frame_len": 100, "gap": 65536}, "gap must be an integer in 0..65535 idle cycles, not 65536"),
    ({"frame_len": 100, "gap": -1}, "gap must be an integer in 0..65535 idle cycles, not -1"),
    ({"frame_len": 100, "seed": 0}, "seed must be a nonzero 32-bit unsigned integer, not 0"),
    ({"frame_len": 100, "seed": 1 << 32}, "seed must be a nonzero 32-bit unsigned integer, not 4294967296"),
    ({"frame_len": 100, "template": bytes(65)}, "template must be at most 64 bytes, not 65"),
    ({"frame_len": 100, "template": "abc"}, "template must be bytes, not str"),
])
def test_configure_rejects(kwargs, match):
    async def go():
        lt, bus = await _tester()
        with pytest.raises(ValueError) as info:
            await lt.configure(**kwargs)
        assert str(info.value).startswith(match)
        assert bus.writes == [], "nothing written"
    run(go())


def test_no_line_tester_and_not_configured():
    async def go():
        nic = Nic(ModelBus(NicModel(NicConfig())))
        await nic.discover()
        with pytest.raises(LineTesterError, match="this NIC build has no line tester"):
            LineTester(nic)
        lt, _ = await _tester()
        with pytest.raises(LineTesterError, match=r"configure\(\) the line tester first"):
            lt.expected_frames(1)
    run(go())


# -- NicTop in Verilator and Icarus (cocotb) ----------------------------------------------------------

def _run(sim: str, build: str, test_filter: str, tmp_path):
    from sim.runner import SimulatorUnavailable, check_simulator, run_cocotb
    try:
        check_simulator(sim)
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    config = {"default": SIM_CONFIG, "icebreaker": _icebreaker, "switch": _switch}[build]
    config = config() if callable(config) else config
    run_cocotb(config, sim, "linetest_cocotb", test_dir=tmp_path / "sim", test_filter=test_filter)


@pytest.mark.sim
@pytest.mark.parametrize("sim,build", SIM_CASES)
def test_nictop_line_tester(sim, build, tmp_path):
    """Frames, records, signatures, counters and the FRAME_LEN clamp (runs separated by resets)."""
    _run(sim, build, r"linetest_cocotb\.(generated_frames_signatures_counters|frame_len_is_clamped)$",
         tmp_path)


@pytest.mark.sim
@pytest.mark.parametrize("sim,build", SIM_CASES)
def test_nictop_line_tester_stop_and_restart(sim, build, tmp_path):
    """Stop between frames and start again without a reset, for GAP 0, 3 and 8 (8: the stop
    swept over a frame period): the generator must hand the port back idle (a frame started as
    the port switched once wedged it for good)."""
    _run(sim, build, r"linetest_cocotb\.stop_and_restart/", tmp_path)
