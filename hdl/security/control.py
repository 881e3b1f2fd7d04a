"""The security stage's management plane: registers into the stage, the command engine, counters.

:func:`wire_security` connects the SECURITY and SECPORT registers (:mod:`hdl.security.regs`) of a
NIC's CSR slave to its :class:`~hdl.security.stage.SecurityStage` and
:class:`~hdl.security.gate.SecurityGate`: default deny and the flow timeouts, the millisecond
clock of the flow table, the command engine (one command at a time; a flow table access waits
for the table's management port, which shares the table with frames, and ``ACL_COMMIT`` finishes
once the classifier's ``commit_busy`` has fallen) and the counters, which count from the joined
records (so per port, received = forwarded + dropped by reason still holds).

With the payload matcher (:class:`~hdl.security.payload.PayloadStage`) it also runs
``MATCHER_WRITE`` (a bucket into the shadow bank, done once the matcher took it) and
``MATCHER_COMMIT`` (done once ``commit_pending`` has fallen), gives the gate CONTROL bit 1
(``punt_all_payload``) and counts the SECMATCH block from the final records (a frame the stage
bypassed has no match fields, so it counts nowhere).
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal

from hdl.acl.layouts import AclAction
from hdl.flow.flow_table import MgmtOp, Outcome
from hdl.packet.meta import SECURITY_DROP_REASONS, Verdict
from hdl.security.regs import (
    ARG_WORDS,
    CONTROL_DEFAULT_DENY,
    CONTROL_PUNT_ACL_MULTI,
    CONTROL_PUNT_ALL_PAYLOAD,
    COUNTER_CLEAR_BIT,
    FLOW_WAY_SHIFT,
    RESULT_WORDS,
    SECMATCH,
    SECPORT,
    SECURITY,
    TIMEOUT_REGISTERS,
    Command,
    SecportCounter,
    SecurityCounter,
)

__all__ = ["wire_security"]


def wire_security(m: Module, csr, regmap, config, stage, gate, payload=None) -> None:
    """Connect the security blocks to the CSR slave ``csr`` (see the module docstring); ``payload``
    is the build's :class:`~hdl.security.payload.PayloadStage`, if it has one."""
    sec = regmap.block(SECURITY)
    ports = [regmap.block(SECPORT, i) for i in range(len(config.ports))]

    def rw(name):
        return csr.rw(sec, SECURITY.register(name))

    def status(name):
        return csr.status(sec, SECURITY.register(name))

    # Flow time: milliseconds (hdl.flow.flow_table.TIME_UNIT_S) from the core clock.
    per_ms = round(config.clock_mhz * 1000)
    tick = Signal(range(per_ms))
    now = Signal(32)
    with m.If(tick == per_ms - 1):
        m.d.sync += [tick.eq(0), now.eq(now + 1)]
    with m.Else():
        m.d.sync += tick.eq(tick + 1)
    m.d.comb += [stage.now.eq(now), status("NOW").eq(now), stage.default_deny.eq(rw("CONTROL")[CONTROL_DEFAULT_DENY]),
                 stage.punt_acl_multi.eq(rw("CONTROL")[CONTROL_PUNT_ACL_MULTI]),
                 status("STATUS").eq(Cat(stage.acl_generation, stage.acl_commit_busy))]
    m.d.comb += [getattr(stage, name).eq(rw(reg)) for name, reg in TIMEOUT_REGISTERS]

    # Commands: a new sequence number in CMD starts one; CMD_DONE echoes it when finished.
    cmd = rw("CMD")
    args = [rw(f"ARG{i}") for i in range(ARG_WORDS)]
    words = Cat(*args[1:])
    done_seq = Signal(8)
    results = [Signal(32, name=f"security_result{i}") for i in range(RESULT_WORDS)]
    m.d.comb += status("CMD_DONE").eq(done_seq << 24)
    for i, r in enumerate(results):
        m.d.comb += status(f"RESULT{i}").eq(r)
    op, seq = cmd[0:4], cmd[24:32]
    freq = stage.flow_mgmt_req.payload
    m.d.comb += [
        stage.acl_row_addr.eq(args[0]), stage.acl_row_data.eq(words),
        stage.acl_act_index.eq(args[0]), stage.acl_act_data.eq(args[1]),
        stage.acl_cnt_slot.eq(args[0]), stage.acl_cnt_clear.eq(args[0][COUNTER_CLEAR_BIT]),
        freq.set.eq(args[0][:FLOW_WAY_SHIFT]), freq.way.eq(args[0][FLOW_WAY_SHIFT:]),
        freq.entry.eq(words),
    ]
    if payload is not None:
        m.d.comb += [gate.punt_all_payload.eq(rw("CONTROL")[CONTROL_PUNT_ALL_PAYLOAD]),
                     payload.table_w.payload.index.eq(args[0]), payload.table_w.payload.entry.eq(args[1])]

    def finish(bits=None):
        if bits is not None:
            m.d.sync += [r.eq(bits[32 * i:32 * (i + 1)]) for i, r in enumerate(results) if 32 * i < len(bits)]
        m.d.sync += done_seq.eq(seq)
        m.next = "IDLE"

    with m.FSM(name="security_command"):
        with m.State("IDLE"):
            with m.If(seq != done_seq):
                with m.Switch(op):
                    with m.Case(Command.ACL_ROW):
                        m.d.comb += stage.acl_row_we.eq(1)
                        m.d.sync += done_seq.eq(seq)
                    with m.Case(Command.ACL_ACTION):
                        m.d.comb += stage.acl_act_we.eq(1)
                        m.d.sync += done_seq.eq(seq)
                    with m.Case(Command.ACL_COMMIT):
                        m.d.comb += stage.acl_commit.eq(1)
                        m.next = "COMMIT"
                    with m.Case(Command.ACL_COUNTER):
                        m.next = "COUNTER"
                    with m.Case(Command.FLOW_READ, Command.FLOW_WRITE, Command.FLOW_CLEAR):
                        m.next = "FLOW"
                    if payload is not None:
                        with m.Case(Command.MATCHER_WRITE):
                            m.next = "MATCHER_WRITE"
                        with m.Case(Command.MATCHER_COMMIT):
                            m.d.comb += payload.commit.eq(1)
                            m.next = "MATCHER_COMMIT"
                    with m.Default():
                        m.d.sync += done_seq.eq(seq)
        with m.State("COMMIT"):
            m.next = "COMMIT_WAIT"           # commit_busy rises the cycle after the commit
        with m.State("COMMIT_WAIT"):
            with m.If(~stage.acl_commit_busy):
                finish()
        with m.State("COUNTER"):
            m.d.comb += stage.acl_cnt_en.eq(1)
            with m.If(stage.acl_cnt_ack):
                m.next = "COUNTER_WAIT"
        with m.State("COUNTER_WAIT"):
            with m.If(stage.acl_cnt_valid):
                finish(stage.acl_cnt_data)
        with m.State("FLOW"):
            m.d.comb += stage.flow_mgmt_req.valid.eq(1)
            with m.Switch(op):
                with m.Case(Command.FLOW_READ):
                    m.d.comb += freq.op.eq(MgmtOp.READ)
                with m.Case(Command.FLOW_WRITE):
                    m.d.comb += freq.op.eq(MgmtOp.WRITE)
                with m.Default():
                    m.d.comb += freq.op.eq(MgmtOp.CLEAR)
            with m.If(stage.flow_mgmt_req.ready):
                m.next = "FLOW_WAIT"
        with m.State("FLOW_WAIT"):
            m.d.comb += stage.flow_mgmt_resp.ready.eq(1)
            with m.If(stage.flow_mgmt_resp.valid):
                finish(stage.flow_mgmt_resp.payload.as_value())
        if payload is not None:
            with m.State("MATCHER_WRITE"):
                # Not ready while a commit is pending or draining: the write waits, never lost.
                m.d.comb += payload.table_w.valid.eq(1)
                with m.If(payload.table_w.ready):
                    finish()
            with m.State("MATCHER_COMMIT"):
                m.next = "MATCHER_COMMIT_WAIT"      # commit_pending rises the cycle after the pulse
            with m.State("MATCHER_COMMIT_WAIT"):
                with m.If(~payload.commit_pending):
                    finish()

    # Counters, from the joined records.
    rec = gate.m_record.payload
    valid = gate.m_record.valid
    hit = valid & rec.acl_hit
    for counter, value in ((SecurityCounter.FLOW_NEW, valid & (rec.flow_outcome == Outcome.NEW.value)),
                           (SecurityCounter.FLOW_EXISTING, valid & (rec.flow_outcome == Outcome.EXISTING.value)),
                           (SecurityCounter.FLOW_TABLE_FULL, valid & (rec.flow_outcome == Outcome.TABLE_FULL.value)),
                           (SecurityCounter.FLOW_UNSUPPORTED,
                            valid & (rec.flow_outcome == Outcome.UNSUPPORTED.value)),
                           (SecurityCounter.ACL_PASS, hit & (rec.acl_action == AclAction.PASS)),
                           (SecurityCounter.ACL_ALERT, hit & (rec.acl_action == AclAction.ALERT)),
                           (SecurityCounter.ACL_DROP, hit & (rec.acl_action == AclAction.DROP)),
                           (SecurityCounter.ACL_REJECT, hit & (rec.acl_action == AclAction.REJECT)),
                           (SecurityCounter.DEFAULT_DENY, valid & gate.m_denied)):
        m.d.comb += csr.count(sec.event(counter)).eq(value)
    if payload is not None:
        match = regmap.block(SECMATCH)
        for counter, value in ((SecurityCounter.MATCHER_FRAMES, valid & rec.match_inspected),
                               (SecurityCounter.MATCHER_PUNTS, valid & rec.match_punt),
                               (SecurityCounter.MATCHER_OVERFLOWS, valid & rec.match_overflow),
                               (SecurityCounter.MATCHER_TOO_LONG, valid & rec.match_too_long)):
            m.d.comb += csr.count(match.event(counter)).eq(value)
    for i, block in enumerate(ports):
        mine = valid & (rec.in_port == i)
        for reason in SECURITY_DROP_REASONS:
            m.d.comb += csr.count(block.event(reason)).eq(mine & (rec.verdict == Verdict.DROP) & (rec.reason == reason))
        m.d.comb += csr.count(block.event(SecportCounter.ALERTS)).eq(mine & rec.acl_hit
                                                                     & (rec.acl_action != AclAction.PASS)
                                                                     & ~rec.acl_action.as_value()[2])
        m.d.comb += [csr.count(block.event(SecportCounter.ACL_PUNTS)).eq(mine & rec.acl_punt),
                     csr.count(block.event(SecportCounter.ACL_MIRRORS)).eq(
                         mine & rec.acl_hit & (rec.acl_action == AclAction.MIRROR))]
