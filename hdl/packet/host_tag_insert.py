"""HostTagInsert: puts a :data:`hdl.packet.host_tag.HostTag` into a frame after its source MAC address.

The gateware half of IPS mode's NIC-to-host direction (docs/security.md, "IPS: divert and
re-inject"): placed at the host port's egress, it tags the frames the NIC diverts and passes every
other frame untouched. Not wired into NicTop yet (the gate does not divert in gateware yet).

Per frame it takes one ``s_tag`` word (``insert`` and the tag), held from the frame's first beat to
its last. With ``insert`` the output is ``frame[:12] + tag (8 bytes, wire order) + frame[12:]``:
every byte from offset 12 on comes 8 bytes later, so the block keeps the last 8 bytes of each beat
in a carry register, and a frame whose last beat had more than ``bytes_per_beat - 8`` bytes takes
one more output beat (the input waits that cycle). Frames must be at least 12 bytes long (every
frame the NIC forwards is).

Members
-------
s_axis: In(AXIStreamSignature(W, 1)), m_axis: Out(AXIStreamSignature(W, 1))
    The frames, packed (``tkeep`` contiguous from bit 0), ``tuser`` on the last beat.
s_tag: In(stream.Signature(:data:`TAG_REQUEST`))
    One per frame; ``ready`` with the frame's last output beat.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.lib.stream import AXIStreamSignature
from hdl.packet.host_tag import HOST_TAG_OFFSET, HostTag
from hdl.packet.layouts import swap_bytes

__all__ = ["HostTagInsert", "TAG_REQUEST"]

#: ``s_tag``'s payload: whether to tag the frame, and the tag.
TAG_REQUEST = data.StructLayout({"insert": 1, "tag": HostTag})


class HostTagInsert(wiring.Component):
    """Inserts the host tag after the source MAC of the frames ``s_tag`` asks for (module docstring).

    Parameters
    ----------
    data_width:
        W, 64 or wider (a beat holds at least the tag's 8 bytes).
    """

    def __init__(self, data_width: int = 64):
        if data_width < 64 or data_width % 64:
            raise ValueError(f"data_width must be a multiple of 64, not {data_width!r}")
        self.data_width = data_width
        super().__init__({"s_axis": In(AXIStreamSignature(data_width, 1)),
                          "m_axis": Out(AXIStreamSignature(data_width, 1)),
                          "s_tag": In(stream.Signature(TAG_REQUEST))})

    def __repr__(self):
        return f"HostTagInsert(data_width={self.data_width})"

    def elaborate(self, platform):
        m = Module()
        n_bytes = self.data_width // 8
        tag_bytes = HostTag.BYTES
        first_beat, split = divmod(HOST_TAG_OFFSET, n_bytes)   # the beat and byte where the tag goes
        i, o = self.s_axis, self.m_axis
        req = self.s_tag.payload
        tag = swap_bytes(Value.cast(req.tag), tag_bytes)          # wire order, first byte in bits 7:0

        beat = Signal(range(first_beat + 2))                       # input beats taken, saturating
        carry = Signal(8 * tag_bytes)                              # the input's bytes due in the next beat
        flush = Signal()                                           # the frame's extra last beat is due
        flush_keep = Signal(tag_bytes)
        flush_user = Signal.like(i.tuser)
        ones = Const((1 << tag_bytes) - 1, tag_bytes)

        # The beat in and the bytes due before it, as B + 8 bytes.
        data, keep = Signal(8 * (n_bytes + tag_bytes)), Signal(n_bytes + tag_bytes)
        with m.If(~req.insert | (beat < first_beat)):
            m.d.comb += [data.eq(i.tdata), keep.eq(i.tkeep)]
        with m.Elif(beat == first_beat):
            m.d.comb += [data.eq(Cat(i.tdata[:8 * split], tag, i.tdata[8 * split:])),
                         keep.eq(Cat(i.tkeep[:split], ones, i.tkeep[split:]))]
        with m.Else():
            m.d.comb += [data.eq(Cat(carry, i.tdata)), keep.eq(Cat(ones, i.tkeep))]
        spills = req.insert & (beat >= first_beat) & keep[n_bytes]      # the last beat needs a second beat

        m.d.comb += [i.tready.eq(o.tready & self.s_tag.valid & ~flush),
                     o.tvalid.eq(flush | (i.tvalid & self.s_tag.valid))]
        with m.If(flush):
            m.d.comb += [o.tdata.eq(carry), o.tkeep.eq(flush_keep), o.tlast.eq(1), o.tuser.eq(flush_user)]
        with m.Else():
            m.d.comb += [o.tdata.eq(data[:8 * n_bytes]), o.tkeep.eq(keep[:n_bytes]),
                         o.tlast.eq(i.tlast & ~spills), o.tuser.eq(Mux(spills, 0, i.tuser))]
        m.d.comb += self.s_tag.ready.eq(o.tvalid & o.tready & o.tlast)

        with m.If(i.tvalid & i.tready):
            m.d.sync += carry.eq(data[8 * n_bytes:])
            with m.If(i.tlast):
                m.d.sync += beat.eq(0)
                with m.If(spills):
                    m.d.sync += [flush.eq(1), flush_keep.eq(keep[n_bytes:]), flush_user.eq(i.tuser)]
            with m.Elif(beat != first_beat + 1):
                m.d.sync += beat.eq(beat + 1)
        with m.If(flush & o.tready):
            m.d.sync += flush.eq(0)
        return m
