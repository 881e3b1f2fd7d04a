"""Testbench parts for the NIC top (``secnic_top``): TB class, AXI-Lite bus adapter, scoreboard.

Read in the usual order: :class:`TB` (clock, bus models from port prefixes, idle/backpressure
generators, async reset, record monitor), :class:`AxiLiteBus` (the host driver's
:class:`~host_driver.bus.Bus` over cocotbext-axi's AXI-Lite master, so ``Nic(AxiLiteBus(tb.axil))``
runs the real driver against the gateware), then :class:`Scoreboard` (egress frames and records
against :class:`~host_driver.model.nic.NicModel`).

Only this module and :mod:`sim.run.nic_cocotb` import cocotb; the rest of ``sim`` runs without it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import warnings
from dataclasses import dataclass, field

import cocotb
from amaranth.hdl import Shape
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiLiteBus as _AxiLiteSignals
from cocotbext.axi import AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from hdl.config import NicConfig
from hdl.packet.meta import MATCH_FIELDS, Verdict, verdict_record_of
from host_driver.bus import AxiResp, Bus, BusError
from host_driver.driver import received_drops

__all__ = ["TB", "AxiLiteBus", "reset_nic", "clock_impl", "Record", "Scoreboard", "idle_pattern",
           "backpressure_pattern", "period_ps", "config_from_env", "CONFIG_ENV"]

log = logging.getLogger(__name__)

# cocotbext-axi 0.1.28 still calls cocotb-1 APIs (task.kill() ...); those warnings are not ours.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.")


#: The environment variable through which :func:`sim.runner.run_cocotb` hands the build's
#: configuration to the simulation (``NicConfig.as_dict()`` as JSON).
CONFIG_ENV = "SECNIC_CONFIG"


def config_from_env() -> NicConfig:
    """The :class:`NicConfig` of the build being simulated, as :func:`sim.runner.run_cocotb` passed it."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set: run this cocotb module through `secnic testbench`, "
                           "the secnic_sim pytest fixture or sim.runner.run_cocotb")
    return NicConfig.from_dict(json.loads(text), source=CONFIG_ENV)


def period_ps(config: NicConfig) -> int:
    """Clock period in ps for ``config.clock_mhz`` (6400 ps at 156.25 MHz), rounded to an even
    number of ps: cocotb's Clock splits it into two equal halves (24 MHz: 41666 ps)."""
    return 2 * round(1e6 / config.clock_mhz / 2)


def idle_pattern():
    """Source pause pattern (1 = pause): three idle cycles in four, as corundum's and
    verilog-ethernet's ``cycle_pause`` does: frames arrive with bubbles inside and between them."""
    return itertools.cycle([1, 1, 1, 0])


def backpressure_pattern():
    """Sink pause pattern (1 = tready low): 3 of 8 cycles, irregular so it beats against the source."""
    return itertools.cycle([0, 1, 0, 0, 1, 0, 1, 0])


def clock_impl() -> str | None:
    """The clock implementation for this simulator: cocotb's C++ clock on Verilator (no Python per
    edge: several times faster, TOOLCHAIN.md); cocotb's choice elsewhere. On Icarus the C++ clock
    makes its first edge at time 0, before reset, where cocotbext-axi samples X and fails."""
    return "gpi" if cocotb.SIM_NAME and cocotb.SIM_NAME.lower().startswith("verilator") else None


async def reset_nic(dut, period: int, cycles: int = 4) -> None:
    """Hold ``dut.rst`` high for ``cycles`` clock edges (asserted asynchronously to the clock), then
    two more edges; returns at a rising edge. Bulk mode resets the same way, so both paths count
    cycles from the same edge."""
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    await Timer(period // 4, unit="ps")
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)


@dataclass
class Record:
    """One pulse of the record port, decoded."""
    cycle: int
    bits: int
    meta: dict
    in_port: int
    rx_error: int
    verdict: int
    reason: int
    egress: int          # bit mask
    #: Builds with a payload matcher: the record's ``match_*`` fields (``MATCH_FIELDS``), with
    #: ``match_hits`` the used slots as ``(bucket, settled)`` pairs; None otherwise.
    match: dict | None = None

    @property
    def egress_ports(self) -> list[int]:
        return [i for i in range(self.egress.bit_length()) if self.egress >> i & 1]


class AxiLiteBus(Bus):
    """:class:`host_driver.bus.Bus` over a cocotbext-axi :class:`AxiLiteMaster`.

    Non-OKAY responses raise :class:`host_driver.bus.BusError`.
    """

    def __init__(self, master: AxiLiteMaster):
        self.master = master

    def __repr__(self):
        return f"AxiLiteBus({self.master!r})"

    async def read32(self, addr: int) -> int:
        resp = await self.master.read(addr, 4)
        if int(resp.resp) != AxiResp.OKAY:
            raise BusError(addr, int(resp.resp), "read")
        return int.from_bytes(resp.data, "little")

    async def write32(self, addr: int, value: int) -> None:
        resp = await self.master.write(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))
        if int(resp.resp) != AxiResp.OKAY:
            raise BusError(addr, int(resp.resp), "write")


class TB:
    """Drives ``secnic_top``: one AXI-Stream source and sink per port, the AXI-Lite master and a
    record monitor.

    Parameters
    ----------
    dut:
        The cocotb handle of ``secnic_top``.
    config:
        The build's :class:`NicConfig` (clock period, ports, record layout); by default the one
        the runner built (:func:`config_from_env`).

    The short forms :meth:`send`, :meth:`receive` and :meth:`driver` are what a user's testbench
    needs (docs/testbench.md); the source, sink and bus models stay reachable for the rest.
    """

    def __init__(self, dut, config: NicConfig | None = None):
        config = config if config is not None else config_from_env()
        self.dut = dut
        self.config = config
        self.log = logging.getLogger("cocotb.tb")
        self.period_ps = period_ps(config)
        self.clock = Clock(dut.clk, self.period_ps, unit="ps", impl=clock_impl())
        self.clock.start()
        self.sources: dict[str, AxiStreamSource] = {}
        self.sinks: dict[str, AxiStreamSink] = {}
        for name in config.ports:
            src = AxiStreamSource(AxiStreamBus.from_prefix(dut, f"s_axis_{name}", bus_separator="__"),
                                  dut.clk, dut.rst)
            snk = AxiStreamSink(AxiStreamBus.from_prefix(dut, f"m_axis_{name}", bus_separator="__"),
                                dut.clk, dut.rst)
            src.log.setLevel(logging.WARNING)
            snk.log.setLevel(logging.WARNING)
            self.sources[name] = src
            self.sinks[name] = snk
        self.axil = AxiLiteMaster(_AxiLiteSignals.from_prefix(dut, "s_axil", bus_separator="__"),
                                  dut.clk, dut.rst)
        self.axil.write_if.log.setLevel(logging.WARNING)
        self.axil.read_if.log.setLevel(logging.WARNING)
        self.bus = AxiLiteBus(self.axil)
        self.record_layout = verdict_record_of(config)
        self._has_matcher = "match_hits" in self.record_layout.members
        self._rec_fields = {name: (f.offset, Shape.cast(f.shape).width) for name, f in self.record_layout}
        self.records: list[Record] = []
        self._record_task = None
        #: Sample record__valid at every clock edge instead of waking on its rising edge.
        self.poll_records = bool(int(os.environ.get("SECNIC_POLL_RECORDS", "0")))
        self.t0_cycle = 0

    # -- clocking -------------------------------------------------------------------------------

    def cycle(self) -> int:
        """Current simulated cycle number (clock edges since time 0)."""
        return int(get_sim_time("ps")) // self.period_ps

    async def cycles(self, n: int) -> None:
        await ClockCycles(self.dut.clk, n)

    async def reset(self, cycles: int = 4) -> None:
        """Hold ``rst`` high for ``cycles`` clock edges (:func:`reset_nic`)."""
        await reset_nic(self.dut, self.period_ps, cycles)
        self.records.clear()
        self.t0_cycle = self.cycle()

    # -- flow control generators ---------------------------------------------------------------

    def set_idle_generator(self, generator=None) -> None:
        """Pause pattern for every source (None: send back to back)."""
        for src in self.sources.values():
            src.set_pause_generator(generator() if callable(generator) else generator)

    def set_backpressure_generator(self, generator=None) -> None:
        """tready pattern for every sink (None: always ready)."""
        for snk in self.sinks.values():
            snk.set_pause_generator(generator() if callable(generator) else generator)

    # -- records --------------------------------------------------------------------------------

    def decode_record(self, cycle: int, bits: int) -> Record:
        from host_driver.trace import meta_from_bits
        f = self._rec_fields

        def get(name):
            off, width = f[name]
            return bits >> off & ((1 << width) - 1)
        match = None
        if self._has_matcher:
            view = self.record_layout.from_bits(bits)
            match = {name: int(getattr(view, name)) for name in MATCH_FIELDS if name != "match_hits"}
            match["match_hits"] = [(int(h.bucket), int(h.settled)) for h in view.match_hits][:match["match_n_hits"]]
        return Record(cycle, bits, meta_from_bits(get("meta")), get("in_port"), get("rx_error"),
                      get("verdict"), get("reason"), get("egress"), match)

    def start_record_monitor(self) -> None:
        if self._record_task is None:
            self._record_task = cocotb.start_soon(self._record_monitor())

    async def _record_monitor(self) -> None:
        """Collect record pulses. Sleeps on ``record__valid``'s rising edge while it is low, then
        samples at each clock edge while it stays high, so idle stretches cost no Python."""
        valid = self.dut.record__valid
        payload = self.dut.record__payload
        edge = RisingEdge(self.dut.clk)
        rise = RisingEdge(valid)
        period = self.period_ps
        while True:
            if not self.poll_records and valid.value != 1:
                await rise
            await edge
            if valid.value == 1:
                self.records.append(self.decode_record(int(get_sim_time("ps")) // period, int(payload.value)))

    async def wait_records(self, n: int, timeout_cycles: int) -> None:
        """Wait until ``n`` records arrived; AssertionError after ``timeout_cycles``."""
        deadline = self.cycle() + timeout_cycles
        while len(self.records) < n:
            if self.cycle() > deadline:
                raise AssertionError(f"timeout: {len(self.records)} of {n} records after "
                                     f"{timeout_cycles} cycles")
            await ClockCycles(self.dut.clk, 64)

    async def wait_egress(self, counts: dict[str, int], timeout_cycles: int) -> None:
        """Wait until every sink has received ``counts[port]`` frames."""
        deadline = self.cycle() + timeout_cycles
        while any(self.sinks[p].count() < n for p, n in counts.items()):
            if self.cycle() > deadline:
                got = {p: self.sinks[p].count() for p in counts}
                raise AssertionError(f"timeout: egress frames {got}, expected {counts}")
            await ClockCycles(self.dut.clk, 64)
        for p, n in counts.items():
            got = self.sinks[p].count()
            assert got == n, f"port {p}: {got} egress frames, expected {n}"

    # -- the short forms a testbench uses (docs/testbench.md) ----------------------------------------

    async def send(self, port: str, frame: bytes, rx_error: bool = False) -> None:
        """Queue ``frame`` (bytes, no FCS) on the ingress of ``port``; returns once it is queued."""
        await self.sources[self._port(port)].send(self.make_frame(bytes(frame), rx_error))

    async def receive(self, port: str, timeout_cycles: int = 100_000) -> bytes:
        """The next frame out of ``port``'s egress; AssertionError when none comes in ``timeout_cycles``."""
        sink = self.sinks[self._port(port)]
        deadline = self.cycle() + timeout_cycles
        while sink.empty():
            if self.cycle() > deadline:
                raise AssertionError(f"timeout: no frame out of {port} in {timeout_cycles} cycles")
            await ClockCycles(self.dut.clk, 16)
        return bytes(sink.recv_nowait().tdata)

    async def driver(self):
        """The host driver (:class:`host_driver.driver.Nic`) over the AXI-Lite bus, blocks discovered."""
        from host_driver.driver import Nic
        nic = Nic(self.bus)
        await nic.discover()
        return nic

    def _port(self, port: str) -> str:
        if port not in self.sources:
            raise ValueError(f"unknown port {port!r}; this NIC has ports {', '.join(self.sources)}")
        return port

    # -- frames -----------------------------------------------------------------------------------

    @staticmethod
    def make_frame(data: bytes, rx_error: bool) -> AxiStreamFrame:
        """An AXI-Stream frame; ``rx_error`` sets tuser on the last byte (hence the last beat)."""
        tuser = [0] * len(data)
        if rx_error and data:
            tuser[-1] = 1
        return AxiStreamFrame(data, tuser=tuser)


@dataclass
class Scoreboard:
    """Compares what the NIC did with what :class:`~host_driver.model.nic.NicModel` says it must do.

    The model processes the frames in the NIC's own processing order (record order), so the
    comparison also holds once the model has state (learning, rate limits). Per ingress port the
    k-th record belongs to the k-th frame sent on that port.
    """
    config: NicConfig
    sent: dict[int, list[tuple[bytes, bool]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        from host_driver.model.nic import NicModel
        self.model = NicModel(self.config)
        self.expected_egress: dict[int, list[bytes]] = {i: [] for i in range(len(self.config.ports))}
        self.results = []

    def check_records(self, records: list[Record], max_errors: int = 20) -> None:
        taken = dict.fromkeys(self.sent, 0)
        for n, rec in enumerate(records):
            port = rec.in_port
            if port not in self.sent or taken[port] >= len(self.sent[port]):
                self._err(f"record {n}: unexpected record for in_port {port}")
                continue
            frame, rx_error = self.sent[port][taken[port]]
            idx = taken[port]
            taken[port] += 1
            res = self.model.process(frame, port, rx_error)
            self.results.append(res)
            for q in res.egress:
                self.expected_egress[q].append(frame)
            where = (f"record {n} (port {self.config.ports[port]} frame {idx}, "
                     f"{len(frame)} bytes {frame[:64].hex()}...)")
            if rec.meta != res.meta:
                diff = {k: (rec.meta.get(k), v) for k, v in res.meta.items() if rec.meta.get(k) != v}
                self._err(f"{where}: meta differs (hw, model): {diff}")
            got = (rec.rx_error, rec.verdict, rec.reason, rec.egress_ports)
            want = (int(res.rx_error), int(res.verdict), int(res.reason), list(res.egress))
            if got != want:
                self._err(f"{where}: (rx_error, verdict, reason, egress) hw {got} model {want}")
            if len(self.errors) >= max_errors:
                break
        for port, frames in self.sent.items():
            if taken.get(port, 0) != len(frames):
                self._err(f"port {self.config.ports[port]}: {taken.get(port, 0)} records "
                          f"for {len(frames)} frames")

    def check_egress(self, received: dict[int, list[bytes]]) -> None:
        for port, want in self.expected_egress.items():
            got = received.get(port, [])
            name = self.config.ports[port]
            if len(got) != len(want):
                self._err(f"egress {name}: {len(got)} frames, model expects {len(want)}")
            for k, (g, w) in enumerate(zip(got, want, strict=False)):
                if g != w:
                    self._err(f"egress {name} frame {k}: got {len(g)} bytes {g[:32].hex()}..., "
                              f"expected {len(w)} bytes {w[:32].hex()}...")
                    break

    def check_counters(self, hw: dict, model: dict) -> None:
        """The counters equal the model's, and per port received = forwarded + dropped by reason
        (forwarded: the port's frames the records let through, any number of egress ports each)."""
        if hw != model:
            self._err(f"counters differ:\n  hw    {hw}\n  model {model}")
        ports = hw.get("ports", {})
        for i, name in enumerate(self.config.ports):
            c = ports.get(name)
            if c is None:
                self._err(f"no counters for port {name}")
                continue
            forwarded = sum(1 for r in self.results if r.in_port == i and r.verdict != Verdict.DROP)
            drops = received_drops(c)
            if c.get("rx_packets") != forwarded + drops:
                self._err(f"port {name}: rx_packets {c.get('rx_packets')} != forwarded {forwarded} + drops {drops}")

    def _err(self, msg: str) -> None:
        log.error("%s", msg)
        self.errors.append(msg)

    def assert_ok(self) -> None:
        if self.errors:
            raise AssertionError(f"{len(self.errors)} scoreboard mismatch(es); first: {self.errors[0]}\n"
                                 + "\n".join(self.errors[1:10]))
