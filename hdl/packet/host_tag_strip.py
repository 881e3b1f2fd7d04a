"""HostTagStrip: takes the :data:`hdl.packet.host_tag.HostTag` out of a frame the host re-injects.

The gateware half of IPS mode's host-to-NIC direction (docs/security.md, "IPS: divert and
re-inject"), at the host port's ingress: a frame with a valid tag (ethertype 0x88B5 after the source
MAC, this version, ``reinject`` set, ``in_port`` and ``egress`` naming ports of this NIC, 20 bytes or
more) leaves without its 8 tag bytes, and its tag leaves on ``m_tag`` (kind ``REINJECT``); a frame
with the ethertype but a tag that is not valid leaves unchanged, kind ``BAD`` (the NIC drops it);
any other frame leaves unchanged, kind ``NONE``. The inverse of
:class:`~hdl.packet.host_tag_insert.HostTagInsert`, with the golden model's test
(:meth:`host_driver.model.nic.NicModel._reinjection`).

Every byte from offset 20 on comes 8 bytes earlier, so output beat k is made of input beats k and
k+1: the block holds one input beat (one beat of latency) and decides at the beat holding byte 12
with the next beat in view (bytes 12..19 are then all there). A frame whose last beat has more than
8 bytes (W > 64, or any frame not stripped) takes one more output beat than the input's last cycle.

Members
-------
s_axis: In(AXIStreamSignature(W, 1)), m_axis: Out(AXIStreamSignature(W, 1))
    The frames, packed (``tkeep`` contiguous from bit 0), ``tuser`` on the last beat.
m_tag: Out(stream.Signature(:data:`STRIP_RESULT`, always_ready=True))
    One per frame, with the frame's last output beat.
"""

from __future__ import annotations

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.lib.stream import AXIStreamSignature
from hdl.packet.host_tag import HOST_TAG_ETHERTYPE, HOST_TAG_OFFSET, HOST_TAG_VERSION, HostTag
from hdl.packet.layouts import swap_bytes

__all__ = ["HostTagStrip", "StripKind", "STRIP_RESULT"]


class StripKind(enum.IntEnum):
    """What a frame on the host port's ingress carried."""
    NONE = 0        # no host tag: a frame the host sends as any port's frame
    REINJECT = 1    # a valid re-injection: tag stripped, the frame goes where the tag says
    BAD = 2         # the tag's ethertype with a tag the NIC does not take: dropped


#: ``m_tag``'s payload.
STRIP_RESULT = data.StructLayout({"kind": 2, "tag": HostTag})


class HostTagStrip(wiring.Component):
    """Strips a valid host tag and reports it per frame (module docstring).

    Parameters
    ----------
    data_width:
        W, a multiple of 64.
    n_ports:
        The NIC's ports: a tag naming another is not valid.
    """

    def __init__(self, data_width: int = 64, n_ports: int = 2):
        if data_width < 64 or data_width % 64:
            raise ValueError(f"data_width must be a multiple of 64, not {data_width!r}")
        self.data_width, self.n_ports = data_width, n_ports
        super().__init__({"s_axis": In(AXIStreamSignature(data_width, 1)),
                          "m_axis": Out(AXIStreamSignature(data_width, 1)),
                          "m_tag": Out(stream.Signature(STRIP_RESULT, always_ready=True))})

    def __repr__(self):
        return f"HostTagStrip(data_width={self.data_width}, n_ports={self.n_ports})"

    def elaborate(self, platform):
        m = Module()
        n_bytes = self.data_width // 8
        tag_bytes = HostTag.BYTES
        first, split = divmod(HOST_TAG_OFFSET, n_bytes)     # the beat and byte where the tag starts
        i, o = self.s_axis, self.m_axis

        h_data, h_keep, h_user = Signal(self.data_width), Signal(n_bytes), Signal()
        h_valid = Signal()                                   # an input beat is held
        h_index = Signal(range(first + 2))                   # its index in the frame, saturating
        tail = Signal()                                      # the held beat is the frame's last
        strip, kind = Signal(), Signal(2)
        tag_reg = Signal(HostTag)

        next_data = Mux(tail, 0, i.tdata)
        next_keep = Mux(tail, 0, i.tkeep)
        both_data, both_keep = Cat(h_data, next_data), Cat(h_keep, next_keep)
        # Bytes 12..19 when the held beat is the one holding byte 12 (wire order -> the layout's).
        tag = HostTag(swap_bytes(both_data[8 * split:8 * (split + tag_bytes)], tag_bytes))
        whole = both_keep[split + tag_bytes - 1]
        n = self.n_ports
        tpid_ok = tag.tpid == HOST_TAG_ETHERTYPE
        valid = (whole & tpid_ok & (tag.version == HOST_TAG_VERSION) & tag.reinject & (tag.in_port < n)
                 & ((tag.egress >> n) == 0))
        decide = h_valid & (h_index == first) & (i.tvalid | tail)
        strip_now = Mux(decide, valid, strip)
        kind_now = Mux(decide, Mux(valid, StripKind.REINJECT, Mux(whole & tpid_ok, StripKind.BAD, StripKind.NONE)),
                       kind)

        # Output beat k from input beats k (held) and k + 1: before byte 12 as it is, after it shifted.
        shifted_data = both_data[8 * tag_bytes:8 * (n_bytes + tag_bytes)]
        shifted_keep = both_keep[tag_bytes:n_bytes + tag_bytes]
        at_tag_data = Cat(h_data[:8 * split], both_data[8 * (split + tag_bytes):8 * (n_bytes + tag_bytes)])
        at_tag_keep = Cat(h_keep[:split], both_keep[split + tag_bytes:n_bytes + tag_bytes])
        with m.If(~strip_now | (h_index < first)):
            m.d.comb += [o.tdata.eq(h_data), o.tkeep.eq(h_keep)]
        with m.Elif(h_index == first):
            m.d.comb += [o.tdata.eq(at_tag_data), o.tkeep.eq(at_tag_keep)]
        with m.Else():
            m.d.comb += [o.tdata.eq(shifted_data), o.tkeep.eq(shifted_keep)]
        # Stripped, the next beat's bytes all fit into this one when it has at most 8: this is the last.
        fits = ~next_keep[tag_bytes] if n_bytes > tag_bytes else Const(1)
        ends_here = strip_now & i.tlast & fits
        m.d.comb += [o.tvalid.eq(h_valid & (i.tvalid | tail)),
                     o.tlast.eq(tail | ends_here),
                     o.tuser.eq(Mux(tail, h_user, ends_here & i.tuser)),
                     i.tready.eq(~h_valid | (o.tready & ~tail))]

        done = o.tvalid & o.tready & o.tlast
        m.d.comb += [self.m_tag.valid.eq(done), self.m_tag.payload.kind.eq(kind_now),
                     self.m_tag.payload.tag.eq(Mux(decide, tag, tag_reg))]
        with m.If(o.tvalid & o.tready & decide):
            m.d.sync += [strip.eq(valid), kind.eq(kind_now), tag_reg.eq(tag)]
        with m.If(i.tvalid & i.tready):
            m.d.sync += [h_data.eq(i.tdata), h_keep.eq(i.tkeep), h_user.eq(i.tuser), h_valid.eq(1)]
            with m.If(h_valid & (h_index != first + 1)):
                m.d.sync += h_index.eq(h_index + 1)
            with m.If(~h_valid):
                m.d.sync += h_index.eq(0)
            with m.If(i.tlast):
                m.d.sync += tail.eq(1)
        with m.If(done):
            m.d.sync += [h_valid.eq(0), tail.eq(0), strip.eq(0), kind.eq(StripKind.NONE), h_index.eq(0)]
        return m
