"""VLAN tag editing on a port's egress: insert, strip or rewrite the 4 bytes after the MAC addresses.

A frame stored once in the shared buffer leaves each port with that port's tagging (docs/switch.md,
"Egress tagging"): a trunk adds the tag of a VLAN it does not send native, an access port or a
native VLAN strips it, a priority-tagged frame leaving a trunk tagged gets its VID written. One
:class:`TagEdit` per egress port does that per frame, streaming, with no frame buffer.
"""

from functools import reduce
from operator import or_
from types import SimpleNamespace

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.lib.stream import AXIStreamSignature

__all__ = ["TagOp", "TagEdit", "TAG_OFFSET", "TAG_BYTES", "EDIT_LAYOUT"]

#: Where a VLAN tag sits: after the destination and source MAC addresses.
TAG_OFFSET = 12
TAG_BYTES = 4


class TagOp(enum.Enum, shape=2):
    """What :class:`TagEdit` does to one frame."""
    KEEP = 0       # unchanged
    INSERT = 1     # 4 bytes more: ``tag`` after the MACs
    STRIP = 2      # 4 bytes fewer: bytes 12-15 removed (what a shorter frame has of them)
    REWRITE = 3    # bytes 12-15 become ``tag`` (what a shorter frame has of them)


#: The per-frame command: the operation and the tag, TPID then TCI, in wire order (``tag`` bits
#: 31-24 are byte 12 on the wire).
EDIT_LAYOUT = data.StructLayout({"op": TagOp, "tag": 32})


class TagEdit(wiring.Component):
    """Applies one :class:`TagOp` per frame to an AXI-Stream.

    ``edit`` is taken ahead of its frame (two are held: the current frame's and the next one's;
    a frame's first beat waits for its edit). One beat per cycle,
    except that a frame which grows past its last beat (insert) or whose last beat cannot be
    sent before the next beat is seen (strip) takes one cycle more. A strip delays every beat by
    one (it needs 4 bytes of the following beat). Output is registered; ``s_axis.tready`` follows
    ``m_axis.tready`` combinationally.

    Members
    -------
    edit: In(stream.Signature(EDIT_LAYOUT))
    s_axis: In(AXIStreamSignature(data_width, user_width))
    m_axis: Out(AXIStreamSignature(data_width, user_width))
    """

    def __init__(self, data_width: int, user_width: int = 1):
        if data_width % 8 or data_width // 8 < 2 * TAG_BYTES:
            raise ValueError(f"TagEdit needs at least {2 * TAG_BYTES} bytes per beat, not a {data_width}-bit bus")
        self.bytes_per_beat = data_width // 8
        sig = AXIStreamSignature(data_width, user_width)
        super().__init__({"edit": In(stream.Signature(EDIT_LAYOUT)), "s_axis": In(sig), "m_axis": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        nb = self.bytes_per_beat
        split = TAG_OFFSET // nb            # the beat holding byte 12
        at = TAG_OFFSET - split * nb        # byte 12's lane in it
        s, o = self.s_axis, self.m_axis
        tb = TAG_BYTES

        def lanes(sig):
            return [sig[8 * i:8 * i + 8] for i in range(nb)]

        # Two edit slots, filled in turn from the edit port (`wr`) and used in turn by the frames
        # (`cur`), so the next frame's edit is there when its first beat is. Why slots: with a
        # current and a next register, a frame's end copied the next edit into the current one, and
        # that load of the 32-bit tag off the handshake (end flags, `out_free`, then the tag's
        # enable across the editor) was the fan-out's critical path. Now the end only moves `cur`;
        # the data path reads the tag through a multiplexer on that register. The few control bits
        # every decision reads (the op and its decoded flags, the frame's first end flags, whether
        # an edit is current) are kept as registers of the current slot, reloaded at the end.
        slot_op = [Signal(TagOp, name=f"slot_op_{k}") for k in range(2)]
        slot_tag = [Signal(32, name=f"slot_tag_{k}") for k in range(2)]
        slot_ins = [Signal(name=f"slot_ins_{k}") for k in range(2)]
        slot_strip = [Signal(name=f"slot_strip_{k}") for k in range(2)]
        slot_valid = [Signal(name=f"slot_valid_{k}") for k in range(2)]
        wr, cur = Signal(), Signal()
        op, cur_valid = Signal(TagOp), Signal()
        slot_tag_lanes = [[t[24 - 8 * i:32 - 8 * i] for i in range(tb)] for t in slot_tag]

        # Input beats taken in this frame, saturating past the split beat: insert and rewrite look at
        # the incoming beat (index ``beat``), strip at the held one (index ``beat - 1``).
        beat = Signal(range(split + 3))
        # Registered comparisons of ``beat`` with the split beat (one LUT level less in front of the
        # output multiplexers): incoming beat before / at it, held beat before / at it.
        in_lt, in_eq = Signal(init=split > 0), Signal(init=split == 0)
        h_lt, h_eq = Signal(init=True), Signal()

        # Whether a taken last beat ends the output frame, as flags registered with the state they
        # come from (why: `ends` moves to the next edit and resets the frame state; decoded from `op`,
        # the beat counter and `held_valid` it took three LUT levels before the handshake, and with
        # seven editors spread over the die that was the fan-out's critical path). The beat ends the
        # frame when `end_last` is set, or when it is packed short of lane n and `end_short[n]` is:
        # keep and rewrite always; insert before the split beat (a short frame takes no tag) or with
        # its 4 spill lanes empty; strip from the held split beat on, with its bytes in 4 lanes.
        end_short_lanes = sorted({nb - tb, tb})
        end_last = Signal()
        end_short = {n: Signal(name=f"end_short_{n}") for n in end_short_lanes}

        def end_flags(ins, strip, value):
            short = {n: 0 for n in end_short_lanes}
            short[nb - tb] = short[nb - tb] | ins
            short[tb] = short[tb] | (strip & (value >= split + 1))
            return [~(ins | strip) | (ins & (value < split))] + [short[n] for n in end_short_lanes]
        end_regs = [end_last, *end_short.values()]

        # The current edit's decoded flags, and each slot's (decoded as it is filled, with the end
        # flags of its frame's first beat, so that moving to a slot is a copy).
        is_ins, is_strip = Signal(), Signal()
        slot_start = [[Signal(name=f"slot_end_{k}_{j}") for j in range(len(end_regs))] for k in range(2)]
        payload = self.edit.payload
        fill = Signal()
        m.d.comb += [self.edit.ready.eq(~Mux(wr, slot_valid[1], slot_valid[0])),
                     fill.eq(self.edit.valid & self.edit.ready)]
        fills = [fill & (wr == k) for k in range(2)]
        for k in range(2):
            with m.If(fills[k]):
                ins, strip = payload.op == TagOp.INSERT, payload.op == TagOp.STRIP
                m.d.sync += [slot_op[k].eq(payload.op), slot_tag[k].eq(payload.tag),
                             slot_ins[k].eq(ins), slot_strip[k].eq(strip),
                             *(r.eq(v) for r, v in zip(slot_start[k], end_flags(ins, strip, 0)))]
        with m.If(fill):
            m.d.sync += wr.eq(~wr)

        carry = Signal(8 * tb)            # insert: the last 4 bytes of the previous input beat
        carry_keep = Signal(tb)
        carry_user = Signal.like(s.tuser)
        held = Signal.like(s.tdata)       # strip: the beat waiting for 4 bytes of the next one
        held_keep = Signal.like(s.tkeep)
        held_user = Signal.like(s.tuser)
        held_valid = Signal()
        flush = Signal()                  # one more output beat, no input taken

        out_free = ~o.tvalid | o.tready
        x, xk = lanes(s.tdata), [s.tkeep[i] for i in range(nb)]

        def at_most(n):
            # A packed beat holds at most n bytes when lane n is not kept (no adder tree).
            return ~xk[n]

        # The output registers load whenever they are free, whether or not a beat is emitted: their
        # enable is then `out_free` (one LUT from a flip-flop and tready), not the decode of what
        # this cycle does, which at W=512 must reach a thousand flip-flops.
        nxt = {f: Signal.like(getattr(o, f), name=f"next_{f}")
               for f in ("tdata", "tkeep", "tlast", "tuser", "tvalid")}
        with m.If(out_free):
            m.d.sync += [getattr(o, f).eq(v) for f, v in nxt.items()]

        take = Signal()
        m.d.comb += [s.tready.eq(out_free & ~flush & cur_valid), take.eq(s.tvalid & s.tready)]

        zero, one, nil = Const(0, 8), Const(1, 1), Const(0, 1)
        # What the next output beat holds, as cases over the frame state (`st`: flush, op, in_lt,
        # in_eq, h_lt, h_eq, cur). The cases partition the states; each is a condition and the
        # beat's lanes, keep bits, tlast and tuser. The data never waits for the handshake decode:
        # the conditions become registered selects below.
        cases = []

        def case(cond, data_lanes, keep_bits, last, user):
            cases.append((cond, list(data_lanes), list(keep_bits), [last], [user]))

        def tag_cases(cond, data_lanes_with, keep_bits, last, user):
            # One case per slot, the tag read from slot `cur` (no multiplexer in front of the lanes).
            for k in range(2):
                case(lambda st, k=k: cond(st) & (st.cur == k), data_lanes_with(slot_tag_lanes[k]), keep_bits,
                     last, user)

        # -- insert: output from the incoming beat and the carry ------------------------------------
        carry_lanes = [carry[8 * i:8 * i + 8] for i in range(tb)]
        ins_at_keep = [xk[i] if i < at else one if i < at + tb else xk[i - tb] for i in range(nb)]
        ins_after = ([carry_lanes[i] if i < tb else x[i - tb] for i in range(nb)],
                     [carry_keep[i] if i < tb else xk[i - tb] for i in range(nb)])
        spill_keep = Cat(*xk[nb - tb:])
        ins_short = in_lt | (in_eq & s.tlast & at_most(at))
        # A taken last beat that does not end the frame leaves one more output beat (a flush):
        # insert's spilled 4 bytes, or strip's held beat whose end did not fit in 4 lanes.
        ends_if_taken = s.tlast & (end_last | Cat(*(at_most(n) & end_short[n] for n in end_short_lanes)).any())
        # -- strip: output from the held beat A and 4 bytes of the next beat N -----------------------
        # N completes the output beat (and the frame) when it is the last and all its bytes fit in
        # the 4 lanes the shift takes from it; an A before the split takes none of N (strip's
        # `ends_if_taken`).
        a, ak = lanes(held), [held_keep[i] for i in range(nb)]

        def strip_cases(cond, n_lanes, n_keep, last, user):
            case(lambda st: cond(st) & st.h_lt, a, ak, last, user)
            case(lambda st: cond(st) & ~st.h_lt & st.h_eq,
                 [a[i] if i < at else a[i + tb] if i < nb - tb else n_lanes[i - (nb - tb)] for i in range(nb)],
                 [ak[i] if i < at else ak[i + tb] if i < nb - tb else n_keep[i - (nb - tb)] for i in range(nb)],
                 last, user)
            case(lambda st: cond(st) & ~st.h_lt & ~st.h_eq,
                 [a[i + tb] if i < nb - tb else n_lanes[i - (nb - tb)] for i in range(nb)],
                 [ak[i + tb] if i < nb - tb else n_keep[i - (nb - tb)] for i in range(nb)], last, user)

        case(lambda st: st.flush & (st.op == TagOp.INSERT), carry_lanes + [zero] * (nb - tb),
             [carry_keep[i] for i in range(tb)] + [nil] * (nb - tb), one, carry_user)
        strip_cases(lambda st: st.flush & ~(st.op == TagOp.INSERT), [zero] * tb, [nil] * tb, one, held_user)
        case(lambda st: ~st.flush & (st.op == TagOp.KEEP), x, xk, s.tlast, s.tuser)
        tag_cases(lambda st: ~st.flush & (st.op == TagOp.REWRITE) & st.in_eq,
                  lambda t: [t[i - at] if at <= i < at + tb else x[i] for i in range(nb)], xk, s.tlast, s.tuser)
        case(lambda st: ~st.flush & (st.op == TagOp.REWRITE) & ~st.in_eq, x, xk, s.tlast, s.tuser)
        # A frame that ends before byte 12 has nowhere to take a tag: it passes as it is. Its bytes
        # are where the insert has them, so only tkeep depends on the input here.
        case(lambda st: ~st.flush & (st.op == TagOp.INSERT) & st.in_lt, x, xk, s.tlast, s.tuser)
        short_here = s.tlast & at_most(at)
        tag_cases(lambda st: ~st.flush & (st.op == TagOp.INSERT) & ~st.in_lt & st.in_eq,
                  lambda t: [x[i] if i < at else t[i - at] if i < at + tb else x[i - tb] for i in range(nb)],
                  [Mux(short_here, xk[i], ins_at_keep[i]) for i in range(nb)], ends_if_taken, s.tuser)
        case(lambda st: ~st.flush & (st.op == TagOp.INSERT) & ~st.in_lt & ~st.in_eq, *ins_after,
             ends_if_taken, s.tuser)
        strip_cases(lambda st: ~st.flush & (st.op == TagOp.STRIP), x[:tb], xk[:tb], ends_if_taken, s.tuser)

        strip_waits = is_strip & ~held_valid   # the first beat of a strip only fills `held`
        m.d.comb += nxt["tvalid"].eq(Mux(flush, 1, take & ~strip_waits))
        with m.If(take):
            with m.If(is_ins):
                m.d.sync += [carry.eq(Cat(*x[nb - tb:])), carry_keep.eq(Mux(ins_short, 0, spill_keep)),
                             carry_user.eq(s.tuser)]
            with m.If(is_strip):
                m.d.sync += [held.eq(s.tdata), held_keep.eq(s.tkeep), held_user.eq(s.tuser)]

        # How the frame state moves on. Three next values of each state register are prepared from
        # registers: `step` (a beat is taken and the frame goes on), `end` (the frame's last output
        # beat goes out: a flush beat, or a taken beat that `ends_if_taken`) and `rest` (neither);
        # the handshake only picks one in front of the flip-flop, `moves` (one LUT of the handshake)
        # then `flush | ends_if_taken`. Why: the end decided first and the next values computed
        # after it took six LUT levels from `tkeep` to the end flags. No `cur_valid` in the end
        # (fewer inputs): while no edit is current the frame state is at a frame's start already,
        # which an end only sets again; it moves to the other slot only when an edit was current.
        # While no edit is current, the current edit's registers follow slot `cur` until it fills.
        moves = Signal()
        m.d.comb += moves.eq(out_free & (flush | s.tvalid))
        finishing = flush | ends_if_taken

        def next_state(reg, *, step, end, rest):
            m.d.sync += reg.eq(Mux(moves, Mux(finishing, end, Mux(cur_valid, step, rest)), rest))

        def this_slot(values):
            return Mux(cur, values[1], values[0])

        def other_slot(values):
            return Mux(cur, values[0], values[1])

        following = Mux(beat == split + 2, beat, beat + 1)
        # The three next values of the state the output cases read.
        nexts = {"step": {}, "end": {}, "rest": {}}
        for name, reg, value in (("beat", beat, lambda v: v), ("in_lt", in_lt, lambda v: v < split),
                                 ("in_eq", in_eq, lambda v: v == split), ("h_lt", h_lt, lambda v: v < split + 1),
                                 ("h_eq", h_eq, lambda v: v == split + 1)):
            next_state(reg, step=value(following), end=value(0), rest=reg)
            for when, v in (("step", value(following)), ("end", value(0)), ("rest", reg)):
                nexts[when][name] = v
        for when, v in (("step", s.tlast), ("end", Const(0)), ("rest", flush)):
            nexts[when]["flush"] = v
        for when, v in (("step", op), ("end", Mux(cur_valid, other_slot(slot_op), this_slot(slot_op))),
                        ("rest", Mux(cur_valid, op, this_slot(slot_op)))):
            nexts[when]["op"] = v
        for when, v in (("step", cur), ("end", cur ^ cur_valid), ("rest", cur)):
            nexts[when]["cur"] = v
        state_at = {when: SimpleNamespace(**values) for when, values in nexts.items()}

        # The output multiplexer's selects, registered (why: decoded from the state registers, they
        # fanned out to every data bit two LUT levels late, the fan-out's critical path in round 13).
        # Per output position the cases fall into groups that take the same source (a lane of the
        # incoming beat, of the held beat, of the carry, of a slot's tag); one select per group,
        # shared by the positions whose cases group alike. A position is the OR of its selected
        # sources (the cases are exclusive).
        selects = {}

        def select(group):
            if group not in selects:
                sel = selects[group] = Signal(name=f"sel_{len(selects)}")
                conds = {when: Cat(*(cases[c][0](state_at[when]) for c in group)).any() for when in state_at}
                next_state(sel, **conds)
            return selects[group]

        def pick(field, position):
            groups = {}
            for c, case_ in enumerate(cases):
                source = case_[field][position]
                if isinstance(source, Const) and source.value == 0:
                    continue
                groups.setdefault(id(source), (source, []))[1].append(c)
            terms = [Mux(select(tuple(group)), source, 0) for source, group in groups.values()]
            return reduce(or_, terms) if terms else Const(0, len(cases[0][field][position]))

        m.d.comb += [nxt["tdata"].eq(Cat(*(pick(1, i) for i in range(nb)))),
                     nxt["tkeep"].eq(Cat(*(pick(2, i) for i in range(nb)))),
                     nxt["tlast"].eq(pick(3, 0)), nxt["tuser"].eq(Mux(nxt["tlast"], pick(4, 0), 0))]
        for j, (reg, step) in enumerate(zip(end_regs, end_flags(is_ins, is_strip, following))):
            starts = [slot_start[0][j], slot_start[1][j]]
            next_state(reg, step=step, end=Mux(cur_valid, other_slot(starts), this_slot(starts)),
                       rest=Mux(cur_valid, reg, this_slot(starts)))
        next_state(held_valid, step=held_valid | is_strip, end=0, rest=held_valid)
        next_state(flush, step=s.tlast, end=0, rest=flush)     # a step with tlast is a last beat that does not end
        for reg, slots in ((op, slot_op), (is_ins, slot_ins), (is_strip, slot_strip), (cur_valid, slot_valid)):
            next_state(reg, step=reg, end=Mux(cur_valid, other_slot(slots), this_slot(slots)),
                       rest=Mux(cur_valid, reg, this_slot(slots)))
        next_state(cur, step=cur, end=cur ^ cur_valid, rest=cur)
        for k in range(2):
            kept = slot_valid[k] | fills[k]
            next_state(slot_valid[k], step=kept, end=Mux(cur_valid & (cur == k), fills[k], kept), rest=kept)
        return m
