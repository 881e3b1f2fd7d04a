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

With the payload matcher (``config.security.matcher``) the gate joins twice
(:meth:`SecurityGate._elaborate_with_matcher`): the first join releases the descriptor as above
(the matcher does not change forwarding this round); the second makes the record from the
forwarder's record (kept once, in block RAM, ``records``), the first join's answer (``answers``)
and the frame's :class:`~hdl.security.payload.PayloadStage` result (``matches``), and fills in the
``match_*`` fields: zero for a frame the stage bypassed; ``match_punt`` also on an inspected frame
while ``punt_all_payload`` (CONTROL bit 1) is set. A result comes up to ``REPLAY_LATENCY`` +
``max_frame`` beats after its frame's parser record (a maximum frame replays after its own record,
and a frame may wait behind one), so ``records`` is sized by :func:`record_depth`; results that
come before their record wait in ``matches``.

IPS (switch builds with a host port, docs/security.md "IPS: divert and re-inject"): with CONTROL
bit 3 a punted frame the NIC would forward goes to the host port alone, its descriptor carrying the
host tag's fields (:func:`ips_descriptor_layout`); with the matcher the descriptor then leaves at the
second join. A frame the host port's :class:`~hdl.packet.host_tag_strip.HostTagStrip` found
re-injected goes to its tag's ports in its tag's VLAN; one with a bad tag is dropped (MALFORMED).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hdl.acl.layouts import AclAction
from hdl.config import NicConfig
from hdl.lib.ram import BeatFifo, OutputQueue
from hdl.packet.host_tag_strip import STRIP_RESULT, StripKind
from hdl.packet.meta import MATCH_FIELDS, DropReason, Verdict, make_verdict_record, verdict_record_of
from hdl.security.payload import FRAME_SPACING, RECORD_DELAY_MAX, PayloadStage, payload_result_layout
from hdl.security.stage import result_layout

__all__ = ["SecurityGate", "acl_mirror_copy", "ips_descriptor_layout", "ips_host_port", "DECISION_DEPTH",
           "DECISION_MARGIN", "MATCH_DEPTH", "RECORD_MARGIN", "record_depth"]

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

def ips_host_port(config: NicConfig) -> int | None:
    """The port IPS mode diverts frames to and takes re-injections from: the security stage's bypass
    port on a switch NIC (docs/security.md, "IPS: divert and re-inject"); None where the build cannot
    divert (the bump in the wire, no bypass port, no security stage)."""
    if config.switch is None or config.security is None:
        return None
    return config.security.bypass_port


def ips_descriptor_layout(config: NicConfig, desc_layout) -> data.StructLayout:
    """The switch descriptor with what the host port's egress needs to tag a diverted frame, after
    the switch's fields (so the fan-out takes the descriptor's first bits unchanged): ``divert`` and
    the :data:`~hdl.packet.host_tag.HostTag` fields the descriptor does not already hold (its
    ``vlan`` is the tag's)."""
    n = len(config.ports)
    fields = {name: field.shape for name, field in data.Layout.cast(desc_layout)}
    return data.StructLayout({**fields, "divert": 1, "tag_acl_punt": 1, "tag_match_punt": 1,
                              "tag_in_port": config.port_bits, "tag_egress": n})


def acl_mirror_copy(answer, switch_verdict):
    """Whether the frame gets the ACL mirror's copy on the monitor port: its first hit is a mirror
    entry and it is forwarded (neither the switch nor the stage drops it; docs/security.md, "ACL
    mirror")."""
    return (answer.acl_hit & (answer.acl_action == AclAction.MIRROR) & ~answer.drop
            & (switch_verdict != Verdict.DROP))


#: The record fields the security answer fills in.
_FIELDS = ("acl_hit", "acl_action", "acl_index", "acl_slot", "acl_multi", "acl_punt", "flow_found",
           "flow_established", "flow_to_server", "flow_outcome")


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
        To the packet buffer; on a switch with a host port the layout is
        :func:`ips_descriptor_layout` (the tag of a diverted frame).
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
    mirror_dest: In(n_ports), with a switch's descriptors (an ``egress`` field)
        The mirror session's monitor port as a mask (0: no session). A frame whose first ACL hit
        is a mirror entry and that is forwarded also goes there (:func:`acl_mirror_copy`).
    ips_divert: In(1), on a switch with a host port (:func:`ips_host_port`)
        SECURITY CONTROL bit 3: a punted frame the NIC would forward goes to the host port alone,
        ``divert`` set in its descriptor (the host port's egress tags it), verdict PUNT in its record.
        With a matcher the descriptor then waits for the second join (the matcher's result), so
        change the bit only while no frame is between the parser and the second join.
    s_host: In(:data:`~hdl.packet.host_tag_strip.STRIP_RESULT`), with ``ips_divert``
        With ``s_desc.valid``: what the host port's :class:`~hdl.packet.host_tag_strip.HostTagStrip`
        found in the frame (kind NONE for other ports' frames). A re-injection goes to the tag's egress
        ports in the tag's VLAN (verdict FORWARD, whatever the switch said: the top hides it from the
        switch's learning as a frame with ``rx_error``); a bad tag is dropped, reason MALFORMED.
    m_reinjected: Out(1), with ``ips_divert``
        With ``m_record.valid``: the record is a re-injection's (its frame had the tag's 8 bytes more).

    With a matcher ``m_record`` comes later than ``m_desc`` (the second join, module docstring).
    """

    def __init__(self, config: NicConfig, desc_layout):
        self.config = config
        n, pb = len(config.ports), config.port_bits
        self.desc_layout = data.Layout.cast(desc_layout)
        self.matcher = config.security.matcher
        extra = {}
        self.switch = "egress" in self.desc_layout.members
        #: IPS mode can divert to this port (:func:`ips_host_port`); None: the gate never diverts.
        self.host_port = ips_host_port(config) if self.switch else None
        self.out_layout = self.desc_layout
        if self.switch:
            extra["mirror_dest"] = In(n)
        if self.host_port is not None:
            extra.update({"ips_divert": In(1), "s_host": In(STRIP_RESULT), "m_reinjected": Out(1)})
            self.out_layout = ips_descriptor_layout(config, self.desc_layout)
        if self.matcher is not None:
            # At least 512 records (1024 words): the smallest BeatFifo whose RAM is DP16KDs with their
            # output register; no more block RAMs than a shallower one (see _elaborate_with_matcher).
            self.record_depth = max(record_depth(config), 512)
            extra.update({"s_match": In(stream.Signature(payload_result_layout(*self.matcher), always_ready=True)),
                          "punt_all_payload": In(1)})
        super().__init__({
            **extra,
            "s_desc": In(stream.Signature(self.desc_layout, always_ready=True)),
            "s_record": In(stream.Signature(make_verdict_record(pb, n), always_ready=True)),
            "s_result": In(stream.Signature(result_layout())),
            "m_desc": Out(stream.Signature(self.out_layout, always_ready=True)),
            "m_record": Out(stream.Signature(verdict_record_of(config), always_ready=True)),
            "m_denied": Out(1),
            "space": Out(1, init=1),
        })

    def elaborate(self, platform):
        if self.matcher is not None:
            return self._elaborate_with_matcher()
        m = Module()
        rec_layout = data.Layout.cast(self.s_record.payload.shape())
        host = {"host": STRIP_RESULT} if self.host_port is not None else {}
        both = data.StructLayout({"desc": self.desc_layout, "record": rec_layout, **host})
        # An OutputQueue: the join's read enable reaches a few control flip-flops, not the load
        # enable of a ~610-bit read register spread over the die (with a RamFifo that path was the
        # gate's critical one out of context: 133.0 MHz, 6.3 ns of routing).
        m.submodules.decisions = decisions = OutputQueue(width=both.size, depth=DECISION_DEPTH)
        m.submodules.results = results = SyncFIFOBuffered(width=result_layout().size, depth=RESULT_DEPTH)
        new = Signal(both)
        if host:
            m.d.comb += new.host.eq(self.s_host)
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
            if self.switch:
                with m.If(acl_mirror_copy(res, head.record.verdict) & self.mirror_dest.any()):
                    m.d.sync += [rec.egress.eq(head.record.egress | self.mirror_dest),
                                 desc.egress.eq(head.desc.egress | self.mirror_dest), desc.drop.eq(0),
                                 desc.mirror_plain.eq(0)]
            if self.host_port is not None:
                # IPS: the whole decision is here (no matcher), so the divert costs no cycle.
                forwarded = ~security_drop & (head.record.verdict != Verdict.DROP)
                egress = head.desc.egress | Mux(acl_mirror_copy(res, head.record.verdict), self.mirror_dest, 0)
                with m.If(self.ips_divert & forwarded & res.acl_punt):
                    self._divert(m, desc, rec, egress, res.acl_punt, 0, head.record.in_port)
                self._host_frame(m, join, head.host, desc, rec)
        return m

    def _host_frame(self, m, join, host, desc, rec):
        """A frame from the host port's :class:`HostTagStrip` (``host``): a re-injection leaves for its
        tag's ports in its tag's VLAN, a bad tag is dropped (sync, ``desc`` / ``rec`` when not None)."""
        if join is not None:
            m.d.sync += self.m_reinjected.eq(join & (host.kind == StripKind.REINJECT))
        with m.If(host.kind == StripKind.REINJECT):
            if desc is not None:
                m.d.sync += [desc.drop.eq(0), desc.egress.eq(host.tag.egress), desc.vlan.eq(host.tag.vlan),
                             desc.mirror_plain.eq(0)]
            if rec is not None:
                m.d.sync += [rec.verdict.eq(Verdict.FORWARD), rec.reason.eq(DropReason.NONE),
                             rec.egress.eq(host.tag.egress), rec.rx_error.eq(0)]
        with m.Elif(host.kind == StripKind.BAD):
            if desc is not None:
                m.d.sync += [desc.drop.eq(1), desc.egress.eq(0)]
            if rec is not None:
                m.d.sync += [rec.verdict.eq(Verdict.DROP), rec.reason.eq(DropReason.MALFORMED), rec.egress.eq(0),
                             rec.rx_error.eq(0)]

    def _divert(self, m, desc, rec, egress, acl_punt, match_punt, in_port):
        """Send the frame of ``desc`` / ``rec`` (sync) to the host port alone, with its host tag's fields
        in the descriptor (``egress``: where the NIC would have sent it)."""
        host = 1 << self.host_port
        m.d.sync += [desc.egress.eq(host), desc.drop.eq(0), desc.mirror_plain.eq(0), desc.divert.eq(1),
                     desc.tag_acl_punt.eq(acl_punt), desc.tag_match_punt.eq(match_punt),
                     desc.tag_in_port.eq(in_port), desc.tag_egress.eq(egress)]
        if rec is not None:
            m.d.sync += [rec.verdict.eq(Verdict.PUNT), rec.egress.eq(host)]

    def _elaborate_with_matcher(self):
        """Two joins; the forwarder's record is stored once, in block RAM, until the second.

        First join (as without a matcher, same latency): the descriptor (kept with the switch's
        verdict in ``decisions``) and the security answer; the descriptor leaves, the answer goes
        on to ``answers``. Second join: the forwarder's record (``records``), the answer and the
        matcher's result (``matches``) make the output record.

        ``records`` holds each record as two words (low half, then high half) in a
        :class:`BeatFifo` of at least 1024 words: its RAM is then DP16KDs in their 1K x 18 mode
        *with* the output register, which the join needs (a block RAM read without it is 5.8 ns
        clock-to-out: the gate reached 106.3 MHz out of context with a RamFifo here), in as many
        block RAMs as one 512 x 36 word per record would take. Records come at most one per
        ``FRAME_SPACING`` cycles (the parser's pacing), so the two words go in on the two cycles
        after each. Every control path into the RAMs starts at a register (BeatFifo), and no
        enable fans out from a join to a wide register: the outputs load every cycle.
        """
        m = Module()
        rec_layout = data.Layout.cast(self.s_record.payload.shape())
        out_layout = data.Layout.cast(self.m_record.payload.shape())
        host = {"host": STRIP_RESULT} if self.host_port is not None else {}
        kept = data.StructLayout({"desc": self.desc_layout, "verdict": Verdict, **host})
        answer = data.StructLayout({**{name: out_layout[name].shape for name in _FIELDS},
                                    "inspected": 1, "drop": 1, "reason": DropReason,
                                    # The ACL mirror's copy (the monitor port as a mask), decided at the
                                    # first join with the descriptor's.
                                    "mirror_copy": len(self.config.ports),
                                    # IPS: the first join held the descriptor (CONTROL bit 3 then);
                                    # the second releases it, diverted or as the first join made it.
                                    **({"held": 1, "desc": self.desc_layout, "host": STRIP_RESULT}
                                       if self.host_port is not None else {})})
        match = data.StructLayout({name: out_layout[name].shape for name in MATCH_FIELDS})
        half = -(-rec_layout.size // 2)
        m.submodules.decisions = decisions = OutputQueue(width=kept.size, depth=DECISION_DEPTH)
        m.submodules.results = results = SyncFIFOBuffered(width=result_layout().size, depth=RESULT_DEPTH)
        m.submodules.records = records = BeatFifo(half, 2 * self.record_depth)
        m.submodules.answers = answers = BeatFifo(answer.size, self.record_depth)
        m.submodules.matches = matches = OutputQueue(width=match.size, depth=MATCH_DEPTH)

        # --- in: descriptors (with the switch's verdict), records as two words, answers, results ----
        new = Signal(kept)
        if host:
            m.d.comb += new.host.eq(self.s_host)
        m.d.comb += [new.desc.eq(self.s_desc.payload), new.verdict.eq(self.s_record.payload.verdict),
                     decisions.w_data.eq(new), decisions.w_en.eq(self.s_desc.valid),
                     results.w_data.eq(self.s_result.payload), results.w_en.eq(self.s_result.valid),
                     self.s_result.ready.eq(results.w_rdy)]
        taken = Signal(rec_layout)
        write_low, write_high = Signal(), Signal()
        m.d.sync += [write_low.eq(self.s_record.valid), write_high.eq(write_low)]
        with m.If(self.s_record.valid):
            m.d.sync += taken.eq(self.s_record.payload)
        m.d.comb += [records.w_data.eq(Mux(write_high, taken.as_value()[half:], taken.as_value()[:half])),
                     records.w_en.eq(write_low | write_high)]
        r = self.s_match.payload
        got = Signal(match)
        m.d.comb += [got.match_inspected.eq(~r.skipped), got.match_too_long.eq(r.too_long),
                     got.match_overflow.eq(r.overflow), got.match_punt.eq(r.punt), got.match_n_hits.eq(r.n_hits),
                     *(got.match_hits[i].bucket.eq(r.hits[i].bucket) for i in range(self.matcher[1])),
                     *(got.match_hits[i].settled.eq(r.hits[i].settled) for i in range(self.matcher[1])),
                     matches.w_data.eq(got), matches.w_en.eq(self.s_match.valid)]

        # --- first join: the descriptor, with the security verdict applied ------------------------
        head = kept(decisions.r_data)
        res = result_layout()(results.r_data)
        join1 = decisions.r_rdy & results.r_rdy
        m.d.comb += [decisions.r_en.eq(join1), results.r_en.eq(join1)]
        desc = self.m_desc.payload
        first = Signal(self.desc_layout)            # the first join's descriptor
        m.d.comb += first.eq(head.desc)
        with m.If(res.drop & (head.verdict != Verdict.DROP)):
            m.d.comb += first.drop.eq(1)
            if "egress" in self.desc_layout.members:
                m.d.comb += first.egress.eq(0)
        ans = Signal(answer)
        own = ("mirror_copy", "held", "desc", "host")
        m.d.comb += [*(getattr(ans, name).eq(getattr(res, name)) for name in answer.members if name not in own),
                     answers.w_data.eq(ans), answers.w_en.eq(join1)]
        if self.switch:
            copy = Signal(len(self.config.ports))
            m.d.comb += [copy.eq(Mux(acl_mirror_copy(res, head.verdict), self.mirror_dest, 0)),
                         ans.mirror_copy.eq(copy)]
            with m.If(copy.any()):
                m.d.comb += [first.egress.eq(head.desc.egress | copy), first.drop.eq(0), first.mirror_plain.eq(0)]
        held = 0
        if self.host_port is not None:
            # IPS: the descriptor waits for the matcher's result with the answer (docs/security.md).
            held = self.ips_divert
            m.d.comb += [ans.held.eq(held), ans.desc.eq(first), ans.host.eq(head.host)]
            # A re-injection's or bad tag's descriptor, as the one join makes it without the matcher.
            with m.If(head.host.kind == StripKind.REINJECT):
                m.d.comb += [first.drop.eq(0), first.egress.eq(head.host.tag.egress),
                             first.vlan.eq(head.host.tag.vlan), first.mirror_plain.eq(0)]
            with m.Elif(head.host.kind == StripKind.BAD):
                m.d.comb += [first.drop.eq(1), first.egress.eq(0)]
        m.d.sync += self.m_desc.valid.eq(join1 & ~held)
        with m.If(join1):
            m.d.sync += desc.eq(first)

        # --- second join: the record (its two words in registers), the answer, the matcher's result ---
        stored = Signal(range(self.record_depth + BeatFifo.QUEUE + 1))      # records in `records`
        # Registered (one cycle late; the margins cover it); the count is decremented a cycle late
        # (m_record.valid is the join, registered): no adder behind the join.
        m.d.sync += [self.space.eq((decisions.level <= DECISION_DEPTH - DECISION_MARGIN)
                                   & (stored <= self.record_depth - RECORD_MARGIN)),
                     stored.eq(stored + write_low - self.m_record.valid)]
        # The record's two words are read into registers first, apart from the join: the join of
        # three queues' heads feeding back into their read enables was the critical path (146.9 MHz).
        low, high = Signal(half), Signal(rec_layout.size - half)
        have_low, have_record = Signal(), Signal()
        take = ~have_record & records.r_rdy
        join = have_record & answers.r_rdy & matches.r_rdy
        m.d.comb += [records.r_en.eq(take), answers.r_en.eq(join), matches.r_en.eq(join)]
        with m.If(take):
            with m.If(have_low):
                m.d.sync += [high.eq(records.r_data), have_low.eq(0), have_record.eq(1)]
            with m.Else():
                m.d.sync += [low.eq(records.r_data), have_low.eq(1)]
        with m.If(join):
            m.d.sync += have_record.eq(0)
        rec, a, hit = rec_layout(Cat(low, high)), answer(answers.r_data), match(matches.r_data)
        out = self.m_record.payload
        m.d.sync += [self.m_record.valid.eq(join),
                     self.m_denied.eq(join & a.drop & (a.reason == DropReason.DEFAULT_DENY))]
        # The payload loads every cycle (it counts only with valid): no enable fans out from the join.
        m.d.sync += [getattr(out, name).eq(getattr(rec, name)) for name in rec_layout.members]
        m.d.sync += [getattr(out, name).eq(getattr(a, name)) for name in _FIELDS]
        with m.If(a.drop & (rec.verdict != Verdict.DROP)):
            m.d.sync += [out.verdict.eq(Verdict.DROP), out.reason.eq(a.reason), out.egress.eq(0)]
        with m.Elif(a.mirror_copy.any()):
            m.d.sync += out.egress.eq(rec.egress | a.mirror_copy)
        # A frame the security stage bypassed gets no matcher fields at all.
        m.d.sync += [getattr(out, name).eq(0) for name in MATCH_FIELDS]
        match_punt = a.inspected & (hit.match_punt | (self.punt_all_payload & hit.match_inspected))
        with m.If(a.inspected):
            m.d.sync += [getattr(out, name).eq(getattr(hit, name)) for name in MATCH_FIELDS]
            m.d.sync += out.match_punt.eq(match_punt)
        if self.host_port is not None:
            # IPS: the held descriptor leaves now (it takes m_desc in this cycle: the first join
            # holds every descriptor while CONTROL bit 3 is set).
            release = join & a.held
            with m.If(release):
                m.d.sync += [self.m_desc.valid.eq(1), desc.eq(a.desc)]
                forwarded = ~a.drop & (rec.verdict != Verdict.DROP)
                with m.If(forwarded & (a.acl_punt | match_punt)):
                    self._divert(m, desc, out, a.desc.egress, a.acl_punt, match_punt, rec.in_port)
            self._host_frame(m, join, a.host, None, out)
        return m
