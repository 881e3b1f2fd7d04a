"""Forwarding decision for the bump-in-the-wire slice: drop bad frames, cross-connect the rest."""

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.config import NicConfig
from hdl.packet.meta import DropReason, MalformedReason, Verdict, make_parsed_layout, make_verdict_record

__all__ = ["Forwarder", "make_descriptor_layout"]


def make_descriptor_layout(port_bits: int) -> data.StructLayout:
    """What the packet buffer needs to release one stored frame."""
    return data.StructLayout({"drop": 1, "port": port_bits})


class Forwarder(wiring.Component):
    """Turn each parsed frame into a verdict, a buffer descriptor and a record (one cycle).

    Precedence of drop reasons: ``rx_error`` (MAC-flagged frame), ``oversize``, any other malformed
    bit. Every other frame leaves by the peer port (port 0 <-> port 1).

    Members
    -------
    parsed: In(stream.Signature(parsed layout, always_ready=True))
        One pulse per frame from the parser.
    desc: Out(stream.Signature(descriptor layout, always_ready=True))
        One pulse per frame, in frame order, to the packet buffer.
    record: Out(stream.Signature(verdict record layout, always_ready=True))
        Same cycle as ``desc``: the frame's metadata and verdict (monitor, counters).
    """

    def __init__(self, config: NicConfig):
        self.config = config
        n_ports, port_bits = len(config.ports), config.port_bits
        super().__init__({
            "parsed": In(stream.Signature(make_parsed_layout(port_bits), always_ready=True)),
            "desc": Out(stream.Signature(make_descriptor_layout(port_bits), always_ready=True)),
            "record": Out(stream.Signature(make_verdict_record(port_bits, n_ports), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.parsed.payload
        rec = self.record.payload
        oversize = p.meta.malformed[MalformedReason.OVERSIZE]
        peer = p.in_port ^ 1

        m.d.sync += [self.record.valid.eq(self.parsed.valid), self.desc.valid.eq(self.parsed.valid)]
        with m.If(self.parsed.valid):
            m.d.sync += [rec.meta.eq(p.meta), rec.in_port.eq(p.in_port), rec.rx_error.eq(p.rx_error)]
            drop_reason = [
                (p.rx_error, DropReason.RX_ERROR),
                (oversize, DropReason.OVERSIZE),
                (p.meta.malformed.any(), DropReason.MALFORMED),
            ]
            with m.If(p.rx_error | p.meta.malformed.any()):
                m.d.sync += [rec.verdict.eq(Verdict.DROP), rec.egress.eq(0), self.desc.payload.drop.eq(1)]
                for i, (cond, reason) in enumerate(drop_reason):
                    with (m.If if i == 0 else m.Elif)(cond):
                        m.d.sync += rec.reason.eq(reason)
            with m.Else():
                m.d.sync += [rec.verdict.eq(Verdict.FORWARD), rec.reason.eq(DropReason.NONE),
                             rec.egress.eq(1 << peer), self.desc.payload.drop.eq(0)]
            m.d.sync += self.desc.payload.port.eq(peer)
        return m
