"""The switch's management plane: registers into the switch stage, the command engine, counters.

:func:`wire_switch` connects the SWITCH and SWPORT registers (:mod:`hdl.switch.regs`) of a NIC's
CSR slave to its :class:`~hdl.switch.stage.SwitchStage`, :class:`~hdl.switch.egress.EgressFanout`
and :class:`~hdl.switch.recorder.FlightRecorder`, runs the driver's commands and drives the
switch's counters. The command engine serves one command at a time; a MAC table access waits
for the table's management port, which alternates with packets, so commands complete while every
port is saturated.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal

from hdl.packet.meta import SWITCH_DROP_REASONS
from hdl.switch.mac_table import LearnOutcome
from hdl.switch.regs import (
    ARG_WORDS,
    RESULT_WORDS,
    STORM_REGISTERS,
    SWITCH,
    SWPORT,
    Command,
    SwitchCounter,
    SwportCounter,
    SwportLimitCounter,
)
from hdl.switch.settings import TICK_SHIFT, TIME_BITS

__all__ = ["wire_switch"]


def wire_switch(m: Module, csr, regmap, config, stage, fanout, recorder) -> None:
    """Connect the switch blocks to the CSR slave ``csr`` (see the module docstring)."""
    n = len(config.ports)
    sw = regmap.block(SWITCH)
    ports = [regmap.block(SWPORT, i) for i in range(n)]

    # Coarse time: a tick every 2**TICK_SHIFT cycles.
    cycles = Signal(TICK_SHIFT + TIME_BITS)
    m.d.sync += cycles.eq(cycles + 1)
    now = cycles[TICK_SHIFT:]
    m.d.comb += [stage.now.eq(now), csr.status(sw, SWITCH.register("TICK")).eq(now)]

    def rw(block, name):
        return csr.rw(block, block.type.register(name))

    # Settings.
    mirror = rw(sw, "MIRROR")
    m.d.comb += [
        stage.aging.eq(rw(sw, "AGING")),
        stage.loop_moves.eq(rw(sw, "LOOP_MOVES")), stage.loop_window.eq(rw(sw, "LOOP_WINDOW")),
        stage.loop_block.eq(rw(sw, "CONTROL")[0]),
        stage.mirror_enable.eq(mirror[0]), stage.mirror_to.eq(mirror[4:8]),
        stage.mirror_ingress.eq(mirror[8:8 + n]), stage.mirror_egress.eq(mirror[16:16 + n]),
        fanout.mirror_to.eq(mirror[4:8]),
        csr.status(sw, SWITCH.register("BLOCKED")).eq(stage.blocked),
        csr.status(sw, SWITCH.register("TABLE_STATUS")).eq(stage.scrub_overrun),
    ]
    for i, block in enumerate(ports):
        vlan = rw(block, "VLAN")
        m.d.comb += [stage.port_trunk[i].eq(vlan[0]), getattr(stage, f"port_pvid_{i}").eq(vlan[16:28]),
                     fanout.port_trunk[i].eq(vlan[0]), getattr(fanout, f"port_pvid_{i}").eq(vlan[16:28])]
        for c, rate, burst in STORM_REGISTERS:
            m.d.comb += [getattr(stage, f"storm_rate_{i}_{c.label}").eq(rw(block, rate)),
                         getattr(stage, f"storm_burst_{i}_{c.label}").eq(rw(block, burst))]
        # The learning limit; one above what the table can hold is never reached (saturated).
        limit, count_max = rw(block, "PORT_LIMIT"), (1 << stage.mac_table.count_bits) - 1
        m.d.comb += [getattr(stage, f"port_limit_{i}").eq(Mux(limit > count_max, count_max, limit)),
                     csr.status(block, SWPORT.register("PORT_HELD")).eq(getattr(stage, f"port_held_{i}"))]

    # Commands: a new sequence number in CMD starts one; CMD_DONE echoes it when finished.
    cmd = rw(sw, "CMD")
    args = [rw(sw, f"ARG{i}") for i in range(ARG_WORDS)]
    done_seq = Signal(8)
    results = [Signal(32, name=f"cmd_result{i}") for i in range(RESULT_WORDS)]
    m.d.comb += csr.status(sw, SWITCH.register("CMD_DONE")).eq(done_seq << 24)
    for i, r in enumerate(results):
        m.d.comb += csr.status(sw, SWITCH.register(f"RESULT{i}")).eq(r)
    op, seq = cmd[0:4], cmd[24:32]
    mgmt = stage.mac_mgmt_req.payload
    entry_bits = len(mgmt.entry.as_value())
    m.d.comb += [mgmt.set.eq(args[0][0:16]), mgmt.way.eq(args[0][16:24]),
                 mgmt.entry.eq(Cat(*args[1:])[:entry_bits]),
                 stage.vlan_write.payload.vid.eq(args[0]), stage.vlan_write.payload.members.eq(args[1]),
                 recorder.read_index.eq(args[0])]
    with m.FSM(name="switch_command"):
        with m.State("IDLE"):
            with m.If(seq != done_seq):
                with m.Switch(op):
                    with m.Case(Command.MAC_READ, Command.MAC_WRITE):
                        m.next = "MAC"
                    with m.Case(Command.VLAN_WRITE):
                        m.d.comb += stage.vlan_write.valid.eq(1)
                        m.d.sync += done_seq.eq(seq)
                    with m.Case(Command.UNBLOCK):
                        m.d.comb += stage.unblock.eq(args[0])
                        m.d.sync += done_seq.eq(seq)
                    with m.Case(Command.RECORDER_READ):
                        m.next = "RECORD"
                    with m.Case(Command.RECORDER_FREEZE):
                        m.d.comb += recorder.freeze.eq(1)
                        m.d.sync += done_seq.eq(seq)
                    with m.Case(Command.RECORDER_REARM):
                        m.d.comb += recorder.rearm.eq(1)
                        m.d.sync += done_seq.eq(seq)
                    with m.Default():
                        m.d.sync += done_seq.eq(seq)
        with m.State("MAC"):
            m.d.comb += [stage.mac_mgmt_req.valid.eq(1), mgmt.write.eq(op == Command.MAC_WRITE)]
            with m.If(stage.mac_mgmt_req.ready):
                m.next = "MAC_WAIT"
        with m.State("MAC_WAIT"):
            m.d.comb += stage.mac_mgmt_resp.ready.eq(1)
            with m.If(stage.mac_mgmt_resp.valid):
                bits = stage.mac_mgmt_resp.payload.as_value()
                m.d.sync += [r.eq(bits[32 * i:32 * (i + 1)]) for i, r in enumerate(results) if 32 * i < len(bits)]
                m.d.sync += done_seq.eq(seq)
                m.next = "IDLE"
        with m.State("RECORD"):
            m.next = "RECORD_READ"        # the ring's read port answers a cycle after its address
        with m.State("RECORD_READ"):
            bits = recorder.read_data.as_value()
            m.d.sync += [r.eq(bits[32 * i:32 * (i + 1)]) for i, r in enumerate(results) if 32 * i < len(bits)]
            m.d.sync += done_seq.eq(seq)
            m.next = "IDLE"

    # The flight recorder takes every record.
    rec = stage.record.payload
    m.d.comb += [
        recorder.write_en.eq(stage.record.valid),
        recorder.write.time.eq(now), recorder.write.in_port.eq(rec.in_port),
        recorder.write.vlan.eq(stage.desc.payload.vlan),
        recorder.write.reason.eq(rec.reason), recorder.write.length.eq(rec.meta.frame_len),
        recorder.write.egress.eq(rec.egress), recorder.write.dst.eq(rec.meta.eth_dst),
        recorder.write.src.eq(rec.meta.eth_src),
        recorder.trigger_loop.eq(stage.loop_event), recorder.trigger_storm.eq(stage.storm_event),
        recorder.trigger_port.eq(rec.in_port),
    ]
    status = csr.status(sw, SWITCH.register("RECORDER"))
    m.d.comb += [status[0].eq(recorder.frozen), status[1:4].eq(recorder.trigger),
                 status[4:8].eq(recorder.trigger_at), status[16:32].eq(recorder.count)]

    # Counters.
    outcome = stage.learn_outcome
    for counter, value in ((SwitchCounter.LEARNED, outcome == LearnOutcome.LEARNED),
                           (SwitchCounter.MOVED, outcome == LearnOutcome.MOVED),
                           (SwitchCounter.TABLE_FULL, outcome == LearnOutcome.TABLE_FULL),
                           (SwitchCounter.STATIC_MOVE, outcome == LearnOutcome.STATIC_MOVE),
                           (SwitchCounter.LOOP_EVENTS, stage.loop_event),
                           (SwitchCounter.STORM_DROPS, stage.storm_event)):
        m.d.comb += csr.count(sw.event(counter)).eq(stage.record.valid & value)
    for i, block in enumerate(ports):
        mine = stage.record.valid & (rec.in_port == i)
        for reason in SWITCH_DROP_REASONS:
            m.d.comb += csr.count(block.event(reason)).eq(mine & (rec.reason == reason))
        m.d.comb += csr.count(block.event(SwportCounter.TX_QUEUE_DROP)).eq(fanout.queue_drop[i])
        m.d.comb += csr.count(block.event(SwportLimitCounter.LEARN_LIMIT)).eq(
            mine & (outcome == LearnOutcome.LEARN_LIMIT))
