"""The security gate: joins the forwarding decision with the security stage's answer, per frame.

The forwarder (bump in the wire) or the switch stage emits a descriptor and a record per frame a
few cycles after the parser; the security stage answers the same frame some tens of cycles later
(:class:`~hdl.security.stage.SecurityStage`). Both come in frame order, so the gate keeps the
forwarding side in a FIFO (``decisions``, block RAM: a descriptor and a ~600-bit record per
frame) and the security answers in a small one, and when both heads are there it releases the
frame's descriptor to the packet buffer and its record to the monitor, with the verdict applied:

* the record always gets the security fields (zero for a frame the stage bypassed);
* a security drop of a frame the switch / forwarder would send: verdict DROP, the security
  reason, egress none, descriptor ``drop`` (the packet buffer discards it);
* a frame the switch already drops keeps the switch's reason.

The packet buffer holds each frame until its descriptor comes (store and forward), so the gate
adds its delay to every frame's latency and nothing else (docs/security.md, "Latency").
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hdl.config import NicConfig
from hdl.lib.ram import RamFifo
from hdl.packet.meta import DropReason, Verdict, make_verdict_record, verdict_record_of
from hdl.security.stage import result_layout

__all__ = ["SecurityGate", "DECISION_DEPTH", "DECISION_MARGIN"]

#: Frames the gate's forwarding-side FIFO holds.
DECISION_DEPTH = 32
#: ``space`` falls while fewer entries are free: the frames between the arbiter and the
#: forwarder's output (parser and switch stage) still fit.
DECISION_MARGIN = 16
#: Security answers the gate holds (the stage waits when it is full).
RESULT_DEPTH = 4

#: The record fields the security answer fills in.
_FIELDS = ("acl_hit", "acl_action", "acl_index", "acl_slot", "acl_multi", "flow_found", "flow_established",
           "flow_to_server", "flow_outcome")


class SecurityGate(wiring.Component):
    """Per-frame join of the forwarding decision and the security answer (module docstring).

    Parameters
    ----------
    config:
        The NIC build (``config.security`` set).
    desc_layout:
        The packet buffer's descriptor layout (``drop`` field; ``egress`` too for the switch's).

    Members
    -------
    s_desc, s_record: In(stream.Signature(..., always_ready=True))
        The forwarder's / switch stage's descriptor and record, same cycle, one per frame.
    s_result: In(stream.Signature(:func:`~hdl.security.stage.result_layout`))
        The security stage's answers, one per frame, in the same order.
    m_desc: Out(stream.Signature(desc_layout, always_ready=True))
        To the packet buffer.
    m_record: Out(stream.Signature(record with the security fields, always_ready=True))
        Same cycle as ``m_desc``: the frame's record (monitor, counters).
    m_denied: Out(1)
        With ``m_record.valid``: the security stage's own verdict was default deny (the record's
        reason says so only when the switch did not drop the frame first).
    space: Out(1)
        The gate can take the frames now between the arbiter and the forwarder's output.
    """

    def __init__(self, config: NicConfig, desc_layout):
        self.config = config
        n, pb = len(config.ports), config.port_bits
        self.desc_layout = data.Layout.cast(desc_layout)
        super().__init__({
            "s_desc": In(stream.Signature(self.desc_layout, always_ready=True)),
            "s_record": In(stream.Signature(make_verdict_record(pb, n), always_ready=True)),
            "s_result": In(stream.Signature(result_layout())),
            "m_desc": Out(stream.Signature(self.desc_layout, always_ready=True)),
            "m_record": Out(stream.Signature(verdict_record_of(config), always_ready=True)),
            "m_denied": Out(1),
            "space": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        rec_layout = data.Layout.cast(self.s_record.payload.shape())
        both = data.StructLayout({"desc": self.desc_layout, "record": rec_layout})
        m.submodules.decisions = decisions = RamFifo(width=both.size, depth=DECISION_DEPTH)
        m.submodules.results = results = SyncFIFOBuffered(width=result_layout().size, depth=RESULT_DEPTH)
        new = Signal(both)
        m.d.comb += [new.desc.eq(self.s_desc.payload), new.record.eq(self.s_record.payload),
                     decisions.w_data.eq(new), decisions.w_en.eq(self.s_desc.valid),
                     results.w_data.eq(self.s_result.payload), results.w_en.eq(self.s_result.valid),
                     self.s_result.ready.eq(results.w_rdy)]

        # A register (one cycle late; the margin covers it): it reaches the arbiter's ready.
        m.d.sync += self.space.eq(decisions.level <= DECISION_DEPTH - DECISION_MARGIN)
        head = both(decisions.r_data)
        res = result_layout()(results.r_data)
        join = decisions.r_rdy & results.r_rdy
        m.d.comb += [decisions.r_en.eq(join), results.r_en.eq(join)]
        rec, desc = self.m_record.payload, self.m_desc.payload
        security_drop = res.drop & (head.record.verdict != Verdict.DROP)
        m.d.sync += [self.m_record.valid.eq(join), self.m_desc.valid.eq(join),
                     self.m_denied.eq(join & res.drop & (res.reason == DropReason.DEFAULT_DENY))]
        with m.If(join):
            m.d.sync += [desc.eq(head.desc), rec.meta.eq(head.record.meta), rec.in_port.eq(head.record.in_port),
                         rec.rx_error.eq(head.record.rx_error), rec.verdict.eq(head.record.verdict),
                         rec.reason.eq(head.record.reason), rec.egress.eq(head.record.egress)]
            m.d.sync += [getattr(rec, name).eq(getattr(res, name)) for name in _FIELDS]
            with m.If(security_drop):
                m.d.sync += [rec.verdict.eq(Verdict.DROP), rec.reason.eq(res.reason), rec.egress.eq(0),
                             desc.drop.eq(1)]
                if "egress" in self.desc_layout.members:
                    m.d.sync += desc.egress.eq(0)
        return m
