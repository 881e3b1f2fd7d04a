"""Header parser: snoops an AXI-Stream and emits one :class:`~hdl.packet.meta.PacketMeta` per frame.

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

from hdl.config import NicConfig
from hdl.lib.stream import AXIStreamSignature, top_byte_count
from hdl.lib.timing import KEEP_COPY
from hdl.packet.layouts import (
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
from hdl.packet.meta import FRAME_LEN_BITS, MalformedReason, PacketMeta, make_parsed_layout

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


def _lt(a, b):
    """``a < b`` (unsigned) as the sign of ``a - b``: a carry chain and nothing after it (Yosys
    maps ``<`` and ``>`` to a shorter chain with LUTs after it)."""
    diff = Value.cast(a) - Value.cast(b)
    return diff[len(diff) - 1]


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

    For timing (ECP5 at 156.25 MHz, where the window and its copies span the die): an operand
    that comes from far across the pipeline (the frame length from the capture, the header
    bytes from the window) first crosses over into a register of its own, with no logic on
    the way; compares and adders feed registers rather than more logic; a wide select or
    clear is a register of its own, not logic on registers; and no write enable fans out over
    more than a quarter of a beat of the window. Each of these removed a path that missed
    156.25 MHz.

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
        # Bytes past tkeep on the last beat are undefined: they are zeroed on the way in, so that
        # each window byte's write takes its data straight from this register (masked in the
        # capture stage, each byte lane's AND fanned out to its slot in every window beat, and
        # that route missed 156 MHz at W=64).
        # The transfer itself is registered as two flags, a beat that is not its frame's last
        # (adv) and a last beat (fin), so that the capture's control logic is one level shallower.
        in_xfer = s.tvalid & s.tready
        adv = Signal(name="snoop_adv")
        fin = Signal(name="snoop_fin")
        snoop = {f: Signal.like(getattr(s, f), name=f"snoop_{f}", reset_less=True)
                 for f in ("tdata", "tkeep", "tuser")}
        keep_mask = Cat(*(s.tkeep[i].replicate(8) for i in range(n_bytes)))
        m.d.sync += [adv.eq(in_xfer & ~s.tlast), fin.eq(in_xfer & s.tlast),
                     snoop["tdata"].eq(s.tdata & keep_mask),
                     *(snoop[f].eq(getattr(s, f)) for f in ("tkeep", "tuser"))]
        # The top kept byte of the beat (one-hot), for the frame length: made on the incoming
        # beat like the capture's compares, so the byte count's OR tree starts from a register
        # of its own (from snoop_tkeep, which the whole window's byte gating fans out from, the
        # count missed 156 MHz at W=512).
        snoop_top = Signal(n_bytes, name="snoop_top", reset_less=True)
        m.d.sync += snoop_top.eq(s.tkeep & ~(s.tkeep >> 1))

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
        m.d.sync += slot.eq(Mux(fin, 1, Mux(adv & ~slot[n_slots], slot << 1, slot)))
        # Each slot's write enable (write its beat, or clear it on a frame's first beat) is a
        # register, set up a cycle ahead from the incoming handshake (decoded from the transfer
        # and ``slot`` in the capture cycle, it missed 156 MHz at W=64): the transfer on the input
        # and "slot k or slot 0 next", written out for a one-hot ``slot``.
        def slot_we_next(k):
            if k == 0:
                return in_xfer & (fin | (~adv & slot[0]))
            return in_xfer & (fin | Mux(adv, slot[k - 1], slot[k] | slot[0]))

        slot_we = Signal(n_slots)
        m.d.sync += slot_we.eq(Cat(*(slot_we_next(k) for k in range(n_slots))))
        # The window keeps its reset: without one, Yosys maps the first-beat clear onto the
        # flip-flops' LSR pins, and that enable fanned out over the whole window missed 156 MHz.
        win = Signal(8 * window)
        data_kept = snoop["tdata"]     # bytes past tkeep already zeroed
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
                    # With a reset, like the window, so that the clears stay off the LSR pin.
                    f = Signal(name=f"cap_{fname}{p}")
                    flags[fname, p] = f
                    value = Mux(kept, pre[fname, b], fn(Const(0, 8 * n_field)))
                    with m.If(slot_we[k]):
                        m.d.sync += f.eq(Mux(slot[k], value, 0) if k else value)

        capture_flags((12, 16, 20), flag_defs, 2)
        # The same for the IPv6 next header byte at the three candidate L3 offsets (+6).
        capture_flags((20, 24, 28), {"nhfrag": lambda v: v == IPV6_EXT_FRAGMENT,
                                     "nhext": lambda v: Cat(*(v == e for e in IPV6_EXT_HEADERS)).any()}, 1)
        with m.If(fin):
            m.d.sync += beat.eq(0)
        with m.Elif(adv & (beat != beat_max)):
            m.d.sync += beat.eq(beat + 1)
        # The window, a beat per slot. Beats past the first also clear their slot on a frame's
        # first beat, so a short frame never sees an older one's bytes. The window spans the
        # die, and a slot's write enable, even straight from a register, missed 156 MHz at
        # W=512 (one net over 512 flip-flops): each slot has a copy of it per 128 flip-flops (up
        # to four). Yosys merges flip-flops of equal input and initial value, so the copies are
        # kept apart by polarity (a clock enable can be inverted for free) and by their power-up
        # value (reset-less: they are set every cycle, and a write before the first frame is
        # harmless).
        n_copies = max(1, min(4, 8 * n_bytes // 128))
        for k in range(n_slots):
            lo, hi = k * n_bytes, min((k + 1) * n_bytes, window)
            for c in range(n_copies):
                c_lo, c_hi = lo + (hi - lo) * c // n_copies, lo + (hi - lo) * (c + 1) // n_copies
                if c_lo == c_hi:
                    continue
                inverted = c & 1
                we = Signal(name=f"win_we{k}_{c}", reset_less=True, init=c >> 1)
                m.d.sync += we.eq(~slot_we_next(k) if inverted else slot_we_next(k))
                data = _bytes(data_kept, c_lo - lo, c_hi - c_lo)
                with m.If(~we if inverted else we):
                    m.d.sync += _bytes(win, c_lo, c_hi - c_lo).eq(Mux(slot[k], data, 0) if k else data)

        phys_mask = sum(1 << p for p in range(len(cfg.ports)) if cfg.is_physical(p))
        phys_mask = Const(phys_mask, 1 << port_bits)
        in_port = snoop["tuser"][1:1 + port_bits]

        # ---- S0: frame length, port, tag flags (the window itself is the live register) -----
        valid0 = reg(fin, "s0_valid", reset_less=False)
        len0 = reg((beat << (n_bytes.bit_length() - 1)) + top_byte_count(snoop_top), "s0_len", _LEN_BITS)
        port0 = reg(in_port, "s0_in_port")
        rxerr0 = reg(snoop["tuser"][0], "s0_rx_error")
        phys0 = reg(phys_mask.bit_select(in_port, 1), "s0_phys")
        tag0_0 = flags["tpid", 12]
        tag1_0 = flags["tpid", 16]

        # The last stage registers ``meta``; everything that comes straight from an early stage
        # is delayed to the stage before it and gated there by a registered enable.
        LAST = 11

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

        # The bytes the ethertype and the L3 header can come from, copied whole: they are
        # selected in S2, by a copy of the tag flags (selected here by the capture's own flags,
        # that select net fanned out over the window and missed 156 MHz).
        raw_lo, raw_hi = 12, 22 + _L3_BYTES
        raw1 = reg(_bytes(win, raw_lo, raw_hi - raw_lo), "s1_raw")
        l3off1 = reg(sel3(14, 18, 22), "s1_l3off", 5)
        l3off40_1 = reg(sel3(54, 58, 62), "s1_l3off40", 6)
        off6p8_1 = reg(sel3(62, 66, 70), "s1_off6p8", 7)
        et_pos = (12, 16, 20)

        def et_is(fname):
            return sel3(*(flags[fname, p] for p in et_pos))

        is_v4_1 = reg(et_is("v4"), "s1_is_v4")
        is_v6_1 = reg(et_is("v6"), "s1_is_v6")
        is_arp_1 = reg(et_is("arp"), "s1_is_arp")
        f6_1 = reg(sel3(*(flags["nhfrag", p + 8] for p in et_pos)), "s1_f6")
        x6_1 = reg(sel3(*(flags["nhext", p + 8] for p in et_pos)), "s1_x6")
        eth = view(Ethernet, _bytes(win, 0, 14))
        vtag0 = view(VlanTag, _bytes(win, 14, 4))
        vtag1 = view(VlanTag, _bytes(win, 18, 4))
        eth_dst1 = reg(eth.dst, "s1_eth_dst")
        eth_src1 = reg(eth.src, "s1_eth_src")
        vlan0_1 = reg(Cat(flags["qinq", 12], vtag0.pcp, vtag0.vid), "s1_vlan0")
        vlan1_1 = reg(Cat(flags["qinq", 16], vtag1.pcp, vtag1.vid), "s1_vlan1")
        # The length only crosses over in this stage and is compared in the next (compared
        # straight off S0's register, by the capture, it missed 156 MHz at W=512).
        len1 = reg(len0, "s1_len")
        phys1 = reg(phys0, "s1_phys")
        tag0_1 = reg(tag0_0, "s1_tag0")
        tag1_1 = reg(tag1_0, "s1_tag1")
        tag01_1 = reg(tag0_0 & tag1_0, "s1_tag01")
        # Window bytes later variable-offset reads can reach (L4 is at least 14 + 20 bytes in).
        win_lo = 14 + 20
        win1 = reg(Cat(Const(0, 8 * win_lo), win[8 * win_lo:]), "s1_win")

        # ---- S2: length compares and L3 bytes available; the L3 header copied again ---------
        lt14_2 = reg(_lt(len1, 14), "s2_lt14")
        lt18_2 = reg(_lt(len1, 18), "s2_lt18")
        lt22_2 = reg(_lt(len1, 22), "s2_lt22")
        lt60_2 = reg(_lt(len1, 60), "s2_lt60")
        phys2 = reg(phys1, "s2_phys")
        oversize2 = reg(_lt(cfg.max_frame, len1), "s2_oversize")
        frame_len2 = reg(Mux(len1[FRAME_LEN_BITS:].any(), _FRAME_LEN_MAX, len1[:FRAME_LEN_BITS]), "s2_frame_len")
        avail2 = reg(len1 - l3off1, "s2_avail", _LEN_BITS)
        avail40_2 = reg(len1 - l3off40_1, "s2_avail40", _LEN_BITS)
        def sel3_1(a14, a18, a22):
            return Mux(tag01_1, a22, Mux(tag0_1, a18, a14))

        def raw(start, count):
            return _bytes(raw1, start - raw_lo, count)

        hdr2 = reg(sel3_1(raw(14, _L3_BYTES), raw(18, _L3_BYTES), raw(22, _L3_BYTES)), "s2_hdr")
        ethertype2 = reg(sel3_1(*(be16(raw1, p - raw_lo) for p in et_pos)), "s2_ethertype")
        # The first extension header's hdr_ext_len (L3 byte 41), or 0 for a fragment header.
        e1_len2 = reg(Mux(f6_1, 0, sel3_1(*(raw(p + 41, 1) for p in (14, 18, 22)))), "s2_e1_len", 8)
        l3off2 = reg(l3off1, "s2_l3off")
        off6p8_2 = reg(off6p8_1, "s2_off6p8")
        tag0_2, tag1_2 = reg(tag0_1, "s2_tag0"), reg(tag1_1, "s2_tag1")
        is_v4_2, is_v6_2 = reg(is_v4_1, "s2_is_v4"), reg(is_v6_1, "s2_is_v6")
        is_arp_2 = reg(is_arp_1, "s2_is_arp")
        not_v6_2 = reg(~is_v6_1, "s2_not_v6")
        f6_2, x6_2 = reg(f6_1, "s2_f6"), reg(x6_1, "s2_x6")
        win2 = reg(win1, "s2_win")

        # ---- S3: L2 decisions; IPv4 / IPv6 / ARP checks as independent flags -----------------
        l2_short = lt14_2 | (tag0_2 & lt18_2) | (tag0_2 & tag1_2 & lt22_2)
        trunc_l2_3 = reg(l2_short, "s3_trunc_l2")
        runt3 = reg(phys2 & lt60_2, "s3_runt")
        l2_ok = ~l2_short
        eth_en3 = reg(~lt14_2, "s3_eth_en")
        v0_en3 = reg(tag0_2 & ~lt18_2, "s3_v0_en")
        v1_en3 = reg(tag0_2 & tag1_2 & ~lt22_2, "s3_v1_en")
        l2_ok3 = reg(l2_ok, "s3_l2_ok")
        g_v4_3 = reg(l2_ok & is_v4_2, "s3_v4")
        g_v6_3 = reg(l2_ok & is_v6_2, "s3_v6")
        g_arp_3 = reg(l2_ok & is_arp_2, "s3_arp")

        ip4 = view(IPv4, _bytes(hdr2, 0, 20))
        ip6 = view(IPv6, _bytes(hdr2, 0, 40))
        arp = view(Arp, _bytes(hdr2, 0, 28))
        ext1 = _bytes(hdr2, 40, 4)
        ihl_bytes = Cat(Const(0, 2), ip4.ihl)
        v4_short3 = reg(_lt(avail2, 20), "s3_v4_short")
        v4_ver3 = reg(ip4.version != 4, "s3_v4_ver")
        v4_ihl3 = reg(ip4.ihl < 5, "s3_v4_ihl")
        v4_topt3 = reg(_lt(avail2, ihl_bytes), "s3_v4_topt")
        # IP length mismatch, as flags of one carry chain each (combined in S4): the 16-bit IP
        # lengths are compared with the low 16 bits of the 18-bit byte counts, whose top bits
        # are flags of their own (mixed widths put logic after the carry chain).
        v4_long3 = reg(_lt(avail2[:16], ip4.total_length), "s3_v4_long")
        v4_lshort3 = reg(_lt(ip4.total_length, ihl_bytes), "s3_v4_lshort")
        avail_big3 = reg(avail2[16:].any(), "s3_avail_big")
        off4_3 = reg(l3off2 + ihl_bytes, "s3_off4", _OFF_BITS)
        rem4_3 = reg(ip4.total_length - ihl_bytes, "s3_rem4", 16)
        fo4_3 = reg(ip4.frag_offset, "s3_fo4")
        frag4_3 = reg(ip4.flag_mf | (ip4.frag_offset != 0), "s3_frag4")
        v6_short3 = reg(_lt(avail2, 40), "s3_v6_short")
        v6_ver3 = reg(ip6.version != 6, "s3_v6_ver")
        v6_long3 = reg(_lt(avail40_2[:16], ip6.payload_length), "s3_v6_long")
        avail40_big3 = reg(avail40_2[16:].any(), "s3_avail40_big")
        off6 = l3off2 + 40
        off6_3 = reg(off6, "s3_off6", _OFF_BITS)
        rem6_3 = reg(ip6.payload_length, "s3_rem6")
        nh6_3 = reg(ip6.next_header, "s3_nh6")
        arp_ok = (arp.htype == 1) & (arp.ptype == ETH_IPV4) & (arp.hlen == 6) & (arp.plen == 4)
        arp_ok3 = reg(arp_ok, "s3_arp_ok")
        arp_s8_3 = reg(_lt(avail2, 8), "s3_arp_s8")
        arp_s28_3 = reg(_lt(avail2, 28), "s3_arp_s28")
        def ip_addr(v6, v4, spa):
            # Bits 32..127 are IPv6 only: their clear is driven straight by a register of its
            # own (Yosys puts it on the flip-flops' LSR; through an inverter, that missed 156 MHz).
            v6 = Value.cast(v6)
            return Cat(Mux(is_v6_2, v6[:32], Mux(is_v4_2, v4, spa)), Mux(not_v6_2, 0, v6[32:]))

        ip_src3 = reg(ip_addr(ip6.src, ip4.src, arp.spa), "s3_ip_src", 128)
        ip_dst3 = reg(ip_addr(ip6.dst, ip4.dst, arp.tpa), "s3_ip_dst", 128)
        ttl3 = reg(Mux(is_v6_2, ip6.hop_limit, ip4.ttl), "s3_ttl")
        proto_l3_3 = reg(Mux(is_v4_2, ip4.protocol, arp.oper[:8]), "s3_proto_l3")

        def is_ext(nh):
            return Cat(*(nh == v for v in IPV6_EXT_HEADERS)).any()

        def ext_step(word, ext_len, offp8, rem_base, rem, name):
            """Precomputed results of walking the extension header ``word``.

            ``offp8`` is its offset plus 8, ``rem`` the IP bytes left at it and ``rem_base`` a
            value the header's size beyond 8 bytes (``8 * hdr_ext_len``) is subtracted from, so
            that every result is a single carry chain: the size is ``8 * (hdr_ext_len + 1)``
            and ``size > rem`` is ``hdr_ext_len >= rem // 8``. ``ext_len`` is a register of
            ``hdr_ext_len``, already 0 for a fragment header (always 8 bytes), so the adders take
            registers only. ``fits`` is ``hdr_ext_len < rem // 8`` on bits 3..10 of ``rem`` only,
            registered straight off its carry chain: a stage later the caller combines it with
            the fragment flag (a fragment header always fits) and with ``rem >= 2048`` (then the
            header always fits too).
            """
            ext = view(IPv6ExtHeader, word[:16])
            frag = view(IPv6Fragment, Cat(word, Const(0, 32)))
            extra = Cat(Const(0, 3), ext_len)     # 8 * hdr_ext_len, or 0 for a fragment header
            return {
                "fits": reg(_lt(ext.hdr_ext_len, rem[3:11]), f"{name}_fits"),
                "off": reg(offp8 + extra, f"{name}_off", _OFF_BITS),
                "off_next": offp8 + extra,      # its input, for copies of it (see read_l1)
                "rem": reg(rem_base - extra, f"{name}_rem", 16),
                "nh": reg(ext.next_header, f"{name}_nh"),
                "fo": reg(frag.frag_offset, f"{name}_fo"),
                "fo0": reg(frag.frag_offset == 0, f"{name}_fo0"),
            }

        # First extension header: its bytes came with the L3 header.
        x6_3 = reg(x6_2, "s3_x6")
        f6_3 = reg(f6_2, "s3_f6")
        e1_lt8_3 = reg(_lt(ip6.payload_length, 8), "s3_e1_lt8")
        e1_bw_3 = reg(_lt(window - 8, off6), "s3_e1_bw")
        # e1["rem"] is the IP bytes left after the header plus 8 (8 is taken off in S4).
        e1 = ext_step(ext1, e1_len2, off6p8_2, ip6.payload_length, ip6.payload_length, "s3_e1")
        pl_big3 = reg(ip6.payload_length[11:].any(), "s3_pl_big")
        win3 = reg(win2, "s3_win")

        # Variable-offset reads: every offset past the fixed L3 header is congruent to 2 mod 4
        # (l3_offset is 14/18/22, later steps are multiples of 4), so the muxes select 32-bit
        # words of the window shifted by 2 bytes. The word count is a power of two so the index
        # is a plain slice of the offset; reads past the window are garbage and never used (the
        # beyond-window checks stop first). Each read takes three stages: 4:1 on the low index
        # bits, 4:1 on the next two, then the rest.
        n_words = 1 << ((window - 2 + 3) // 4 - 1).bit_length()
        idx_bits = n_words.bit_length() - 1

        def read_l1(vec, off, off_next, min_off, word_offset, name):
            """First read stage: a 4:1 word mux per group of four window words, on bits 2..3 of
            the offset register ``off``. Each group takes those bits from a kept copy of its own,
            loaded from ``off_next`` (the input of ``off``): the one register fanned out to every
            group of the window crossed the die on the ECP5 (a nic_top critical path)."""
            off.attrs[KEEP_COPY] = 1
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
                    sel = Signal(2, name=f"{name}_sel{g}", reset_less=True, attrs={KEEP_COPY: 1})
                    m.d.sync += sel.eq(Value.cast(off_next)[2:4])
                    groups.append(Cat(*grp).word_select(sel, 32))
            return reg(Cat(*groups), name)

        def read_mid(l1, sel):
            groups = len(l1) // 32
            out = []
            for g in range(0, groups, 4):
                out.append(l1[32 * g:32 * (g + 4)].word_select(sel[:2], 32))
            return Cat(*out)

        def read_last(l2, sel):
            return l2.word_select(sel, 32) if len(sel) else l2

        # ---- S4: L3 outcome; second extension header read (1/3); ext 2 precompute -----------
        v4, v6, ar = g_v4_3, g_v6_3, g_arp_3
        v4_hdr_ok = v4 & ~v4_short3 & ~v4_ver3 & ~v4_ihl3
        v4_len3 = (v4_long3 & ~avail_big3) | v4_lshort3
        v6_len3 = v6_long3 & ~avail40_big3
        has_l3_v4 = v4_hdr_ok & ~v4_topt3
        has_l3_v6 = v6 & ~v6_short3 & ~v6_ver3
        has_l3_arp = ar & ~arp_s8_3 & arp_ok3 & ~arp_s28_3
        trunc_l3_4 = reg((v4 & v4_short3) | (v4_hdr_ok & v4_topt3) | (v6 & v6_short3)
                         | (ar & (arp_s8_3 | (arp_ok3 & arp_s28_3))), "s4_trunc_l3")
        bad_ver4 = reg((v4 & ~v4_short3 & v4_ver3) | (v6 & ~v6_short3 & v6_ver3), "s4_bad_ver")
        bad_ihl4 = reg(v4 & ~v4_short3 & ~v4_ver3 & v4_ihl3, "s4_bad_ihl")
        mismatch4 = reg((has_l3_v4 & v4_len3) | (has_l3_v6 & v6_len3), "s4_mismatch")
        has_l3_4 = reg(has_l3_v4 | has_l3_v6 | has_l3_arp, "s4_has_l3")
        has_l3_v4_4 = reg(has_l3_v4, "s4_has_l3_v4")
        ttl_en4 = reg(has_l3_v4 | has_l3_v6, "s4_ttl_en")
        proto_en4 = reg(has_l3_v4 | has_l3_arp, "s4_proto_en")
        l4_v4_4 = reg(has_l3_v4 & ~v4_len3, "s4_l4_v4")
        walk4 = reg(has_l3_v6 & ~v6_len3, "s4_walk")
        x6_4, f6_4 = reg(x6_3, "s4_x6"), reg(f6_3, "s4_f6")
        e1_lt8_4, e1_bw_4 = reg(e1_lt8_3, "s4_e1_lt8"), reg(e1_bw_3, "s4_e1_bw")
        e1_over4 = reg(~f6_3 & ~pl_big3 & ~e1["fits"], "s4_e1_over")
        fo1_4 = reg(e1["fo"], "s4_fo1")
        # Where L4 starts unless the chain has two extension headers (the IP bytes left there
        # are chosen in S5, from registers).
        off_pre4 = reg(Mux(v4, off4_3, Mux(x6_3, e1["off"], off6_3)), "s4_off_pre", _OFF_BITS)
        v4_4 = reg(v4, "s4_v4")
        rem4_4, rem6_4 = reg(rem4_3, "s4_rem4"), reg(rem6_3, "s4_rem6")
        proto_pre4 = reg(Mux(v6, Mux(x6_3, e1["nh"], nh6_3), proto_l3_3), "s4_proto_pre")
        x1_4 = reg(is_ext(e1["nh"]), "s4_x1")
        # L4 starts after a second extension header: the select of S5's offset muxes.
        late4 = reg(g_v6_3 & x6_3 & is_ext(e1["nh"]), "s4_late")
        f1_4 = reg(e1["nh"] == IPV6_EXT_FRAGMENT, "s4_f1")
        e2_lt8_4 = reg(_lt(e1["rem"], 16), "s4_e2_lt8")   # rem1 < 8 (rem1 >= 0 when it matters)
        e2_bw_4 = reg(_lt(window - 8, e1["off"]), "s4_e2_bw")
        e2_sel4 = reg(e1["off"][4:2 + idx_bits], "s4_e2_sel")
        rem1_4 = reg(e1["rem"] - 8, "s4_rem1", 16)
        rem1m8_4 = reg(e1["rem"] - 16, "s4_rem1m8", 16)
        off1p8_4 = reg(e1["off"] + 8, "s4_off1p8", _OFF_BITS)
        e2_l1 = read_l1(win3, e1["off"], e1["off_next"], 14 + 40 + 8, 0, "s4_e2_l1")
        win4 = reg(win3, "s4_win")

        # ---- S5: extension header 1 outcome; second extension header read (2/3) -------------
        e1_go = walk4 & x6_4
        e1_ok = e1_go & ~e1_lt8_4 & ~e1_bw_4
        trunc_e1_5 = reg(e1_go & (e1_lt8_4 | (~e1_bw_4 & e1_over4)), "s5_trunc_e1")
        bw_e1_5 = reg(e1_go & ~e1_lt8_4 & e1_bw_4, "s5_bw_e1")
        frag_e1_5 = reg(e1_ok & f6_4, "s5_frag_e1")
        walk1_5 = reg(e1_ok & ~e1_over4, "s5_walk1")
        end0_5 = reg(walk4 & ~x6_4, "s5_end0")
        e2_l2 = reg(read_mid(e2_l1, e2_sel4), "s5_e2_l2")
        e2_sel5 = reg(e2_sel4[2:], "s5_e2_sel")
        rem1_5 = reg(rem1_4, "s5_rem1")
        x1_5, f1_5 = reg(x1_4, "s5_x1"), reg(f1_4, "s5_f1")
        e2_lt8_5, e2_bw_5 = reg(e2_lt8_4, "s5_e2_lt8"), reg(e2_bw_4, "s5_e2_bw")
        off1p8_5, rem1m8_5 = reg(off1p8_4, "s5_off1p8"), reg(rem1m8_4, "s5_rem1m8")
        # L4 read offset: the two-extension-header case is the only late one. Its base is chosen
        # here, straight into registers: the word offset for L4 bytes 0..3 and, separately, for
        # bytes 12..15 (a different value, so the two reads never share a select net).
        base5 = reg(Mux(late4, off1p8_4, off_pre4), "s5_l4base")
        base12_5 = reg(Mux(late4, off1p8_4 + 12, off_pre4 + 12), "s5_l4base12", _OFF_BITS)
        rbase5 = reg(Mux(late4, rem1m8_4, Mux(v4_4, rem4_4, Mux(x6_4, rem1_4, rem6_4))), "s5_rbase", 16)
        add5 = reg(late4 & ~f1_4, "s5_l4add")
        late5 = reg(late4, "s5_late")
        proto_pre5 = reg(proto_pre4, "s5_proto_pre")
        win5 = reg(win4, "s5_win")

        # ---- S6: second extension header read (3/3) ------------------------------------------
        # Only a 2:1 mux is left for this stage, so its register can sit by S7's compares and
        # adders (straight from an 8:1 read mux's register, that route missed 156 MHz at W=64).
        e2word_now = read_last(e2_l2, e2_sel5)
        e2word6 = reg(e2word_now, "s6_e2_word", 32)
        # Its hdr_ext_len for S7's adders, masked here: 0 for a fragment header, and for the L4
        # offset 0 unless L4 comes after it.
        e2_len_now = view(IPv6ExtHeader, e2word_now[:16]).hdr_ext_len
        e2_len6 = reg(Mux(f1_5, 0, e2_len_now), "s6_e2_len", 8)
        e2_l4len6 = reg(Mux(add5, e2_len_now, 0), "s6_e2_l4len", 8)
        rem1_6 = reg(rem1_5, "s6_rem1")
        rem1_big6 = reg(rem1_5[11:].any(), "s6_rem1_big")
        x1_6, f1_6 = reg(x1_5, "s6_x1"), reg(f1_5, "s6_f1")
        e2_lt8_6, e2_bw_6 = reg(e2_lt8_5, "s6_e2_lt8"), reg(e2_bw_5, "s6_e2_bw")
        off1p8_6, rem1m8_6 = reg(off1p8_5, "s6_off1p8"), reg(rem1m8_5, "s6_rem1m8")
        walk1_6, end0_6 = reg(walk1_5, "s6_walk1"), reg(end0_5, "s6_end0")
        base6, base12_6 = reg(base5, "s6_l4base"), reg(base12_5, "s6_l4base12")
        rbase6, late6 = reg(rbase5, "s6_rbase"), reg(late5, "s6_late")
        proto_pre6 = reg(proto_pre5, "s6_proto_pre")
        win6 = reg(win5, "s6_win")

        # ---- S7: extension header 2 precompute; final L4 offset, length, protocol -----------
        e2 = ext_step(e2word6, e2_len6, off1p8_6, rem1m8_6, rem1_6, "s7_e2")
        e2hdr = view(IPv6ExtHeader, e2word6[:16])
        x2_7 = reg(is_ext(e2hdr.next_header), "s7_x2")
        walk1_7, x1_7, f1_7 = reg(walk1_6, "s7_walk1"), reg(x1_6, "s7_x1"), reg(f1_6, "s7_f1")
        e2_lt8_7, e2_bw_7 = reg(e2_lt8_6, "s7_e2_lt8"), reg(e2_bw_6, "s7_e2_bw")
        rem1_big7 = reg(rem1_big6, "s7_rem1_big")
        end0_7 = reg(end0_6, "s7_end0")
        l4_v4_7 = delay(l4_v4_4, 3, "l4_v4")
        v4_7 = delay(g_v4_3, 4, "v4")
        v6_7 = delay(g_v6_3, 4, "v6")
        e2extra = Cat(Const(0, 3), e2_l4len6)
        l4off6, l4off12_6 = base6 + e2extra, base12_6 + e2extra
        l4off7 = reg(l4off6, "s7_l4off", _OFF_BITS)
        l4off12_7 = reg(l4off12_6, "s7_l4off12", _OFF_BITS)
        rem7 = reg(rbase6 - e2extra, "s7_rem", 16)
        proto7 = reg(Mux(late6, e2hdr.next_header, proto_pre6), "s7_proto", 8)
        win7 = reg(win6, "s7_win")

        # ---- S8: extension header 2 outcome, end of the chain; L4 read (1/3) ----------------
        e2_go = walk1_7 & x1_7
        e2_ok = e2_go & ~e2_lt8_7 & ~e2_bw_7
        e2_over = ~f1_7 & ~rem1_big7 & ~e2["fits"]
        walk2 = e2_ok & ~e2_over
        end1 = walk1_7 & ~x1_7
        end2 = walk2 & ~x2_7
        trunc_e2_8 = reg(e2_go & (e2_lt8_7 | (~e2_bw_7 & e2_over)), "s8_trunc_e2")
        bw_e2_8 = reg((e2_go & ~e2_lt8_7 & e2_bw_7) | (walk2 & x2_7), "s8_bw_e2")
        has_l4off8 = reg(l4_v4_7 | end0_7 | end1 | end2, "s8_has_l4off")
        v6_end8 = reg(end0_7 | end1 | end2, "s8_v6_end")
        l4off8 = reg(l4off7, "s8_l4off")
        rem8 = reg(rem7, "s8_rem")
        proto8 = reg(proto7, "s8_proto")
        frag_e1_7 = delay(frag_e1_5, 2, "frag_e1")
        fo1_7 = delay(fo1_4, 3, "fo1")
        has_l3_v4_7 = delay(has_l3_v4_4, 3, "has_l3_v4")
        frag_e2 = e2_ok & f1_7
        fo4_7 = delay(fo4_3, 4, "fo4")
        frag4_7 = delay(frag4_3, 4, "frag4")
        ip_frag8 = reg((has_l3_v4_7 & frag4_7) | frag_e1_7 | frag_e2, "s8_ip_fragment")
        fo8 = reg(Mux(frag_e2, e2["fo"], Mux(frag_e1_7, fo1_7, Mux(has_l3_v4_7, fo4_7, 0))), "s8_fo", 13)
        fo1z_7 = delay(e1["fo0"], 4, "fo1z")
        fo4z_7 = delay(fo4_3 == 0, 4, "fo4z")
        fo_zero8 = reg(Mux(frag_e2, e2["fo0"], Mux(frag_e1_7, fo1z_7, ~has_l3_v4_7 | fo4z_7)),
                       "s8_fo_zero")
        # L4 read, three stages (S8 4:1, S9 4:1, S10 the rest), each word with its own selects.
        l4_w0_l1 = read_l1(win7, l4off7, l4off6, 14 + 20, 0, "s8_w0_l1")
        l4_w3_l1 = read_l1(win7, l4off12_7, l4off12_6, 14 + 20 + 12, 0, "s8_w3_l1")
        w0_sel8 = reg(l4off7[4:2 + idx_bits], "s8_w0_sel")
        w3_sel8 = reg(l4off12_7[4:2 + idx_bits], "s8_w3_sel")
        v4_8, v6_8 = reg(v4_7, "s8_v4"), reg(v6_7, "s8_v6")
        tcp8 = reg(proto7 == IPPROTO_TCP, "s8_tcp")
        udp8 = reg(proto7 == IPPROTO_UDP, "s8_udp")
        icmp4_8 = reg(proto7 == IPPROTO_ICMP, "s8_icmp4")
        icmp6_8 = reg(proto7 == IPPROTO_ICMPV6, "s8_icmp6")
        lt8_8 = reg(_lt(rem7, 8), "s8_lt8")
        lt20_8 = reg(_lt(rem7, 20), "s8_lt20")
        lt64_8 = reg(_lt(rem7, 64), "s8_lt64")
        past8_8 = reg(_lt(window - 8, l4off7), "s8_past8")
        past20_8 = reg(_lt(window - 20, l4off7), "s8_past20")

        # ---- S9: L4 read (2/3); the L4 checks that do not need the L4 bytes, as flags --------
        w0_l2 = reg(read_mid(l4_w0_l1, w0_sel8), "s9_w0_l2")
        w3_l2 = reg(read_mid(l4_w3_l1, w3_sel8), "s9_w3_l2")
        w0_sel9 = reg(w0_sel8[2:], "s9_w0_sel")
        w3_sel9 = reg(w3_sel8[2:], "s9_w3_sel")
        tcp9, udp9 = reg(tcp8, "s9_tcp"), reg(udp8, "s9_udp")
        icmp4_9, icmp6_9 = reg(icmp4_8, "s9_icmp4"), reg(icmp6_8, "s9_icmp6")
        lt8_9, lt20_9, lt64_9 = reg(lt8_8, "s9_lt8"), reg(lt20_8, "s9_lt20"), reg(lt64_8, "s9_lt64")
        past8_9, past20_9 = reg(past8_8, "s9_past8"), reg(past20_8, "s9_past20")
        fo_zero9 = reg(fo_zero8, "s9_fo_zero")
        v4_9, v6_9 = reg(v4_8, "s9_v4"), reg(v6_8, "s9_v6")
        proto_en9 = reg(delay(proto_en4, 4, "proto_en") | v6_end8, "s9_proto_en")
        rem9, l4off9, proto9 = reg(rem8, "s9_rem"), reg(l4off8, "s9_l4off"), reg(proto8, "s9_proto")
        has_l4off9 = reg(has_l4off8, "s9_has_l4off")
        ip_frag9, fo9 = reg(ip_frag8, "s9_ip_fragment"), reg(fo8, "s9_fo")
        bw_e2_9, trunc_e2_9 = reg(bw_e2_8, "s9_bw_e2"), reg(trunc_e2_8, "s9_trunc_e2")

        # ---- S10: L4 read (3/3); L4 outcome, TCP data offset check ---------------------------
        w0_10 = reg(read_last(w0_l2, w0_sel9), "s10_w0", 32)
        w3_10 = reg(read_last(w3_l2, w3_sel9), "s10_w3", 32)

        is_tcp = tcp9
        is_udp = udp9
        is_icmp = (v4_9 & icmp4_9) | (v6_9 & icmp6_9)
        l4_go = has_l4off9 & fo_zero9 & (is_tcp | is_udp | is_icmp)
        short = Mux(is_tcp, lt20_9, lt8_9)
        past = Mux(is_tcp, past20_9, past8_9)
        has_l4 = l4_go & ~short & ~past
        has_l4_10 = reg(has_l4, "s10_has_l4")
        trunc_l4_10 = reg(l4_go & short, "s10_trunc_l4")
        bw_l4_10 = reg(l4_go & ~short & past, "s10_bw_l4")
        ports_clr10 = reg(~(has_l4 & (is_tcp | is_udp)), "s10_ports_clr")
        tcp_clr10 = reg(~(has_l4 & is_tcp), "s10_tcp_clr")
        icmp_clr10 = reg(~(has_l4 & is_icmp), "s10_icmp_clr")
        tcp10 = reg(is_tcp, "s10_tcp")
        # TCP data offset check (combined with the L4 outcome in S11): the offset nibble is
        # taken straight from the last L4 read mux. 4 * d > rem is d > rem // 4 when rem < 64,
        # never otherwise.
        w3_now = read_last(w3_l2, w3_sel9)
        d_off = view(Tcp, Cat(Const(0, 96), w3_now, Const(0, 32))).data_offset
        bad_do10 = reg((d_off < 5) | (lt64_9 & (d_off > rem9[2:6])), "s10_bad_do")
        # TCP payload offset: one adder per candidate word of the last read mux, each into a
        # register; S11 selects.
        pay_cands10 = []
        for j in range(len(w3_l2) // 32):
            d_j = view(Tcp, Cat(Const(0, 96), w3_l2[32 * j:32 * (j + 1)], Const(0, 32))).data_offset
            pay_cands10.append(reg(l4off9 + Cat(Const(0, 2), d_j), f"s10_tcp_pay{j}", _OFF_BITS))
        w3_sel10 = reg(w3_sel9, "s10_w3_sel")
        l4p8_10 = reg(l4off9 + 8, "s10_l4p8", _OFF_BITS)
        l4off10 = reg(Mux(has_l4off9, l4off9, 0), "s10_l4_offset", _OFF_BITS)
        has_l4off10 = reg(has_l4off9, "s10_has_l4_offset")
        ip_proto10 = reg(Mux(proto_en9, proto9, 0), "s10_ip_proto", 8)
        ip_frag10 = reg(ip_frag9, "s10_ip_fragment")
        fo10 = reg(fo9, "s10_fo")
        bw10 = reg(delay(bw_e1_5, 4, "bw_e1") | bw_e2_9, "s10_bw")
        trunc_l3_10 = reg(delay(trunc_l3_4, 5, "trunc_l3") | delay(trunc_e1_5, 4, "trunc_e1") | trunc_e2_9,
                          "s10_trunc_l3")

        # ---- S11 (meta): every field gated by its registered enable --------------------------
        tcp_bad = has_l4_10 & tcp10 & bad_do10
        pay_en = has_l4_10 & ~(tcp10 & bad_do10)
        tcp_pay = Cat(*pay_cands10).word_select(w3_sel10, _OFF_BITS) if len(w3_sel10) else pay_cands10[0]
        pay_off = Mux(tcp10, tcp_pay, l4p8_10)
        tcp = view(Tcp, Cat(w0_10, Const(0, 64), w3_10, Const(0, 32)))
        icmp = view(Icmp, w0_10)
        out = Signal(PacketMeta, reset_less=True)
        mal = [None] * len(MalformedReason)

        def gate(value, clr):
            """``value``, or 0 where ``clr``: the meta register's synchronous clear, driven
            straight by a register (from an enable through an inverter, it missed 156 MHz)."""
            return Mux(clr, 0, value)

        def clr_last(en, stage, name):
            """The complement of ``en`` (registered at ``stage``), delayed to stage LAST - 1."""
            return to_last(~en, stage, name)

        l2_clr10 = clr_last(l2_ok3, 3, "l2_clr")
        mal[MalformedReason.RUNT] = to_last(runt3, 3, "runt")
        mal[MalformedReason.OVERSIZE] = to_last(oversize2, 2, "oversize")
        mal[MalformedReason.TRUNC_L2] = to_last(trunc_l2_3, 3, "trunc_l2")
        mal[MalformedReason.TRUNC_L3] = trunc_l3_10
        mal[MalformedReason.BAD_IP_VERSION] = to_last(bad_ver4, 4, "bad_ver")
        mal[MalformedReason.BAD_IPV4_IHL] = to_last(bad_ihl4, 4, "bad_ihl")
        mal[MalformedReason.IP_LEN_MISMATCH] = to_last(mismatch4, 4, "mismatch")
        mal[MalformedReason.TRUNC_L4] = trunc_l4_10
        mal[MalformedReason.BAD_TCP_OFFSET] = tcp_bad
        v0_en10, v1_en10 = to_last(v0_en3, 3, "v0_en"), to_last(v1_en3, 3, "v1_en")
        v0_clr10, v1_clr10 = clr_last(v0_en3, 3, "v0_clr"), clr_last(v1_en3, 3, "v1_clr")
        vlan0 = to_last(vlan0_1, 1, "vlan0")
        vlan1 = to_last(vlan1_1, 1, "vlan1")
        eth_clr10 = clr_last(eth_en3, 3, "eth_clr")
        has_l3_10 = to_last(has_l3_4, 4, "has_l3")
        ip_clr10 = clr_last(has_l3_4, 4, "ip_clr")
        l3_type = Cat(to_last(g_v4_3 | g_arp_3, 3, "l3t0"), to_last(g_v6_3 | g_arp_3, 3, "l3t1"))
        m.d.sync += [
            out.frame_len.eq(to_last(frame_len2, 2, "frame_len")),
            out.eth_dst.eq(gate(to_last(eth_dst1, 1, "eth_dst"), eth_clr10)),
            out.eth_src.eq(gate(to_last(eth_src1, 1, "eth_src"), eth_clr10)),
            out.vlan_count.eq(Cat(v0_en10 & ~v1_en10, v1_en10)),
            out.vlan0_tpid_qinq.eq(gate(vlan0[0], v0_clr10)),
            out.vlan0_pcp.eq(gate(vlan0[1:4], v0_clr10)),
            out.vlan0_vid.eq(gate(vlan0[4:16], v0_clr10)),
            out.vlan1_tpid_qinq.eq(gate(vlan1[0], v1_clr10)),
            out.vlan1_pcp.eq(gate(vlan1[1:4], v1_clr10)),
            out.vlan1_vid.eq(gate(vlan1[4:16], v1_clr10)),
            out.ethertype.eq(gate(to_last(ethertype2, 2, "ethertype"), l2_clr10)),
            out.l3_offset.eq(gate(to_last(l3off1, 1, "l3_offset"), l2_clr10)),
            out.l3_type.eq(l3_type),
            out.has_l3.eq(has_l3_10),
            out.ip_src.eq(gate(to_last(ip_src3, 3, "ip_src"), ip_clr10)),
            out.ip_dst.eq(gate(to_last(ip_dst3, 3, "ip_dst"), ip_clr10)),
            out.ip_proto.eq(ip_proto10),
            out.ip_ttl.eq(gate(to_last(ttl3, 3, "ttl"), clr_last(ttl_en4, 4, "ttl_clr"))),
            out.ip_fragment.eq(ip_frag10),
            out.ip_frag_offset.eq(fo10),
            out.has_l4.eq(has_l4_10),
            out.sport.eq(gate(tcp.sport, ports_clr10)),
            out.dport.eq(gate(tcp.dport, ports_clr10)),
            out.tcp_flags.eq(gate(tcp.flags, tcp_clr10)),
            out.icmp_type.eq(gate(icmp.type, icmp_clr10)),
            out.icmp_code.eq(gate(icmp.code, icmp_clr10)),
            out.l4_offset.eq(l4off10),
            out.has_l4_offset.eq(has_l4off10),
            out.payload_offset.eq(gate(pay_off, ~pay_en)),
            out.has_payload_offset.eq(pay_en),
            out.beyond_window.eq(bw10 | bw_l4_10),
            out.malformed.eq(Cat(*mal)),
        ]
        valid11 = reg(valid_f, "s11_valid", reset_less=False)
        port11 = reg(port_f, "s11_in_port")
        rxerr11 = reg(rxerr_f, "s11_rx_error")
        m.d.comb += [
            self.meta.valid.eq(valid11),
            self.meta.payload.meta.eq(out),
            self.meta.payload.in_port.eq(port11),
            self.meta.payload.rx_error.eq(rxerr11),
        ]
        return m
