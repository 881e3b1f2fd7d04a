"""The security stage: one flow-table request and one ACL lookup per frame, in frame order.

:class:`SecurityStage` takes the parser's per-frame metadata (the same pulse the forwarder or the
switch stage takes) and answers one :data:`result layout <result_layout>` per frame, in frame
order, some tens of cycles later; :class:`SecurityGate` joins those answers with the forwarder's
(or the switch stage's) descriptor and record and applies the verdict before the packet buffer.
The semantics are docs/security.md's (the contract the golden model ``SecurityModel`` follows):

* **bypass** (no flow request, no ACL key, nothing decided): ``rx_error``, oversize, another
  malformed bit without a complete L3 header, or received on ``bypass_port``;
* **flow**: an IPv4/IPv6 frame with ``has_l3`` and no malformed bit makes one request (ports 0
  without L4; TCP flags byte for TCP, 0 otherwise); others are "no flow" (a malformed frame with
  its L3 header is still looked up in the ACL, as Suricata's IP-only rules see it: it stays
  dropped as malformed, and alerts);
* **ACL**: the key is :func:`~hdl.acl.classifier.acl_key_from_meta` with the flow bits (0 unless
  the flow was found);
* **verdict**: DROP / REJECT hits drop (``ACL_DROP`` / ``ACL_REJECT``); with ``default_deny`` an
  IP frame no entry hit is dropped (``DEFAULT_DENY``) unless its flow was found and is
  established or the frame goes to the client (``table_full`` / ``unsupported``: no flow).

Pipeline (each step a first-word-fall-through FIFO, so a stall anywhere holds, never loses, a
frame): ``parsed`` -> ``pending`` (16 frames: key, bypass, request) -> the flow request (the
table takes one per :data:`~hdl.flow.flow_table.PACKET_CYCLES` cycles; a management write or
``CLEAR`` holds it) -> ``waiting`` (frames whose flow answer is due) -> the ACL key (one per
:data:`CYCLES_PER_KEY` cycles) -> ``deciding`` (frames whose ACL answer is due; the answers,
which cannot wait, go into ``answers`` of the same depth) -> the verdict, registered, on
``result``. ``space`` is low while ``pending`` has fewer than :data:`SPACE_MARGIN` free entries:
the top stops taking frames then (frames already in the parser still fit).

Latency at 8 cycles per frame with nothing waiting: see :attr:`SecurityStage.latency`
(docs/security.md gives the figure for the default build).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from hdl.acl.classifier import AclClassifier, acl_key_from_meta
from hdl.acl.layouts import SLOT_BITS, AclAction, AclKey
from hdl.config import NicConfig
from hdl.flow.flow_table import LATENCY as FLOW_LATENCY
from hdl.flow.flow_table import TCP, FlowTable, set_index_terms
from hdl.packet.meta import DropReason, L3Type, MalformedReason, make_parsed_layout
from hdl.security.regs import CYCLES_PER_KEY

__all__ = ["SecurityStage", "result_layout", "PENDING_DEPTH", "SPACE_MARGIN", "ANSWER_DEPTH", "NO_FLOW_SAVING"]

#: Frames the stage's input FIFO holds.
PENDING_DEPTH = 16
#: ``space`` falls while fewer than this many input entries are free: the frames between the
#: arbiter and the parser's metadata (a 128-byte window at W=64 and at least 8 cycles a frame:
#: at most a few) still find room.
SPACE_MARGIN = 8
#: Frames between the flow request and the ACL key, and between the key and the verdict.
WAIT_DEPTH = 4
ANSWER_DEPTH = 8
#: Cycles a frame without a flow request answers sooner than :attr:`SecurityStage.latency`.
NO_FLOW_SAVING = 6
#: Terms of the set index's XOR network per first-stage register (two terms per endpoint bit
#: pair: three LUT4 levels).
_HASH_GROUP = 32
#: The classifier's management ports, passed through as ``acl_<name>``.
_ACL_MGMT_IN = ("row_we", "row_addr", "row_data", "act_we", "act_index", "act_data", "commit", "cnt_en",
                "cnt_slot", "cnt_clear")
_ACL_MGMT_OUT = ("generation", "commit_busy", "cnt_ack", "cnt_valid", "cnt_data")


def result_layout() -> data.StructLayout:
    """One frame's security answer (the record's security fields, plus the stage's verdict)."""
    return data.StructLayout({
        "acl_hit": 1, "acl_action": AclAction, "acl_index": SLOT_BITS, "acl_slot": SLOT_BITS, "acl_multi": 1,
        "acl_punt": 1,           # the ACL hands the frame to the host path (docs/security.md, punt and mirror)
        "flow_found": 1, "flow_established": 1, "flow_to_server": 1,
        "flow_outcome": 3,       # an Outcome value; 0: no flow request
        "inspected": 1,          # not bypassed
        "drop": 1,               # the stage drops the frame, for ``reason``
        "reason": DropReason,
    })


class SecurityStage(wiring.Component):
    """Flow table + ACL classifier per frame (see the module docstring).

    Parameters
    ----------
    config:
        The NIC build; ``config.security`` must be set.

    Members
    -------
    parsed: In(stream.Signature(parsed layout, always_ready=True))
        One pulse per frame from the parser, at most one per :data:`CYCLES_PER_KEY` cycles.
    result: Out(stream.Signature(:func:`result_layout`))
        One answer per frame, in frame order.
    space: Out(1)
        The stage can take the frames now in the parser and more (see the module docstring).
    default_deny: In(1)
        SECURITY CONTROL bit 0 (sampled when a frame's verdict is made).
    punt_acl_multi: In(1)
        SECURITY CONTROL bit 2: a deciding hit (drop, reject, alert) with ``multi`` is punted too
        (the table holds punt entries, which may have matched behind it).
    now, tcp_new, tcp_established, tcp_closed, other_new, other_established: In(32)
        The flow table's time (ms) and timeouts (ms), from the SECURITY block.
    acl_<port>: the :class:`~hdl.acl.classifier.AclClassifier`'s management ports (``row_*``,
        ``act_*``, ``commit``, ``generation``, ``commit_busy``, ``cnt_*``), passed through.
    flow_mgmt_req, flow_mgmt_resp: the :class:`~hdl.flow.flow_table.FlowTable`'s management port.
        Both are driven by the command engine (:func:`hdl.security.control.wire_security`) or a
        testbench. The flow table's ``event_*`` strobes are left unused (the counters count from
        the joined records).
    """

    def __init__(self, config: NicConfig):
        if config.security is None:
            raise ValueError("SecurityStage needs a build with config.security set")
        self.config = config
        s = config.security
        self.acl = AclClassifier(s.acl_entries, CYCLES_PER_KEY)
        self.flow = FlowTable(s.flow_sets, s.flow_ways, s.flow_addr_bits, set_given=True)
        acl_sig = self.acl.signature.members
        super().__init__({
            **{f"acl_{name}": In(acl_sig[name].shape, init=acl_sig[name].init) for name in _ACL_MGMT_IN},
            **{f"acl_{name}": Out(acl_sig[name].shape) for name in _ACL_MGMT_OUT},
            "flow_mgmt_req": In(stream.Signature(self.flow.mgmt_request_layout)),
            "flow_mgmt_resp": Out(stream.Signature(self.flow.entry_layout)),
            "parsed": In(stream.Signature(make_parsed_layout(config.port_bits), always_ready=True)),
            "result": Out(stream.Signature(result_layout())),
            "space": Out(1, init=1),
            "default_deny": In(1, init=int(s.default_deny)),
            "punt_acl_multi": In(1),
            "now": In(32),
            **{name: In(32, init=getattr(self.flow, name).init) for name in
               ("tcp_new", "tcp_established", "tcp_closed", "other_new", "other_established")},
        })

    def __repr__(self):
        return f"SecurityStage({self.config.security!r})"

    @property
    def latency(self) -> int:
        """Cycles from ``parsed`` to ``result`` valid for a frame with a flow request, nothing
        waiting and ``result.ready`` high (measured in amaranth.sim: 40 at 72 entries, 42 at 256, before
        the second hash cycle: one more now).
        A frame without a request (bypassed or not IP) answers :data:`NO_FLOW_SAVING` cycles sooner.
        """
        return self.latency_of(self.config)

    @staticmethod
    def latency_of(config: NicConfig) -> int:
        """:attr:`latency` of the stage of ``config``, without building one."""
        # pending FIFO + flow step (5: its set index is hashed into registers in two cycles), the flow table,
        # key step (2) before the key is taken, the classifier, the answers FIFO and the verdict
        # step (1 + 1 + 1 registered).
        return FLOW_LATENCY + AclClassifier.latency_of(config.security.acl_entries, CYCLES_PER_KEY) + 8

    def elaborate(self, platform):
        m = Module()
        s = self.config.security
        m.submodules.acl = acl = self.acl
        m.submodules.flow = flow = self.flow

        # -- in: the frame's key (flow bits still 0), whether it bypasses, whether it asks the
        # flow table -------------------------------------------------------------------------
        entry = data.StructLayout({"key": AclKey, "bypass": 1, "request": 1, "ipv6": 1})
        p = self.parsed.payload
        meta = p.meta
        # A malformed frame with a complete L3 header is still inspected (Suricata's IP-only rules
        # see it), without a flow request; docs/security.md "Per frame".
        malformed = meta.malformed.any()
        bypass = p.rx_error | meta.malformed[MalformedReason.OVERSIZE] | (malformed & ~meta.has_l3)
        if s.bypass_port is not None:
            bypass = bypass | (p.in_port == s.bypass_port)
        request = ((meta.l3_type == L3Type.IPV4) | (meta.l3_type == L3Type.IPV6)) & meta.has_l3 & ~malformed
        m.submodules.pending = pending = SyncFIFO(width=entry.size, depth=PENDING_DEPTH)
        new = Signal(entry)
        m.d.comb += [new.key.eq(acl_key_from_meta(meta, p.in_port, 0, 0)), new.bypass.eq(bypass),
                     new.request.eq(request), new.ipv6.eq(meta.l3_type == L3Type.IPV6),
                     pending.w_data.eq(new), pending.w_en.eq(self.parsed.valid)]
        # A register (one cycle late; the margin covers it): it reaches the arbiter's ready.
        m.d.sync += self.space.eq(pending.level <= PENDING_DEPTH - SPACE_MARGIN)

        # Each step below takes a frame from its FIFO into registers, then hands it on; every
        # valid and ready it drives comes from a register (a state, a latched head), and no
        # block's ready reaches a FIFO's read enable in the same cycle (why: the chains of
        # ready -> read enable -> FIFO pointers -> flag crossed both blocks in one cycle). A
        # frame takes 5 cycles in the flow step and 4 or more in the key step, under the 8
        # the classifier needs per key.

        # -- flow request ------------------------------------------------------------------------
        m.submodules.waiting = waiting = SyncFIFO(width=entry.size, depth=WAIT_DEPTH)
        cur = Signal(entry)
        req = flow.req.payload
        k = cur.key
        m.d.comb += [
            req.proto.eq(k.ip_proto), req.ipv6.eq(cur.ipv6), req.src_addr.eq(k.ip_src), req.dst_addr.eq(k.ip_dst),
            req.src_port.eq(k.sport), req.dst_port.eq(k.dport),
            req.flags.eq(Mux(k.ip_proto == TCP, k.tcp_flags, 0)),
            waiting.w_data.eq(cur),
        ]
        # The set index is hashed from `cur` into a register of its own, next to the stage; the
        # flow table takes it with the request (why: the XOR network and the route to the ways'
        # read-address copies made one 8.6 ns path: 116.6 MHz). The network itself is pipelined:
        # XORs of up to _HASH_GROUP terms into registers (HASH), then their XOR (HASH2). In one
        # cycle, six LUT levels over the 370-bit `cur` took 8.6 ns, 6.7 of it route (116.3 MHz).
        cur_set = Signal(self.flow.set_bits)
        m.d.comb += self.flow.req_set.eq(cur_set)
        terms, hash_const = set_index_terms(req.proto, req.ipv6, req.src_addr, req.src_port, req.dst_addr,
                                            req.dst_port, self.flow.set_bits, s.flow_addr_bits)
        partials = [[Signal(name=f"hash_{j}_{g}") for g in range(0, len(t), _HASH_GROUP)] for j, t in enumerate(terms)]
        # Each step pops its FIFO the cycle after it took the head (a flip-flop drives `r_en`): taken
        # and popped in one cycle, a FIFO's level went through its `r_rdy`, the step's state logic
        # across the die and back into the level (`waiting`: 7.8 ns, 6.4 of it route, 127.9 MHz).
        # The head was loaded in the take's cycle and stays until the pop; a step comes back
        # for the next head three or more cycles later.
        pop_pending = Signal()
        m.d.sync += pop_pending.eq(0)
        m.d.comb += pending.r_en.eq(pop_pending)
        with m.FSM(name="flow_step"):
            with m.State("TAKE"):
                # The head is loaded every cycle of this state (its load enable is the state
                # alone: it reaches some 370 flip-flops). Only this step writes `waiting`, so
                # room now is room when the frame gets there.
                m.d.sync += cur.eq(pending.r_data)
                with m.If(pending.r_rdy & waiting.w_rdy):
                    m.d.sync += pop_pending.eq(1)
                    m.next = "HASH"
            with m.State("HASH"):
                m.d.sync += [partials[j][g // _HASH_GROUP].eq(Cat(*t[g:g + _HASH_GROUP]).xor())
                             for j, t in enumerate(terms) for g in range(0, len(t), _HASH_GROUP)]
                m.next = "HASH2"
            with m.State("HASH2"):
                m.d.sync += cur_set.eq(Cat(*(Cat(*p).xor() ^ (hash_const >> j & 1) for j, p in enumerate(partials))))
                m.next = "ASK"
            with m.State("ASK"):
                m.d.comb += flow.req.valid.eq(cur.request & ~cur.bypass)
                with m.If(~cur.request | cur.bypass | flow.req.ready):
                    m.next = "PASS"
            with m.State("PASS"):
                m.d.comb += waiting.w_en.eq(1)
                m.next = "TAKE"

        # -- ACL key -----------------------------------------------------------------------------
        deciding_entry = data.StructLayout({"inspected": 1, "request": 1, "found": 1, "established": 1,
                                            "to_server": 1, "outcome": 3})
        m.submodules.deciding = deciding = SyncFIFO(width=deciding_entry.size, depth=ANSWER_DEPTH)
        w = Signal(entry)
        d_new = Signal(deciding_entry)
        # Room for this frame and the one before it (this step writes `deciding` in PASS, the
        # cycle before TAKE): a register, one cycle late.
        deciding_room = Signal()
        m.d.sync += deciding_room.eq(deciding.level <= ANSWER_DEPTH - 2)
        key = Signal(AclKey)
        ans = flow.resp.payload
        m.d.comb += [key.eq(w.key), key.flow_established.eq(d_new.established),
                     key.flow_to_server.eq(d_new.to_server), acl.s_key.payload.eq(key),
                     deciding.w_data.eq(d_new)]
        pop_waiting = Signal()
        m.d.sync += pop_waiting.eq(0)
        m.d.comb += waiting.r_en.eq(pop_waiting)
        with m.FSM(name="key_step"):
            with m.State("TAKE"):
                head = entry(waiting.r_data)
                m.d.sync += [w.eq(head), d_new.eq(0), d_new.inspected.eq(~head.bypass),
                             d_new.request.eq(head.request & ~head.bypass)]
                with m.If(waiting.r_rdy & deciding_room):
                    m.d.sync += pop_waiting.eq(1)
                    m.next = "FLOW"
            with m.State("FLOW"):
                m.d.comb += flow.resp.ready.eq(d_new.request)
                with m.If(~d_new.request | flow.resp.valid):
                    with m.If(d_new.request):
                        m.d.sync += [d_new.found.eq(ans.found), d_new.established.eq(ans.found & ans.established),
                                     d_new.to_server.eq(ans.found & ans.to_server), d_new.outcome.eq(ans.outcome)]
                    m.next = "KEY"
            with m.State("KEY"):
                m.d.comb += acl.s_key.valid.eq(d_new.inspected)
                with m.If(~d_new.inspected | acl.s_key.ready):
                    m.next = "PASS"
            with m.State("PASS"):
                m.d.comb += deciding.w_en.eq(1)
                m.next = "TAKE"

        # -- ACL answers (they cannot wait) and the verdict -------------------------------------
        res_layout = data.Layout.cast(acl.m_result.payload.shape())
        m.submodules.answers = answers = SyncFIFO(width=res_layout.size, depth=ANSWER_DEPTH)
        m.d.comb += [answers.w_data.eq(acl.m_result.payload), answers.w_en.eq(acl.m_result.valid)]
        # The heads are loaded every cycle of TAKE; the verdict is made from those registers.
        d = Signal(deciding_entry)
        a = Signal(res_layout)
        out = self.result.payload
        pop_deciding, pop_answers = Signal(), Signal()
        m.d.sync += [pop_deciding.eq(0), pop_answers.eq(0)]
        m.d.comb += [deciding.r_en.eq(pop_deciding), answers.r_en.eq(pop_answers)]
        with m.FSM(name="verdict_step"):
            with m.State("TAKE"):
                d_head = deciding_entry(deciding.r_data)
                m.d.sync += [d.eq(deciding.r_data), a.eq(answers.r_data)]
                with m.If(deciding.r_rdy & (~d_head.inspected | answers.r_rdy)):
                    m.d.sync += [pop_deciding.eq(1), pop_answers.eq(d_head.inspected)]
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                hit = d.inspected & a.hit
                # PUNT and MIRROR (action bit 2) decide nothing: the verdict is that of no hit.
                decides = hit & ~a.action.as_value()[2]
                admitted = d.found & (d.established | ~d.to_server)   # established, or return traffic
                deny = d.inspected & ~decides & d.request & self.default_deny & ~admitted
                punt = hit & ((a.action == AclAction.PUNT)
                              | (decides & a.multi & (a.action != AclAction.PASS) & self.punt_acl_multi))
                m.d.sync += [
                    out.inspected.eq(d.inspected),
                    out.acl_hit.eq(hit), out.acl_multi.eq(hit & a.multi), out.acl_punt.eq(punt),
                    out.acl_action.eq(Mux(hit, a.action, 0)), out.acl_index.eq(Mux(hit, a.index, 0)),
                    out.acl_slot.eq(Mux(hit, a.slot, 0)),
                    out.flow_found.eq(d.found), out.flow_established.eq(d.established),
                    out.flow_to_server.eq(d.to_server), out.flow_outcome.eq(d.outcome),
                ]
                with m.If(hit & (a.action == AclAction.DROP)):
                    m.d.sync += [out.drop.eq(1), out.reason.eq(DropReason.ACL_DROP)]
                with m.Elif(hit & (a.action == AclAction.REJECT)):
                    m.d.sync += [out.drop.eq(1), out.reason.eq(DropReason.ACL_REJECT)]
                with m.Elif(deny):
                    m.d.sync += [out.drop.eq(1), out.reason.eq(DropReason.DEFAULT_DENY)]
                with m.Else():
                    m.d.sync += [out.drop.eq(0), out.reason.eq(DropReason.NONE)]
                m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.result.valid.eq(1)
                with m.If(self.result.ready):
                    m.next = "TAKE"

        # -- time and timeouts into the flow table -------------------------------------------------
        m.d.comb += [flow.now.eq(self.now)] + [
            getattr(flow, name).eq(getattr(self, name)) for name in
            ("tcp_new", "tcp_established", "tcp_closed", "other_new", "other_established")]
        # -- management ports straight through ---------------------------------------------------
        for name in _ACL_MGMT_IN:
            m.d.comb += getattr(acl, name).eq(getattr(self, f"acl_{name}"))
        for name in _ACL_MGMT_OUT:
            m.d.comb += getattr(self, f"acl_{name}").eq(getattr(acl, name))
        wiring.connect(m, wiring.flipped(self.flow_mgmt_req), flow.mgmt_req)
        wiring.connect(m, flow.mgmt_resp, wiring.flipped(self.flow_mgmt_resp))
        return m
