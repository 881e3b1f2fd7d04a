"""cocotb tests of the whole NIC (``secnic_top``); pytest wrappers and the CLI both run this module.

The stimulus comes from a pickle file named by ``SECNIC_STIMULUS`` (written with
:func:`write_stimulus`)::

    {"config": NicConfig.as_dict(),
     "frames": [(port_index, frame_bytes, rx_error, start_cycle_or_None), ...],   # input order
     "output": "/path/results.json" or None,
     "ips": None or {"rules": RuleSet, "order": [input indices]}}   # IPS mode: the host loop

``start_cycle`` is when the frame may start, in cycles after reset (None: as soon as the port is
free, i.e. line rate). Tests:

* ``scoreboard`` (parametrized over source idle cycles and sink backpressure): sends the frames
  on all ports at once, compares egress frames, records and the CSR counters (read through the
  real driver, :class:`host_driver.driver.Nic` over :class:`sim.tb.nic.AxiLiteBus`) with
  :class:`host_driver.model.nic.NicModel`, checks AXI-Stream packing and counter conservation.
* ``run``: the engine's mode: sends at the given start cycles, checks nothing, dumps what happened.
  In IPS mode (``ips`` set) it plays the host (:class:`sim.run.ips.HostLoop`): frames one at a time
  in ``order``, each diverted frame taken off the host port, decided, and sent back before the next
  (sim/run/ips.py, "The host loop's timing rule"); results get ``ips``: per diverted frame its input
  index, the host's verdict and the index of its re-injection's record (None when dropped).

Both write the results file when ``output`` is set (the scoreboard writes ``<output stem>.<case>.json``).
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotb.utils import get_sim_time

from hdl.config import NicConfig
from host_driver.driver import Nic
from host_driver.model.nic import ModelBus
from sim.tb.nic import TB, Scoreboard, backpressure_pattern, idle_pattern

__all__ = ["write_stimulus", "read_results", "STIMULUS_ENV", "PROGRESS_ENV"]

STIMULUS_ENV = "SECNIC_STIMULUS"
#: When set, the ``run`` test writes how many frames have their record to this file, now and then,
#: for the command line's progress bar.
PROGRESS_ENV = "SECNIC_PROGRESS"
#: Cycles between progress writes: waking Python every 1000 cycles or more costs nothing measurable.
_PROGRESS_CYCLES = 5000


def write_stimulus(path: Path, config: NicConfig, frames, output: Path | None = None, acl=None,
                   matcher=None, ips=None) -> Path:
    """Write a stimulus file for this module; ``frames`` as in the module docstring; ``acl``: the
    classifier entries (:class:`host_driver.rules.ClassifierEntry`, classifier order) the driver
    programs into the security stage before the first frame, or None; ``matcher``: the content
    rules' :class:`host_driver.rules.content.MatcherProgram` it programs with them, or None; ``ips``:
    IPS mode's ``{"rules": RuleSet, "order": [...]}`` (module docstring), or None."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for n, (_, frame, _, _) in enumerate(frames):
        if not frame:
            raise ValueError(f"frame {n} is empty: an AXI-Stream frame carries at least one byte")
    data = {"config": config.as_dict(),
            "frames": [(int(p), bytes(f), bool(e), None if s is None else int(s)) for p, f, e, s in frames],
            "output": None if output is None else str(output),
            "acl": None if acl is None else list(acl), "matcher": matcher, "ips": ips}
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def read_results(path: Path) -> dict:
    """Load a results file written by this module (frames as bytes again, records as
    ``[cycle, int]``: the shape bulk mode returns)."""
    res = json.loads(Path(path).read_text())
    res["records"] = [[cycle, int(bits, 16)] for cycle, bits in res["records"]]
    res["egress"] = {p: [dict(e, data=bytes.fromhex(e["data"])) for e in frames]
                     for p, frames in res["egress"].items()}
    return res


def _load():
    path = os.environ.get(STIMULUS_ENV)
    if not path:
        raise RuntimeError(f"{STIMULUS_ENV} is not set: this module is run by sim.runner.run_cocotb")
    with open(path, "rb") as fh:
        stim = pickle.load(fh)
    return NicConfig.from_dict(stim["config"]), stim


def _packed(tkeep: list[int], bpb: int) -> bool:
    """AXI-Stream packing: all bytes kept but in the last beat, whose kept bytes are contiguous from 0."""
    n = sum(tkeep)
    return tkeep[:n] == [1] * n and not any(tkeep[n:]) and len(tkeep) - n < bpb


async def _offer(tb: TB, src, frame, on_complete, paced: bool, t0: int) -> None:
    """Send one input ``frame`` (port, bytes, rx_error, start cycle) from ``src``: when paced, not
    before its start cycle."""
    _, data, err, start = frame
    if paced and start is not None:
        # Wake half a cycle before the target edge; the source starts the frame on that edge.
        target_ps = (t0 + start) * tb.period_ps - tb.period_ps // 2
        now = get_sim_time("ps")
        if target_ps > now:
            await Timer(target_ps - now, unit="ps")
    fr = tb.make_frame(data, err)
    fr.tx_complete = on_complete
    await src.send(fr)


async def _traffic(dut, config: NicConfig, stim: dict, *, idle: bool, backpressure: bool,
                   paced: bool) -> tuple[TB, dict]:
    """Reset, send every frame, wait until all are processed and drained; return (tb, results)."""
    wall0 = time.monotonic()
    tb = TB(dut, config)
    tb.set_idle_generator(idle_pattern if idle else None)
    tb.set_backpressure_generator(backpressure_pattern if backpressure else None)
    await tb.reset()
    security = None
    if stim.get("acl") is not None:
        # The driver programs the ACL over the CSR bus, as a host would, before the first frame.
        programmer = Nic(tb.bus)
        await programmer.discover()
        security = programmer.security
        await security.program(stim["acl"], matcher=stim.get("matcher"))
        if stim.get("ips"):
            await security.set_ips(True)
    tb.start_record_monitor()
    t0 = tb.cycle()
    if os.environ.get(PROGRESS_ENV):
        cocotb.start_soon(_report_progress(tb, Path(os.environ[PROGRESS_ENV])))
    frames = stim["frames"]
    n = len(frames)
    ingress: list[list[int] | None] = [None] * n
    per_port: dict[int, list[int]] = {}
    for idx, (port, _data, _err, _start) in enumerate(frames):
        per_port.setdefault(port, []).append(idx)

    def completed(idx):
        def cb(frame):
            ingress[idx] = [int(frame.sim_time_start) // tb.period_ps - t0,
                            int(frame.sim_time_end) // tb.period_ps - t0]
        return cb

    async def drive(port: int, indices: list[int]):
        src = tb.sources[config.ports[port]]
        for idx in indices:
            await _offer(tb, src, frames[idx], completed(idx), paced, t0)

    beats = sum(-(-max(len(f[1]), 1) // config.bytes_per_beat) + 2 for f in frames)
    last_start = max((f[3] or 0) for f in frames) if paced and frames else 0
    timeout = 8 * beats + last_start + 50_000   # idle pattern pauses 3 of 4 cycles, plus backpressure
    fates = _IngressMonitor(dut, config) if config.ingress_fifos else None
    ips_results = None
    host_frames: list = []      # frames the host port sent, taken off its sink during an IPS run
    if stim.get("ips"):
        ips_results = await _host_loop(tb, config, stim, frames, completed, paced, t0, timeout, host_frames)
        timeout += tb.cycle() - t0
        n += sum(1 for r in ips_results if r["record"] is not None)
    else:
        for port, indices in per_port.items():
            cocotb.start_soon(drive(port, indices))
    if fates is None:
        await tb.wait_records(n, timeout)
    else:
        # Frames an ingress FIFO dropped get no record.
        deadline = tb.cycle() + timeout
        while len(tb.records) + fates.dropped() < n:
            if tb.cycle() > deadline:
                raise AssertionError(f"timeout: {len(tb.records)} records and {fates.dropped()} ingress drops "
                                     f"of {n} frames after {timeout} cycles")
            await ClockCycles(dut.clk, 64)
    egress_counts = {p: 0 for p in config.ports}
    for rec in tb.records:
        for q in rec.egress_ports:
            egress_counts[config.ports[q]] += 1
    if host_frames:
        egress_counts[config.ports[config.security.bypass_port]] -= len(host_frames)
    await tb.wait_egress(egress_counts, timeout)
    await tb.cycles(8)  # counter pipeline (COUNT_LATENCY) and any stray beats
    end = tb.cycle() - t0
    egress = {}
    for q, name in enumerate(config.ports):
        out = list(host_frames) if host_frames and q == config.security.bypass_port else []
        snk = tb.sinks[name]
        while not snk.empty():
            fr = snk.recv_nowait(compact=False)
            out.append(_egress_entry(tb, fr, t0))
        egress[name] = out
    sim_cycles = end
    nic = Nic(tb.bus)
    await nic.discover()
    counters = await nic.counters()
    identity = await nic.identity()
    from host_driver.blocks.switch import frozen_recorder
    recorder = await frozen_recorder(nic)
    rule_hits = None
    if security is not None:
        rule_hits = [[h.gid, h.sid, h.hits] for h in await security.rule_hits()]
    results = {
        "config": config.as_dict(),
        "records": [[r.cycle - t0, hex(r.bits)] for r in tb.records],
        "ingress": ingress,
        "egress": egress,
        "counters": counters,
        "identity": identity,
        "recorder": recorder,
        "rule_hits": rule_hits,
        "ips": ips_results,
        # ingress = "drop": per port (index as a string), the 0-based numbers of its frames (in the
        # port's input order) that its ingress FIFO dropped, and cycles a port held its source back.
        "ingress_drops": None if fates is None else {str(p): d for p, d in fates.drops.items()},
        "ingress_stalls": None if fates is None else fates.stalls,
        "cycles": sim_cycles,
        "total_cycles": tb.cycle(),
        "wall_s": time.monotonic() - wall0,
    }
    return tb, results


def _egress_entry(tb: TB, fr, t0: int) -> dict:
    """An egress frame off a sink: its bytes, tkeep/tuser per byte, first and last beat cycles."""
    data = bytes(b for b, keep in zip(fr.tdata, fr.tkeep, strict=True) if keep)
    return {"data": data, "tkeep": list(fr.tkeep), "tuser": list(fr.tuser),
            "start": int(fr.sim_time_start) // tb.period_ps - t0, "end": int(fr.sim_time_end) // tb.period_ps - t0}


async def _host_loop(tb: TB, config: NicConfig, stim: dict, frames, completed, paced: bool, t0: int,
                     timeout: int, host_frames: list) -> list[dict]:
    """IPS mode: send the frames one at a time in ``stim["ips"]["order"]``; after each, wait for its
    record; when it was diverted, take its tagged frame off the host port (every frame the host port
    sends goes to ``host_frames``, in order), let the host decide and send the re-injection back,
    and wait for its record, before the next frame (sim/run/ips.py). Returns per diverted frame
    ``{"frame": input index, "verdict": ..., "record": its re-injection's record index or None}``."""
    from sim.run.ips import HostLoop, is_tagged
    if config.ingress_fifos:
        raise RuntimeError("--ips needs ingress = \"pause\" on a simulator: its host loop takes each port's "
                           "k-th frame end as its k-th frame")
    loop = HostLoop(config, stim["ips"]["rules"])
    host_name = config.ports[loop.port]
    sink = tb.sinks[host_name]
    out = []

    async def settle(n_records: int, what: str):
        deadline = tb.cycle() + timeout
        while len(tb.records) < n_records:
            if tb.cycle() > deadline:
                raise AssertionError(f"timeout: no record for {what} after {timeout} cycles")
            await ClockCycles(tb.dut.clk, 4)

    for idx in stim["ips"]["order"]:
        port = frames[idx][0]
        await _offer(tb, tb.sources[config.ports[port]], frames[idx], completed(idx), paced, t0)
        await settle(len(tb.records) + 1, f"input frame {idx}")
        rec = tb.records[-1]
        if not loop.diverted(rec.bits):
            continue
        deadline = tb.cycle() + timeout
        while True:
            while sink.empty():
                if tb.cycle() > deadline:
                    raise AssertionError(f"timeout: input frame {idx} was diverted, the host port sent no tagged frame")
                await ClockCycles(tb.dut.clk, 4)
            host_frames.append(_egress_entry(tb, sink.recv_nowait(compact=False), t0))
            if is_tagged(host_frames[-1]["data"]):
                break
        verdict, back = loop.answer(rec.bits, host_frames[-1]["data"])
        record = None
        if back is not None:
            await tb.sources[host_name].send(tb.make_frame(back, False))
            record = len(tb.records)
            await settle(record + 1, f"the re-injection of input frame {idx}")
        out.append({"frame": idx, "verdict": verdict, "record": record})
    return out


class _IngressMonitor:
    """Which frames the ingress FIFOs dropped (``ingress = "drop"``): samples ``ingress_end`` and
    ``ingress_drop`` at every clock edge; port i's k-th frame end is its k-th input frame. Also
    counts cycles in which a port offered a beat and was not ready (a MAC never waits: 0)."""

    def __init__(self, dut, config: NicConfig):
        self.drops: dict[int, list[int]] = {i: [] for i in range(len(config.ports))}
        self.stalls = 0
        self._ends = [0] * len(config.ports)
        self._ports = [(getattr(dut, f"s_axis_{name}__tvalid"), getattr(dut, f"s_axis_{name}__tready"))
                       for name in config.ports]
        cocotb.start_soon(self._run(dut))

    def dropped(self) -> int:
        return sum(len(d) for d in self.drops.values())

    async def _run(self, dut) -> None:
        edge = RisingEdge(dut.clk)
        end, drop = dut.ingress_end, dut.ingress_drop
        while True:
            await edge
            for valid, ready in self._ports:
                if valid.value == 1 and ready.value != 1:
                    self.stalls += 1
            ends = int(end.value)
            if not ends:
                continue
            drops = int(drop.value)
            for i in range(len(self._ends)):
                if ends >> i & 1:
                    if drops >> i & 1:
                        self.drops[i].append(self._ends[i])
                    self._ends[i] += 1


async def _report_progress(tb: TB, path: Path) -> None:
    """Write the number of frames with a record to ``path`` every :data:`_PROGRESS_CYCLES` cycles."""
    done = -1
    while True:
        await Timer(_PROGRESS_CYCLES * tb.period_ps, unit="ps")
        if len(tb.records) != done:
            done = len(tb.records)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(str(done))
            tmp.replace(path)


def _dump(results: dict, path: str | None) -> None:
    if not path:
        return
    out = dict(results)
    out["egress"] = {p: [{"data": e["data"].hex(), "start": e["start"], "end": e["end"]} for e in frames]
                     for p, frames in results["egress"].items()}
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)


@cocotb.test()
@cocotb.parametrize(idle=[False, True], backpressure=[False, True])
async def scoreboard(dut, idle: bool, backpressure: bool):
    """All frames on all ports at once; egress, records and counters must match the golden model."""
    config, stim = _load()
    tb, results = await _traffic(dut, config, stim, idle=idle, backpressure=backpressure, paced=False)
    sb = Scoreboard(config)
    for port, data, err, _ in stim["frames"]:
        sb.sent.setdefault(port, []).append((data, err))
    sb.check_records(tb.records)
    received = {}
    bpb = config.bytes_per_beat
    for i, name in enumerate(config.ports):
        received[i] = []
        for k, e in enumerate(results["egress"][name]):
            if not _packed(e["tkeep"], bpb):
                sb._err(f"egress {name} frame {k}: tkeep not packed: {e['tkeep']}")
            if any(e["tuser"]):
                sb._err(f"egress {name} frame {k}: tuser set on a forwarded frame")
            received[i].append(e["data"])
    sb.check_egress(received)
    model_nic = Nic(ModelBus(sb.model))
    await model_nic.discover()
    sb.check_counters(results["counters"], await model_nic.counters())
    if stim.get("output"):
        case = f"{'idle' if idle else 'noidle'}-{'bp' if backpressure else 'nobp'}"
        out = Path(stim["output"])
        _dump(results, str(out.with_name(f"{out.stem}.{case}.json")))
    sb.assert_ok()
    dut._log.info("scoreboard ok: %d frames, %d cycles", len(stim["frames"]), results["cycles"])


@cocotb.test()
async def run(dut):
    """Engine mode: send at the requested start cycles, record everything, check nothing."""
    config, stim = _load()
    tb, results = await _traffic(dut, config, stim, idle=False, backpressure=False, paced=True)
    _dump(results, stim.get("output"))
    await ClockCycles(dut.clk, 1)
