"""Pipelined parser, stages S1..S3: Ethernet and VLAN tags, the L3 header's bytes, L2 outcome."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux

from hdl.lib.pipeline import Pipeline
from hdl.packet.layouts import Ethernet, VlanTag, view
from hdl.packet.meta import FRAME_LEN_BITS
from hdl.parser.capture import WindowCapture
from hdl.parser.window import L3_BYTES, LEN_BITS, be16, byte_slice, lt

__all__ = ["EthernetStages"]

_FRAME_LEN_MAX = (1 << FRAME_LEN_BITS) - 1
#: Byte positions of the ethertype with 0, 1 and 2 VLAN tags.
ETHERTYPE_POS = (12, 16, 20)
#: The first byte later variable-offset reads can reach (L4 is at least 14 + 20 bytes in).
READ_FROM = 14 + 20


class EthernetStages:
    """S1 copies what is needed from the live window, S2 selects by the VLAN tags, S3 decides L2.

    ====  =============================================================================
    S1    from the live window: the bytes the L3 header and ethertype can come from,
          Ethernet/VLAN fields, the window's readable part; ethertype flags selected from
          the capture flags; a copy of the frame length
    S2    the L3 header and ethertype selected (by copies of the tag flags); length compares
          and the L3 bytes available, from the length's copy
    S3    L2 outcome: truncation, runt, VLAN enables; L3 type flags gated by it
    ====  =============================================================================

    Members (pipeline values, by stage)
    -----------------------------------
    S1 : eth_dst, eth_src, vlan0, vlan1 (``Cat(qinq, pcp, vid)``), l3_offset, window (bytes
        from :data:`READ_FROM` on, zero below)
    S2 : hdr (:data:`~hdl.parser.window.L3_BYTES` bytes at the L3 offset), ethertype,
        frame_len, oversize, avail (frame bytes from the L3 offset), avail40 (from 40 past it),
        e1_len (first extension header's hdr_ext_len, 0 for a fragment header), off6p8 (L3
        offset + 48), is_v4, is_v6, not_v6, is_arp, ext6, frag6 (the IPv6 next header is an
        extension / a fragment header)
    S3 : trunc_l2, runt, eth_en, vlan0_en, vlan1_en, l2_ok, v4, v6, arp (gated by l2_ok)
    """

    def __init__(self, p: Pipeline, cfg, cap: WindowCapture):
        win, flags = cap.win, cap.flags

        # ---- S1: copy what is needed from the live window (it may change after this cycle) --
        tag0 = flags["tpid", 12]
        tag1 = flags["tpid", 16]
        two_tags = tag0 & tag1

        def by_tags(a14, a18, a22):
            return Mux(two_tags, a22, Mux(tag0, a18, a14))

        # Why the ethertype / L3 bytes are copied whole and selected in S2: selected here by the
        # capture's own tag flags, that select net fanned out over the window and missed timing.
        raw_lo, raw_hi = 12, 22 + L3_BYTES
        raw = p.reg(byte_slice(win, raw_lo, raw_hi - raw_lo), 1, "s1_raw")
        self.l3_offset = p.reg(by_tags(14, 18, 22), 1, "s1_l3off", 5)
        l3off40 = p.reg(by_tags(54, 58, 62), 1, "s1_l3off40", 6)
        off6p8 = p.reg(by_tags(62, 66, 70), 1, "s1_off6p8", 7)

        def et_is(fname):
            return by_tags(*(flags[fname, q] for q in ETHERTYPE_POS))

        is_v4 = p.reg(et_is("v4"), 1, "s1_is_v4")
        is_v6 = p.reg(et_is("v6"), 1, "s1_is_v6")
        is_arp = p.reg(et_is("arp"), 1, "s1_is_arp")
        frag6 = p.reg(by_tags(*(flags["nhfrag", q + 8] for q in ETHERTYPE_POS)), 1, "s1_f6")
        ext6 = p.reg(by_tags(*(flags["nhext", q + 8] for q in ETHERTYPE_POS)), 1, "s1_x6")
        eth = view(Ethernet, byte_slice(win, 0, 14))
        vtag0 = view(VlanTag, byte_slice(win, 14, 4))
        vtag1 = view(VlanTag, byte_slice(win, 18, 4))
        self.eth_dst = p.reg(eth.dst, 1, "s1_eth_dst")
        self.eth_src = p.reg(eth.src, 1, "s1_eth_src")
        self.vlan0 = p.reg(Cat(flags["qinq", 12], vtag0.pcp, vtag0.vid), 1, "s1_vlan0")
        self.vlan1 = p.reg(Cat(flags["qinq", 16], vtag1.pcp, vtag1.vid), 1, "s1_vlan1")
        # Why the length only crosses over here (compared in S2): compared straight off S0's
        # register, by the capture, it missed timing at W=512.
        length = p.reg(cap.length, 1, "s1_len")
        tag0_1 = p.at(tag0, 1)
        two_tags_1 = p.reg(two_tags, 1, "s1_tag01")
        self.window = p.reg(Cat(Const(0, 8 * READ_FROM), win[8 * READ_FROM:]), 1, "s1_win")

        # ---- S2: length compares and L3 bytes available; the L3 header selected -------------
        lt14 = p.reg(lt(length, 14), 2, "s2_lt14")
        lt18 = p.reg(lt(length, 18), 2, "s2_lt18")
        lt22 = p.reg(lt(length, 22), 2, "s2_lt22")
        lt60 = p.reg(lt(length, 60), 2, "s2_lt60")
        self.oversize = p.reg(lt(cfg.max_frame, length), 2, "s2_oversize")
        self.frame_len = p.reg(Mux(length[FRAME_LEN_BITS:].any(), _FRAME_LEN_MAX, length[:FRAME_LEN_BITS]), 2,
                               "s2_frame_len")
        self.avail = p.reg(length - self.l3_offset, 2, "s2_avail", LEN_BITS)
        self.avail40 = p.reg(length - l3off40, 2, "s2_avail40", LEN_BITS)

        def by_tags_1(a14, a18, a22):
            return Mux(two_tags_1, a22, Mux(tag0_1, a18, a14))

        def raw_at(start, count):
            return byte_slice(raw, start - raw_lo, count)

        self.hdr = p.reg(by_tags_1(raw_at(14, L3_BYTES), raw_at(18, L3_BYTES), raw_at(22, L3_BYTES)), 2, "s2_hdr")
        self.ethertype = p.reg(by_tags_1(*(be16(raw, q - raw_lo) for q in ETHERTYPE_POS)), 2, "s2_ethertype")
        # The first extension header's hdr_ext_len (L3 byte 41), or 0 for a fragment header.
        self.e1_len = p.reg(Mux(frag6, 0, by_tags_1(*(raw_at(q + 41, 1) for q in (14, 18, 22)))), 2,
                            "s2_e1_len", 8)
        self.off6p8 = p.at(off6p8, 2)
        self.is_v4, self.is_v6, self.is_arp = p.at(is_v4, 2), p.at(is_v6, 2), p.at(is_arp, 2)
        self.not_v6 = p.reg(~is_v6, 2, "s2_not_v6")
        self.frag6, self.ext6 = p.at(frag6, 2), p.at(ext6, 2)

        # ---- S3: L2 decisions; the L3 type flags gated by them --------------------------------
        tag0_2, tag1_2 = p.at(tag0, 2), p.at(tag1, 2)
        l2_short = lt14 | (tag0_2 & lt18) | (tag0_2 & tag1_2 & lt22)
        l2_ok = ~l2_short
        self.trunc_l2 = p.reg(l2_short, 3, "s3_trunc_l2")
        self.runt = p.reg(p.at(cap.phys, 2) & lt60, 3, "s3_runt")
        self.eth_en = p.reg(~lt14, 3, "s3_eth_en")
        self.vlan0_en = p.reg(tag0_2 & ~lt18, 3, "s3_v0_en")
        self.vlan1_en = p.reg(tag0_2 & tag1_2 & ~lt22, 3, "s3_v1_en")
        self.l2_ok = p.reg(l2_ok, 3, "s3_l2_ok")
        self.v4 = p.reg(l2_ok & self.is_v4, 3, "s3_v4")
        self.v6 = p.reg(l2_ok & self.is_v6, 3, "s3_v6")
        self.arp = p.reg(l2_ok & self.is_arp, 3, "s3_arp")

    def __repr__(self):
        return "EthernetStages()"
