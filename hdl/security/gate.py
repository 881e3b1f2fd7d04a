"""The security gate: joins the forwarding decision with the security stage's answer, per frame.

The forwarder (bump in the wire) or the switch stage emits a descriptor and a record per frame a
few cycles after the parser; the security stage answers the same frame some tens of cycles later
(:class:`~hdl.security.stage.SecurityStage`). Both come in frame order, so the gate keeps the
forwarding side in a FIFO (``decisions``, distributed RAM: a descriptor and a ~600-bit record per
frame) and the security answers in a small one, and when both heads are there it releases the
frame's descriptor to the packet buffer and its record to the monitor, with the verdict applied:

* the record always gets the security fields (zero for a frame the stage bypassed);
* a security drop of a frame the switch / forwarder would send: verdict DROP, the security
  reason, egress none, descriptor ``drop`` (the packet buffer discards it);
* a frame the switch already drops keeps the switch's reason.

The packet buffer holds each frame until its descriptor comes (store and forward), so the gate
adds its delay to every frame's latency and nothing else (docs/security.md, "Latency").

With the payload matcher (``config.security.matcher``) a second join holds the *record* (never the
descriptor: the matcher does not change forwarding this round) until the frame's
:class:`~hdl.security.payload.PayloadStage` result comes, and fills in the record's ``match_*``
fields: zero for a frame the stage bypassed; ``match_punt`` also on an inspected frame while
``punt_all_payload`` (CONTROL bit 1) is set. A result comes up to ``REPLAY_LATENCY`` +
``max_frame`` beats after its frame's parser record (a maximum frame replays after its own record,
and a frame may wait behind one), so the record FIFO (``records``, block RAM) is sized by
:func:`record_depth`; results that come before their record (the security answer can be later than
the matcher's, and waits behind a flow-table stall) wait in ``matches``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hdl.config import NicConfig
from hdl.lib.ram import BeatFifo, OutputQueue
from hdl.packet.meta import MATCH_FIELDS, DropReason, Verdict, make_verdict_record, verdict_record_of
from hdl.security.payload import FRAME_SPACING, RECORD_DELAY_MAX, PayloadStage, payload_result_layout
from hdl.security.stage import result_layout

__all__ = ["SecurityGate", "DECISION_DEPTH", "DECISION_MARGIN", "MATCH_DEPTH", "RECORD_MARGIN", "record_depth"]

#: Frames the gate's forwarding-side FIFO holds.
DECISION_DEPTH = 32
#: ``space`` falls while fewer entries are free: the frames between the arbiter and the
#: forwarder's output (parser and switch stage) still fit.
DECISION_MARGIN = 16
#: Security answers the gate holds (the stage waits when it is full).
RESULT_DEPTH = 4
#: Matcher results the gate holds before their frame's record has passed the first join: at most
#: the frames between the parser and that join (``decisions``' depth plus the frames its margin
#: covers), since the matcher answers a frame only after its parser record. The matcher's result
#: has no ready (it never waits), so this bound is what keeps it from being lost.
MATCH_DEPTH = 64
assert MATCH_DEPTH >= DECISION_DEPTH + DECISION_MARGIN
#: ``space`` falls while fewer than this many ``records`` entries are free: every frame that can be
#: between the arbiter and the first join then (``decisions`` and the frames its margin covers).
RECORD_MARGIN = DECISION_DEPTH + DECISION_MARGIN


def record_depth(config: NicConfig) -> int:
    """Records the gate's second join holds while their matcher results are due (a power of two).

    A frame's result comes at most ``PayloadStage.REPLAY_LATENCY`` + (frame beats + beats of
    frames it waits behind) cycles after its parser record; the replay runs at one beat per
    cycle, as fast as beats arrive, so the beats replayed ahead of a frame and its own are at
    most one maximum frame's (docs/security.md, "Latency"), plus the spread of the parser's
    record delay. Records arrive at most one per ``FRAME_SPACING`` cycles, so that many cycles
    hold that many records, plus :data:`RECORD_MARGIN` so ``space`` can stop the arbiter before
    the FIFO is full (it never does at the arrival contract).
    """
    beats = -(-config.max_frame // config.bytes_per_beat)
    lag = PayloadStage.REPLAY_LATENCY + beats + RECORD_DELAY_MAX
    frames = -(-lag // FRAME_SPACING) + 1 + RECORD_MARGIN
    return 1 << (frames - 1).bit_length()

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
    s_match: In(stream.Signature(payload_result_layout(...), always_ready=True)), with a matcher
        :class:`~hdl.security.payload.PayloadStage`'s results, one per frame, in the same order.
    punt_all_payload: In(1), with a matcher
        SECURITY CONTROL bit 1: every frame the matcher inspects is punted.

    With a matcher ``m_record`` comes later than ``m_desc`` (the second join, module docstring).
    """

    def __init__(self, config: NicConfig, desc_layout):
        self.config = config
        n, pb = len(config.ports), config.port_bits
        self.desc_layout = data.Layout.cast(desc_layout)
        self.matcher = config.security.matcher
        extra = {}
        if self.matcher is not None:
            # At least 512 records (1024 words): the smallest BeatFifo whose RAM is DP16KDs with their
            # output register; no more block RAMs than a shallower one (see _join_matches).
            self.record_depth = max(record_depth(config), 512)
            extra = {"s_match": In(stream.Signature(payload_result_layout(*self.matcher), always_ready=True)),
                     "punt_all_payload": In(1)}
        super().__init__({
            **extra,
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
        # An OutputQueue: the join's read enable reaches a few control flip-flops, not the load
        # enable of a ~610-bit read register spread over the die (with a RamFifo that path was the
        # gate's critical one out of context: 133.0 MHz, 6.3 ns of routing).
        m.submodules.decisions = decisions = OutputQueue(width=both.size, depth=DECISION_DEPTH)
        m.submodules.results = results = SyncFIFOBuffered(width=result_layout().size, depth=RESULT_DEPTH)
        new = Signal(both)
        m.d.comb += [new.desc.eq(self.s_desc.payload), new.record.eq(self.s_record.payload),
                     decisions.w_data.eq(new), decisions.w_en.eq(self.s_desc.valid),
                     results.w_data.eq(self.s_result.payload), results.w_en.eq(self.s_result.valid),
                     self.s_result.ready.eq(results.w_rdy)]

        # A register (one cycle late; the margin covers it): it reaches the arbiter's ready.
        decisions_room = decisions.level <= DECISION_DEPTH - DECISION_MARGIN
        head = both(decisions.r_data)
        res = result_layout()(results.r_data)
        join = Signal()
        m.d.comb += [decisions.r_en.eq(join), results.r_en.eq(join)]
        # Without a matcher the first join's record is the output; with one it goes to the second join.
        if self.matcher is None:
            rec, rec_valid, denied = self.m_record.payload, self.m_record.valid, self.m_denied
            m.d.sync += self.space.eq(decisions_room)
        else:
            rec = Signal(self.m_record.payload.shape(), name="joined_record")
            rec_valid, denied, inspected = Signal(name="joined_valid"), Signal(name="joined_denied"), Signal()
            m.d.sync += inspected.eq(res.inspected)
        # With a matcher a joined record takes two cycles to store (see _join_matches): a frame every
        # other cycle at most, which costs nothing at one frame per FRAME_CYCLES.
        ready = decisions.r_rdy & results.r_rdy
        m.d.comb += join.eq(ready if self.matcher is None else ready & ~rec_valid)
        desc = self.m_desc.payload
        security_drop = res.drop & (head.record.verdict != Verdict.DROP)
        m.d.sync += [rec_valid.eq(join), self.m_desc.valid.eq(join),
                     denied.eq(join & res.drop & (res.reason == DropReason.DEFAULT_DENY))]
        # With a matcher the joined registers load every cycle but the one after a join (a register:
        # the load enable of ~650 flip-flops is a flip-flop, not the FIFOs' handshake); they hold the
        # joined frame for the two cycles its record is stored in.
        load = join if self.matcher is None else ~rec_valid
        with m.If(load):
            m.d.sync += [desc.eq(head.desc), rec.meta.eq(head.record.meta), rec.in_port.eq(head.record.in_port),
                         rec.rx_error.eq(head.record.rx_error), rec.verdict.eq(head.record.verdict),
                         rec.reason.eq(head.record.reason), rec.egress.eq(head.record.egress)]
            m.d.sync += [getattr(rec, name).eq(getattr(res, name)) for name in _FIELDS]
            with m.If(security_drop):
                m.d.sync += [rec.verdict.eq(Verdict.DROP), rec.reason.eq(res.reason), rec.egress.eq(0),
                             desc.drop.eq(1)]
                if "egress" in self.desc_layout.members:
                    m.d.sync += desc.egress.eq(0)
        if self.matcher is not None:
            self._join_matches(m, rec, rec_valid, denied, inspected, decisions_room)
        return m

    def _join_matches(self, m, rec, rec_valid, denied, inspected, decisions_room):
        """The second join: the first join's record waits for the frame's matcher result.

        Each record is stored as two words (low half, then high half) in a :class:`BeatFifo` of
        at least 1024 words: its RAM is then DP16KDs in their 1K x 18 mode *with* the output
        register, which the join needs (a block RAM read without it is 5.8 ns clock-to-out: the
        gate reached 106.3 MHz out of context with a RamFifo of records here), in as many block RAMs as one
        512 x 36 word per record would take (17 at W=64). The first join takes a frame every
        other cycle at most (frames come one per 8), so the two words go in on consecutive cycles.
        """
        out_layout = data.Layout.cast(self.m_record.payload.shape())
        # The record without its match fields (filled in here), the stage's bypass and default deny
        # (in the low word: they are registers of the first join's cycle only).
        held_fields = {name: field.shape for name, field in out_layout if name not in MATCH_FIELDS}
        held = data.StructLayout({"inspected": 1, "denied": 1, "record": data.StructLayout(held_fields)})
        half = -(-held.size // 2)
        match = data.StructLayout({name: out_layout[name].shape for name in MATCH_FIELDS})
        m.submodules.records = records = BeatFifo(half, 2 * self.record_depth)
        m.submodules.matches = matches = OutputQueue(width=match.size, depth=MATCH_DEPTH)
        stored = Signal(range(self.record_depth + BeatFifo.QUEUE + 1))      # records in `records`

        new = Signal(held)
        write_high = Signal()
        m.d.sync += write_high.eq(rec_valid)
        m.d.comb += [*(getattr(new.record, name).eq(getattr(rec, name)) for name in held_fields),
                     new.inspected.eq(inspected), new.denied.eq(denied),
                     records.w_data.eq(Mux(write_high, new.as_value()[half:], new.as_value()[:half])),
                     records.w_en.eq(rec_valid | write_high)]
        r = self.s_match.payload
        got = Signal(match)
        m.d.comb += [got.match_inspected.eq(~r.skipped), got.match_too_long.eq(r.too_long),
                     got.match_overflow.eq(r.overflow), got.match_punt.eq(r.punt), got.match_n_hits.eq(r.n_hits),
                     *(got.match_hits[i].bucket.eq(r.hits[i].bucket) for i in range(self.matcher[1])),
                     *(got.match_hits[i].settled.eq(r.hits[i].settled) for i in range(self.matcher[1])),
                     matches.w_data.eq(got), matches.w_en.eq(self.s_match.valid)]
        # Registered (one cycle late; the margin covers it), like the first join's.
        m.d.sync += self.space.eq(decisions_room & (stored <= self.record_depth - RECORD_MARGIN))

        # Read: the low word into a register, then the high word with the frame's matcher result.
        low = Signal(half)
        have_low = Signal()
        join = have_low & records.r_rdy & matches.r_rdy
        m.d.comb += [records.r_en.eq(join | (~have_low & records.r_rdy)), matches.r_en.eq(join)]
        with m.If(~have_low & records.r_rdy):
            m.d.sync += [low.eq(records.r_data), have_low.eq(1)]
        with m.If(join):
            m.d.sync += have_low.eq(0)
        # Decremented a cycle late (m_record.valid is the join, registered): no adder behind the join.
        m.d.sync += stored.eq(stored + rec_valid - self.m_record.valid)
        head, hit = held(Cat(low, records.r_data)), match(matches.r_data)
        out = self.m_record.payload
        m.d.sync += [self.m_record.valid.eq(join), self.m_denied.eq(join & head.denied)]
        # The payload loads every cycle (it counts only with valid): no enable fans out from the join.
        m.d.sync += [getattr(out, name).eq(getattr(head.record, name)) for name in held_fields]
        # A frame the security stage bypassed gets no matcher fields at all.
        m.d.sync += [getattr(out, name).eq(0) for name in MATCH_FIELDS]
        with m.If(head.inspected):
            m.d.sync += [getattr(out, name).eq(getattr(hit, name)) for name in MATCH_FIELDS]
            m.d.sync += out.match_punt.eq(hit.match_punt | (self.punt_all_payload & hit.match_inspected))
