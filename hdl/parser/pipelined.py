"""Header parser: snoops an AXI-Stream and emits one :class:`~hdl.packet.meta.PacketMeta` per frame.

The rules are those of docs/parser.md (Ethernet, up to two VLAN tags, ARP, IPv4 with options and
fragments, IPv6 with up to two extension headers, TCP/UDP/ICMP/ICMPv6). The stream itself passes
through combinationally; only the first ``header_window`` bytes of each frame are captured.

Refs: IEEE 802.3-2018 3.1.1, IEEE 802.1Q-2018 9.6, RFC 826, RFC 791, RFC 8200, RFC 9293,
RFC 768, RFC 792, RFC 4443.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.config import NicConfig
from hdl.lib.pipeline import Pipeline
from hdl.lib.stream import AXIStreamSignature
from hdl.packet.meta import make_parsed_layout
from hdl.parser.capture import WindowCapture
from hdl.parser.ipv6_ext import Ipv6ExtensionStages
from hdl.parser.l2 import EthernetStages
from hdl.parser.l3 import L3Stages
from hdl.parser.l4 import L4Stages
from hdl.parser.record import MetaRecord
from hdl.parser.window import WindowReader

__all__ = ["Parser"]


class Parser(wiring.Component):
    """Header parser: passes ``s_axis`` to ``m_axis`` and emits one metadata record per frame.

    The stream is not touched: ``m_axis`` is ``s_axis`` (``tready`` included) with no added
    latency, and the parser only watches transfers. While a frame passes, its first
    ``header_window`` bytes are captured into a window register and its length is counted. The
    cycle after the last beat is captured, a fully pipelined chain of stages extracts the headers from a copy
    of the window, so a new frame (even a one-beat frame every cycle) can enter every cycle.
    The pipeline is free running (no enables): each stage registers raw field values and
    decision flags separately, every variable-offset read takes three stages (4:1, 4:1, then
    the rest), and only the last stage gates each ``meta`` field, with a registered clear:

    ====  =============================================================================
    (in)  the transfer is registered (a local copy of the snooped beat, bytes past tkeep
          zeroed); TPID / ethertype / IPv6 next-header compares, the top kept byte and the
          window's write enables are made on the incoming beat
    (cap) as bytes are captured: the compares, masked with tkeep, kept as flags beside the
          window
    S0    frame length, ingress port, ``rx_error``, physical port
    S1    copy from the live window: the bytes the L3 header and ethertype can come from,
          Ethernet/VLAN fields; ethertype flags selected from the capture flags; a copy of
          the frame length
    S2    the L3 header and ethertype selected (by copies of the tag flags); length compares
          and the L3 bytes available, from the length's copy
    S3    L2 outcome; IPv4 / IPv6 / ARP checks as independent flags; extension header 1
          sizes and offsets (its bytes came with the L3 header)
    S4    L3 outcome; read extension header 2 at its offset (1/3)
    S5    extension header 1 outcome; read extension header 2 (2/3); L4 offset base
    S6    read extension header 2 (3/3)
    S7    extension header 2 sizes; final L4 offset (one for each L4 word), length, protocol
    S8    extension header 2 outcome, end of the IPv6 chain; read the L4 bytes (1/3);
          L4 protocol, length and window compares
    S9    read the L4 bytes (2/3)
    S10   read the L4 bytes (3/3); L4 outcome, TCP data offset check and payload offset
          candidates (from the last read mux's inputs)
    S11   TCP data offset outcome; every field gated; drives ``meta``
    ====  =============================================================================

    Each group of stages is a class of its own module, built on one
    :class:`~hdl.lib.pipeline.Pipeline` (which delays each value to the stage that uses it):
    :class:`~hdl.parser.capture.WindowCapture` (in, cap, S0),
    :class:`~hdl.parser.l2.EthernetStages` (S1..S3), :class:`~hdl.parser.l3.L3Stages` (S3..S4),
    :class:`~hdl.parser.ipv6_ext.Ipv6ExtensionStages` (S3..S8), :class:`~hdl.parser.l4.L4Stages`
    (S8..S10) and :class:`~hdl.parser.record.MetaRecord` (S10..S11).

    For timing (ECP5 at 156.25 MHz, where the window and its copies span the die): an operand
    that comes from far across the pipeline (the frame length from the capture, the header
    bytes from the window) first crosses over into a register of its own, with no logic on
    the way; compares and adders feed registers rather than more logic; a wide select or
    clear is a register of its own, not logic on registers; and no write enable fans out over
    more than a quarter of a beat of the window. Each of these removed a path that missed
    156.25 MHz (docs/performance.md has the history).

    ``meta.valid`` rises exactly :attr:`latency` cycles after the cycle in which the frame's last
    beat was transferred, for one cycle.

    Parameters
    ----------
    config : :class:`~hdl.config.NicConfig`
        Data width, header window, maximum frame and which ports are physical.

    Members
    -------
    s_axis : ``In(AXIStreamSignature(W, user_width=1 + port_bits))``
        Frames in. ``tuser`` bit 0 is ``rx_error`` (last beat), bits ``1..`` the ingress port.
    m_axis : ``Out(AXIStreamSignature(W, user_width=1 + port_bits))``
        The same frames, unchanged.
    meta : ``Out(stream.Signature(make_parsed_layout(port_bits), always_ready=True))``
        One record per frame, in frame order; ``valid`` is a one-cycle pulse and there is no
        backpressure.
    space : ``Out(1)``
        Always 1: this parser takes a frame every cycle. (Same contract as
        :attr:`hdl.parser.sequential.SequentialParser.space`, so the top treats both alike.)

    Attributes
    ----------
    latency : int
        Cycles from the last beat's transfer to ``meta.valid``.
    """

    latency = 13

    def __init__(self, config: NicConfig):
        if not isinstance(config, NicConfig):
            raise TypeError(f"Parser config must be a NicConfig, not {config!r}")
        self._config = config
        user_width = 1 + config.port_bits
        super().__init__({
            "s_axis": In(AXIStreamSignature(config.data_width, user_width=user_width)),
            "m_axis": Out(AXIStreamSignature(config.data_width, user_width=user_width)),
            "meta": Out(stream.Signature(make_parsed_layout(config.port_bits), always_ready=True)),
            "space": Out(1),
        })

    @property
    def config(self) -> NicConfig:
        return self._config

    def __repr__(self):
        return f"Parser({self._config!r})"

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        s, o = self.s_axis, self.m_axis

        # Pass-through: the parser never stalls the stream.
        m.d.comb += [
            o.tdata.eq(s.tdata), o.tkeep.eq(s.tkeep), o.tlast.eq(s.tlast), o.tuser.eq(s.tuser),
            o.tvalid.eq(s.tvalid), s.tready.eq(o.tready),
        ]
        m.d.comb += self.space.eq(1)       # one frame per cycle: never holds the producer back

        p = Pipeline(m)
        reader = WindowReader(p, cfg.header_window)
        cap = WindowCapture(m, p, cfg, s)
        l2 = EthernetStages(p, cfg, cap)
        l3 = L3Stages(p, cfg, l2)
        ext = Ipv6ExtensionStages(p, cfg, reader, l2, l3)
        l4 = L4Stages(p, cfg, reader, l2, ext)
        record = MetaRecord(m, p, cap, l2, l3, ext, l4)
        m.d.comb += [
            self.meta.valid.eq(record.valid),
            self.meta.payload.meta.eq(record.meta),
            self.meta.payload.in_port.eq(record.in_port),
            self.meta.payload.rx_error.eq(record.rx_error),
        ]
        return m
