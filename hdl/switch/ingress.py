"""A port's ingress FIFO: absorbs bursts in block RAM and drops whole frames when full.

A MAC cannot be paused in the middle of a frame (802.3x pause is coarse and off by default), so a
port that runs out of room must drop, and drop whole frames: never a truncated or corrupted one.
This FIFO takes every beat its port offers (``s_axis.tready`` is a constant 1) and stores frames
whole before it lets them out (store-and-forward, with a rollback of the write pointer).

Ref: IEEE 802.3-2018 Annex 31B (PAUSE), the flow control a NIC port cannot count on.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.lib.ram import OutputQueue, PipelinedRam
from hdl.lib.stream import AXIStreamSignature

__all__ = ["IngressFifo", "ingress_depth"]


def ingress_depth(fifo_bytes: int, data_width: int) -> int:
    """Beats an ingress FIFO of ``fifo_bytes`` holds at ``data_width`` bits per beat."""
    return fifo_bytes // (data_width // 8)


class IngressFifo(wiring.Component):
    """Per-port ingress FIFO that never back-pressures its source and drops whole frames.

    **Admission: store-and-forward with a rollback of the write pointer.** Beats are written as
    they come; the frame becomes visible to the reader only when its last beat is written (the
    *commit* pointer moves then). If the FIFO fills in the middle of a frame, the write pointer
    goes back to the last commit, the rest of the frame is taken and thrown away, and the drop
    is counted at the frame's last beat. So the reader never sees a partial frame, and a frame
    is dropped only when it really did not fit. Why not cut-through with an admission test at the
    first beat (admit only with room for a maximum frame): with jumbo frames (9216 bytes) that
    test keeps 9216 bytes of every FIFO unused for bursts of small frames, and a FIFO smaller
    than a jumbo frame could admit nothing. The cost of store-and-forward is latency: a frame
    waits for its own last beat (its length in beats) plus a few cycles of RAM pipeline. It also
    means a frame leaves at one beat per cycle without a gap, which is what the shared pipeline's
    arbiter wants.

    **A frame longer than the FIFO** (more than ``depth`` beats) can never be stored whole: it
    overflows every time and is dropped whole, counted as ``drop_too_long`` rather than
    ``drop_full``, and the port goes on with the next frame.

    Parameters
    ----------
    data_width:
        W, the stream width in bits.
    depth:
        Capacity in beats (a power of two, at least 4): ``ingress_fifo_bytes / (W / 8)``.

    Members
    -------
    s_axis: In(AXIStreamSignature(W, 1))
        From the port (MAC). ``tready`` is always 1: the source never waits.
    m_axis: Out(AXIStreamSignature(W, 1))
        Whole frames, in order, each beat as received; ``tvalid`` and the payload come from
        flip-flops.
    frame_end: Out(1)
        A frame's last beat came in this cycle (kept or dropped).
    drop_full: Out(1)
        ... and the frame was dropped because the FIFO filled up (``frame_end`` is high too).
    drop_too_long: Out(1)
        ... and the frame was dropped because it is longer than the whole FIFO.
    """

    def __init__(self, data_width: int, depth: int):
        self.data_width, self.depth = data_width, depth
        if depth < 4 or depth & (depth - 1):
            raise ValueError(f"ingress FIFO depth must be a power of two of at least 4 beats, not {depth!r}")
        sig = AXIStreamSignature(data_width, 1)
        self.beat_layout = data.StructLayout({"tdata": data_width, "tkeep": data_width // 8, "tlast": 1,
                                              "tuser": 1})
        super().__init__({"s_axis": In(sig), "m_axis": Out(sig), "frame_end": Out(1), "drop_full": Out(1),
                          "drop_too_long": Out(1)})

    def __repr__(self):
        return f"IngressFifo(data_width={self.data_width}, depth={self.depth})"

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        abits = (depth - 1).bit_length()
        width = self.beat_layout.size
        m.submodules.ram = ram = PipelinedRam(width, depth)
        m.submodules.queue = queue = OutputQueue(width=width, depth=_QUEUE)
        s = self.s_axis

        # Pointers with one extra bit: equal low bits and different top bits means full.
        w_ptr = Signal(abits + 1)          # next slot to write (rolls back on overflow)
        commit = Signal(abits + 1)         # end of the last whole frame written
        r_ptr = Signal(abits + 1)          # next slot to read out of the RAM; slots before it are free
        dropping = Signal()                # throwing away the rest of a frame that did not fit
        beats = Signal(range(depth + 1))   # beats of the current frame so far, saturating at depth

        m.d.comb += s.tready.eq(1)
        take = s.tvalid
        full = (w_ptr[:abits] == r_ptr[:abits]) & (w_ptr[abits] != r_ptr[abits])
        write = take & ~dropping & ~full
        overflow = take & ~dropping & full
        with m.If(write):
            m.d.sync += w_ptr.eq(w_ptr + 1)
            with m.If(s.tlast):
                m.d.sync += commit.eq(w_ptr + 1)
        with m.If(overflow):
            m.d.sync += w_ptr.eq(commit)
        with m.If(take):
            m.d.sync += [dropping.eq(~s.tlast & (dropping | full)),
                         beats.eq(Mux(s.tlast, 0, Mux(beats == depth, depth, beats + 1)))]
        dropped = take & s.tlast & (dropping | full)
        too_long = beats >= depth          # this beat is number beats + 1
        m.d.comb += [self.frame_end.eq(take & s.tlast), self.drop_full.eq(dropped & ~too_long),
                     self.drop_too_long.eq(dropped & too_long)]

        # The RAM write is registered (why: the block RAMs sit apart from the port's logic), so a
        # word is in the RAM one cycle after it was taken; the reader sees the commit a cycle late
        # to match.
        beat = Signal(self.beat_layout)
        m.d.comb += [beat.tdata.eq(s.tdata), beat.tkeep.eq(s.tkeep), beat.tlast.eq(s.tlast),
                     beat.tuser.eq(s.tuser[0])]
        m.d.sync += [ram.w_addr.eq(w_ptr[:abits]), ram.w_data.eq(beat.as_value()), ram.w_en.eq(write)]
        commit_seen = Signal(abits + 1)
        m.d.sync += commit_seen.eq(commit)

        # Read ahead into a small flip-flop queue, as hdl.lib.ram.BeatFifo does, so the RAM's two
        # cycles of read latency never stall a frame on its way out.
        in_flight = Signal(2)
        arrive = Signal(2)
        room = (queue.level + in_flight) < _QUEUE
        issue = (r_ptr != commit_seen) & room
        m.d.comb += [ram.r_addr.eq(r_ptr[:abits]), ram.r_en.eq(1)]
        with m.If(issue):
            m.d.sync += r_ptr.eq(r_ptr + 1)
        m.d.sync += [arrive.eq(Cat(issue, arrive[0])), in_flight.eq(in_flight + issue - arrive[1])]
        m.d.comb += [queue.w_data.eq(ram.r_data), queue.w_en.eq(arrive[1])]

        out = data.View(self.beat_layout, queue.r_data)
        m.d.comb += [self.m_axis.tvalid.eq(queue.r_rdy), self.m_axis.tdata.eq(out.tdata),
                     self.m_axis.tkeep.eq(out.tkeep), self.m_axis.tlast.eq(out.tlast),
                     self.m_axis.tuser.eq(out.tuser), queue.r_en.eq(self.m_axis.tready)]
        return m


#: Words of the flip-flop output queue: the RAM's two cycles of read latency, plus slack.
_QUEUE = 5
