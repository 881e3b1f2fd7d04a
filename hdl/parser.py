"""Header parser: snoops an AXI-Stream and emits one :class:`~hdl.meta.PacketMeta` per frame.

The rules are those of docs/parser.md (Ethernet, up to two VLAN tags, ARP, IPv4 with options and
fragments, IPv6 with up to two extension headers, TCP/UDP/ICMP/ICMPv6). The stream itself passes
through combinationally; only the first ``header_window`` bytes of each frame are captured.

Refs: IEEE 802.3-2018 3.1.1, IEEE 802.1Q-2018 9.6, RFC 826, RFC 791, RFC 8200, RFC 9293,
RFC 768, RFC 792, RFC 4443.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import NicConfig
from .layouts import (
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    ETH_QINQ,
    ETH_VLAN,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_EXT_FRAGMENT,
    IPV6_EXT_HEADERS,
    Arp,
    Ethernet,
    Icmp,
    IPv4,
    IPv6,
    IPv6ExtHeader,
    IPv6Fragment,
    Tcp,
    Udp,
    VlanTag,
    view,
)
from .meta import FRAME_LEN_BITS, L3Type, MalformedReason, PacketMeta, make_parsed_layout
from .stream import AXIStreamSignature

__all__ = ["Parser"]

#: Internal frame length width. docs/parser.md checks IP lengths (up to 65535 + 62 bytes) against
#: the true frame length, so the beat counter saturates only past 2**17 bytes, where every such
#: check already has its true outcome; ``frame_len`` itself saturates at 16383.
_LEN_BITS = 18
_FRAME_LEN_MAX = (1 << FRAME_LEN_BITS) - 1
#: Internal offset width: an IPv6 extension header can move the offset up to H + 2048 bytes,
#: past the 10-bit ``PacketMeta`` offset fields (which then hold the low bits).
_OFF_BITS = 12
#: Bytes of the L3 header captured at the (3-way) L3 offset: IPv6 fixed header plus the first
#: 4 bytes of the first extension header, which therefore needs no variable-offset mux.
_L3_BYTES = 44


def _keep_count(tkeep, n_bytes):
    """Number of bytes in a packed beat: the top set bit of a contiguous ``tkeep``, plus one.

    An OR tree on the one-hot top bit instead of a popcount adder tree.
    """
    top = tkeep & ~(tkeep >> 1)
    bits = []
    for j in range(n_bytes.bit_length()):
        terms = [top[i] for i in range(n_bytes) if ((i + 1) >> j) & 1]
        bits.append(Cat(*terms).any() if terms else Const(0, 1))
    return Cat(*bits)


def _bytes(vec, start, count):
    """Bytes ``start .. start+count-1`` of a little-endian byte vector."""
    return vec[8 * start:8 * (start + count)]


def _ctx_layout(port_bits):
    """What travels down the extraction pipeline with each frame."""
    return data.StructLayout({
        "valid": 1,
        "stop": 1,          # a rule said "stop": later stages leave the record alone
        "walk": 1,          # IPv6 header chain still being walked (no l4_offset yet)
        "meta": PacketMeta,
        "in_port": port_bits,
        "rx_error": 1,
        "off": _OFF_BITS,   # current header offset (IPv6 chain / L4)
        "rem": 16,          # ip_end - off: IP bytes left from ``off``
        "nh": 8,            # IPv6 next header being walked
    })


class Parser(wiring.Component):
    """Header parser: passes ``s_axis`` to ``m_axis`` and emits one metadata record per frame.

    The stream is not touched: ``m_axis`` is ``s_axis`` (``tready`` included) with no added
    latency, and the parser only watches transfers. While a frame passes, its first
    ``header_window`` bytes are captured into a window register and its length is counted. The
    cycle after the last beat, a fully pipelined chain of stages extracts the headers from a copy
    of the window, so a new frame (even a one-beat frame every cycle) can enter every cycle:

    ====  =============================================================================
    S0    frame length, ingress port, ``rx_error``, physical-port flag (window: live register)
    S1    frame checks (runt, oversize), Ethernet and VLAN tags, L3 header bytes at l3_offset
    S2    IPv4 / IPv6 / ARP fixed header
    S3    IPv6 extension header 1 (its bytes came with the L3 header)
    S4    select extension header 2 at its offset
    S5    IPv6 extension header 2
    S6    end of the IPv6 chain (``ip_proto``, ``l4_offset``); select L4 bytes at l4_offset
    S7    TCP / UDP / ICMP / ICMPv6; drives ``meta``
    ====  =============================================================================

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

    Attributes
    ----------
    latency : int
        Cycles from the last beat's transfer to ``meta.valid``.
    """

    latency = 8

    def __init__(self, config: NicConfig):
        if not isinstance(config, NicConfig):
            raise TypeError(f"Parser config must be a NicConfig, not {config!r}")
        self._config = config
        user_width = 1 + config.port_bits
        super().__init__({
            "s_axis": In(AXIStreamSignature(config.data_width, user_width=user_width)),
            "m_axis": Out(AXIStreamSignature(config.data_width, user_width=user_width)),
            "meta": Out(stream.Signature(make_parsed_layout(config.port_bits), always_ready=True)),
        })

    @property
    def config(self) -> NicConfig:
        return self._config

    def __repr__(self):
        return f"Parser({self._config!r})"

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        n_bytes = cfg.bytes_per_beat
        window = cfg.header_window
        port_bits = cfg.port_bits
        s, o = self.s_axis, self.m_axis

        # Pass-through: the parser never stalls the stream.
        m.d.comb += [
            o.tdata.eq(s.tdata), o.tkeep.eq(s.tkeep), o.tlast.eq(s.tlast), o.tuser.eq(s.tuser),
            o.tvalid.eq(s.tvalid), s.tready.eq(o.tready),
        ]
        xfer = s.tvalid & s.tready

        # ---- Capture: window and length, as beats pass -------------------------------------
        beat_max = (1 << (_LEN_BITS - 1)) // n_bytes     # saturate once 2**17 bytes have passed
        beat = Signal(range(beat_max + 1))
        win = Signal(8 * window)
        # Bytes past tkeep on the last beat are undefined: never let them into the window.
        data_kept = s.tdata & Cat(*(s.tkeep[i].replicate(8) for i in range(n_bytes)))
        with m.If(xfer):
            with m.If(s.tlast):
                m.d.sync += beat.eq(0)
            with m.Elif(beat != beat_max):
                m.d.sync += beat.eq(beat + 1)
            for slot in range((window + n_bytes - 1) // n_bytes):
                lo, hi = slot * n_bytes, min((slot + 1) * n_bytes, window)
                with m.If(beat == slot):
                    m.d.sync += _bytes(win, lo, hi - lo).eq(_bytes(data_kept, 0, hi - lo))
                if slot:
                    # First beat: clear the rest so a short frame never sees an older one's bytes.
                    with m.Elif(beat == 0):
                        m.d.sync += _bytes(win, lo, hi - lo).eq(0)

        phys_mask = sum(1 << p for p in range(len(cfg.ports)) if cfg.is_physical(p))
        phys_mask = Const(phys_mask, 1 << port_bits)
        in_port = s.tuser[1:1 + port_bits]

        def byte_now(i):
            """Window byte ``i`` including the beat being transferred (valid once it has passed)."""
            slot = i // n_bytes
            return Mux(beat == slot, _bytes(data_kept, i % n_bytes, 1), _bytes(win, i, 1))

        def is_tpid(i):
            value = Cat(byte_now(i + 1), byte_now(i))
            return (value == ETH_VLAN) | (value == ETH_QINQ)

        s0 = Signal(data.StructLayout({
            "valid": 1, "len": _LEN_BITS, "in_port": port_bits, "rx_error": 1, "phys": 1,
            "tagged0": 1, "tagged1": 1,
        }))
        m.d.sync += [
            # The TPID compares are done here, off the S1 critical path (tag -> l3 offset -> checks).
            s0.tagged0.eq(is_tpid(12)),
            s0.tagged1.eq(is_tpid(16)),
            s0.valid.eq(xfer & s.tlast),
            s0.len.eq((beat << (n_bytes.bit_length() - 1)) + _keep_count(s.tkeep, n_bytes)),
            s0.in_port.eq(in_port),
            s0.rx_error.eq(s.tuser[0]),
            s0.phys.eq(phys_mask.bit_select(in_port, 1)),
        ]

        ctx = _ctx_layout(port_bits)

        def stage(name, prev, prev_win=None):
            """Next pipeline register, the comb value feeding it (defaults to ``prev``), and,
            for stages followed by a variable-offset read, a registered copy of the window
            (bytes no later stage reads are pruned by synthesis)."""
            nxt = Signal(ctx, name=f"{name}_d")
            reg = Signal(ctx, name=name)
            m.d.comb += nxt.eq(prev)
            m.d.sync += reg.eq(nxt)
            if prev_win is None:
                return nxt, reg
            reg_win = Signal(8 * window, name=f"{name}_win")
            m.d.sync += reg_win.eq(prev_win)
            return nxt, reg, reg_win

        def flag(rec, reason):
            return rec.meta.malformed[reason]

        def is_ext(nh):
            return Cat(*(nh == v for v in IPV6_EXT_HEADERS)).any()

        # Variable-offset reads: every offset past the fixed L3 header is congruent to 2 mod 4
        # (l3_offset is 14/18/22, later steps are multiples of 4), so the muxes select 32-bit
        # words of the window shifted by 2 bytes. The word count is a power of two so the index
        # is a plain slice of ``off``; reads past the window are garbage and never used (the
        # beyond-window checks stop first).
        n_words = 1 << ((window - 2 + 3) // 4 - 1).bit_length()
        idx_bits = n_words.bit_length() - 1

        def word_at(vec, off, min_off, word_offset=0):
            """The 32 bits at byte ``off + 4 * word_offset`` of the window ``vec``.

            Offsets below ``min_off`` never occur, so those words are constant zero and the window
            bytes only they would read are pruned from the pipeline copies.
            """
            words = []
            for k in range(n_words):
                start = 4 * k + 2 + 4 * word_offset
                end = min(start + 4, window)
                if 4 * k + 2 < min_off or start >= window:
                    words.append(Const(0, 32))
                else:
                    words.append(Cat(vec[8 * start:8 * end], Const(0, 8 * (start + 4 - end))))
            return Cat(*words).word_select(off[2:2 + idx_bits], 32)

        # ---- S1: frame checks, Ethernet and VLAN tags --------------------------------------
        s1_in = Signal(ctx)
        m.d.comb += [
            s1_in.valid.eq(s0.valid), s1_in.in_port.eq(s0.in_port), s1_in.rx_error.eq(s0.rx_error),
        ]
        # `win` is read here, the cycle after the last beat: a new frame can only change it at
        # the end of this cycle, when S1 has already registered its own copy.
        d1, s1, s1_win = stage("s1", s1_in, win)
        length = s0.len
        eth = view(Ethernet, _bytes(win, 0, 14))
        tag0 = view(VlanTag, _bytes(win, 14, 4))
        tag1 = view(VlanTag, _bytes(win, 18, 4))
        tagged0, tagged1 = s0.tagged0, s0.tagged1
        s1_hdr = Signal(8 * _L3_BYTES)
        s1_avail = Signal(_LEN_BITS)
        l3_hdr = Signal(8 * _L3_BYTES)
        l3_avail = Signal(_LEN_BITS)
        m.d.sync += [s1_hdr.eq(l3_hdr), s1_avail.eq(l3_avail)]

        m.d.comb += d1.meta.frame_len.eq(Mux(length > _FRAME_LEN_MAX, _FRAME_LEN_MAX, length))
        m.d.comb += flag(d1, MalformedReason.OVERSIZE).eq(length > cfg.max_frame)
        m.d.comb += flag(d1, MalformedReason.RUNT).eq(s0.phys & (length < 60))

        def set_tag(n, tpid, tag):
            m.d.comb += [
                d1.meta[f"vlan{n}_tpid_qinq"].eq(tpid == ETH_QINQ),
                d1.meta[f"vlan{n}_pcp"].eq(tag.pcp),
                d1.meta[f"vlan{n}_vid"].eq(tag.vid),
            ]

        def set_l3(offset, ethertype):
            m.d.comb += [d1.meta.ethertype.eq(ethertype), d1.meta.l3_offset.eq(offset)]

        with m.If(length < 14):
            m.d.comb += [flag(d1, MalformedReason.TRUNC_L2).eq(1), d1.stop.eq(1)]
        with m.Else():
            m.d.comb += [d1.meta.eth_dst.eq(eth.dst), d1.meta.eth_src.eq(eth.src)]
            with m.If(tagged0):
                with m.If(length < 18):
                    m.d.comb += [flag(d1, MalformedReason.TRUNC_L2).eq(1), d1.stop.eq(1)]
                with m.Else():
                    m.d.comb += d1.meta.vlan_count.eq(1)
                    set_tag(0, eth.ethertype, tag0)
                    with m.If(tagged1):
                        with m.If(length < 22):
                            m.d.comb += [flag(d1, MalformedReason.TRUNC_L2).eq(1), d1.stop.eq(1)]
                        with m.Else():
                            m.d.comb += d1.meta.vlan_count.eq(2)
                            set_tag(1, tag0.ethertype, tag1)
                            set_l3(22, tag1.ethertype)
                    with m.Else():
                        set_l3(18, tag0.ethertype)
            with m.Else():
                set_l3(14, eth.ethertype)
        # The L3 bytes and the bytes left after l3_offset depend only on the tag flags, not on
        # the length checks (a stopped record ignores them): three constant-offset candidates.
        with m.If(tagged0 & tagged1):
            m.d.comb += [l3_hdr.eq(_bytes(win, 22, _L3_BYTES)), l3_avail.eq(length - 22)]
        with m.Elif(tagged0):
            m.d.comb += [l3_hdr.eq(_bytes(win, 18, _L3_BYTES)), l3_avail.eq(length - 18)]
        with m.Else():
            m.d.comb += [l3_hdr.eq(_bytes(win, 14, _L3_BYTES)), l3_avail.eq(length - 14)]

        # ---- S2: IPv4 / IPv6 / ARP ---------------------------------------------------------
        d2, s2, s2_win = stage("s2", s1, s1_win)
        s2_ext = Signal(32)
        m.d.sync += s2_ext.eq(_bytes(s1_hdr, 40, 4))   # first IPv6 extension header, if any
        avail = s1_avail
        l3_off = s1.meta.l3_offset
        ip4 = view(IPv4, _bytes(s1_hdr, 0, 20))
        ip6 = view(IPv6, _bytes(s1_hdr, 0, 40))
        arp = view(Arp, _bytes(s1_hdr, 0, 28))
        ihl_bytes = Cat(Const(0, 2), ip4.ihl)

        def stop(rec, reason=None):
            stmts = [rec.stop.eq(1)]
            if reason is not None:
                stmts.append(flag(rec, reason).eq(1))
            m.d.comb += stmts

        with m.If(~s1.stop):
            with m.Switch(s1.meta.ethertype):
                with m.Case(ETH_IPV4):
                    m.d.comb += d2.meta.l3_type.eq(L3Type.IPV4)
                    with m.If(avail < 20):
                        stop(d2, MalformedReason.TRUNC_L3)
                    with m.Elif(ip4.version != 4):
                        stop(d2, MalformedReason.BAD_IP_VERSION)
                    with m.Elif(ip4.ihl < 5):
                        stop(d2, MalformedReason.BAD_IPV4_IHL)
                    with m.Elif(avail < ihl_bytes):
                        stop(d2, MalformedReason.TRUNC_L3)
                    with m.Else():
                        m.d.comb += [
                            d2.meta.has_l3.eq(1),
                            d2.meta.ip_src.eq(ip4.src),
                            d2.meta.ip_dst.eq(ip4.dst),
                            d2.meta.ip_proto.eq(ip4.protocol),
                            d2.meta.ip_ttl.eq(ip4.ttl),
                            d2.meta.ip_fragment.eq(ip4.flag_mf | (ip4.frag_offset != 0)),
                            d2.meta.ip_frag_offset.eq(ip4.frag_offset),
                        ]
                        with m.If((ip4.total_length > avail) | (ip4.total_length < ihl_bytes)):
                            stop(d2, MalformedReason.IP_LEN_MISMATCH)
                        with m.Else():
                            m.d.comb += [
                                d2.meta.l4_offset.eq(l3_off + ihl_bytes),
                                d2.meta.has_l4_offset.eq(1),
                                d2.off.eq(l3_off + ihl_bytes),
                                d2.rem.eq(ip4.total_length - ihl_bytes),
                            ]
                with m.Case(ETH_IPV6):
                    m.d.comb += d2.meta.l3_type.eq(L3Type.IPV6)
                    with m.If(avail < 40):
                        stop(d2, MalformedReason.TRUNC_L3)
                    with m.Elif(ip6.version != 6):
                        stop(d2, MalformedReason.BAD_IP_VERSION)
                    with m.Else():
                        m.d.comb += [
                            d2.meta.has_l3.eq(1),
                            d2.meta.ip_src.eq(ip6.src),
                            d2.meta.ip_dst.eq(ip6.dst),
                            d2.meta.ip_ttl.eq(ip6.hop_limit),
                        ]
                        with m.If(ip6.payload_length + 40 > avail):
                            stop(d2, MalformedReason.IP_LEN_MISMATCH)
                        with m.Else():
                            m.d.comb += [
                                d2.walk.eq(1),
                                d2.off.eq(l3_off + 40),
                                d2.rem.eq(ip6.payload_length),
                                d2.nh.eq(ip6.next_header),
                            ]
                with m.Case(ETH_ARP):
                    m.d.comb += d2.meta.l3_type.eq(L3Type.ARP)
                    arp_ipv4 = (arp.htype == 1) & (arp.ptype == ETH_IPV4) & (arp.hlen == 6) & (arp.plen == 4)
                    with m.If(avail < 8):
                        stop(d2, MalformedReason.TRUNC_L3)
                    with m.Elif(arp_ipv4 & (avail < 28)):
                        stop(d2, MalformedReason.TRUNC_L3)
                    with m.Elif(arp_ipv4):
                        m.d.comb += [
                            d2.meta.has_l3.eq(1),
                            d2.meta.ip_src.eq(arp.spa),
                            d2.meta.ip_dst.eq(arp.tpa),
                            d2.meta.ip_proto.eq(arp.oper[:8]),
                        ]
                        stop(d2)
                    with m.Else():
                        stop(d2)
                with m.Default():
                    stop(d2)

        # ---- S3 / S5: one IPv6 extension header each ---------------------------------------
        def ext_header(prev, nxt, word):
            """Walk one extension header whose first 4 bytes are ``word``."""
            ext = view(IPv6ExtHeader, word[:16])
            frag = view(IPv6Fragment, Cat(word, Const(0, 32)))
            is_frag = prev.nh == IPV6_EXT_FRAGMENT
            size = Mux(is_frag, 8, Cat(Const(0, 3), ext.hdr_ext_len + 1))
            with m.If(~prev.stop & prev.walk & is_ext(prev.nh)):
                with m.If(prev.rem < 8):
                    stop(nxt, MalformedReason.TRUNC_L3)
                with m.Elif(prev.off > window - 8):
                    m.d.comb += nxt.meta.beyond_window.eq(1)
                    stop(nxt)
                with m.Else():
                    with m.If(is_frag):
                        m.d.comb += [
                            nxt.meta.ip_fragment.eq(1),
                            nxt.meta.ip_frag_offset.eq(frag.frag_offset),
                        ]
                    m.d.comb += [
                        nxt.nh.eq(ext.next_header),
                        nxt.off.eq(prev.off + size),
                        nxt.rem.eq(prev.rem - size),
                    ]
                    # off > ip_end after advancing, i.e. the header is longer than what is left.
                    with m.If(size > prev.rem):
                        stop(nxt, MalformedReason.TRUNC_L3)

        d3, s3, s3_win = stage("s3", s2, s2_win)
        ext_header(s2, d3, s2_ext)

        d4, s4, s4_win = stage("s4", s3, s3_win)
        s4_ext = Signal(32)
        m.d.sync += s4_ext.eq(word_at(s3_win, s3.off, min_off=14 + 40 + 8))

        d5, s5, s5_win = stage("s5", s4, s4_win)
        ext_header(s4, d5, s4_ext)

        # ---- S6: end of the IPv6 chain; L4 bytes at l4_offset ------------------------------
        d6, s6 = stage("s6", s5)
        with m.If(~s5.stop & s5.walk):
            m.d.comb += d6.walk.eq(0)
            with m.If(is_ext(s5.nh)):
                # More than two extension headers: L4 is out of reach.
                m.d.comb += d6.meta.beyond_window.eq(1)
                stop(d6)
            with m.Else():
                m.d.comb += [
                    d6.meta.ip_proto.eq(s5.nh),
                    d6.meta.l4_offset.eq(s5.off),
                    d6.meta.has_l4_offset.eq(1),
                ]
        s6_w0 = Signal(32)   # L4 bytes 0..3: ports, ICMP type/code
        s6_w3 = Signal(32)   # L4 bytes 12..15: TCP data offset and flags
        m.d.sync += [
            s6_w0.eq(word_at(s5_win, s5.off, min_off=14 + 20)),
            s6_w3.eq(word_at(s5_win, s5.off, min_off=14 + 20, word_offset=3)),
        ]

        # ---- S7: TCP / UDP / ICMP / ICMPv6 -------------------------------------------------
        d7, s7 = stage("s7", s6)
        tcp = view(Tcp, Cat(s6_w0, Const(0, 64), s6_w3, Const(0, 32)))
        udp = view(Udp, Cat(s6_w0, Const(0, 32)))
        icmp = view(Icmp, s6_w0)
        proto = s6.meta.ip_proto
        is_v4 = s6.meta.l3_type == L3Type.IPV4
        is_v6 = s6.meta.l3_type == L3Type.IPV6
        is_tcp = proto == IPPROTO_TCP
        is_udp = proto == IPPROTO_UDP
        is_icmp = (is_v4 & (proto == IPPROTO_ICMP)) | (is_v6 & (proto == IPPROTO_ICMPV6))
        # Both header sizes are compared in parallel and the protocol only selects the result,
        # so the protocol decode and the length compares do not chain.
        short = Mux(is_tcp, s6.rem < 20, s6.rem < 8)
        past_window = Mux(is_tcp, s6.off > window - 20, s6.off > window - 8)
        tcp_hdr_bytes = Cat(Const(0, 2), tcp.data_offset)
        with m.If(~s6.stop & s6.meta.has_l4_offset & (s6.meta.ip_frag_offset == 0)
                  & (is_tcp | is_udp | is_icmp)):
            with m.If(short):
                stop(d7, MalformedReason.TRUNC_L4)
            with m.Elif(past_window):
                m.d.comb += d7.meta.beyond_window.eq(1)
                stop(d7)
            with m.Else():
                m.d.comb += d7.meta.has_l4.eq(1)
                with m.If(is_tcp):
                    m.d.comb += [
                        d7.meta.sport.eq(tcp.sport),
                        d7.meta.dport.eq(tcp.dport),
                        d7.meta.tcp_flags.eq(tcp.flags),
                    ]
                    with m.If((tcp.data_offset < 5) | (tcp_hdr_bytes > s6.rem)):
                        stop(d7, MalformedReason.BAD_TCP_OFFSET)
                    with m.Else():
                        m.d.comb += [
                            d7.meta.payload_offset.eq(s6.off + tcp_hdr_bytes),
                            d7.meta.has_payload_offset.eq(1),
                        ]
                with m.Elif(is_udp):
                    m.d.comb += [
                        d7.meta.sport.eq(udp.sport),
                        d7.meta.dport.eq(udp.dport),
                        d7.meta.payload_offset.eq(s6.off + 8),
                        d7.meta.has_payload_offset.eq(1),
                    ]
                with m.Else():
                    m.d.comb += [
                        d7.meta.icmp_type.eq(icmp.type),
                        d7.meta.icmp_code.eq(icmp.code),
                        d7.meta.payload_offset.eq(s6.off + 8),
                        d7.meta.has_payload_offset.eq(1),
                    ]

        m.d.comb += [
            self.meta.valid.eq(s7.valid),
            self.meta.payload.meta.eq(s7.meta),
            self.meta.payload.in_port.eq(s7.in_port),
            self.meta.payload.rx_error.eq(s7.rx_error),
        ]
        return m
