"""Per-port output queues: the switch's packet buffer output fanned out to every egress port.

The shared packet buffer sends each kept frame once, with its descriptor (egress mask, length,
tagging). :class:`EgressFanout` writes it into the queue of every port in the mask **at once**,
so the buffer's reader never waits on a port: a port takes the frame only if, at its first beat,
its queue has room for the whole frame (and its edit queue for one more command); otherwise the
frame is dropped for that port alone and counted (``queue_drop``). One stalled egress port thus
fills its own queue and never blocks another. After its queue, each port tags the frame for
itself (:class:`hdl.switch.tag_edit.TagEdit`: insert, strip or rewrite the 802.1Q tag).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hdl.config import NicConfig
from hdl.lib.skid import RegisterSlice
from hdl.lib.stream import AXIStreamSignature
from hdl.lib.timing import Fanout
from hdl.profile import target_for
from hdl.switch.stage import make_switch_descriptor_layout
from hdl.switch.tag_edit import EDIT_LAYOUT, TagEdit, TagOp

__all__ = ["EgressFanout", "EditQueue", "EDIT_QUEUE_DEPTH"]

#: Frames a port's queue can hold at once (its edit commands wait in a LUT-RAM FIFO this deep).
EDIT_QUEUE_DEPTH = 32

TPID_8021Q, TPID_8021AD = 0x8100, 0x88A8


class EgressFanout(wiring.Component):
    """Output queues and egress tagging of every port (see the module docstring).

    Members
    -------
    s_axis: In(AXIStreamSignature(W, 1))
        The packet buffer's output; always ready.
    s_desc: In(switch descriptor)
        The descriptor of the frame on ``s_axis`` (constant during the frame).
    port_trunk: In(n), port_pvid_<i>: In(12), mirror_to: In(port_bits)
        The ports' tagging (the switch's registers).
    m_axis_<i>: Out(AXIStreamSignature(W, 1)) per port (``self.outputs[i]``)
    queue_drop: Out(n)
        Pulse per port: a frame for it was dropped, its queue being full.
    """

    def __init__(self, config: NicConfig):
        self.config = config
        self.target = target_for(config)
        n, w = len(config.ports), config.data_width
        beats = config.switch.egress_queue_bytes // config.bytes_per_beat
        #: Each queue's capacity in beats: the configured bytes, rounded up to a power of two.
        self.queue_beats = 1 << (beats - 1).bit_length()
        members = {
            "s_axis": In(AXIStreamSignature(w, 1)),
            "s_desc": In(make_switch_descriptor_layout(config)),
            "port_trunk": In(n), "mirror_to": In(config.port_bits),
            "queue_drop": Out(n),
        }
        members.update({f"port_pvid_{i}": In(12) for i in range(n)})
        members.update({f"m_axis_{i}": Out(AXIStreamSignature(w, 1)) for i in range(n)})
        super().__init__(members)
        self.outputs = [getattr(self, f"m_axis_{i}") for i in range(n)]

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        n, w, bpb = len(cfg.ports), cfg.data_width, cfg.bytes_per_beat
        s = self.s_axis
        m.d.comb += s.tready.eq(1)

        # One register stage: the beat, its descriptor and whether it starts a frame.
        a_valid, a_sof = Signal(), Signal()
        a_beat = Signal(w + bpb + 1, reset_less=True)
        a_desc = Signal.like(self.s_desc)
        in_frame = Signal()
        m.d.sync += a_valid.eq(s.tvalid)
        with m.If(s.tvalid):
            m.d.sync += [a_beat.eq(Cat(s.tdata, s.tkeep, s.tlast)), a_desc.eq(self.s_desc), a_sof.eq(~in_frame),
                         in_frame.eq(~s.tlast)]
        # A second stage: whether each queue has room for the frame, decided from the stage-A
        # descriptor and a queue level at most one write old (hence the one beat kept spare).
        # Stage B's valid and start-of-frame are kept as one copy per port (why: one flip-flop
        # fanned out to seven admissions spread over the die was the critical path).
        b_valid, b_start = Fanout(n, name="b_valid"), Fanout(n, name="b_start")
        b_beat = Signal(w + bpb + 1, reset_less=True)
        b_desc = Signal.like(self.s_desc)
        # Per port: the frame is for the port and its queue has room for the whole frame.
        b_cand = Signal(n)
        m.d.sync += [*b_valid.eq(a_valid), *b_start.eq(a_valid & a_sof), b_beat.eq(a_beat), b_desc.eq(a_desc)]
        admit_reg = Signal(n)
        # A third stage: the beat written into the queues that admitted its frame (why: the
        # admission went straight into each beat FIFO's write logic by its block RAMs, across the
        # die). The queue levels count the admissions, a cycle ahead of the writes: never less
        # than the words in the queue.
        c_beat = Signal(w + bpb + 1, reset_less=True)
        c_write = Signal(n)
        m.d.sync += c_beat.eq(b_beat)

        for i, out in enumerate(self.outputs):
            # The target's beat FIFO: block RAM with its output register, then flip-flops
            # (why: the RAM output straight into the tag editor's decisions missed the clock).
            beats = self.target.fifo(w + bpb + 1, self.queue_beats, slack=2)
            edits = self._edit_queue()
            tag = TagEdit(w)
            m.submodules[f"queue_{i}"], m.submodules[f"edits_{i}"], m.submodules[f"tag_{i}"] = beats, edits, tag

            edit_room = self._edit_room(m, edits, i)
            admitted = Signal(name=f"admitted_{i}")     # a word for this queue, written next cycle
            room = self._queue_room(m, i, admitted, beats.r_en & beats.r_rdy, a_desc.beats)
            m.d.sync += b_cand[i].eq(a_desc.egress[i] & room)
            admit_now = b_cand[i] & edit_room
            admit = Mux(b_start[i], admit_now, admit_reg[i])
            m.d.comb += admitted.eq(b_valid[i] & admit)
            m.d.sync += c_write[i].eq(admitted)
            m.d.comb += [beats.w_en.eq(c_write[i]), beats.w_data.eq(c_beat)]
            with m.If(b_start[i]):
                m.d.sync += admit_reg[i].eq(admit_now)
            m.d.comb += self.queue_drop[i].eq(b_start[i] & b_desc.egress[i] & ~admit_now)

            # This port's tagging of the frame, decided from the stage-A descriptor into registers of
            # this port (why: decided from the shared stage-B descriptor, the VLAN compare sat between
            # a register on one side of the die and the edit queue's LUT-RAM on the other).
            pvid = getattr(self, f"port_pvid_{i}")
            untagged_out = ~self.port_trunk[i] | (pvid == a_desc.vlan)
            a_plain = a_desc.mirror_plain & (self.mirror_to == i)
            op, plain = Signal(TagOp, name=f"tag_op_{i}"), Signal(name=f"tag_plain_{i}")
            m.d.sync += plain.eq(a_plain)
            with m.If(untagged_out):
                m.d.sync += op.eq(Mux(a_desc.in_tagged, TagOp.STRIP, TagOp.KEEP))
            with m.Elif(~a_desc.in_tagged):
                m.d.sync += op.eq(TagOp.INSERT)
            with m.Elif(a_desc.in_priority | a_plain):
                m.d.sync += op.eq(TagOp.REWRITE)
            with m.Else():
                m.d.sync += op.eq(TagOp.KEEP)
            pcp_dei = Mux(plain, 0, b_desc.pcp_dei)
            tpid = Mux(b_desc.qinq, TPID_8021AD, TPID_8021Q)
            edit = EDIT_LAYOUT(edits.w_data)
            m.d.comb += [edit.op.eq(op), edit.tag.eq(Cat(b_desc.vlan, pcp_dei, tpid)),
                         edits.w_en.eq(b_start[i] & admit_now)]

            m.d.comb += [tag.edit.payload.eq(edits.r_data), tag.edit.valid.eq(edits.r_rdy),
                         edits.r_en.eq(tag.edit.ready)]
            # A register slice between the queue and the tag editor (why: the queue's output mux
            # and the editor's decisions in one cycle did not fit).
            m.submodules[f"queue_slice_{i}"] = qslice = RegisterSlice(w, 1)
            q_data = beats.r_data
            m.d.comb += [qslice.s_axis.tdata.eq(q_data[:w]), qslice.s_axis.tkeep.eq(q_data[w:w + bpb]),
                         qslice.s_axis.tlast.eq(q_data[w + bpb]), qslice.s_axis.tuser.eq(0),
                         qslice.s_axis.tvalid.eq(beats.r_rdy), beats.r_en.eq(qslice.s_axis.tready)]
            wiring.connect(m, qslice.m_axis, tag.s_axis)
            wiring.connect(m, tag.m_axis, wiring.flipped(out))
        return m

    def _queue_room(self, m, port, admitted, read, need):
        """Whether beat queue ``port`` has room for ``need`` more words, one kept spare (stage B).

        From a count of its free words (the FIFO's own count keeps a reserve: this one is exact),
        which takes ``admitted`` words a cycle before they are written (never fewer than the queue
        holds) and the reader's ``read`` a cycle late (why: the read straight into the count,
        across the die, was the critical path). The late read is added back by choosing between
        two compares, each one carry chain from registers: ``free`` and ``free + 1`` are kept side
        by side (a carry-in to the compare made it two chains in a row).
        """
        # Down to -1 when the spare beat is in use, one less until a late read is added back.
        free = Signal(range(-2, self.queue_beats), init=self.queue_beats - 1, name=f"queue_free_{port}")
        free_1 = Signal(range(-1, self.queue_beats + 1), init=self.queue_beats, name=f"queue_free1_{port}")
        read_q = Signal(name=f"queue_read_{port}")
        m.d.sync += [read_q.eq(read), free.eq(free + read_q - admitted), free_1.eq(free_1 + read_q - admitted)]
        return Mux(read_q, free_1 >= need, free >= need)

    def _edit_queue(self):
        """The per-port FIFO of edit commands (:class:`EditQueue`)."""
        return EditQueue(EDIT_LAYOUT.size, EDIT_QUEUE_DEPTH)

    def _edit_room(self, m, edits, port):
        """Whether ``edits`` takes a write in this cycle: the SyncFIFO's ``w_rdy`` as a register.

        Why: the FIFO's own ``w_rdy``, a compare of its level, in front of the admission and then
        across the die to the beat FIFO's write register was the critical path. The register is
        exactly ``w_rdy`` (tests/switch/test_egress_amaranth.py holds it to it): a read frees a slot
        (the FIFO is not empty after a write), a write without a read takes one.
        """
        room = Signal(init=1, name=f"edit_room_{port}")
        read = edits.r_en & edits.r_rdy
        m.d.sync += room.eq(read | Mux(edits.w_en, edits.level < EDIT_QUEUE_DEPTH - 1,
                                       edits.level < EDIT_QUEUE_DEPTH))
        return room


class EditQueue(wiring.Component):
    """First-word-fall-through FIFO of LUT-RAM whose writer keeps to its room: a write is never
    refused here. Members and timing as ``amaranth.lib.fifo.SyncFIFO`` (``r_data`` straight from the
    RAM), less ``w_rdy``.

    Why: SyncFIFO gates every write with its ``w_rdy``, a compare of its level, which put that
    compare between the fan-out's admission and the LUT-RAM's write enable (the critical path);
    the fan-out decides the room itself, a cycle ahead (:meth:`EgressFanout._edit_room`). And
    ``r_rdy`` (``level != 0``) is a register of its own, its next value decided with the level's
    (why: the level compare in front of the tag editor's edit slots was a critical path).

    Members
    -------
    w_data, w_en: In; r_data, r_rdy: Out; r_en: In; level: Out(range(depth + 1))
    """

    def __init__(self, width: int, depth: int):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"EditQueue depth must be a power of two of at least 2, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({"w_data": In(width), "w_en": In(1), "r_data": Out(width), "r_rdy": Out(1),
                          "r_en": In(1), "level": Out(range(depth + 1))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.storage = storage = Memory(shape=self.width, depth=self.depth, init=[])
        wr, rd = storage.write_port(), storage.read_port(domain="comb")
        w_ptr, r_ptr = Signal(range(self.depth)), Signal(range(self.depth))
        do_read = self.r_en & self.r_rdy
        m.d.comb += [wr.addr.eq(w_ptr), wr.data.eq(self.w_data), wr.en.eq(self.w_en),
                     rd.addr.eq(r_ptr), self.r_data.eq(rd.data)]
        # Not empty next cycle: a word written, or more than one held, or one held and not read.
        more_than_one = self.level > 1
        m.d.sync += [w_ptr.eq(w_ptr + self.w_en), r_ptr.eq(r_ptr + do_read),
                     self.level.eq(self.level + self.w_en - do_read),
                     self.r_rdy.eq(self.w_en | more_than_one | (self.level[0] & ~more_than_one & ~self.r_en))]
        return m
