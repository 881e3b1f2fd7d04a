"""Header parser: snoops an AXI-Stream and emits one :class:`~hdl.meta.PacketMeta` per frame.

The rules are those of docs/parser.md (Ethernet, up to two VLAN tags, ARP, IPv4 with options and
fragments, IPv6 with up to two extension headers, TCP/UDP/ICMP/ICMPv6). The stream itself passes
through combinationally; only the first ``header_window`` bytes of each frame are captured.

Refs: IEEE 802.3-2018 3.1.1, IEEE 802.1Q-2018 9.6, RFC 826, RFC 791, RFC 8200, RFC 9293,
RFC 768, RFC 792, RFC 4443.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
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
    VlanTag,
    view,
)
from .meta import FRAME_LEN_BITS, MalformedReason, PacketMeta, make_parsed_layout
from .stream import AXIStreamSignature, keep_count

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


def _bytes(vec, start, count):
    """Bytes ``start .. start+count-1`` of a little-endian byte vector."""
    return vec[8 * start:8 * (start + count)]


class Parser(wiring.Component):
    """Header parser: passes ``s_axis`` to ``m_axis`` and emits one metadata record per frame.

    The stream is not touched: ``m_axis`` is ``s_axis`` (``tready`` included) with no added
    latency, and the parser only watches transfers. While a frame passes, its first
    ``header_window`` bytes are captured into a window register and its length is counted. The
    cycle after the last beat is captured, a fully pipelined chain of stages extracts the headers from a copy
    of the window, so a new frame (even a one-beat frame every cycle) can enter every cycle.
    The pipeline is free running (no enables): each stage registers raw field values and
    decision flags separately, every variable-offset read takes two or three stages (4:1,
    then the rest), and only the last stage gates each ``meta`` field with its registered enable:

    ====  =============================================================================
    (in)  the transfer is registered (a local copy of the snooped beat)
    (cap) as bytes are captured: TPID / ethertype / IPv6 next-header compares at the three
          candidate positions, kept as flags beside the window
    S0    frame length, ingress port, ``rx_error``, physical port
    S1    copy from the live window: L3 header bytes at l3_offset, Ethernet/VLAN fields;
          ethertype flags selected from the capture flags; length compares
    S2    L2 outcome; IPv4 / IPv6 / ARP checks as independent flags; extension header 1
          sizes and offsets (its bytes came with the L3 header)
    S3    L3 outcome; read extension header 2 at its offset (1/2)
    S4    extension header 1 outcome; read extension header 2 (2/2); L4 offset base
    S5    extension header 2 sizes; final L4 offset (one for each L4 word), length, protocol
    S6    extension header 2 outcome, end of the IPv6 chain; read the L4 bytes (1/3);
          L4 protocol, length and window compares
    S7    read the L4 bytes (2/3)
    S8    read the L4 bytes (3/3); L4 outcome, TCP data offset check and payload offset
          (from the last read mux's inputs)
    S9    every field gated; drives ``meta``
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
    space : ``Out(1)``
        Always 1: this parser takes a frame every cycle. (Same contract as
        :attr:`hdl.parser_seq.SequentialParser.space`, so the top treats both alike.)

    Attributes
    ----------
    latency : int
        Cycles from the last beat's transfer to ``meta.valid``.
    """

    latency = 11

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
        n_bytes = cfg.bytes_per_beat
        window = cfg.header_window
        port_bits = cfg.port_bits
        s, o = self.s_axis, self.m_axis

        # Pass-through: the parser never stalls the stream.
        m.d.comb += [
            o.tdata.eq(s.tdata), o.tkeep.eq(s.tkeep), o.tlast.eq(s.tlast), o.tuser.eq(s.tuser),
            o.tvalid.eq(s.tvalid), s.tready.eq(o.tready),
        ]
        m.d.comb += self.space.eq(1)       # one frame per cycle: never holds the producer back

        # Everything below works on a registered copy of the transfers: the stream's source
        # register is shared with the packet buffer and sat across the die from the window
        # capture's compares (a ULX3S critical path). This copy is the capture's local source.
        xfer = Signal(name="snoop_valid")
        snoop = {f: Signal.like(getattr(s, f), name=f"snoop_{f}", reset_less=True)
                 for f in ("tdata", "tkeep", "tlast", "tuser")}
        m.d.sync += [xfer.eq(s.tvalid & s.tready), *(v.eq(getattr(s, f)) for f, v in snoop.items())]

        def reg(value, name, width=None, *, reset_less=True):
            """One pipeline register (free running: no enable; no reset but for the valid chain,
            so the reset net reaches few flip-flops: it crossed the die on the ULX3S)."""
            value = Value.cast(value)
            sig = Signal(width if width is not None else len(value), name=name, reset_less=reset_less)
            m.d.sync += sig.eq(value)
            return sig

        def delay(value, n, name, *, reset_less=True):
            for k in range(n):
                value = reg(value, f"{name}_d{k}", reset_less=reset_less)
            return value

        # ---- Capture: window and length, as beats pass -------------------------------------
        beat_max = (1 << (_LEN_BITS - 1)) // n_bytes     # saturate once 2**17 bytes have passed
        beat = Signal(range(beat_max + 1))
        n_slots = (window + n_bytes - 1) // n_bytes
        # One-hot beat position inside the window (bit n_slots: past it), so that each window
        # slot's write enable is one register bit rather than a decoder on the beat counter.
        slot = Signal(n_slots + 1, init=1)
        # The window keeps its reset: without one, Yosys maps the first-beat clear onto the
        # flip-flops' LSR pins, and that enable fanned out over the whole window missed 156 MHz.
        win = Signal(8 * window)
        # Bytes past tkeep on the last beat are undefined: never let them into the window.
        data_kept = snoop["tdata"] & Cat(*(snoop["tkeep"][i].replicate(8) for i in range(n_bytes)))
        # Ethertype / TPID compares at the three candidate positions, made as the bytes are
        # captured (a 16-bit field at an even offset never straddles a beat), so that S1 only
        # selects registered flags. Like the window, they hold the frame's values in S0 only.
        flag_defs = {
            "tpid": lambda v: (v == ETH_VLAN) | (v == ETH_QINQ),
            "qinq": lambda v: v == ETH_QINQ,
            "v4": lambda v: v == ETH_IPV4,
            "v6": lambda v: v == ETH_IPV6,
            "arp": lambda v: v == ETH_ARP,
        }
        flags = {}

        def capture_flags(positions, defs, n_field):
            """Register ``defs[name](field)`` for the ``n_field``-byte big-endian field at each
            position as the beat holding it passes.

            The compares are made on the incoming beat, in the same cycle as the snoop copy is
            registered, so the capture cycle only masks them with ``tkeep`` (bytes past it read
            as 0, as in the window): compare, mask and enable in one cycle missed 156 MHz.
            """
            pre = {}
            for p in positions:
                k, b = p // n_bytes, p % n_bytes
                kept = Cat(*(snoop["tkeep"][b + j] for j in range(n_field))).all()
                for fname, fn in defs.items():
                    if (fname, b) not in pre:
                        raw = Cat(*(_bytes(s.tdata, b + j, 1) for j in reversed(range(n_field))))
                        pre[fname, b] = Signal(name=f"pre_{fname}_lane{b}", reset_less=True)
                        m.d.sync += pre[fname, b].eq(fn(raw))
                    f = Signal(name=f"cap_{fname}{p}", reset_less=True)
                    flags[fname, p] = f
                    with m.If(xfer & slot[k]):
                        m.d.sync += f.eq(Mux(kept, pre[fname, b], fn(Const(0, 8 * n_field))))
                    if k:
                        with m.Elif(xfer & slot[0]):
                            m.d.sync += f.eq(0)

        capture_flags((12, 16, 20), flag_defs, 2)
        # The same for the IPv6 next header byte at the three candidate L3 offsets (+6).
        capture_flags((20, 24, 28), {"nhfrag": lambda v: v == IPV6_EXT_FRAGMENT,
                                     "nhext": lambda v: Cat(*(v == e for e in IPV6_EXT_HEADERS)).any()}, 1)
        with m.If(xfer):
            with m.If(snoop["tlast"]):
                m.d.sync += [beat.eq(0), slot.eq(1)]
            with m.Else():
                with m.If(beat != beat_max):
                    m.d.sync += beat.eq(beat + 1)
                with m.If(~slot[n_slots]):
                    m.d.sync += slot.eq(slot << 1)
            for k in range(n_slots):
                lo, hi = k * n_bytes, min((k + 1) * n_bytes, window)
                with m.If(slot[k]):
                    m.d.sync += _bytes(win, lo, hi - lo).eq(_bytes(data_kept, 0, hi - lo))
                if k:
                    # First beat: clear the rest so a short frame never sees an older one's bytes.
                    with m.Elif(slot[0]):
                        m.d.sync += _bytes(win, lo, hi - lo).eq(0)

        phys_mask = sum(1 << p for p in range(len(cfg.ports)) if cfg.is_physical(p))
        phys_mask = Const(phys_mask, 1 << port_bits)
        in_port = snoop["tuser"][1:1 + port_bits]

        # ---- S0: frame length, port, tag flags (the window itself is the live register) -----
        last = xfer & snoop["tlast"]
        valid0 = reg(last, "s0_valid", reset_less=False)
        len0 = reg((beat << (n_bytes.bit_length() - 1)) + keep_count(snoop["tkeep"], n_bytes), "s0_len",
                   _LEN_BITS)
        port0 = reg(in_port, "s0_in_port")
        rxerr0 = reg(snoop["tuser"][0], "s0_rx_error")
        phys0 = reg(phys_mask.bit_select(in_port, 1), "s0_phys")
        tag0_0 = flags["tpid", 12]
        tag1_0 = flags["tpid", 16]

        # The last stage registers ``meta``; everything that comes straight from an early stage
        # is delayed to the stage before it and gated there by a registered enable.
        LAST = 9

        def to_last(value, stage, name, *, reset_less=True):
            """A value registered at ``stage``, delayed to stage LAST - 1."""
            return delay(value, LAST - 1 - stage, name, reset_less=reset_less)

        valid_f = to_last(valid0, 0, "valid", reset_less=False)
        port_f = to_last(port0, 0, "in_port")
        rxerr_f = to_last(rxerr0, 0, "rx_error")

        def be16(vec, i):
            return Cat(_bytes(vec, i + 1, 1), _bytes(vec, i, 1))

        # ---- S1: copy what is needed from the live window (it may change after this cycle) --
        t0 = tag0_0
        t2 = tag0_0 & tag1_0

        def sel3(a14, a18, a22):
            return Mux(t2, a22, Mux(t0, a18, a14))

        hdr1 = reg(sel3(_bytes(win, 14, _L3_BYTES), _bytes(win, 18, _L3_BYTES),
                        _bytes(win, 22, _L3_BYTES)), "s1_hdr")
        l3off1 = reg(sel3(14, 18, 22), "s1_l3off", 5)
        off6p8_1 = reg(sel3(62, 66, 70), "s1_off6p8", 7)
        avail1 = reg(len0 - sel3(14, 18, 22), "s1_avail", _LEN_BITS)
        avail40_1 = reg(len0 - sel3(54, 58, 62), "s1_avail40", _LEN_BITS)
        et_pos = (12, 16, 20)

        def et_is(fname):
            return sel3(*(flags[fname, p] for p in et_pos))

        is_v4_1 = reg(et_is("v4"), "s1_is_v4")
        is_v6_1 = reg(et_is("v6"), "s1_is_v6")
        is_arp_1 = reg(et_is("arp"), "s1_is_arp")
        f6_1 = reg(sel3(*(flags["nhfrag", p + 8] for p in et_pos)), "s1_f6")
        x6_1 = reg(sel3(*(flags["nhext", p + 8] for p in et_pos)), "s1_x6")
        ethertype1 = reg(sel3(*(be16(win, p) for p in et_pos)), "s1_ethertype")
        eth = view(Ethernet, _bytes(win, 0, 14))
        vtag0 = view(VlanTag, _bytes(win, 14, 4))
        vtag1 = view(VlanTag, _bytes(win, 18, 4))
        eth_dst1 = reg(eth.dst, "s1_eth_dst")
        eth_src1 = reg(eth.src, "s1_eth_src")
        vlan0_1 = reg(Cat(flags["qinq", 12], vtag0.pcp, vtag0.vid), "s1_vlan0")
        vlan1_1 = reg(Cat(flags["qinq", 16], vtag1.pcp, vtag1.vid), "s1_vlan1")
        lt14_1 = reg(len0 < 14, "s1_lt14")
        lt18_1 = reg(len0 < 18, "s1_lt18")
        lt22_1 = reg(len0 < 22, "s1_lt22")
        runt1 = reg(phys0 & (len0 < 60), "s1_runt")
        oversize1 = reg(len0 > cfg.max_frame, "s1_oversize")
        frame_len1 = reg(Mux(len0 > _FRAME_LEN_MAX, _FRAME_LEN_MAX, len0[:FRAME_LEN_BITS]), "s1_frame_len")
        tag0_1 = reg(tag0_0, "s1_tag0")
        tag1_1 = reg(tag1_0, "s1_tag1")
        # Window bytes later variable-offset reads can reach (L4 is at least 14 + 20 bytes in).
        win_lo = 14 + 20
        win1 = reg(Cat(Const(0, 8 * win_lo), win[8 * win_lo:]), "s1_win")

        # ---- S2: L2 decisions; IPv4 / IPv6 / ARP checks as independent flags -----------------
        trunc_l2_2 = reg(lt14_1 | (tag0_1 & lt18_1) | (tag0_1 & tag1_1 & lt22_1), "s2_trunc_l2")
        l2_ok = ~(lt14_1 | (tag0_1 & lt18_1) | (tag0_1 & tag1_1 & lt22_1))
        eth_en2 = reg(~lt14_1, "s2_eth_en")
        v0_en2 = reg(tag0_1 & ~lt18_1, "s2_v0_en")
        v1_en2 = reg(tag0_1 & tag1_1 & ~lt22_1, "s2_v1_en")
        l2_ok2 = reg(l2_ok, "s2_l2_ok")
        g_v4_2 = reg(l2_ok & is_v4_1, "s2_v4")
        g_v6_2 = reg(l2_ok & is_v6_1, "s2_v6")
        g_arp_2 = reg(l2_ok & is_arp_1, "s2_arp")

        ip4 = view(IPv4, _bytes(hdr1, 0, 20))
        ip6 = view(IPv6, _bytes(hdr1, 0, 40))
        arp = view(Arp, _bytes(hdr1, 0, 28))
        ext1 = _bytes(hdr1, 40, 4)
        ihl_bytes = Cat(Const(0, 2), ip4.ihl)
        v4_short2 = reg(avail1 < 20, "s2_v4_short")
        v4_ver2 = reg(ip4.version != 4, "s2_v4_ver")
        v4_ihl2 = reg(ip4.ihl < 5, "s2_v4_ihl")
        v4_topt2 = reg(avail1 < ihl_bytes, "s2_v4_topt")
        v4_len2 = reg((ip4.total_length > avail1) | (ip4.total_length < ihl_bytes), "s2_v4_len")
        off4_2 = reg(l3off1 + ihl_bytes, "s2_off4", _OFF_BITS)
        rem4_2 = reg(ip4.total_length - ihl_bytes, "s2_rem4", 16)
        fo4_2 = reg(ip4.frag_offset, "s2_fo4")
        frag4_2 = reg(ip4.flag_mf | (ip4.frag_offset != 0), "s2_frag4")
        v6_short2 = reg(avail1 < 40, "s2_v6_short")
        v6_ver2 = reg(ip6.version != 6, "s2_v6_ver")
        v6_len2 = reg(ip6.payload_length > avail40_1, "s2_v6_len")
        off6 = l3off1 + 40
        off6_2 = reg(off6, "s2_off6", _OFF_BITS)
        rem6_2 = reg(ip6.payload_length, "s2_rem6")
        nh6_2 = reg(ip6.next_header, "s2_nh6")
        arp_ok = (arp.htype == 1) & (arp.ptype == ETH_IPV4) & (arp.hlen == 6) & (arp.plen == 4)
        arp_ok2 = reg(arp_ok, "s2_arp_ok")
        arp_s8_2 = reg(avail1 < 8, "s2_arp_s8")
        arp_s28_2 = reg(avail1 < 28, "s2_arp_s28")
        ip_src2 = reg(Mux(is_v6_1, ip6.src, Mux(is_v4_1, ip4.src, arp.spa)), "s2_ip_src", 128)
        ip_dst2 = reg(Mux(is_v6_1, ip6.dst, Mux(is_v4_1, ip4.dst, arp.tpa)), "s2_ip_dst", 128)
        ttl2 = reg(Mux(is_v6_1, ip6.hop_limit, ip4.ttl), "s2_ttl")
        proto_l3_2 = reg(Mux(is_v4_1, ip4.protocol, arp.oper[:8]), "s2_proto_l3")

        def is_ext(nh):
            return Cat(*(nh == v for v in IPV6_EXT_HEADERS)).any()

        def ext_step(word, offp8, rem_base, rem, is_frag, name):
            """Precomputed results of walking the extension header ``word``.

            ``offp8`` is its offset plus 8, ``rem`` the IP bytes left at it and ``rem_base`` a
            value the header's size beyond 8 bytes (``8 * hdr_ext_len``) is subtracted from, so
            that every result is a single carry chain: the size is ``8 * (hdr_ext_len + 1)``
            and ``size > rem`` is ``hdr_ext_len >= rem // 8``. The fragment flag only selects.
            """
            ext = view(IPv6ExtHeader, word[:16])
            frag = view(IPv6Fragment, Cat(word, Const(0, 32)))
            extra = Cat(Const(0, 3), ext.hdr_ext_len)     # 8 * hdr_ext_len
            return {
                "over": reg(~is_frag & (ext.hdr_ext_len >= rem[3:]), f"{name}_over"),
                "off": reg(offp8 + (extra & (~is_frag).replicate(11)), f"{name}_off", _OFF_BITS),
                "rem": reg(rem_base - (extra & (~is_frag).replicate(11)), f"{name}_rem", 16),
                "nh": reg(ext.next_header, f"{name}_nh"),
                "fo": reg(frag.frag_offset, f"{name}_fo"),
            }

        # First extension header: its bytes came with the L3 header.
        f6 = f6_1
        x6_2 = reg(x6_1, "s2_x6")
        f6_2 = reg(f6, "s2_f6")
        e1_lt8_2 = reg(ip6.payload_length < 8, "s2_e1_lt8")
        e1_bw_2 = reg(off6 > window - 8, "s2_e1_bw")
        # e1["rem"] is the IP bytes left after the header plus 8 (8 is taken off in S3).
        e1 = ext_step(ext1, off6p8_1, ip6.payload_length, ip6.payload_length, f6, "s2_e1")
        win2 = reg(win1, "s2_win")

        # Variable-offset reads: every offset past the fixed L3 header is congruent to 2 mod 4
        # (l3_offset is 14/18/22, later steps are multiples of 4), so the muxes select 32-bit
        # words of the window shifted by 2 bytes. The word count is a power of two so the index
        # is a plain slice of the offset; reads past the window are garbage and never used (the
        # beyond-window checks stop first). Each read takes two stages: 4:1 on the low index
        # bits, then the rest.
        n_words = 1 << ((window - 2 + 3) // 4 - 1).bit_length()
        idx_bits = n_words.bit_length() - 1

        def read_l1(vec, off, min_off, word_offset, name):
            words = []
            for k in range(n_words):
                start = 4 * k + 2 + 4 * word_offset
                end = min(start + 4, window)
                if 4 * k + 2 < min_off or start >= window:
                    words.append(None)
                else:
                    words.append(Cat(vec[8 * start:8 * end], Const(0, 8 * (start + 4 - end))))
            groups = []
            for g in range(n_words // 4):
                grp = words[4 * g:4 * g + 4]
                if all(w is None for w in grp):
                    groups.append(Const(0, 32))
                else:
                    grp = [Const(0, 32) if w is None else w for w in grp]
                    groups.append(Cat(*grp).word_select(off[2:4], 32))
            return reg(Cat(*groups), name)

        def read_l2(l1, off):
            return l1.word_select(off[4:2 + idx_bits], 32)

        # ---- S3: L3 outcome; second extension header read (1/2); ext 2 precompute -----------
        v4, v6, ar = g_v4_2, g_v6_2, g_arp_2
        v4_hdr_ok = v4 & ~v4_short2 & ~v4_ver2 & ~v4_ihl2
        has_l3_v4 = v4_hdr_ok & ~v4_topt2
        has_l3_v6 = v6 & ~v6_short2 & ~v6_ver2
        has_l3_arp = ar & ~arp_s8_2 & arp_ok2 & ~arp_s28_2
        trunc_l3_3 = reg((v4 & v4_short2) | (v4_hdr_ok & v4_topt2) | (v6 & v6_short2)
                         | (ar & (arp_s8_2 | (arp_ok2 & arp_s28_2))), "s3_trunc_l3")
        bad_ver3 = reg((v4 & ~v4_short2 & v4_ver2) | (v6 & ~v6_short2 & v6_ver2), "s3_bad_ver")
        bad_ihl3 = reg(v4 & ~v4_short2 & ~v4_ver2 & v4_ihl2, "s3_bad_ihl")
        mismatch3 = reg((has_l3_v4 & v4_len2) | (has_l3_v6 & v6_len2), "s3_mismatch")
        has_l3_3 = reg(has_l3_v4 | has_l3_v6 | has_l3_arp, "s3_has_l3")
        has_l3_v4_3 = reg(has_l3_v4, "s3_has_l3_v4")
        ttl_en3 = reg(has_l3_v4 | has_l3_v6, "s3_ttl_en")
        proto_en3 = reg(has_l3_v4 | has_l3_arp, "s3_proto_en")
        l4_v4_3 = reg(has_l3_v4 & ~v4_len2, "s3_l4_v4")
        walk3 = reg(has_l3_v6 & ~v6_len2, "s3_walk")
        x6_3, f6_3 = reg(x6_2, "s3_x6"), reg(f6_2, "s3_f6")
        e1_lt8_3, e1_bw_3 = reg(e1_lt8_2, "s3_e1_lt8"), reg(e1_bw_2, "s3_e1_bw")
        e1_over3 = reg(e1["over"], "s3_e1_over")
        fo1_3 = reg(e1["fo"], "s3_fo1")
        # Where L4 starts unless the chain has two extension headers, and the IP bytes left there.
        off_pre3 = reg(Mux(v4, off4_2, Mux(x6_2, e1["off"], off6_2)), "s3_off_pre", _OFF_BITS)
        rem1 = Signal(16, reset_less=True)
        m.d.comb += rem1.eq(e1["rem"] - 8)
        rem_pre3 = reg(Mux(v4, rem4_2, Mux(x6_2, rem1, rem6_2)), "s3_rem_pre", 16)
        proto_pre3 = reg(Mux(v6, Mux(x6_2, e1["nh"], nh6_2), proto_l3_2), "s3_proto_pre")
        x1_3 = reg(is_ext(e1["nh"]), "s3_x1")
        f1_3 = reg(e1["nh"] == IPV6_EXT_FRAGMENT, "s3_f1")
        e2_lt8_3 = reg(e1["rem"] < 16, "s3_e2_lt8")   # rem1 < 8 (rem1 >= 0 when it matters)
        e2_bw_3 = reg(e1["off"] > window - 8, "s3_e2_bw")
        off1_3 = reg(e1["off"], "s3_off1")
        rem1_3 = reg(rem1, "s3_rem1")
        rem1m8_3 = reg(e1["rem"] - 16, "s3_rem1m8", 16)
        off1p8_3 = reg(e1["off"] + 8, "s3_off1p8", _OFF_BITS)
        e2_l1 = read_l1(win2, e1["off"], 14 + 40 + 8, 0, "s3_e2_l1")
        win3 = reg(win2, "s3_win")

        # ---- S4: extension header 1 outcome; second extension header read (2/2) -------------
        e1_go = walk3 & x6_3
        e1_ok = e1_go & ~e1_lt8_3 & ~e1_bw_3
        trunc_e1_4 = reg(e1_go & (e1_lt8_3 | (~e1_bw_3 & e1_over3)), "s4_trunc_e1")
        bw_e1_4 = reg(e1_go & ~e1_lt8_3 & e1_bw_3, "s4_bw_e1")
        frag_e1_4 = reg(e1_ok & f6_3, "s4_frag_e1")
        walk1_4 = reg(e1_ok & ~e1_over3, "s4_walk1")
        end0_4 = reg(walk3 & ~x6_3, "s4_end0")
        e2word4 = reg(read_l2(e2_l1, off1_3), "s4_e2_word")
        rem1_4 = reg(rem1_3, "s4_rem1")
        x1_4, f1_4 = reg(x1_3, "s4_x1"), reg(f1_3, "s4_f1")
        e2_lt8_4, e2_bw_4 = reg(e2_lt8_3, "s4_e2_lt8"), reg(e2_bw_3, "s4_e2_bw")
        win4 = reg(win3, "s4_win")

        # ---- S5: extension header 2 precompute ----------------------------------------------
        off1p8_4, rem1m8_4 = reg(off1p8_3, "s4_off1p8"), reg(rem1m8_3, "s4_rem1m8")
        e2 = ext_step(e2word4, off1p8_4, rem1m8_4, rem1_4, f1_4, "s5_e2")
        x2_5 = reg(is_ext(view(IPv6ExtHeader, e2word4[:16]).next_header), "s5_x2")
        walk1_5, x1_5, f1_5 = reg(walk1_4, "s5_walk1"), reg(x1_4, "s5_x1"), reg(f1_4, "s5_f1")
        e2_lt8_5, e2_bw_5 = reg(e2_lt8_4, "s5_e2_lt8"), reg(e2_bw_4, "s5_e2_bw")
        end0_5 = reg(end0_4, "s5_end0")
        l4_v4_5 = delay(l4_v4_3, 2, "l4_v4")
        v4_5 = delay(g_v4_2, 3, "v4")
        v6_5 = delay(g_v6_2, 3, "v6")
        # L4 read offset: the two-extension-header case is the only late one. It is chosen here,
        # straight into registers: the word offset for L4 bytes 0..3 and, separately, for bytes
        # 12..15 (a different value, so the two reads never share a select net).
        late3 = delay(g_v6_2, 1, "v6b") & x6_3 & x1_3
        base4 = reg(Mux(late3, off1p8_3, off_pre3), "s4_l4base")
        base12_4 = reg(Mux(late3, off1p8_3 + 12, off_pre3 + 12), "s4_l4base12", _OFF_BITS)
        rbase4 = reg(Mux(late3, rem1m8_3, rem_pre3), "s4_rbase")
        add4 = reg(late3 & ~f1_3, "s4_l4add")
        late4 = reg(late3, "s4_late")
        proto_pre4 = reg(proto_pre3, "s4_proto_pre")
        e2hdr = view(IPv6ExtHeader, e2word4[:16])
        e2extra = Cat(Const(0, 3), e2hdr.hdr_ext_len) & add4.replicate(11)
        l4off5 = reg(base4 + e2extra, "s5_l4off", _OFF_BITS)
        l4off12_5 = reg(base12_4 + e2extra, "s5_l4off12", _OFF_BITS)
        rem5 = reg(rbase4 - e2extra, "s5_rem", 16)
        proto5 = reg(Mux(late4, e2hdr.next_header, proto_pre4), "s5_proto", 8)
        win5 = reg(win4, "s5_win")

        # ---- S6: extension header 2 outcome, end of the chain; L4 read (1/2) ----------------
        e2_go = walk1_5 & x1_5
        e2_ok = e2_go & ~e2_lt8_5 & ~e2_bw_5
        walk2 = e2_ok & ~e2["over"]
        end1 = walk1_5 & ~x1_5
        end2 = walk2 & ~x2_5
        trunc_e2_6 = reg(e2_go & (e2_lt8_5 | (~e2_bw_5 & e2["over"])), "s6_trunc_e2")
        bw_e2_6 = reg((e2_go & ~e2_lt8_5 & e2_bw_5) | (walk2 & x2_5), "s6_bw_e2")
        has_l4off6 = reg(l4_v4_5 | end0_5 | end1 | end2, "s6_has_l4off")
        v6_end6 = reg(end0_5 | end1 | end2, "s6_v6_end")
        l4off6 = reg(l4off5, "s6_l4off")
        rem6 = reg(rem5, "s6_rem")
        proto6 = reg(proto5, "s6_proto")
        frag_e1_5 = reg(frag_e1_4, "s5_frag_e1")
        fo1_5 = delay(fo1_3, 2, "fo1")
        has_l3_v4_5 = delay(has_l3_v4_3, 2, "has_l3_v4")
        frag_e2 = e2_ok & f1_5
        fo4_5 = delay(fo4_2, 3, "fo4")
        frag4_5 = delay(frag4_2, 3, "frag4")
        ip_frag6 = reg((has_l3_v4_5 & frag4_5) | frag_e1_5 | frag_e2, "s6_ip_fragment")
        fo6 = reg(Mux(frag_e2, e2["fo"], Mux(frag_e1_5, fo1_5, Mux(has_l3_v4_5, fo4_5, 0))), "s6_fo", 13)
        fo1z_5 = delay(fo1_3 == 0, 2, "fo1z")
        fo4z_5 = delay(fo4_2 == 0, 3, "fo4z")
        fo_zero6 = reg(Mux(frag_e2, e2["fo"] == 0, Mux(frag_e1_5, fo1z_5, ~has_l3_v4_5 | fo4z_5)),
                       "s6_fo_zero")
        # L4 read, three stages (S6 4:1, S7 4:1, S8 the rest), each word with its own selects.
        l4_w0_l1 = read_l1(win5, l4off5, 14 + 20, 0, "s6_w0_l1")
        l4_w3_l1 = read_l1(win5, l4off12_5, 14 + 20 + 12, 0, "s6_w3_l1")
        w0_sel6 = reg(l4off5[4:2 + idx_bits], "s6_w0_sel")
        w3_sel6 = reg(l4off12_5[4:2 + idx_bits], "s6_w3_sel")
        v4_6, v6_6 = reg(v4_5, "s6_v4"), reg(v6_5, "s6_v6")
        tcp6 = reg(proto5 == IPPROTO_TCP, "s6_tcp")
        udp6 = reg(proto5 == IPPROTO_UDP, "s6_udp")
        icmp4_6 = reg(proto5 == IPPROTO_ICMP, "s6_icmp4")
        icmp6_6 = reg(proto5 == IPPROTO_ICMPV6, "s6_icmp6")
        lt8_6 = reg(rem5 < 8, "s6_lt8")
        lt20_6 = reg(rem5 < 20, "s6_lt20")
        lt64_6 = reg(rem5 < 64, "s6_lt64")
        past8_6 = reg(l4off5 > window - 8, "s6_past8")
        past20_6 = reg(l4off5 > window - 20, "s6_past20")

        # ---- S7: L4 read (2/3); the L4 checks that do not need the L4 bytes, as flags --------
        def read_mid(l1, sel):
            groups = len(l1) // 32
            out = []
            for g in range(0, groups, 4):
                out.append(l1[32 * g:32 * (g + 4)].word_select(sel[:2], 32))
            return Cat(*out)

        w0_l2 = reg(read_mid(l4_w0_l1, w0_sel6), "s7_w0_l2")
        w3_l2 = reg(read_mid(l4_w3_l1, w3_sel6), "s7_w3_l2")
        w0_sel7 = reg(w0_sel6[2:], "s7_w0_sel")
        w3_sel7 = reg(w3_sel6[2:], "s7_w3_sel")
        tcp6, udp6 = reg(tcp6, "s7_tcp"), reg(udp6, "s7_udp")
        icmp4_6, icmp6_6 = reg(icmp4_6, "s7_icmp4"), reg(icmp6_6, "s7_icmp6")
        lt8_6, lt20_6, lt64_6 = reg(lt8_6, "s7_lt8"), reg(lt20_6, "s7_lt20"), reg(lt64_6, "s7_lt64")
        past8_6, past20_6 = reg(past8_6, "s7_past8"), reg(past20_6, "s7_past20")
        fo_zero6 = reg(fo_zero6, "s7_fo_zero")
        v4_6, v6_6 = reg(v4_6, "s7_v4"), reg(v6_6, "s7_v6")
        proto_en_7 = reg(delay(proto_en3, 3, "proto_en") | v6_end6, "s7_proto_en")
        rem6, l4off6, proto6 = reg(rem6, "s7_rem"), reg(l4off6, "s7_l4off"), reg(proto6, "s7_proto")
        has_l4off6 = reg(has_l4off6, "s7_has_l4off")
        ip_frag6, fo6 = reg(ip_frag6, "s7_ip_fragment"), reg(fo6, "s7_fo")
        bw_e2_6, trunc_e2_6 = reg(bw_e2_6, "s7_bw_e2"), reg(trunc_e2_6, "s7_trunc_e2")
        # ---- S8: L4 read (3/3) ----
        if len(w0_sel7):
            w0_7 = reg(w0_l2.word_select(w0_sel7, 32), "s8_w0", 32)
            w3_7 = reg(w3_l2.word_select(w3_sel7, 32), "s8_w3", 32)
        else:
            w0_7, w3_7 = reg(w0_l2, "s8_w0"), reg(w3_l2, "s8_w3")

        # ---- S8: L4 outcome except the TCP data offset ---------------------------------------
        is_tcp = tcp6
        is_udp = udp6
        is_icmp = (v4_6 & icmp4_6) | (v6_6 & icmp6_6)
        l4_go = has_l4off6 & fo_zero6 & (is_tcp | is_udp | is_icmp)
        short = Mux(is_tcp, lt20_6, lt8_6)
        past = Mux(is_tcp, past20_6, past8_6)
        has_l4 = l4_go & ~short & ~past
        has_l4_7 = reg(has_l4, "s8_has_l4")
        trunc_l4_7 = reg(l4_go & short, "s8_trunc_l4")
        bw_l4_7 = reg(l4_go & ~short & past, "s8_bw_l4")
        ports_en7 = reg(has_l4 & (is_tcp | is_udp), "s8_ports_en")
        tcp_en7 = reg(has_l4 & is_tcp, "s8_tcp_en")
        icmp_en7 = reg(has_l4 & is_icmp, "s8_icmp_en")
        # TCP data offset check: the offset nibble is taken straight from the last L4 read mux.
        # 4 * d > rem is d > rem // 4 when rem < 64, never otherwise.
        w3_now = w3_l2.word_select(w3_sel7, 32) if len(w3_sel7) else w3_l2
        d_off = view(Tcp, Cat(Const(0, 96), w3_now, Const(0, 32))).data_offset
        bad_do = (d_off < 5) | (lt64_6 & (d_off > rem6[2:6]))
        tcp_bad7 = reg(has_l4 & is_tcp & bad_do, "s8_tcp_bad")
        pay_en7 = reg(has_l4 & ~(is_tcp & bad_do), "s8_pay_en")
        # TCP payload offset: one adder per candidate word of the last read mux, then select.
        pay_cands = []
        for j in range(len(w3_l2) // 32):
            d_j = view(Tcp, Cat(Const(0, 96), w3_l2[32 * j:32 * (j + 1)], Const(0, 32))).data_offset
            pay_cands.append(Signal(_OFF_BITS, name=f"s8_tcp_pay{j}", reset_less=True))
            m.d.comb += pay_cands[-1].eq(l4off6 + Cat(Const(0, 2), d_j))
        tcp_pay = Cat(*pay_cands).word_select(w3_sel7, _OFF_BITS) if len(w3_sel7) else pay_cands[0]
        pay_off7 = reg(Mux(is_tcp, tcp_pay, l4off6 + 8), "s8_pay_off", _OFF_BITS)
        l4off_7 = reg(Mux(has_l4off6, l4off6, 0), "s8_l4_offset", _OFF_BITS)
        has_l4off7 = reg(has_l4off6, "s8_has_l4_offset")
        ip_proto7 = reg(Mux(proto_en_7, proto6, 0), "s8_ip_proto", 8)
        ip_frag7 = reg(ip_frag6, "s8_ip_fragment")
        fo7 = reg(fo6, "s8_fo")
        bw7 = reg(delay(bw_e1_4, 3, "bw_e1") | bw_e2_6, "s8_bw")
        trunc_l3_7 = reg(delay(trunc_l3_3, 4, "trunc_l3") | delay(trunc_e1_4, 3, "trunc_e1") | trunc_e2_6,
                         "s8_trunc_l3")

        # ---- S9 (meta): TCP data offset; every field gated by its registered enable ----------
        tcp = view(Tcp, Cat(w0_7, Const(0, 64), w3_7, Const(0, 32)))
        icmp = view(Icmp, w0_7)
        pay_en = pay_en7
        out = Signal(PacketMeta, reset_less=True)
        mal = [None] * len(MalformedReason)

        def gate(value, en):
            return Mux(en, value, 0)

        def at7(value, stage, name):
            """A value registered at ``stage``, delayed to the stage before ``meta``."""
            return delay(value, LAST - 1 - stage, name)

        l2_ok7 = at7(l2_ok2, 2, "l2_ok")
        mal[MalformedReason.RUNT] = at7(runt1, 1, "runt")
        mal[MalformedReason.OVERSIZE] = at7(oversize1, 1, "oversize")
        mal[MalformedReason.TRUNC_L2] = at7(trunc_l2_2, 2, "trunc_l2")
        mal[MalformedReason.TRUNC_L3] = trunc_l3_7
        mal[MalformedReason.BAD_IP_VERSION] = at7(bad_ver3, 3, "bad_ver")
        mal[MalformedReason.BAD_IPV4_IHL] = at7(bad_ihl3, 3, "bad_ihl")
        mal[MalformedReason.IP_LEN_MISMATCH] = at7(mismatch3, 3, "mismatch")
        mal[MalformedReason.TRUNC_L4] = trunc_l4_7
        mal[MalformedReason.BAD_TCP_OFFSET] = tcp_bad7
        v0_en7, v1_en7 = at7(v0_en2, 2, "v0_en"), at7(v1_en2, 2, "v1_en")
        vlan0 = at7(vlan0_1, 1, "vlan0")
        vlan1 = at7(vlan1_1, 1, "vlan1")
        eth_en7 = at7(eth_en2, 2, "eth_en")
        has_l3_7 = at7(has_l3_3, 3, "has_l3")
        l3_type = Cat(at7(g_v4_2 | g_arp_2, 2, "l3t0"), at7(g_v6_2 | g_arp_2, 2, "l3t1"))
        m.d.sync += [
            out.frame_len.eq(at7(frame_len1, 1, "frame_len")),
            out.eth_dst.eq(gate(at7(eth_dst1, 1, "eth_dst"), eth_en7)),
            out.eth_src.eq(gate(at7(eth_src1, 1, "eth_src"), eth_en7)),
            out.vlan_count.eq(Cat(v0_en7 & ~v1_en7, v1_en7)),
            out.vlan0_tpid_qinq.eq(gate(vlan0[0], v0_en7)),
            out.vlan0_pcp.eq(gate(vlan0[1:4], v0_en7)),
            out.vlan0_vid.eq(gate(vlan0[4:16], v0_en7)),
            out.vlan1_tpid_qinq.eq(gate(vlan1[0], v1_en7)),
            out.vlan1_pcp.eq(gate(vlan1[1:4], v1_en7)),
            out.vlan1_vid.eq(gate(vlan1[4:16], v1_en7)),
            out.ethertype.eq(gate(at7(ethertype1, 1, "ethertype"), l2_ok7)),
            out.l3_offset.eq(gate(at7(l3off1, 1, "l3_offset"), l2_ok7)),
            out.l3_type.eq(l3_type),
            out.has_l3.eq(has_l3_7),
            out.ip_src.eq(gate(at7(ip_src2, 2, "ip_src"), has_l3_7)),
            out.ip_dst.eq(gate(at7(ip_dst2, 2, "ip_dst"), has_l3_7)),
            out.ip_proto.eq(ip_proto7),
            out.ip_ttl.eq(gate(at7(ttl2, 2, "ttl"), at7(ttl_en3, 3, "ttl_en"))),
            out.ip_fragment.eq(ip_frag7),
            out.ip_frag_offset.eq(fo7),
            out.has_l4.eq(has_l4_7),
            out.sport.eq(gate(tcp.sport, ports_en7)),
            out.dport.eq(gate(tcp.dport, ports_en7)),
            out.tcp_flags.eq(gate(tcp.flags, tcp_en7)),
            out.icmp_type.eq(gate(icmp.type, icmp_en7)),
            out.icmp_code.eq(gate(icmp.code, icmp_en7)),
            out.l4_offset.eq(l4off_7),
            out.has_l4_offset.eq(has_l4off7),
            out.payload_offset.eq(gate(pay_off7, pay_en)),
            out.has_payload_offset.eq(pay_en),
            out.beyond_window.eq(bw7 | bw_l4_7),
            out.malformed.eq(Cat(*mal)),
        ]
        valid8 = reg(valid_f, "s8_valid", reset_less=False)
        port8 = reg(port_f, "s8_in_port")
        rxerr8 = reg(rxerr_f, "s8_rx_error")
        m.d.comb += [
            self.meta.valid.eq(valid8),
            self.meta.payload.meta.eq(out),
            self.meta.payload.in_port.eq(port8),
            self.meta.payload.rx_error.eq(rxerr8),
        ]
        return m
