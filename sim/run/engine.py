"""Run input frames through the NIC with one of three engines and write the run files.

Engines: ``model`` (the golden model, :class:`host_driver.model.nic.NicModel`, directly; fast path),
``verilator`` and ``icarus`` (the gateware in cocotb, test ``sim.run.nic_cocotb.run``). All three write
the same files (DESIGN.md, "Command line and file formats")::

    trace.jsonl          one record per input frame, in input order (inputs as given, each file in order)
    egress/<PORT>.pcap   every port, possibly empty; frames in the order they left the port
    counters.json        CSR counters read back through the driver (Nic over ModelBus / AXI-Lite)
    eve.json             alerts of ``--rules`` (:mod:`sim.run.alerts`), one Suricata EVE event a line
    run.json             engine, packet counts, timing figures
    recorder.jsonl       only when a switch's flight recorder froze (a loop, a storm): what froze it,
                         then its records, oldest first, the triggering frame last

**Egress pcap timestamps** are the timestamps of the *input* frame that produced each egress frame
(not the simulated departure time), so the pcaps are byte-identical between engines and runs.
Simulated departure cycles are in the timing figures of ``run.json`` instead.

**Pacing** (``pace``) sets when each input frame may start on its port:

* ``"line"``: back to back on each port (ports in parallel);
* ``"pcap"``: the capture's timestamp gaps, converted to cycles at ``config.clock_mhz``; every
  input file starts at cycle 0 (its earliest timestamp), so captures from different days replay
  side by side;
* a number: Gb/s offered *per port*, counting the frame bytes carried on the stream (no
  preamble, inter-frame gap or FCS); idle cycles are inserted after each frame to hit the rate
  (a rate above what the port can carry just gives back-to-back frames).

**Timing**: simulators report what the simulation measured (``"timing": "simulated"``): ``cycles``
from the first ingress beat to the last egress beat or record, latency from a frame's first beat
offered at ingress to its first beat accepted at egress (forwarded frames only). The model engine
reports an ideal-schedule estimate (``"timing": "estimate"``): one shared pipeline at one beat per
cycle with a packet-granular round-robin arbiter, then a store-and-forward buffer that sends one
frame at a time (:data:`MODEL_RECORD_CYCLES`, :data:`MODEL_EGRESS_CYCLES`). The model simulates
nothing, so its ``sim_cycles_per_s`` is null.

**Load and latency** (added to run.json, DESIGN.md's fields unchanged): ``offered`` is the input
bytes and frames over the cycles the schedule offers them in (each port on its own, as if never
held back), ``delivered`` the egress bytes and frames over ``cycles``. A forwarded frame's
latency is split into the **pipeline** latency it would have alone (its beats, stored before
forwarding, plus :func:`pipeline_cycles` of fixed pipeline) and **queueing** (the rest: waiting
for the shared pipeline or egress). ``rate_note`` says when the input is too short for the rates
to mean much (under :data:`MIN_RATE_FRAMES` frames or :data:`MIN_RATE_CYCLES` cycles).

**Suspicious input** is counted in ``suspicious_input`` rather than silently dropped:
frames cut by the capture's snaplen, frames under 60 bytes into a physical port (a capture taken on
a host, before the NIC pads them: the NIC drops them as runts) and truncated capture files.

Zero-length input frames (possible in a pcap, impossible on an AXI-Stream port) are skipped with
a warning by every engine.

**Ingress FIFOs** (``ingress = "drop"``, docs/switch.md, "Ingress"): the simulators report which
frames each port's FIFO dropped; those get ``verdict`` drop and ``reason`` ``ingress_full`` or
``ingress_too_long`` in trace.jsonl, the golden model sees the others only, and every counter of
the gateware must equal the model's plus those drops. The model engine has no FIFOs: no ingress
drops.

Outputs are staged on ``out_dir``'s file system and moved into place only when everything
succeeded, so a failed run never leaves half-written files; a directory secnic did not write is
never emptied (:mod:`sim.run.outdir`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hdl.config import MIN_PHYSICAL_FRAME, NicConfig
from sim.run.outdir import OutDirError, check_out_dir, publish, staging_dir
from sim.run.pcapio import write_pcap

__all__ = ["InputFrame", "ENGINES", "run_engine", "schedule", "parse_pace", "decode_record",
           "MODEL_RECORD_CYCLES", "MODEL_EGRESS_CYCLES", "EngineError",
           "PaceError", "MAX_SIM_SPAN_CYCLES", "MAX_BULK_SPAN_CYCLES", "OutDirError", "pipeline_cycles",
           "line_rate_gbps", "MIN_RATE_FRAMES", "MIN_RATE_CYCLES", "BULK_MIN_FRAMES", "use_bulk"]

log = logging.getLogger(__name__)

ENGINES = ("model", "verilator", "icarus")
#: Model engine timing estimate (``"timing": "estimate"`` only), calibrated against Verilator at
#: W=64: cycles from a frame's last beat entering the shared pipeline to its record (verdict), and
#: from the record to its first egress beat. The packet buffer sends one frame at a time over all
#: egress ports, so egress is one more shared resource at one beat per cycle. Measured on lone
#: frames (Verilator, 2026-12-07): record 17 cycles after the last ingress beat, first egress beat
#: 3 after the record; tests/cli/test_cli.py holds the estimate to Verilator on the demo mix.
MODEL_RECORD_CYCLES = 17
MODEL_EGRESS_CYCLES = 3
#: ... and what a switch build adds (not calibrated frame by frame yet): the switch stage's front,
#: MAC table and two back steps in place of the one-cycle forwarder (record), the egress fan-out's
#: two stages, the output queue's beat FIFO, a register slice and the tag editor (egress). Their
#: sum, 25, is the difference in minimum latency Verilator measured on the demo mix (53 against 28).
SWITCH_RECORD_CYCLES = 16
SWITCH_EGRESS_CYCLES = 9

#: Below this many frames or cycles, pipeline fill and drain weigh on the rates: run.json says so.
MIN_RATE_FRAMES = 100
MIN_RATE_CYCLES = 2000


#: From this many input frames on, ``--engine verilator`` runs in bulk mode (:mod:`sim.bulk`): about
#: 80 times the cocotb path's speed once its model is built (about 15 s, once per design), while
#: short runs keep the cocotb testbench with its independent bus models.
BULK_MIN_FRAMES = 1000

#: Longest schedule a simulator engine accepts (cycles from the first to the last frame start).
MAX_SIM_SPAN_CYCLES = 50_000_000
#: The same in bulk mode: idle cycles cost as much as busy ones (about 10 minutes at 10^6 cycles/s).
MAX_BULK_SPAN_CYCLES = 600_000_000


class EngineError(RuntimeError):
    """The engine failed (simulator build or run); nothing was written."""


class PaceError(ValueError):
    """The pacing cannot be used with these inputs (e.g. a capture too long to simulate)."""


@dataclass(frozen=True)
class InputFrame:
    """One frame to send: ingress port name, source file and 1-based index in it, bytes, timestamp."""
    port: str
    in_file: str
    pcap_cnt: int
    frame: bytes
    ts_ns: int = 0
    rx_error: bool = False
    #: Length on the wire when the capture says it was longer than ``frame`` (cut by snaplen).
    wire_len: int | None = None


def line_rate_gbps(config: NicConfig) -> float:
    """What one port carries at one beat per cycle: ``data_width`` bits at ``clock_mhz``."""
    return config.data_width * config.clock_mhz / 1000


def pipeline_cycles(config: NicConfig, frame_len: int) -> int:
    """Latency of a frame of ``frame_len`` bytes through an idle NIC, in cycles: its beats (it is
    stored before it is forwarded) plus the fixed pipeline of the model's timing estimate."""
    return _beats_len(config, frame_len) + _record_cycles(config) + _egress_cycles(config)


def _record_cycles(config: NicConfig) -> int:
    base = MODEL_RECORD_CYCLES + (SWITCH_RECORD_CYCLES if config.switch is not None else 0)
    if config.security is not None:
        # The security stage works beside the forwarder / switch stage and the gate waits for both:
        # the record comes after the slower. Verilator / Icarus, lone frames (2026-12-07): 56
        # cycles after the last beat for the bump with 72 entries (estimate 57), 60 for the switch
        # with 256 (estimate 59).
        return max(base, MODEL_RECORD_CYCLES + _security_latency(config))
    return base


@functools.cache
def _security_latency(config: NicConfig) -> int:
    from hdl.security.stage import SecurityStage
    return SecurityStage.latency_of(config)


def _egress_cycles(config: NicConfig) -> int:
    return MODEL_EGRESS_CYCLES + (SWITCH_EGRESS_CYCLES if config.switch is not None else 0)


def parse_pace(text: str) -> str | float:
    """``"line"``, ``"pcap"`` or a positive rate in Gb/s; ValueError otherwise."""
    t = str(text).strip().lower()
    if t in ("line", "pcap"):
        return t
    try:
        rate = float(t)
    except ValueError:
        raise ValueError(f"pace must be 'line', 'pcap' or a rate in Gb/s, not {text!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"pace rate must be a positive number of Gb/s, not {text!r}")
    return rate


def schedule(config: NicConfig, inputs: Sequence[InputFrame], pace: str | float) -> list[int | None]:
    """Earliest start cycle of each input frame (None: as soon as its port is free)."""
    if pace == "line":
        return [None] * len(inputs)
    if pace == "pcap":
        t0: dict[str, int] = {}
        for f in inputs:
            t0[f.in_file] = min(t0.get(f.in_file, f.ts_ns), f.ts_ns)
        return [max(0, round((f.ts_ns - t0[f.in_file]) * config.clock_mhz / 1000)) for f in inputs]
    rate = float(pace)
    next_free: dict[str, float] = {}
    out = []
    for f in inputs:
        start = next_free.get(f.port, 0.0)
        out.append(math.ceil(start - 1e-9))
        next_free[f.port] = start + len(f.frame) * 8 / rate * config.clock_mhz / 1000
    return out


def decode_record(config: NicConfig, bits: int) -> dict:
    """Decode a raw record-port value (``make_verdict_record`` layout) into plain ints and a meta dict."""
    return _record_decoder(config)(bits)


@functools.cache
def _record_decoder(config: NicConfig):
    """A fast decoder for ``config``'s record layout (field offsets resolved once: a million-frame
    run decodes a million records)."""
    from hdl.packet.meta import match_hit_layout, verdict_record_of
    from host_driver.trace import field_decoder, meta_from_bits
    fields = field_decoder(verdict_record_of(config))
    ports = range(len(config.ports))
    matcher = config.security.matcher if config.security is not None else None
    if matcher is not None:
        from amaranth.hdl import Shape
        hit = field_decoder(match_hit_layout(matcher[0]))
        hit_bits = Shape.cast(match_hit_layout(matcher[0])).width

    def decode(bits: int) -> dict:
        out = fields(bits)
        out["meta"] = meta_from_bits(out["meta"])
        egress = out["egress"]
        out["egress"] = [i for i in ports if egress >> i & 1]
        if matcher is not None:
            # The used slots as [bucket, settled] pairs (MatchResult.record_fields' form).
            words = out["match_hits"]
            out["match_hits"] = [[h["bucket"], h["settled"]] for h in
                                 (hit(words >> k * hit_bits) for k in range(min(out["match_n_hits"], matcher[1])))]
        return out
    return decode


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    v = sorted(values)

    def pct(p):
        return v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))]
    return {"min": v[0], "p50": pct(50), "p99": pct(99), "max": v[-1]}


def _beats_len(config: NicConfig, frame_len: int) -> int:
    return max(1, -(-frame_len // config.bytes_per_beat))


def _beats(config: NicConfig, frame: bytes) -> int:
    return _beats_len(config, len(frame))


def _offered_cycles(config, inputs, starts) -> int:
    """Cycles over which the schedule offers the inputs: each port sends its frames from their
    start cycles (or back to back), never held back by the arbiter."""
    free: dict[str, int] = {}
    first, last = None, 0
    for f, s in zip(inputs, starts, strict=True):
        t = max(s or 0, free.get(f.port, 0))
        free[f.port] = t + _beats(config, f.frame)
        first = t if first is None else min(first, t)
        last = max(last, free[f.port])
    return last - (first or 0)


def _estimate_timing(config, inputs, starts, forwarded) -> tuple[int, list[int]]:
    """Ideal schedule of the NIC (:func:`_service_order`), and the buffer sends one frame at a time
    at one beat per cycle. Returns (cycles from the first offered beat to the last egress beat or
    record, (input index, latency from offered to first egress beat) of the forwarded frames)."""
    end, egress_free, first = 0, 0, None
    latency = []
    for i, offered, record in _service_order(config, inputs, starts):
        first = offered if first is None else min(first, offered)
        if forwarded[i]:
            start = max(record + _egress_cycles(config), egress_free)
            egress_free = start + _beats(config, inputs[i].frame)
            latency.append((i, start - offered))
            end = max(end, egress_free)
        else:
            end = max(end, record + 1)
    return (end - (first or 0)) if inputs else 0, latency


# -- engines ------------------------------------------------------------------------------------

def _service_order(config, inputs, starts) -> list[tuple[int, int, int]]:
    """The ideal schedule of the NIC: each port offers its frames in order (from its start cycle,
    or as soon as its previous frame was taken) and a packet-granular round-robin arbiter feeds one
    shared pipeline at one beat per cycle (a switch or a security stage: at least FRAME_CYCLES per
    frame). (input
    index, cycle it was offered, cycle of its record) of every frame, in the order served."""
    queues: dict[int, list[int]] = {}
    port_of = {name: i for i, name in enumerate(config.ports)}
    for i, f in enumerate(inputs):
        queues.setdefault(port_of[f.port], []).append(i)
    heads = dict.fromkeys(queues, 0)
    free = dict.fromkeys(queues, 0)     # when each port may offer its next frame
    n_ports = len(config.ports)
    t, last, order = 0, n_ports - 1, []
    while len(order) < len(inputs):
        offered = {p: max(starts[q[heads[p]]] or 0, free[p]) for p, q in queues.items() if heads[p] < len(q)}
        ready = [p for p, when in offered.items() if when <= t]
        if not ready:
            t = min(offered.values())
            continue
        p = min(ready, key=lambda p: (p - last - 1) % n_ports)   # round robin after the last served
        i = queues[p][heads[p]]
        heads[p] += 1
        t += _frame_cycles(config, inputs[i].frame)
        free[p], last = t, p
        order.append((i, offered[p], t + _record_cycles(config)))
    return order


def _frame_cycles(config: NicConfig, frame: bytes) -> int:
    """Cycles a frame holds the shared pipeline: its beats, and at least the switch stage's
    FRAME_CYCLES in a switch or security build."""
    beats = _beats(config, frame)
    if config.switch is not None or config.security is not None:
        from hdl.switch.stage import FRAME_CYCLES
        return max(beats, FRAME_CYCLES)
    return beats


def _programmed_model(config, rules, ips: bool = False):
    """A golden model of ``config`` with ``rules`` programmed through the driver (as on a NIC), and
    the driver: (model, Nic over its ModelBus). ``ips``: IPS mode set through the driver too."""
    import asyncio

    from host_driver.driver import Nic
    from host_driver.model.nic import ModelBus, NicModel

    model = NicModel(config)
    nic = Nic(ModelBus(model))

    async def program():
        await nic.discover()
        if rules is not None:
            await nic.security.program(rules.entries, matcher=rules.matcher)
        if ips:
            await nic.security.set_ips(True)
    asyncio.run(program())
    return model, nic


def _run_model(config, inputs, starts, rules=None, ips: bool = False):
    import asyncio

    from hdl.packet.meta import Verdict
    from host_driver.blocks.security import reinjection

    model, nic = _programmed_model(config, rules, ips)
    host = _ips_host(config, rules) if ips else None
    ips_results = {}
    if config.switch is None and config.security is None:
        order = [(i, 0) for i in range(len(inputs))]      # the bump's decisions do not depend on order
    else:
        # A switch's and the security stage's decisions depend on frame order and time.
        order = [(i, record) for i, _, record in _service_order(config, inputs, starts)]
    results = [None] * len(inputs)
    egress_src = {q: [] for q in range(len(config.ports))}
    for i, now in order:
        f = inputs[i]
        results[i] = r = model.process(f.frame, f.port, f.rx_error, now=now)
        for q in r.egress:
            egress_src[q].append((i, r.egress_frames[q]))
        if r.verdict is Verdict.PUNT:
            # IPS: the frame came out of the host port with its tag; the host decides at once (the
            # model's host takes no time) and passes it back in through the host port, or drops it.
            port = config.security.bypass_port
            verdict = host.decide(r.security.record_fields(), r.meta, r.in_port, f.frame)
            out = []
            if verdict == "pass":
                back = model.process(reinjection(r.egress_frames[port]), port, now=now)
                out = back.egress
                for q in back.egress:
                    egress_src[q].append((i, back.egress_frames[q]))
            ips_results[i] = {"verdict": verdict, "egress": out}

    async def read_counters():
        counters = await nic.counters()
        if rules is not None:
            counters["rule_hits"] = await _rule_hits(nic)
        return counters
    counters = asyncio.run(read_counters())
    decisions = [{"meta": r.meta, "verdict": int(r.verdict), "reason": int(r.reason),
                  "egress": list(r.egress), "security": r.security.record_fields() if r.security else None}
                 for r in results]
    for i, outcome in ips_results.items():
        decisions[i]["ips"] = outcome
    cycles, latency = _estimate_timing(config, inputs, starts, [bool(d["egress"]) for d in decisions])
    timing = {"timing": "estimate", "cycles": cycles, "latency_cycles": latency, "sim_cycles": None,
              "recorder": _model_recorder(model)}
    return decisions, egress_src, counters, timing


def _ips_host(config, rules):
    from sim.run.ips import IpsHost
    return IpsHost(rules, config.security.acl_entries)


async def _rule_hits(nic) -> list[list[int]]:
    """[gid, sid, hits] of every programmed rule, through the driver (JSON-ready)."""
    return [[h.gid, h.sid, h.hits] for h in await nic.security.rule_hits()]


def _model_recorder(model) -> dict | None:
    """The golden model's flight recorder in the driver's format, if it froze."""
    if model.switch is None or model.switch.recorder.frozen_by is None:
        return None
    from hdl.switch.settings import TICK_SHIFT
    why = model.switch.recorder.frozen_by
    trigger = "command" if isinstance(why, str) else "storm" if why.kind == "storm" else "loop"
    records = [{"tick": r["time"] >> TICK_SHIFT, "in_port": r["in_port"], "vlan": r["vlan"], "length": r["length"],
                "dst": r["dst"], "src": r["src"], "drop": r["drop"], "egress": r["egress"]}
               for r in model.switch.recorder.records]
    return {"trigger": trigger, "port": None if isinstance(why, str) else why.port, "records": records}


def _run_sim(config, inputs, starts, sim, waves, workdir: Path, bulk: bool, jobs: int, rules=None, ips=False):
    from sim.run import progress

    port_of = {name: i for i, name in enumerate(config.ports)}
    frames = [(port_of[f.port], f.frame, f.rx_error, s) for f, s in zip(inputs, starts, strict=True)]
    done = [0]

    def frames_done():
        return done[0], None
    try:
        if bulk:
            from sim.bulk.run import BulkError, build_model, run_bulk, run_segments
            try:
                build_model(config)     # its own progress bar; a no-op when cached
                desc = f"simulating (verilator, bulk{f', {jobs} segments' if jobs > 1 else ''})"
                with progress.watch(desc, None if jobs > 1 else frames_done, total=len(inputs), unit="frames"):
                    if jobs > 1:
                        res = run_segments(config, frames, workdir / "bulk", jobs)
                    else:
                        res = run_bulk(config, frames, workdir / "bulk", progress=lambda n: done.__setitem__(0, n),
                                       ips=_ips_loop(config, inputs, starts, rules) if ips else None,
                                       **_bulk_rule_hooks(rules, ips))
                if rules is not None:
                    res["rule_hits"] = res["after"]
            except BulkError as exc:
                raise EngineError(f"verilator bulk run failed: {exc}") from exc
        else:
            ips_stim = None
            if ips:
                # The host loop offers the frames in the model engine's order (sim/run/ips.py).
                ips_stim = {"rules": rules, "order": [i for i, _, _ in _service_order(config, inputs, starts)]}
            res = _run_cocotb(config, frames, sim, waves, workdir, done, rules, ips_stim)
    except EngineError:
        raise
    except (OSError, RuntimeError) as exc:
        raise EngineError(f"{sim} run failed: {exc}") from exc
    decisions, egress_src, counters, timing = _collate(config, inputs, res, sim, port_of, rules, ips)
    if rules is not None:
        counters["rule_hits"] = res["rule_hits"]
    timing["mode"] = "bulk" if bulk else "cocotb"
    timing["recorder"] = res.get("recorder")
    timing["segments"] = res.get("segments", 1)
    return decisions, egress_src, counters, timing


def _ips_loop(config, inputs, starts, rules) -> dict:
    """Bulk mode's host loop in IPS mode: the host and the model engine's order (sim/run/ips.py)."""
    from sim.run.ips import HostLoop
    return {"loop": HostLoop(config, rules), "order": [i for i, _, _ in _service_order(config, inputs, starts)]}


def _bulk_rule_hooks(rules, ips: bool = False) -> dict:
    """``before``/``after`` of :func:`sim.bulk.run.run_bulk` for ``rules``: the driver programs the
    security stage over the harness's CSR bus before the first frame, as the cocotb testbench does,
    and reads the rules' hit counters after the last, through the same driver block (it keeps the
    table it programmed: which counter slot holds which rule). ``ips``: IPS mode set after programming."""
    if rules is None:
        return {}
    programmed = {}

    async def program(nic):
        programmed["nic"] = nic
        await nic.security.program(rules.entries, matcher=rules.matcher)
        if ips:
            await nic.security.set_ips(True)

    async def hits(_nic):
        return await _rule_hits(programmed["nic"])
    return {"before": program, "after": hits}


def _run_cocotb(config, frames, sim, waves, workdir: Path, done: list[int], rules=None, ips=None) -> dict:
    from sim.run import progress
    from sim.run.nic_cocotb import PROGRESS_ENV, read_results, write_stimulus
    from sim.runner import CocotbTestFailure, SimulatorUnavailable, build, run_cocotb

    stim = write_stimulus(workdir / "stimulus.pkl", config, frames, output=workdir / "results.json",
                          acl=None if rules is None else rules.entries,
                          matcher=None if rules is None else rules.matcher, ips=ips)
    env = {"SECNIC_STIMULUS": str(stim)}
    progress_file = workdir / "progress"
    if progress.enabled():
        env[PROGRESS_ENV] = str(progress_file)

    def frames_done():
        try:
            return int(progress_file.read_text() or 0), None
        except (OSError, ValueError):
            return None, None
    try:
        build(config, sim, waves)     # its own progress bar; a no-op when cached
        with progress.watch(f"simulating ({sim})", frames_done, total=len(frames), unit="frames"):
            run_cocotb(config, sim, "sim.run.nic_cocotb", test_filter=r"sim\.run\.nic_cocotb\.run$",
                       env=env, waves=waves, test_dir=workdir / "sim")
    except (CocotbTestFailure, SimulatorUnavailable, RuntimeError) as exc:
        raise EngineError(f"{sim} run failed: {exc}") from exc
    return read_results(workdir / "results.json")


def _where(f: InputFrame) -> str:
    return f"{f.in_file} frame #{f.pcap_cnt} (port {f.port})"


def _decision_text(config, reason: int, egress) -> str:
    from hdl.packet.meta import DropReason
    if reason:
        return f"drop ({DropReason(reason).label})"
    return "to " + (", ".join(config.ports[q] for q in egress) or "nowhere")


def _collate(config, inputs, res, sim, port_of, rules=None, ips=False):
    """Match a simulation's records and egress frames to the input frames. IPS mode: the harness's
    ``ips`` list names the re-injections' records; each is held to the golden model's re-injection of
    the frame it diverted, and its egress frames belong to that input frame."""
    from host_driver.blocks.security import reinjection
    per_port: dict[int, list[int]] = {}
    for i, f in enumerate(inputs):
        per_port.setdefault(port_of[f.port], []).append(i)
    decisions: list[dict | None] = [None] * len(inputs)
    ingress_drops = _ingress_drops(config, inputs, res, sim, per_port)
    for idx, reason in ingress_drops.items():
        decisions[idx] = _ingress_decision(config, inputs[idx], reason)
    # The pipeline saw each port's frames in order, less those its ingress FIFO dropped.
    per_port = {p: [i for i in idxs if i not in ingress_drops] for p, idxs in per_port.items()}
    taken = dict.fromkeys(per_port, 0)
    egress_src: dict[int, list[tuple[int, bytes]]] = {q: [] for q in range(len(config.ports))}
    rec_cycle = {}
    decode = _record_decoder(config)
    # A switch tags each port's copy: its bytes come from the golden model, switching the frames
    # in the order and at the cycles of the gateware's records; the decisions must agree.
    model = None
    if config.switch is not None or config.security is not None:
        model, _ = _programmed_model(config, rules, ips)
    from sim.run.alerts import record_security_fields
    reinjected = {r["record"]: r for r in (res.get("ips") or []) if r["record"] is not None}
    host_verdict = {r["frame"]: r["verdict"] for r in (res.get("ips") or [])}
    diverted_frames: dict[int, bytes] = {}     # input index -> the model's tagged frame to the host
    for k, (cycle, bits) in enumerate(res["records"]):
        rec = decode(bits)
        if k in reinjected:
            idx = reinjected[k]["frame"]
            want = model.process(reinjection(diverted_frames[idx]), config.security.bypass_port, now=cycle)
            if (int(want.reason), list(want.egress)) != (rec["reason"], rec["egress"]):
                raise EngineError(
                    f"{sim}: the gateware and the golden model disagree on the re-injection of {_where(inputs[idx])}: "
                    f"gateware {_decision_text(config, rec['reason'], rec['egress'])}, model "
                    f"{_decision_text(config, int(want.reason), want.egress)}")
            decisions[idx]["ips"]["egress"] = list(rec["egress"])
            for q in rec["egress"]:
                egress_src[q].append((idx, want.egress_frames[q]))
            continue
        port = rec["in_port"]
        if port not in per_port or taken[port] >= len(per_port[port]):
            raise EngineError(f"{sim}: record for port {port} with no input frame left")
        idx = per_port[port][taken[port]]
        taken[port] += 1
        decisions[idx] = {"meta": rec["meta"], "verdict": rec["verdict"], "reason": rec["reason"],
                          "egress": rec["egress"],
                          "security": record_security_fields(config, rec)}
        rec_cycle[idx] = cycle
        f = inputs[idx]
        sent = {q: f.frame for q in rec["egress"]}
        if model is not None:
            want = model.process(f.frame, f.port, f.rx_error, now=cycle)
            if (int(want.reason), list(want.egress)) != (rec["reason"], rec["egress"]):
                raise EngineError(
                    f"{sim}: the gateware and the golden model disagree on {_where(f)}: gateware "
                    f"{_decision_text(config, rec['reason'], rec['egress'])}, model "
                    f"{_decision_text(config, int(want.reason), want.egress)}")
            if want.security is not None and want.security.record_fields() != decisions[idx]["security"]:
                raise EngineError(
                    f"{sim}: the gateware and the golden model disagree on {_where(f)}'s security fields: "
                    f"gateware {decisions[idx]['security']}, model {want.security.record_fields()}")
            sent = want.egress_frames
            if ips and int(want.verdict) != rec["verdict"]:
                raise EngineError(f"{sim}: the gateware and the golden model disagree on {_where(f)}'s verdict "
                                  f"(IPS: diverted or not): gateware {rec['verdict']}, model {int(want.verdict)}")
            if idx in host_verdict:
                diverted_frames[idx] = want.egress_frames[config.security.bypass_port]
                decisions[idx]["ips"] = {"verdict": host_verdict[idx], "egress": []}
        for q in rec["egress"]:
            egress_src[q].append((idx, sent[q]))
    if None in decisions:
        # Records come in each port's order, so the first frame without one is the one stuck.
        why = "timed out" if res.get("status", {}).get("timed_out") else "ended"
        raise EngineError(f"{sim}: the simulation {why} before {_where(inputs[decisions.index(None)])} got its "
                          f"record ({len(res['records'])} of {len(inputs)} frames have one)")
    if model is not None and config.ingress_fifos:
        _reconcile_ingress(config, model, ingress_drops, inputs, res["counters"], sim)
    latency = []
    ends = list(rec_cycle.values())
    for q, name in enumerate(config.ports):
        got = res["egress"][name]
        if len(got) != len(egress_src[q]):
            raise EngineError(f"{sim}: port {name} sent {len(got)} frames, records say {len(egress_src[q])}")
        for k, (e, (idx, want)) in enumerate(zip(got, egress_src[q], strict=True)):
            if e["data"] != want:
                raise EngineError(f"{sim}: egress frame {k + 1} of port {name} differs from {_where(inputs[idx])}, "
                                  f"which it forwards ({len(e['data'])} bytes sent, {len(want)} expected)")
            if e.get("flags"):
                raise EngineError(f"{sim}: egress frame {k + 1} of port {name} ({_where(inputs[idx])}) left with "
                                  + ("tuser set" if e["flags"] & 1 else "tkeep not packed"))
            latency.append((idx, e["start"] - res["ingress"][idx][0]))
            ends.append(e["end"])
    first = min((ing[0] for ing in res["ingress"] if ing), default=0)
    timing = {"timing": "simulated", "cycles": (max(ends) - first + 1) if ends else 0,
              "latency_cycles": latency, "sim_cycles": res.get("sim_cycles", res["total_cycles"]),
              "sim_wall_s": res["wall_s"]}
    return decisions, egress_src, res["counters"], timing


#: trace.jsonl's ``reason`` of a frame an ingress FIFO dropped (not a DropReason: no record carries it).
INGRESS_REASONS = ("ingress_full", "ingress_too_long")


def _ingress_drops(config, inputs, res, sim, per_port) -> dict[int, str]:
    """Input index -> reason of each frame an ingress FIFO dropped (``ingress = "drop"``), from the
    simulation's per-port list of dropped frame numbers. The reason follows from the length: a
    frame of more beats than the FIFO holds is ``ingress_too_long``, any other ``ingress_full``."""
    if not config.ingress_fifos:
        return {}
    drops = res.get("ingress_drops")
    if drops is None:
        raise EngineError(f"{sim}: ingress = \"drop\" but the simulation did not report which frames its "
                          "ingress FIFOs dropped")
    if res.get("ingress_stalls"):
        raise EngineError(f"{sim}: an ingress FIFO held its source back for {res['ingress_stalls']} cycles; "
                          "in ingress = \"drop\" a port takes every beat")
    out = {}
    for port, numbers in drops.items():
        frames = per_port.get(int(port), [])
        for k in numbers:
            if k >= len(frames):
                raise EngineError(f"{sim}: port {config.ports[int(port)]} dropped its frame {k + 1} at ingress, "
                                  f"but it was sent only {len(frames)}")
            idx = frames[k]
            too_long = _beats(config, inputs[idx].frame) > config.ingress_depth
            out[idx] = INGRESS_REASONS[too_long]
    return out


def _ingress_decision(config, f: InputFrame, reason: str) -> dict:
    """A trace decision for a frame dropped at ingress: the model's parse of it (no record carries
    the gateware's), verdict drop, ``ingress_reason`` in place of a DropReason."""
    from hdl.packet.meta import DropReason, Verdict
    from host_driver.model.nic import parse_frame
    meta = parse_frame(f.frame, physical=config.is_physical(f.port), header_window=config.header_window,
                       max_frame=config.max_frame)
    return {"meta": meta, "verdict": int(Verdict.DROP), "reason": int(DropReason.NONE), "egress": [],
            "ingress_reason": reason}


def _reconcile_ingress(config, model, ingress_drops, inputs, counters, sim) -> None:
    """The gateware's counters must be the golden model's (fed the frames that passed the ingress
    FIFOs) plus the ingress drops, counter for counter. Raises EngineError naming the first that
    differs."""
    import asyncio

    from hdl.switch.regs import SWPORT, SwportCounter
    from host_driver.driver import Nic
    from host_driver.model.nic import ModelBus

    for idx, reason in ingress_drops.items():
        block = model.regmap.block(SWPORT, config.port_index(inputs[idx].port))
        model.count(block.event(SwportCounter(reason)))

    async def read():
        nic = Nic(ModelBus(model))
        await nic.discover()
        return await nic.counters()
    want = asyncio.run(read())

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        elif a != b:
            raise EngineError(f"{sim}: counter {path} reads {b} from the gateware, the golden model with the "
                              f"ingress drops says {a}")
    walk(want, counters, "")


# -- output -----------------------------------------------------------------------------------------

def use_bulk(engine: str, n_frames: int, bulk: bool | None = None, waves: bool = False, jobs: int = 1) -> bool:
    """Whether a run goes through bulk mode (:mod:`sim.bulk`): ``bulk`` if given (True needs
    Verilator and no waveforms), else Verilator runs of :data:`BULK_MIN_FRAMES` frames or more, or
    split into ``jobs`` > 1 segments, without waveforms. ValueError for a combination that cannot be."""
    if bulk:
        if engine != "verilator":
            raise ValueError(f"--bulk runs on Verilator only (--engine verilator), not {engine}")
        if waves:
            raise ValueError("--bulk writes no waveforms: use --no-bulk with --waves")
    if jobs > 1 and (engine != "verilator" or bulk is False or waves):
        raise ValueError("--jobs splits a bulk-mode run: it needs --engine verilator, without --no-bulk or --waves")
    if bulk is not None:
        return bulk
    return engine == "verilator" and not waves and (n_frames >= BULK_MIN_FRAMES or jobs > 1)


def run_engine(config: NicConfig, inputs: Sequence[InputFrame], engine: str = "model",
               pace: str | float = "line", waves: bool = False, out_dir: str | Path = "out", *,
               force: bool = False, truncated_files: Sequence[tuple[str, str]] = (),
               bulk: bool | None = None, jobs: int = 1, rules=None, ips: bool = False) -> dict:
    """Run ``inputs`` through ``engine`` and write the run files to ``out_dir``; return run.json's dict.

    ``out_dir`` follows :mod:`sim.run.outdir` (``force``: write beside files secnic did not write);
    it is checked before anything runs (:class:`OutDirError`). ``truncated_files`` lists
    ``(file, what is wrong)`` for inputs read from truncated captures, for run.json. ``bulk`` and
    ``jobs``: :func:`use_bulk` (ValueError for a combination that cannot be). ``rules``: a
    :class:`sim.run.alerts.RuleSet` the driver programs into the security stage before the first
    frame (the build must have one: ``config.security``); eve.json, trace.jsonl's ``acl_rule`` and
    ``sids`` and counters.json's ``rules`` come from it. ``ips``: IPS mode (docs/security.md, "IPS:
    divert and re-inject"; needs ``rules`` and a switch with a host port; the simulators play the host
    one frame at a time, sim/run/ips.py "The host loop's timing rule"; not in bulk mode yet).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    if jobs > 1 and config.switch is not None:
        raise ValueError("--jobs splits a run into NICs that start empty; a switch carries its MAC table, "
                         "storm buckets and loop guard from frame to frame: use --jobs 1")
    if jobs > 1 and config.security is not None:
        raise ValueError("--jobs splits a run into NICs that start empty; the security stage's flow table "
                         "carries each connection's state (established, direction, default deny) from frame to "
                         "frame: use --jobs 1")
    if engine != "model" and config.uart_bridge:
        raise ValueError("uart_bridge = true builds the board's CSR bridge in place of the AXI-Lite bus "
                         "the simulators read the counters through; simulate with uart_bridge = false")
    for f in inputs:
        config.port_index(f.port)  # ValueError naming the port
    empty = [f for f in inputs if not f.frame]
    if empty:
        log.warning("skipping %d zero-length frame(s) (first: %s #%d)", len(empty), empty[0].in_file,
                    empty[0].pcap_cnt)
        inputs = [f for f in inputs if f.frame]
    pace = parse_pace(pace) if isinstance(pace, str) else float(pace)
    if rules is not None:
        if config.security is None:
            raise ValueError("rules need a build with a security stage (a [security] table in --config)")
    if ips:
        if rules is None:
            raise ValueError("--ips diverts the frames the rules' host path must settle: give --rules too")
        if config.switch is None or config.security.bypass_port is None:
            raise ValueError("--ips diverts frames to the NIC's host port and takes them back there: it needs a "
                             "switch with a host port (the security stage's bypass port); this build has none")
    bulk = use_bulk(engine, len(inputs), bulk, waves, jobs)
    if ips and engine != "model" and config.ingress_fifos:
        raise ValueError("--ips on a simulator needs ingress = \"pause\": its host loop takes each port's k-th "
                         "frame end as its k-th input frame, and re-injections enter the host port too")
    out_dir = check_out_dir(out_dir, force=force)
    starts = schedule(config, inputs, pace)
    span = max((s for s in starts if s is not None), default=0)
    limit = MAX_BULK_SPAN_CYCLES if bulk else MAX_SIM_SPAN_CYCLES
    if engine != "model" and span > limit:
        raise PaceError(f"--pace {pace}: the last frame starts {span} cycles "
                        f"({span / config.clock_mhz / 1e6:.3g} s) after the first; more than "
                        f"{limit} cycles is too long to simulate {'in bulk mode' if bulk else 'with cocotb'}; "
                        "use --pace line or a rate" + ("" if bulk else ", or --bulk"))
    wall0 = time.monotonic()
    tmp = staging_dir(out_dir)
    try:
        work = tmp / ".work"
        work.mkdir()
        if engine == "model":
            decisions, egress_src, counters, timing = _run_model(config, inputs, starts, rules, ips)
        else:
            decisions, egress_src, counters, timing = _run_sim(config, inputs, starts, engine, waves, work,
                                                               bulk, jobs, rules, ips)
        wall = time.monotonic() - wall0
        host = _write_outputs(tmp, config, inputs, decisions, egress_src, counters, timing.get("recorder"), rules,
                              ips)
        run = _run_json(config, engine, inputs, egress_src, timing, wall, pace, starts, truncated_files)
        if rules is not None:
            run["security"] = {"rules": rules.source, "rules_programmed": len({(e.gid, e.sid) for e in rules.entries}),
                               "acl_entries_used": sum(e.ternary_count() for e in rules.entries),
                               "rules_not_offloaded": sum(1 for r in rules.compiled.rules if r.verdict != "offloaded"),
                               "rules_left_out": len(rules.left_out),
                               "payload_rules": ({s: len(v) for s, v in rules.matcher.by_status().items()}
                                                 if rules.matcher is not None else None), **host}
            # The host path's work for the payload rules (docs/security.md): punted = inspected.
            run["host_path"] = run["security"].pop("host_path", None)
        (tmp / "run.json").write_text(json.dumps(run, indent=2) + "\n")
        if waves and engine != "model":
            from sim.runner import waves_file
            dump = waves_file(engine, work / "sim")
            if dump.exists():
                dump.rename(tmp / f"waves{dump.suffix}")
        shutil.rmtree(work, ignore_errors=True)
        publish(tmp, out_dir, force=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("%s run: %d frames in, %d out -> %s", engine, run["packets_in"], run["packets_out"], out_dir)
    return run


def _write_outputs(tmp: Path, config, inputs, decisions, egress_src, counters, recorder=None, rules=None,
                   ips: bool = False) -> dict:
    """Write trace.jsonl, egress/, counters.json, eve.json (and recorder.jsonl); returns the host
    path's work for run.json (alerts, frames whose alert list the host finished, and with payload
    rules ``host_path``: :meth:`sim.run.alerts.HostPath.summary`)."""
    from host_driver.eve import ACTION_BLOCKED
    from host_driver.trace import dumps_jsonl, trace_record
    from sim.run.alerts import HostPath, alert_events, frame_alerts, merge_alerts, rules_table, slot_rules
    from sim.run.ips import drop_event

    events, host = [], {"alerts": 0, "host_finished_frames": 0, "host_finished_alerts": 0}
    per_frame = [None] * len(inputs)
    if rules is not None:
        slots = slot_rules(rules.entries, config.security.acl_entries)
        payload = HostPath(rules.matcher) if rules.matcher is not None else None
        for i, (f, d) in enumerate(zip(inputs, decisions, strict=True)):
            sec = d.get("security")
            a = frame_alerts(sec, d["meta"], config.port_index(f.port), rules, slots)
            if payload is not None:
                # The host's copy of a punted frame: the bytes the NIC received (docs/security.md).
                matched, found = payload.frame(sec, f.frame)
                a = merge_alerts(a, sec, matched, found, rules)
                payload.host_alerts += sum(1 for r in a.alerts if r in a.host)
                payload.settled_alerts += sum(1 for r in a.alerts if r in a.payload and r not in a.host)
            dropped = d.get("ips", {}).get("verdict") == "drop"
            if dropped:
                a.action = ACTION_BLOCKED       # IPS: the host dropped the frame its alert names
            per_frame[i] = a
            frame_events = alert_events(a, rules, d["meta"], timestamp=f.ts_ns / 1e9, in_iface=f.port,
                                        in_file=f.in_file, pcap_cnt=f.pcap_cnt)
            events += frame_events
            if dropped:
                events.append(drop_event(frame_events[0], d["meta"], f.frame))
            if a.host_finished:
                host["host_finished_frames"] += 1
                host["host_finished_alerts"] += len(a.alerts) - 1
        host["alerts"] = sum(1 for e in events if e["event_type"] == "alert")
        if payload is not None:
            host["host_path"] = payload.summary(len(inputs))
            outcomes = [d["ips"]["verdict"] for d in decisions if d.get("ips")]
            if ips:
                # punted and diverted count the same frames; diverted = reinjected + host_dropped.
                host["host_path"].update(diverted=len(outcomes), reinjected=outcomes.count("pass"),
                                         host_dropped=outcomes.count("drop"))
        hits = {(g, s): n for g, s, n in counters.pop("rule_hits")}
        counters["rules"] = rules_table(rules, hits)
    records = [trace_record(d["meta"], in_port_name=f.port, in_file=f.in_file, pcap_cnt=f.pcap_cnt,
                            verdict=d["verdict"], reason=d["reason"],
                            egress_names=[config.ports[q] for q in d["egress"]],
                            **({} if a is None else {"acl_rule": a.acl_rule, "sids": [s for _, s in a.alerts]}))
               for f, d, a in zip(inputs, decisions, per_frame, strict=True)]
    if rules is not None:
        for r, d in zip(records, decisions, strict=True):
            r.update(_trace_acl_host(d.get("security")))
            if "ips" in d:
                # IPS: the host's verdict and where the re-injected frame went.
                r["ips"] = {"verdict": d["ips"]["verdict"], "egress": [config.ports[q] for q in d["ips"]["egress"]]}
    if rules is not None and rules.matcher is not None:
        for r, d, a in zip(records, decisions, per_frame, strict=True):
            r["match"] = _trace_match(d.get("security"), a)
    for r, d in zip(records, decisions, strict=True):
        if d.get("ingress_reason"):
            r["reason"] = d["ingress_reason"]
    (tmp / "trace.jsonl").write_text(dumps_jsonl(records))
    (tmp / "egress").mkdir()
    for q, name in enumerate(config.ports):
        write_pcap(tmp / "egress" / f"{name}.pcap",
                   [(data, inputs[i].ts_ns) for i, data in egress_src[q]])
    (tmp / "counters.json").write_text(json.dumps(counters, indent=2) + "\n")
    (tmp / "eve.json").write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
    if recorder is not None:
        # The switch's flight recorder froze (a loop, a storm, or the driver): its records, oldest
        # first, the triggering frame last; the first line says what froze it.
        head = {"frozen_by": recorder["trigger"], "port": recorder["port"], "records": len(recorder["records"])}
        (tmp / "recorder.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [head, *recorder["records"]]))
    return host


def _trace_acl_host(sec) -> dict:
    """trace.jsonl's ``acl_punt`` (the ACL handed the frame to the host path) and ``acl_mirror`` (its
    first hit is a mirror entry), from the record's security fields; false for a bypassed frame or
    one an ingress FIFO dropped (no record)."""
    from hdl.acl.layouts import AclAction
    if not sec:
        return {"acl_punt": False, "acl_mirror": False}
    return {"acl_punt": bool(sec["acl_punt"]),
            "acl_mirror": bool(sec["acl_hit"]) and sec["acl_action"] == AclAction.MIRROR.value}


def _trace_match(sec, alerts) -> dict | None:
    """trace.jsonl's ``match``: the record's matcher fields and the payload rules that matched (sids;
    ``host_sids`` those the host path found), None for a frame the stage bypassed or skipped."""
    if not sec or not sec.get("match_inspected"):
        return None
    return {"punt": bool(sec["match_punt"]), "overflow": bool(sec["match_overflow"]),
            "too_long": bool(sec["match_too_long"]), "hits": sec["match_hits"],
            "sids": [s for _, s in alerts.payload], "host_sids": [s for _, s in alerts.host]}


def _suspicious(config, inputs, truncated_files) -> dict:
    """What in the input deserves a word (module docstring, "Suspicious input")."""
    snaplen = [f for f in inputs if f.wire_len is not None and f.wire_len > len(f.frame)]
    short = [f for f in inputs if config.is_physical(f.port) and len(f.frame) < MIN_PHYSICAL_FRAME]

    def first(frames):
        return None if not frames else {"in_file": frames[0].in_file, "pcap_cnt": frames[0].pcap_cnt}
    return {
        "snaplen_cut": len(snaplen), "snaplen_cut_first": first(snaplen),
        "short_on_physical_port": len(short), "short_on_physical_port_first": first(short),
        "truncated_files": [{"file": str(f), "detail": d} for f, d in truncated_files],
    }


def _rate(config, n_bytes: int, n_frames: int, cycles: int) -> dict:
    if not cycles:
        return {"gbps": 0.0, "mpps": 0.0}
    return {"gbps": round(n_bytes * 8 * config.clock_mhz / 1000 / cycles, 4),
            "mpps": round(n_frames * config.clock_mhz / cycles, 4)}


def _run_json(config, engine, inputs, egress_src, timing, wall, pace, starts, truncated_files) -> dict:
    cycles = timing["cycles"]
    bytes_in = sum(len(f.frame) for f in inputs)
    bytes_out = sum(len(data) for v in egress_src.values() for _, data in v)
    packets_out = sum(len(v) for v in egress_src.values())
    ns_per_cycle = 1000 / config.clock_mhz
    pairs = timing["latency_cycles"]
    lat = [c for _, c in pairs]
    pipe = [pipeline_cycles(config, len(inputs[i].frame)) for i, _ in pairs]
    lat_c = _stats(lat)
    lat_ns = None if lat_c is None else {k: round(v * ns_per_cycle, 3) for k, v in lat_c.items()}
    sim_cycles = timing.get("sim_cycles")
    sim_wall = timing.get("sim_wall_s") or wall
    offered_cycles = _offered_cycles(config, inputs, starts)
    rate_note = None
    if len(inputs) < MIN_RATE_FRAMES or cycles < MIN_RATE_CYCLES:
        rate_note = (f"only {len(inputs)} frame(s) over {cycles} cycles: pipeline fill and drain weigh on "
                     f"the rates (give at least {MIN_RATE_FRAMES} frames and {MIN_RATE_CYCLES} cycles)")
    return {
        "engine": engine,
        # How a simulator ran: the cocotb testbench or bulk mode, and in how many parallel segments.
        "sim_mode": timing.get("mode"),
        "segments": timing.get("segments"),
        # A switch's flight recorder froze during the run (recorder.jsonl): what froze it, or None.
        "recorder_frozen_by": (timing.get("recorder") or {}).get("trigger"),
        "timing": timing["timing"],
        "pace": pace,
        "data_width": config.data_width,
        "packets_in": len(inputs),
        "packets_out": packets_out,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "cycles": cycles,
        "clock_mhz": config.clock_mhz,
        "gbps": round(bytes_in * 8 * config.clock_mhz / 1000 / cycles, 4) if cycles else 0.0,
        "mpps": round(len(inputs) * config.clock_mhz / cycles, 4) if cycles else 0.0,
        "offered": {**_rate(config, bytes_in, len(inputs), offered_cycles), "cycles": offered_cycles},
        "delivered": _rate(config, bytes_out, packets_out, cycles),
        "line_rate_gbps_per_port": line_rate_gbps(config),
        "rate_note": rate_note,
        "latency_cycles": lat_c,
        "latency_ns": lat_ns,
        "latency_mean_cycles": round(statistics.fmean(lat), 2) if lat else None,
        "latency_pipeline_cycles": _stats(pipe),
        "latency_queueing_cycles": _stats([max(0, c - p) for c, p in zip(lat, pipe, strict=True)]),
        "suspicious_input": _suspicious(config, inputs, truncated_files),
        "wall_s": round(wall, 3),
        # The model simulates no cycles: a speed computed from its estimate would mean nothing.
        "sim_cycles_per_s": (round(sim_cycles / sim_wall, 1)
                             if sim_cycles is not None and sim_wall else None),
    }
