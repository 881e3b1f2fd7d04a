"""The switch stage: from a parsed frame to its egress ports, VLAN and drop reason.

It takes the forwarder's place in the NIC when the build has a switch (``config.switch``), and
does, per frame and in frame order, what the golden model's ``SwitchModel.process`` does
(docs/switch.md, "Behaviour"): drops of bad frames first (``rx_error``, ``oversize``,
``malformed``, as the bump in the wire), then the monitor port and loop-guard blocks, the ingress
VLAN (access / trunk / native / VLAN table), reserved addresses, learning and lookup in the
:class:`~hdl.switch.mac_table.MacTable`, loop guard's MAC-move count, storm control, flooding
within the VLAN, and the mirror session's copy.

::

    parsed -> meta store (4 frames, LUT RAM) --front--> VLAN table -> admission -> MacTable.req
                                                                     ctx FIFO -+        | resp
                                                      back: storm, loop guard, masks <--+
                                                      -> desc (packet buffer) + record

The front handles one frame while the back finishes the one before. The MAC table takes a
request every 6 cycles (8 while the driver reads it) and the back a frame every 7, so frames
must reach the stage at most one per :data:`FRAME_CYCLES` cycles: the NIC holds each frame's
last beat back until that many cycles have passed since the previous one (a minimum frame takes
8 cycles at W=64; wider data paths are limited to one frame per 8 cycles until the table is
pipelined, docs/switch.md).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hdl.config import NicConfig
from hdl.lib.ram import PipelinedRam
from hdl.lib.timing import elapsed_at_least, keep_copy
from hdl.packet.meta import DropReason, MalformedReason, Verdict, make_parsed_layout, make_verdict_record
from hdl.switch.mac_table import LearnOutcome, MacTable
from hdl.switch.settings import RECENT_BROADCASTS, STORM_BURST_BITS, STORM_RATE_BITS, TIME_BITS, VLAN_COUNT, StormClass
from hdl.switch.storm import LATENCY as STORM_LATENCY
from hdl.switch.storm import StormBuckets

__all__ = ["SwitchStage", "make_switch_descriptor_layout", "FRAME_CYCLES"]

#: Fewest cycles between two frames the stage takes (its MAC table's rate with a driver dump).
FRAME_CYCLES = 8
_QINQ_BIT = 0     # bit of the parsed outer tag TPID flag


def make_switch_descriptor_layout(config: NicConfig) -> data.StructLayout:
    """What the packet buffer and the egress fan-out need to send one stored frame: the egress
    port mask, its length in beats, and how each port tags it (``vlan``, the ingress tag's TPID
    kind, PCP and DEI; ``in_tagged``: it arrived with a tag, ``in_priority``: a priority tag, VID 0;
    ``mirror_plain``: the monitor's copy carries PCP 0)."""
    n = len(config.ports)
    return data.StructLayout({"drop": 1, "egress": n, "beats": 12, "vlan": 12, "qinq": 1, "pcp_dei": 4,
                              "in_tagged": 1, "in_priority": 1, "mirror_plain": 1})


class SwitchStage(wiring.Component):
    """Per-frame switching decision (see the module docstring).

    Members
    -------
    parsed: In(stream.Signature(parsed layout, always_ready=True))
        One pulse per frame from the parser, at most one per :data:`FRAME_CYCLES` cycles.
    desc: Out(stream.Signature(:func:`make_switch_descriptor_layout`, always_ready=True))
    record: Out(stream.Signature(verdict record, always_ready=True))
        Same cycle as ``desc``.
    now: In(TIME_BITS)
        Coarse time in ticks (MAC stamps, aging, loop guard).
    Configuration inputs (from the switch's registers): ``port_trunk`` (mask), ``port_pvid_<i>``,
    ``aging``, ``storm_rate_<i>_<c>`` / ``storm_burst_<i>_<c>``, ``mirror_enable``,
    ``mirror_to``, ``mirror_ingress``, ``mirror_egress``, ``loop_moves``, ``loop_window``,
    ``loop_block``, ``unblock`` (mask, one-cycle strobes), ``port_limit_<i>`` (learning limit,
    0: none; ``port_held_<i>`` out: the entries the port holds).
    vlan_write: In(stream.Signature({vid, members}, always_ready=True))
        Writes a row of the VLAN table (the driver's VLAN command).
    mac_mgmt_req / mac_mgmt_resp:
        The MAC table's management port, for the driver.
    blocked: Out(mask)
        Ports loop guard blocked.
    scrub_overrun: Out(1)
        The MAC table's scrubber missed an epoch (sticky; SWITCH TABLE_STATUS bit 0).
    loop_event, storm_event: Out(1)
        One-cycle pulses with ``record``: this frame started a loop (made its port reach the move
        limit) / was dropped by storm control.
    learn_outcome: Out(LearnOutcome)
        With ``record``: what learning its source did.
    """

    def __init__(self, config: NicConfig):
        if config.switch is None:
            raise ValueError("SwitchStage needs a config with switch settings")
        self.config = config
        self.settings = s = config.switch
        n, pb = len(config.ports), config.port_bits
        self.mac_table = MacTable(s.mac_sets, s.mac_ways, pb, TIME_BITS, ports=n, epoch_bits=s.scrub_epoch_bits)
        members = {
            "parsed": In(stream.Signature(make_parsed_layout(pb), always_ready=True)),
            "desc": Out(stream.Signature(make_switch_descriptor_layout(config), always_ready=True)),
            "record": Out(stream.Signature(make_verdict_record(pb, n), always_ready=True)),
            "now": In(TIME_BITS),
            "port_trunk": In(n),
            "aging": In(TIME_BITS),
            "mirror_enable": In(1), "mirror_to": In(pb), "mirror_ingress": In(n), "mirror_egress": In(n),
            "loop_moves": In(16), "loop_window": In(24), "loop_block": In(1), "unblock": In(n),
            "vlan_write": In(stream.Signature(data.StructLayout({"vid": 12, "members": n}), always_ready=True)),
            "mac_mgmt_req": In(stream.Signature(self.mac_table.mgmt_request_layout)),
            "mac_mgmt_resp": Out(stream.Signature(self.mac_table.entry_layout)),
            "blocked": Out(n),
            "scrub_overrun": Out(1),
            "loop_event": Out(1), "storm_event": Out(1),
            "learn_outcome": Out(LearnOutcome),
        }
        for i in range(n):
            members[f"port_pvid_{i}"] = In(12)
            # Learning limit in, entries held out (the MAC table's, per port).
            members[f"port_limit_{i}"] = In(self.mac_table.count_bits)
            members[f"port_held_{i}"] = Out(self.mac_table.count_bits)
            for c in StormClass:
                members[f"storm_rate_{i}_{c.label}"] = In(STORM_RATE_BITS)
                members[f"storm_burst_{i}_{c.label}"] = In(STORM_BURST_BITS)
        super().__init__(members)

    def _power_on_row(self, vid):
        """The VLAN table's power-on row ``vid`` as logic: the ports that carry it
        (:meth:`SwitchPort.carries <hdl.switch.settings.SwitchPort.carries>`)."""
        in_range = (vid != 0) & (vid != VLAN_COUNT - 1)
        bits = []
        for p in self.settings.ports:
            carried = vid == p.pvid
            if p.trunk:
                carried = Const(1) if p.vlans is None else Cat(carried, *(vid == v for v in p.vlans)).any()
            bits.append(in_range & carried)
        return Cat(bits)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        n, pb, bpb = len(cfg.ports), cfg.port_bits, cfg.bytes_per_beat
        m.submodules.mac_table = table = self.mac_table
        wiring.connect(m, wiring.flipped(self.mac_mgmt_req), table.mgmt_req)
        wiring.connect(m, table.mgmt_resp, wiring.flipped(self.mac_mgmt_resp))
        m.d.comb += [table.now.eq(self.now), table.aging.eq(self.aging), self.scrub_overrun.eq(table.scrub_overrun)]
        for i in range(len(cfg.ports)):
            m.d.comb += [table.limit[i].eq(getattr(self, f"port_limit_{i}")),
                         getattr(self, f"port_held_{i}").eq(table.held[i])]
        pvid = [getattr(self, f"port_pvid_{i}") for i in range(n)]

        # --- meta store: every parsed frame waits here until its record leaves ---------------
        parsed_layout = make_parsed_layout(pb)
        m.submodules.store = store = Memory(shape=parsed_layout, depth=4, init=[])
        st_w = store.write_port()
        st_front = store.read_port(domain="comb")
        st_back = store.read_port(domain="comb")
        w_ptr, front_ptr, back_ptr = Signal(2), Signal(2), Signal(2)
        m.d.comb += [st_w.addr.eq(w_ptr), st_w.data.eq(self.parsed.payload), st_w.en.eq(self.parsed.valid),
                     st_front.addr.eq(front_ptr), st_back.addr.eq(back_ptr)]
        with m.If(self.parsed.valid):
            m.d.sync += w_ptr.eq(w_ptr + 1)

        # --- VLAN table: row = port mask of the VLAN's members ---------------------------------
        # A block RAM read through its own output register (why: without it the row arrives
        # 5.8 ns after the clock). That RAM starts empty, so it holds each row XOR its power-on
        # value, which logic makes from the VID (the settings' `vlan_members`).
        m.submodules.vlans = vlans = PipelinedRam(n, VLAN_COUNT)
        m.d.comb += [vlans.w_addr.eq(self.vlan_write.payload.vid),
                     vlans.w_data.eq(self.vlan_write.payload.members ^ self._power_on_row(self.vlan_write.payload.vid)),
                     vlans.w_en.eq(self.vlan_write.valid)]
        row_init = Signal(n)

        # --- front: admission and the MAC table request ----------------------------------------
        ctx_layout = data.StructLayout({"reason": DropReason, "vlan": 12, "members": n, "qinq": 1, "pcp_dei": 4,
                                        "in_tagged": 1, "in_priority": 1, "admitted": 1})
        m.submodules.ctx = ctx_fifo = fifo.SyncFIFO(width=ctx_layout.size, depth=4)
        # The store is LUT RAM read without a register: each end copies its entry into flip-flops
        # first (why: the read mux of a 700-bit wide, 4-deep LUT RAM spread over the die, then
        # the decisions, did not fit a cycle).
        p = Signal(parsed_layout, name="front_entry")
        m.d.sync += p.eq(st_front.data)
        meta = p.meta
        f_reason = Signal(DropReason)
        f_vlan, f_members, f_row = Signal(12), Signal(n), Signal(n)
        f_qinq, f_pcp_dei, f_tagged, f_vid_tagged = Signal(), Signal(4), Signal(), Signal()
        f_in_port = Signal(pb)
        f_dst, f_src = Signal(48), Signal(48)
        f_admitted = Signal()
        f_learn = Signal()
        blocked = Signal(n)
        blocked_next = Signal(n)        # what `blocked` holds from the next cycle (set at the end)
        m.d.comb += self.blocked.eq(blocked)
        mirror_dest = Signal(n)
        m.d.comb += mirror_dest.eq(Mux(self.mirror_enable, Const(1, n) << self.mirror_to, 0))

        bad = Signal(DropReason)
        with m.If(p.rx_error):
            m.d.comb += bad.eq(DropReason.RX_ERROR)
        with m.Elif(meta.malformed[MalformedReason.OVERSIZE]):
            m.d.comb += bad.eq(DropReason.OVERSIZE)
        with m.Elif(meta.malformed.any()):
            m.d.comb += bad.eq(DropReason.MALFORMED)

        # Admission's inputs, registered in every cycle from the front's registers, so that in
        # ADMIT they hold what the frame's fields gave a cycle before (the fields are set in
        # DECODE and stay): ADMIT only joins flags and the VLAN row's membership bit (why: the
        # priority chain of the reasons from the addresses, VLAN and masks into `f_learn` did
        # not fit a cycle). The configuration they read (trunk and mirror ports) is taken a
        # cycle earlier than ADMIT; `blocked` is not: `a_blocked` is the next cycle's `blocked`
        # at the frame's port, so it equals `blocked` at the port in ADMIT.
        a_in_bit = Signal(n)
        a_early = Signal(DropReason)        # bad frame, or from the monitor port
        a_vlan_reason = Signal(DropReason)  # tagged on an access port, or no native VLAN
        a_early_any, a_vlan_any, a_blocked = Signal(), Signal(), Signal()
        a_reserved, a_learnable = Signal(), Signal()
        f_trunk = (self.port_trunk & a_in_bit).any()
        f_reserved = ((f_dst[8:48] == 0x0180C20000) & (f_dst[0:8] <= 0x0F)) | (f_dst == 0x01000CCCCCCC)
        f_monitor = (mirror_dest & a_in_bit).any()
        f_tagged_on_access = f_vid_tagged & ~f_trunk
        f_no_native = ~f_vid_tagged & (f_vlan == 0)
        m.d.sync += [
            a_in_bit.eq(Const(1, n) << f_in_port),
            a_early.eq(Mux(f_reason != DropReason.NONE, f_reason,
                           Mux(f_monitor, DropReason.MONITOR_PORT, DropReason.NONE))),
            a_early_any.eq((f_reason != DropReason.NONE) | f_monitor),
            a_vlan_reason.eq(Mux(f_tagged_on_access, DropReason.TAGGED_ON_ACCESS,
                                 Mux(f_no_native, DropReason.NO_NATIVE_VLAN, DropReason.NONE))),
            a_vlan_any.eq(f_tagged_on_access | f_no_native),
            a_blocked.eq((blocked_next & a_in_bit).any()),
            a_reserved.eq(f_reserved),
            a_learnable.eq(~f_reserved & ~f_src[40]),
        ]

        # The MAC table request from registers only (why: the state decode in front of the
        # table's acceptance and read-address select did not fit a cycle). The frame's context
        # goes into its FIFO in the cycle after ADMIT, from a register (`ctx_write`), not on the
        # table's acceptance (why: the acceptance, then the FIFO's write enable, did not fit a
        # cycle); the FIFO had room in IDLE, and only the front writes it.
        ctx_write = Signal()
        m.d.sync += ctx_write.eq(0)
        m.d.comb += ctx_fifo.w_en.eq(ctx_write)
        with m.If(ctx_write):
            m.d.sync += front_ptr.eq(front_ptr + 1)
        ctx_in = ctx_layout(ctx_fifo.w_data)
        m.d.comb += [ctx_in.reason.eq(f_reason), ctx_in.vlan.eq(f_vlan), ctx_in.members.eq(f_members),
                     ctx_in.qinq.eq(f_qinq), ctx_in.pcp_dei.eq(f_pcp_dei), ctx_in.in_tagged.eq(f_tagged),
                     ctx_in.in_priority.eq(f_tagged & ~f_vid_tagged), ctx_in.admitted.eq(f_admitted)]
        req_valid = Signal()
        req = table.req.payload
        m.d.comb += [table.req.valid.eq(req_valid), req.vlan.eq(f_vlan), req.dst.eq(f_dst), req.src.eq(f_src),
                     req.in_port.eq(f_in_port), req.learn.eq(f_learn)]
        with m.FSM(name="front"):
            with m.State("IDLE"):
                with m.If((front_ptr != w_ptr) & ctx_fifo.w_rdy):
                    m.next = "DECODE"           # `front_entry` holds the frame from the next cycle
            with m.State("DECODE"):
                # The outer tag classifies (0x8100 or 0x88a8, as the parser reads tags).
                tagged = meta.vlan_count != 0
                vid = meta.vlan0_vid
                m.d.sync += [
                    f_in_port.eq(p.in_port), f_dst.eq(meta.eth_dst), f_src.eq(meta.eth_src),
                    f_tagged.eq(tagged), f_vid_tagged.eq(tagged & (vid != 0)),
                    f_qinq.eq(tagged & meta.vlan0_tpid_qinq), f_pcp_dei.eq(Mux(tagged, meta.vlan0_pcp << 1, 0)),
                    f_reason.eq(bad),
                ]
                # The pvid of the ingress port, or the tag's VID: the VLAN table row to read.
                in_pvid = Signal(12)
                with m.Switch(p.in_port):
                    for i in range(n):
                        with m.Case(i):
                            m.d.comb += in_pvid.eq(pvid[i])
                m.d.sync += f_vlan.eq(Mux(tagged & (vid != 0), vid, in_pvid))
                m.next = "VLAN"
            with m.State("VLAN"):
                m.d.comb += [vlans.r_addr.eq(f_vlan), vlans.r_en.eq(1)]
                m.d.sync += row_init.eq(self._power_on_row(f_vlan))
                m.next = "VLAN_WAIT"
            with m.State("VLAN_WAIT"):
                m.next = "VLAN_READ"
            with m.State("VLAN_READ"):
                # The row into a register before any decision (why: the RAM's output register
                # is placed by the RAM, far from the decisions).
                m.d.sync += f_row.eq(vlans.r_data ^ row_init)
                m.next = "ADMIT"
            with m.State("ADMIT"):
                # The reasons in the golden model's order: bad frame, monitor port, blocked port,
                # tagged on an access port, no native VLAN, not a member; else admitted (and
                # reserved destinations dropped after learning).
                member = (f_row & a_in_bit).any()
                refused = a_early_any | a_blocked | a_vlan_any | (f_vid_tagged & ~member)
                reason = Signal(DropReason)
                with m.If(a_early_any):
                    m.d.comb += reason.eq(a_early)
                with m.Elif(a_blocked):
                    m.d.comb += reason.eq(DropReason.LOOP_BLOCKED)
                with m.Elif(a_vlan_any):
                    m.d.comb += reason.eq(a_vlan_reason)
                with m.Elif(f_vid_tagged & ~member):
                    m.d.comb += reason.eq(DropReason.VLAN_NOT_MEMBER)
                with m.Elif(a_reserved):
                    m.d.comb += reason.eq(DropReason.RESERVED)
                m.d.sync += [f_members.eq(f_row), f_admitted.eq(~refused),
                             f_learn.eq(~refused & a_learnable), f_reason.eq(reason)]
                m.d.sync += [req_valid.eq(1), ctx_write.eq(1)]
                m.next = "REQUEST"
            with m.State("REQUEST"):
                # The table takes a request no sooner than its second cycle, when `front_entry`
                # already follows the new `front_ptr`: the next frame may start at once (the
                # front then takes 7 cycles a frame, not 8).
                with m.If(table.req.ready):
                    m.d.sync += req_valid.eq(0)
                    with m.If(~ctx_write & (front_ptr != w_ptr) & ctx_fifo.w_rdy):
                        m.next = "DECODE"
                    with m.Else():
                        m.next = "IDLE"

        # --- back: the MAC table's answer, then storm control, loop guard and masks ------------
        # `take` (B0): the answer and the frame's context are taken, everything that reads
        # state (move counts, recent broadcasts, blocks) is registered, and the frame's storm
        # bucket is checked. B1, a cycle later: the loop-guard state is updated. B3, when the
        # bucket's verdict comes (storm.LATENCY after the check): the drop reason, the masks,
        # the mirror copy, the bucket's payment and the outputs. The `b1_*` registers hold the
        # frame from its take to B3. A take waits until the frame before has left B3 (see
        # below): takes are at least 7 cycles apart, so the steps never hold two frames that
        # share state.
        bp = Signal(parsed_layout, name="back_entry")
        m.d.sync += bp.eq(st_back.data)
        bmeta = bp.meta
        ctx = ctx_layout(ctx_fifo.r_data)
        resp = table.resp.payload
        take = Signal()
        b1 = Signal(name="b1_valid")
        b3 = Signal(name="b3_valid")
        # B0 -> B3: the frame's steps; `back_entry` follows `back_ptr` two cycles after B3, the
        # registered flags and compare chunks made from it a cycle later, and the compares
        # joined from the chunks a cycle after that: no take in the four cycles after B3.
        back_busy = Signal(STORM_LATENCY + 2)
        m.d.sync += back_busy.eq(Cat(b1, back_busy[:-1]))
        m.d.comb += b3.eq(back_busy[STORM_LATENCY - 2])
        m.d.comb += take.eq(table.resp.valid & ctx_fifo.r_rdy & ~b1 & ~back_busy.any())
        m.d.comb += [table.resp.ready.eq(take), ctx_fifo.r_en.eq(take)]

        # What the take reads of the frame is registered from `back_entry` a cycle ahead (it is
        # stable from two cycles before a take): the port's bit, the destination's kind (a
        # 48-bit compare) and the storm class. `was_blocked` is the next cycle's `blocked` at
        # that port, registered, so at the take it equals `blocked` at the port then.
        in_bit = Signal(n)
        group, broadcast = Signal(), Signal()
        storm_cls = Signal(range(3))
        was_blocked = Signal()
        dst = bmeta.eth_dst
        m.d.sync += [in_bit.eq(Const(1, n) << bp.in_port), group.eq(dst[40]), broadcast.eq(dst == (1 << 48) - 1),
                     storm_cls.eq(Mux(dst == (1 << 48) - 1, StormClass.BROADCAST,
                                      Mux(dst[40], StormClass.MULTICAST, StormClass.UNKNOWN_UNICAST))),
                     was_blocked.eq((blocked_next & in_bit).any())]

        # Storm buckets, one per (port, class), in their own block (hdl/switch/storm.py): the
        # frame's bucket is checked at B0, answers at B3 and is paid there. The check's operands
        # are registered from `back_entry` a cycle ahead, like the broadcast compares below.
        m.submodules.storm = storm = StormBuckets(n)
        for i in range(n):
            for c in StormClass:
                m.d.comb += [getattr(storm, f"rate_{i}_{c.label}").eq(getattr(self, f"storm_rate_{i}_{c.label}")),
                             getattr(storm, f"burst_{i}_{c.label}").eq(getattr(self, f"storm_burst_{i}_{c.label}"))]
        check = storm.check.payload
        m.d.sync += [check.port.eq(bp.in_port), check.cls.eq(storm_cls), check.length.eq(bmeta.frame_len)]
        m.d.comb += storm.check.valid.eq(take)
        verdict = storm.verdict.payload

        # Loop guard: MAC moves onto a port within a window of ticks. Whether each port's window
        # ran out is a register (a cycle late: a tick is 1024 cycles), made with one carry chain
        # (`elapsed_at_least`; why: the subtraction, then the compare with the window, 7.3 ns).
        # The window setting goes in negated, from registers (a setting, a cycle late), one kept
        # copy per test (why: one register's 32 bits fanned out to 11 tests, 2.2 ns of route).
        window_zero = Signal()
        m.d.sync += window_zero.eq(self.loop_window == 0)

        def neg_window(name):
            copy = keep_copy(Signal(TIME_BITS), name=f"neg_window_{name}")
            m.d.sync += copy.eq(-self.loop_window)
            return copy
        move_count = [Signal(16, name=f"loop_moves_{i}") for i in range(n)]
        window_start = [Signal(TIME_BITS, name=f"loop_start_{i}") for i in range(n)]
        window_over = Signal(n, init=(1 << n) - 1)
        for i in range(n):
            m.d.sync += window_over[i].eq(elapsed_at_least(self.now, window_start[i], neg_window(i), window_zero))
        # Whether one more move reaches the limit: a register per port, ahead of the move (why:
        # the increment, the compare and the port mux in the cycle of the move did not fit), made
        # as count == limit - 1 (mod 2**16) with the limit's side registered (a setting, a cycle
        # late; why: the increment's carry chain before the compare, 7.1 ns).
        moves_less_1, moves_one = Signal(16), Signal()
        m.d.sync += [moves_less_1.eq(self.loop_moves - 1), moves_one.eq(self.loop_moves == 1)]
        at_limit = Signal(n)
        for i in range(n):
            m.d.sync += at_limit[i].eq(Mux(window_over[i], moves_one, move_count[i] == moves_less_1))
        moved = resp.outcome == LearnOutcome.MOVED
        moves_loop = Signal()
        count_move = moved & (self.loop_moves != 0) & ~was_blocked
        m.d.comb += moves_loop.eq(count_move & (at_limit & in_bit).any())
        # The counts themselves move at B1, from registers (why: port decode, conditions and
        # every port's enables in the cycle of the take did not fit).
        b1_count_move, b1_port = Signal(), Signal(pb)
        with m.If(b1 & b1_count_move):
            for i in range(n):
                with m.If(b1_port == i):
                    m.d.sync += move_count[i].eq(Mux(window_over[i], 1, move_count[i] + 1))
                    with m.If(window_over[i]):
                        m.d.sync += [window_start[i].eq(self.now), window_over[i].eq(0)]

        # ... and broadcasts coming back: the source MAC and length of one of the last few
        # broadcasts, on another port within the window (the golden model's LoopGuard).
        recent_sig = [Signal(48 + 14, name=f"bcast_sig_{k}") for k in range(RECENT_BROADCASTS)]
        recent_port = [Signal(pb, name=f"bcast_port_{k}") for k in range(RECENT_BROADCASTS)]
        recent_tick = [Signal(TIME_BITS, name=f"bcast_tick_{k}") for k in range(RECENT_BROADCASTS)]
        recent_fresh = Signal(RECENT_BROADCASTS)       # registered: within the window
        recent_valid = Signal(RECENT_BROADCASTS)
        for k in range(RECENT_BROADCASTS):
            m.d.sync += recent_fresh[k].eq(recent_valid[k]
                                           & ~elapsed_at_least(self.now, recent_tick[k], neg_window(f"b{k}"),
                                                               window_zero))
        replace = Signal(range(RECENT_BROADCASTS))
        sig = Cat(bmeta.eth_src, bmeta.frame_len)
        # Registered compares in two steps (why: a 62-bit compare, the slot choice and the
        # table's enables in one cycle did not fit; the compare alone into its register, 7.3 ns,
        # did not either): 2-bit chunks of each slot against `sig`, then the chunks joined.
        # `sig` is stable from two cycles before a take, the table from longer.
        same = Signal(RECENT_BROADCASTS)
        other_port = Signal(RECENT_BROADCASTS)
        for k in range(RECENT_BROADCASTS):
            chunks = range(0, len(sig), 2)
            chunk_eq = Signal(len(chunks), name=f"bcast_chunk_eq_{k}")
            m.d.sync += [chunk_eq[i].eq(recent_sig[k][c:c + 2] == sig[c:c + 2]) for i, c in enumerate(chunks)]
            m.d.sync += [same[k].eq(recent_valid[k] & chunk_eq.all()), other_port[k].eq(recent_port[k] != bp.in_port)]
        back = same & recent_fresh & other_port
        bcast_check = broadcast & (ctx.reason == DropReason.NONE) & (self.loop_moves != 0) & ~was_blocked
        bcast_loop = Signal()
        m.d.comb += bcast_loop.eq(bcast_check & back.any())
        # The table takes the broadcast at B1, from registers (as the move counts). The slot it
        # writes (the first same one, else the next to replace) is chosen at the take, one-hot
        # into `b1_write` (why: the choice in front of the slots' enables, 7.1 ns); `replace`
        # moves only at B1, so it is the same at the take.
        b1_bcast, b1_same, b1_sig = Signal(), Signal(RECENT_BROADCASTS), Signal(48 + 14)
        b1_write = Signal(RECENT_BROADCASTS)
        first_same = Signal(range(RECENT_BROADCASTS))
        for k in reversed(range(RECENT_BROADCASTS)):
            with m.If(same[k]):
                m.d.comb += first_same.eq(k)
        slot = Mux(same.any(), first_same, replace)
        m.d.sync += [b1_write[k].eq(bcast_check & (slot == k)) for k in range(RECENT_BROADCASTS)]
        for k in range(RECENT_BROADCASTS):
            with m.If(b1 & b1_write[k]):
                m.d.sync += [recent_sig[k].eq(b1_sig), recent_port[k].eq(b1_port), recent_tick[k].eq(self.now),
                             recent_valid[k].eq(1)]
        with m.If(b1 & b1_bcast & ~b1_same.any()):
            m.d.sync += replace.eq(replace + 1)

        # B0 -> B1 registers. They load in every cycle, not only at a take (why: the take as the
        # enable of some 150 flip-flops did not fit a cycle): what B1 reads of them is what the
        # take saw, and what B3 needs (`carry`) goes on through a register a step.
        b1_reason, b1_in_bit = Signal(DropReason), Signal(n)
        b1_known, b1_same_port, b1_dst_bit = Signal(), Signal(), Signal(n)
        b1_cls = Signal(range(3))
        b1_blocked, b1_flood, b1_admitted = Signal(), Signal(n), Signal()
        carry_layout = data.StructLayout({"vlan": 12, "qinq": 1, "pcp_dei": 4, "tagged": 1, "priority": 1,
                                          "outcome": LearnOutcome, "loop": 1})
        b1_carry, b2_carry, b3_carry = (Signal(carry_layout, name=f"b{k}_carry") for k in (1, 2, 3))
        m.d.sync += [b2_carry.eq(b1_carry), b3_carry.eq(b2_carry)]
        b1_vlan, b1_loop = b1_carry.vlan, b1_carry.loop
        m.d.sync += b1.eq(take)
        m.d.sync += [
            b1_reason.eq(ctx.reason), b1_in_bit.eq(in_bit),
            b1_known.eq(~group & resp.dst_hit), b1_same_port.eq(resp.dst_port == bp.in_port),
            b1_dst_bit.eq(Const(1, n) << resp.dst_port),
            b1_cls.eq(storm_cls),
            b1_carry.loop.eq(moves_loop | bcast_loop), b1_blocked.eq(was_blocked),
            b1_flood.eq(ctx.members & ~in_bit & ~mirror_dest), b1_carry.vlan.eq(ctx.vlan),
            b1_admitted.eq(ctx.admitted), b1_carry.qinq.eq(ctx.qinq), b1_carry.pcp_dei.eq(ctx.pcp_dei),
            b1_carry.tagged.eq(ctx.in_tagged), b1_carry.priority.eq(ctx.in_priority),
            b1_carry.outcome.eq(resp.outcome),
            b1_count_move.eq(count_move), b1_port.eq(bp.in_port),
            b1_bcast.eq(bcast_check), b1_same.eq(same), b1_sig.eq(sig),
        ]

        # The decision, in three steps (why: the priority of the drop reasons, the masks and the
        # mirror copy after them did not fit one cycle). B1: what comes before the MAC table's
        # answer, the masks and the mirror's inputs, into registers. B2: the decision as if
        # the frame's storm bucket lets it through, and what changes if it does not. B3: the
        # bucket's verdict picks.
        # A block set by the frame before is seen here even if this frame passed the front before
        # it (the golden model checks blocks first; only bad frames and the monitor port come
        # before). Its source was already learned, which the model does not do: docs/switch.md.
        newly_blocked = Mux(b1_loop & self.loop_block, b1_in_bit, 0)
        early = ((b1_reason == DropReason.RX_ERROR) | (b1_reason == DropReason.OVERSIZE)
                 | (b1_reason == DropReason.MALFORMED) | (b1_reason == DropReason.MONITOR_PORT))
        b2_dropped, b2_reason = Signal(), Signal(DropReason)
        with m.If(early):
            m.d.sync += [b2_dropped.eq(1), b2_reason.eq(b1_reason)]
        with m.Elif(b1_blocked):
            m.d.sync += [b2_dropped.eq(1), b2_reason.eq(DropReason.LOOP_BLOCKED)]
        with m.Elif(b1_reason != DropReason.NONE):
            m.d.sync += [b2_dropped.eq(1), b2_reason.eq(b1_reason)]
        with m.Elif(newly_blocked.any()):
            m.d.sync += [b2_dropped.eq(1), b2_reason.eq(DropReason.LOOP_BLOCKED)]
        with m.Else():
            m.d.sync += [b2_dropped.eq(0), b2_reason.eq(DropReason.NONE)]
        b2_known, b2_same_port, b2_dst, b2_flood = Signal(), Signal(), Signal(n), Signal(n)
        b2_tagged, b2_mirror_in, b2_mirror_out, b2_storm_reason = Signal(n), Signal(), Signal(), Signal(DropReason)
        m.d.sync += [b2_known.eq(b1_known), b2_same_port.eq(b1_same_port),
                     b2_dst.eq(b1_dst_bit & ~blocked), b2_flood.eq(b1_flood & ~blocked),
                     b2_mirror_in.eq(self.mirror_enable & b1_admitted & (self.mirror_ingress & b1_in_bit).any()),
                     b2_mirror_out.eq(self.mirror_enable & b1_admitted),
                     b2_storm_reason.eq(Mux(b1_cls == StormClass.BROADCAST, DropReason.STORM_BROADCAST,
                                            Mux(b1_cls == StormClass.MULTICAST, DropReason.STORM_MULTICAST,
                                                DropReason.STORM_UNKNOWN)))]
        # A port sends the frame tagged when it is a trunk and the VLAN is not its native one.
        for i in range(n):
            m.d.sync += b2_tagged[i].eq(self.port_trunk[i] & (pvid[i] != b1_vlan))

        # B2: the decision if storm control passes the frame.
        reason_pass, egress_pass, policeable = Signal(DropReason), Signal(n), Signal()
        with m.If(b2_dropped):
            m.d.comb += reason_pass.eq(b2_reason)
        with m.Elif(b2_known):
            with m.If(b2_same_port):
                m.d.comb += reason_pass.eq(DropReason.SAME_PORT)
            with m.Else():
                m.d.comb += egress_pass.eq(b2_dst)
        with m.Else():
            m.d.comb += [egress_pass.eq(b2_flood), policeable.eq(1)]
        # The mirror session: what a selected port received (once admitted into a VLAN) or sent.
        # A storm drop sends nothing, so only the ingress copy is left then.
        sent_selected = egress_pass & self.mirror_egress
        b3_reason_pass, b3_egress_pass, b3_policeable = Signal(DropReason), Signal(n), Signal()
        b3_mirror_pass, b3_plain_pass, b3_mirror_in, b3_storm_reason = Signal(), Signal(), Signal(), Signal(DropReason)
        # Whether the frame leaves nowhere (the descriptor's `drop`) and is forwarded (the
        # record's verdict), made here for both verdicts of its bucket so that B3 only picks
        # (why: the storm verdict through the masks' OR and the compare with 0 was 7.2 ns).
        mirror_pass = b2_mirror_in | (b2_mirror_out & sent_selected.any())
        b3_none_pass, b3_none_storm, b3_forward_pass = Signal(), Signal(), Signal()
        m.d.sync += [b3_none_pass.eq((egress_pass | Mux(mirror_pass, mirror_dest, 0)) == 0),
                     b3_none_storm.eq(Mux(b2_mirror_in, mirror_dest, 0) == 0),
                     b3_forward_pass.eq(reason_pass == DropReason.NONE)]
        m.d.sync += [b3_reason_pass.eq(reason_pass), b3_egress_pass.eq(egress_pass), b3_policeable.eq(policeable),
                     b3_mirror_pass.eq(mirror_pass),
                     b3_plain_pass.eq(~b2_mirror_in & b2_mirror_out & sent_selected.any()
                                      & ~(sent_selected & b2_tagged).any()),
                     b3_mirror_in.eq(b2_mirror_in), b3_storm_reason.eq(b2_storm_reason)]

        # B3: the storm bucket's verdict.
        storm_drop = Signal()
        m.d.comb += [storm_drop.eq(b3_policeable & verdict.policed & ~verdict.enough),
                     storm.pay.eq(b3 & b3_policeable & verdict.policed & verdict.enough)]
        reason = Mux(storm_drop, b3_storm_reason, b3_reason_pass)
        egress = Mux(storm_drop, 0, b3_egress_pass)
        mirror = Mux(storm_drop, b3_mirror_in, b3_mirror_pass)
        mirror_plain = ~storm_drop & b3_plain_pass
        all_egress = Signal(n)
        m.d.comb += all_egress.eq(egress | Mux(mirror, mirror_dest, 0))

        m.d.sync += [self.desc.valid.eq(b3), self.record.valid.eq(b3),
                     self.loop_event.eq(b3 & b3_carry.loop), self.storm_event.eq(b3 & storm_drop),
                     self.learn_outcome.eq(Mux(b3, b3_carry.outcome, LearnOutcome.NONE))]
        d, rec = self.desc.payload, self.record.payload
        with m.If(b3):
            m.d.sync += back_ptr.eq(back_ptr + 1)
            m.d.sync += [
                d.drop.eq(Mux(storm_drop, b3_none_storm, b3_none_pass)), d.egress.eq(all_egress),
                d.beats.eq((bmeta.frame_len + (bpb - 1)) >> (bpb.bit_length() - 1)),
                d.vlan.eq(b3_carry.vlan), d.qinq.eq(b3_carry.qinq), d.pcp_dei.eq(b3_carry.pcp_dei),
                d.in_tagged.eq(b3_carry.tagged), d.in_priority.eq(b3_carry.priority), d.mirror_plain.eq(mirror_plain),
                rec.meta.eq(bmeta), rec.in_port.eq(bp.in_port), rec.rx_error.eq(bp.rx_error),
                rec.verdict.eq(Mux(~storm_drop & b3_forward_pass, Verdict.FORWARD, Verdict.DROP)),
                rec.reason.eq(reason), rec.egress.eq(all_egress),
            ]
        # Blocks: set by loop guard, cleared by the driver.
        m.d.comb += blocked_next.eq((blocked | Mux(b1, newly_blocked, 0)) & ~self.unblock)
        m.d.sync += blocked.eq(blocked_next)
        return m
