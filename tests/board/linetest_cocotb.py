"""cocotb tests: NicTop's built-in line tester end to end, through the real host driver.

Top: ``secnic_top`` built with ``NicConfig(line_tester=True, uart_bridge=False)`` (config in
``SECNIC_CONFIG``, set by :func:`sim.runner.run_cocotb`); run through
``tests/test_linetest_cocotb.py`` on Verilator and Icarus.

The registers are driven by :class:`host_driver.blocks.linetest.LineTester` on the
:class:`host_driver.driver.Nic` driver over the AXI-Lite bus (:class:`sim.tb.nic.AxiLiteBus`); egress
frames are collected by :class:`sim.tb.nic.TB`'s sinks and records by its record monitor. Every run
(configure, start, some hundreds of cycles, stop, wait until idle) checks:

* on every egress port, whole frames equal to the reference generator's
  (:func:`host_driver.blocks.linetest.expected_frames`), in order, the LFSR starting from the seed;
* every record: generated on port ``i``, forwarded out of port ``i ^ 1`` (the bump's forwarder, or a
  board switch's VLAN of the pair: hdl.board.boards.linetest_switch), and as many frames out of port
  ``i ^ 1`` as records from port ``i``; a switch's odd port out (its monitor port) sends nothing and
  has its own frames dropped as ``monitor_port``;

and before each reset, over everything sent since the previous one:

* SIGNATURE_i equals :func:`host_driver.blocks.linetest.expected_signature` of what left port ``i``;
* the counters: per port, received = sent by the peer + dropped (no drops but the monitor port's),
  RX/TX packets and bytes equal to the frames seen.

Tests: ``generated_frames_signatures_counters`` and ``frame_len_is_clamped`` reset the NIC between
runs; ``stop_and_restart`` starts the tester again after a stop without a reset.
"""

from __future__ import annotations

import json
import logging
import os

import cocotb
from cocotb.triggers import ClockCycles

from hdl.board.linetest import TEMPLATE_BYTES, default_template, port_template
from hdl.config import NicConfig
from hdl.packet.meta import DropReason
from host_driver.blocks.linetest import LineTester, expected_signature
from host_driver.driver import Nic, received_drops
from sim.tb.nic import TB

log = logging.getLogger(__name__)


def _marked(frame: bytes, port: int) -> bytes:
    """``frame`` with its addresses marked as generator ``port`` marks them (hdl.board.linetest.port_template)."""
    head = min(len(frame), TEMPLATE_BYTES)
    return port_template(frame[:head], port)[:head] + frame[head:]


def _config() -> NicConfig:
    return NicConfig.from_dict(json.loads(os.environ["SECNIC_CONFIG"]), source="SECNIC_CONFIG")


class LineTestBench:
    """The NIC's TB plus the driver and the line tester; keeps every frame seen since reset.

    ``sent[j]`` lists the frames that left egress port ``j`` since the last reset (generated and
    external alike).
    """

    def __init__(self, dut, config: NicConfig):
        self.config = config
        self.tb = TB(dut, config)
        self.nic = Nic(self.tb.bus)
        self.lt: LineTester | None = None
        self.n_ports = len(config.ports)
        self.sent: list[list[bytes]] = [[] for _ in range(self.n_ports)]

    async def setup(self) -> None:
        await self.tb.reset()
        self.tb.start_record_monitor()
        await self.nic.discover()
        self.lt = LineTester(self.nic)

    async def reset(self, check: bool = True) -> None:
        """Check everything since the last reset (:meth:`check_totals`, unless not ``check``), then
        reset the NIC."""
        if check:
            await self.check_totals()
        else:
            self.take_egress()
        await self.tb.reset()
        self.sent = [[] for _ in range(self.n_ports)]

    @property
    def bpb(self) -> int:
        return self.config.bytes_per_beat

    def take_egress(self) -> list[list[bytes]]:
        """Drain every sink: the frames received since the last call, per port (bytes kept by tkeep).

        Each frame's beats must be packed (all bytes kept but in the last beat, kept bytes from
        byte 0): the signature depends on the beat boundaries."""
        out = []
        for j, name in enumerate(self.config.ports):
            frames = []
            snk = self.tb.sinks[name]
            while not snk.empty():
                fr = snk.recv_nowait(compact=False)
                keep = list(fr.tkeep)
                n = sum(keep)
                assert keep[:n] == [1] * n and len(keep) - n < self.bpb, \
                    f"egress {name} frame {len(self.sent[j]) + len(frames)}: tkeep not packed {keep}"
                frames.append(bytes(fr.tdata[:n]))
            self.sent[j] += frames
            out.append(frames)
        return out

    async def wait_idle(self, frame_len: int) -> None:
        """Wait until no record came for a quiet window (three frame times: each generator
        finishes its frame, one after the other through the arbiter), then until every recorded
        frame has left its egress port; AssertionError if frames still come after some 50 frame
        times (the generators did not stop)."""
        beats = -(-frame_len // self.bpb)
        quiet = 3 * beats + 64
        timeout_cycles = 50 * beats + 4000
        tb = self.tb
        deadline = tb.cycle() + timeout_cycles
        seen = -1
        while len(tb.records) != seen:
            if tb.cycle() > deadline:
                raise AssertionError(f"frames still arrive {timeout_cycles} cycles after the stop "
                                     f"({len(tb.records)} records): the generators did not stop")
            seen = len(tb.records)
            await ClockCycles(tb.dut.clk, quiet)
        counts = dict.fromkeys(self.config.ports, 0)
        for rec in tb.records:
            for q in rec.egress_ports:
                counts[self.config.ports[q]] += 1
        for j, name in enumerate(self.config.ports):
            counts[name] -= len(self.sent[j])            # frames taken by earlier runs
        await tb.wait_egress(counts, timeout_cycles)

    async def run(self, frame_len: int, gap: int, seed: int, *, template: bytes | None = None,
                  cycles: int = 400, min_frames: int = 2) -> list[list[bytes]]:
        """One generator run; returns the frames that left each egress port and checks them."""
        lt, tb = self.lt, self.tb
        settings = await lt.configure(frame_len, gap=gap, seed=seed, template=template)
        first_record = len(tb.records)
        await lt.start()
        assert await lt.running()
        await tb.cycles(cycles)
        await lt.stop()
        await self.wait_idle(settings.effective_len)
        egress = self.take_egress()
        records = tb.records[first_record:]
        what = f"run frame_len={frame_len} gap={gap} seed=0x{seed:x}"
        for rec in records:
            peer = rec.in_port ^ 1
            if peer >= self.n_ports:
                assert rec.egress_ports == [] and rec.reason == DropReason.MONITOR_PORT, \
                    f"{what}: frame generated on the monitor port: {rec}"
                continue
            assert rec.egress_ports == [peer], \
                f"{what}: frame generated on port {rec.in_port} left by {rec.egress_ports}, expected [{peer}]"
        for j, frames in enumerate(egress):
            name = self.config.ports[j]
            if j ^ 1 >= self.n_ports:
                assert frames == [], f"{what}: the monitor port {name} sent {len(frames)} frames"
                continue
            generated = sum(1 for rec in records if rec.in_port == j ^ 1)
            assert len(frames) == generated, \
                f"{what}: egress {name}: {len(frames)} frames for {generated} generated on its peer"
            assert len(frames) >= min_frames, f"{what}: egress {name}: only {len(frames)} frame(s)"
            want = lt.expected_frames(len(frames), port=j ^ 1)   # marked by the peer generator
            for k, (got, exp) in enumerate(zip(frames, want)):
                assert got == exp, (f"{what}: egress {name} frame {k}: got {len(got)} bytes {got[:80].hex()}..., "
                                    f"expected {len(exp)} bytes {exp[:80].hex()}...")
        log.info("%s: %s frames out", what, [len(f) for f in egress])
        return egress

    async def send_external(self, frames: dict[int, bytes]) -> None:
        """Send one frame on each given ingress port; check it leaves by the peer port unchanged.
        Each is marked like the port's generator marks its frames (a switch forwards by address)."""
        tb = self.tb
        frames = {port: _marked(frame, port) for port, frame in frames.items()}
        for port, frame in frames.items():
            await tb.sources[self.config.ports[port]].send(tb.make_frame(frame, False))
        counts = {name: 0 for name in self.config.ports}
        for port in frames:
            counts[self.config.ports[port ^ 1]] += 1
        await tb.wait_egress(counts, 20_000)
        egress = self.take_egress()
        for port, frame in frames.items():
            assert egress[port ^ 1] == [frame], \
                f"external frame on port {port}: egress {[f.hex() for f in egress[port ^ 1]]}"

    async def check_totals(self) -> None:
        """SIGNATURE registers and counters against everything that left the ports since reset."""
        self.take_egress()
        await self.tb.cycles(16)         # counter and signature pipelines
        sigs = await self.lt.signatures()
        want = [expected_signature(self.sent[j], self.bpb) for j in range(self.n_ports)]
        assert sigs == want, ("SIGNATURE registers " + ", ".join(f"0x{s:08x}" for s in sigs)
                              + " expected " + ", ".join(f"0x{s:08x}" for s in want))
        counters = (await self.nic.counters())["ports"]
        names = list(self.config.ports)
        for i, name in enumerate(names):
            c = counters[name]
            drops = received_drops(c)
            records = sum(1 for r in self.tb.records if r.in_port == i)
            if i ^ 1 >= self.n_ports:            # the monitor port: everything it received dropped
                monitor_drops = c["switch"]["drop_monitor_port"]
                assert c["rx_packets"] == records == drops == monitor_drops and c["tx_packets"] == 0, \
                    f"monitor port {name} counters {c}, {records} records"
                continue
            peer = names[i ^ 1]
            sent_by_peer = self.sent[i ^ 1]
            expected = {"rx_packets": len(sent_by_peer), "rx_bytes": sum(map(len, sent_by_peer)),
                        "tx_packets": len(self.sent[i]), "tx_bytes": sum(map(len, self.sent[i]))}
            got = {k: c[k] for k in expected}
            assert got == expected and drops == 0, f"port {name} counters {c}, expected {expected}, no drops"
            assert c["rx_packets"] == counters[peer]["tx_packets"] + drops, \
                f"port {name}: rx_packets {c['rx_packets']} != tx_packets({peer}) + drops {drops}"
            assert c["rx_packets"] == records, f"port {name}: rx_packets {c['rx_packets']}, {records} records"


async def _bench(dut) -> LineTestBench:
    bench = LineTestBench(dut, _config())
    await bench.setup()
    return bench


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def generated_frames_signatures_counters(dut):
    """A run with the reset template, the ports handed back to the external inputs after the stop;
    after a reset, a run with a template of its own."""
    bench = await _bench(dut)
    sigs = await bench.lt.signatures()
    assert sigs == [0] * bench.n_ports, f"SIGNATURE registers after reset: {sigs}"
    await bench.run(100, gap=3, seed=0x5EED1234)
    await bench.send_external({0: default_template() + b"ext0",
                               1: default_template()[:42] + bytes(range(100, 140))})
    await bench.reset()
    # The default template's Ethernet/IPv4/UDP headers (so the parser forwards), other padding.
    template = default_template()[:42] + bytes(range(0xC0, 0xC0 + 22))
    await bench.run(150, gap=5, seed=0x00C0FFEE, template=template)
    await bench.check_totals()


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def frame_len_is_clamped(dut):
    """FRAME_LEN 10 gives 60-byte frames, FRAME_LEN above max_frame gives max_frame-byte frames."""
    bench = await _bench(dut)
    max_frame = bench.config.max_frame
    out = await bench.run(10, gap=3, seed=0x1)
    assert {len(f) for port in out for f in port} == {60}
    await bench.reset()
    beats = -(-max_frame // bench.bpb)
    out = await bench.run(max_frame + 1000, gap=3, seed=0xFFFFFFFF, cycles=beats + 50, min_frames=1)
    assert {len(f) for port in out for f in port} == {max_frame}
    await bench.check_totals()


@cocotb.test(timeout_time=50, timeout_unit="ms")
@cocotb.parametrize(gap=[0, 3, 8])
async def stop_and_restart(dut, gap: int):
    """Start, stop, hand a port back, start again without a reset: the generators must stop
    between frames (GAP 0, the reset value, included) and restart from the seed. With GAP 8 the
    stop is swept over a frame period of run lengths (both ports' frames, one after the other
    through the arbiter), so it lands at every point of each port's frame/gap cycle."""
    bench = await _bench(dut)
    frame_len, seed = 100, 0x5EED1234
    beats = -(-frame_len // bench.bpb)
    period = max(beats + gap, 2 * beats)
    lengths = range(120, 120 + period + 2) if gap >= 5 else [120]
    for n, cycles in enumerate(lengths):
        if n:
            await bench.reset(check=False)
        try:
            await bench.run(frame_len, gap=gap, seed=seed, cycles=cycles)
            await bench.send_external({0: default_template() + b"ext0"})
            await bench.run(frame_len, gap=gap, seed=seed, cycles=100)
        except AssertionError as exc:
            raise AssertionError(f"GAP {gap}, stop {cycles} cycles after the start: {exc}") from None
    await bench.check_totals()
