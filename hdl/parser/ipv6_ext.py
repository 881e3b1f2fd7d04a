"""Pipelined parser, stages S3..S8: the IPv6 extension header chain (up to two headers), where
L4 starts, the IP bytes left there, the L4 protocol and the fragment fields."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux

from hdl.lib.pipeline import Pipeline
from hdl.packet.layouts import IPV6_EXT_FRAGMENT, IPV6_EXT_HEADERS, IPv6, IPv6ExtHeader, IPv6Fragment, view
from hdl.parser.l2 import EthernetStages
from hdl.parser.l3 import L3Stages
from hdl.parser.window import OFF_BITS, WindowReader, byte_slice, lt

__all__ = ["ExtensionStep", "Ipv6ExtensionStages", "is_ext"]


def is_ext(nh):
    """The next-header value names an extension header docs/parser.md walks."""
    return Cat(*(nh == v for v in IPV6_EXT_HEADERS)).any()


class ExtensionStep:
    """Precomputed results of walking the extension header ``word``, registered at ``stage``.

    ``offp8`` is its offset plus 8, ``rem`` the IP bytes left at it and ``rem_base`` a value the
    header's size beyond 8 bytes (``8 * hdr_ext_len``) is subtracted from, so that every result is
    a single carry chain: the size is ``8 * (hdr_ext_len + 1)`` and ``size > rem`` is
    ``hdr_ext_len >= rem // 8``. ``ext_len`` is a register of ``hdr_ext_len``, already 0 for a
    fragment header (always 8 bytes), so the adders take registers only. ``fits`` is
    ``hdr_ext_len < rem // 8`` on bits 3..10 of ``rem`` only, registered straight off its carry
    chain: a stage later the caller combines it with the fragment flag (a fragment header always
    fits) and with ``rem >= 2048`` (then the header always fits too).

    Members
    -------
    fits, off, rem, nh, fo, fo0 : registers of ``stage``
    off_next : the input of ``off`` (of ``stage - 1``), for copies of it
    """

    def __init__(self, p: Pipeline, stage, word, ext_len, offp8, rem_base, rem, name):
        ext = view(IPv6ExtHeader, word[:16])
        frag = view(IPv6Fragment, Cat(word, Const(0, 32)))
        extra = Cat(Const(0, 3), ext_len)     # 8 * hdr_ext_len, or 0 for a fragment header
        self.fits = p.reg(lt(ext.hdr_ext_len, rem[3:11]), stage, f"{name}_fits")
        self.off_next = offp8 + extra
        self.off = p.reg(self.off_next, stage, f"{name}_off", OFF_BITS)
        self.rem = p.reg(rem_base - extra, stage, f"{name}_rem", 16)
        self.nh = p.reg(ext.next_header, stage, f"{name}_nh")
        self.fo = p.reg(frag.frag_offset, stage, f"{name}_fo")
        self.fo0 = p.reg(frag.frag_offset == 0, stage, f"{name}_fo0")

    def __repr__(self):
        return f"ExtensionStep({self.off.name})"


class Ipv6ExtensionStages:
    """The IPv6 extension chain, and where L4 starts for every L3.

    ====  =============================================================================
    S3    extension header 1 sizes and offsets (its bytes came with the L3 header)
    S4    read extension header 2 at its offset (1/3); where L4 starts unless after a
          second extension header; extension header 2 limits
    S5    extension header 1 outcome; read extension header 2 (2/3); L4 offset base
    S6    read extension header 2 (3/3)
    S7    extension header 2 sizes; final L4 offset (one for each L4 word), length, protocol
    S8    extension header 2 outcome, end of the IPv6 chain; fragment fields
    ====  =============================================================================

    Members (pipeline values, by stage)
    -----------------------------------
    S5 : bw_e1, trunc_e1 (beyond window / truncated at extension header 1)
    S7 : l4_offset, l4_offset12 (where L4 bytes 0 and 12 are), rem (IP bytes from L4 on),
        proto; with l4_offset_next, l4_offset12_next (their inputs, of S6) for read copies
    S8 : bw_e2, trunc_e2, has_l4_offset, v6_end (the chain ended at L4), ip_fragment, fo
        (fragment offset), fo_zero
    """

    def __init__(self, p: Pipeline, cfg, reader: WindowReader, l2: EthernetStages, l3: L3Stages):
        window = cfg.header_window
        ip6 = view(IPv6, byte_slice(l2.hdr, 0, 40))

        # ---- S3: first extension header, from the L3 header bytes ---------------------------
        x6, f6 = l2.ext6, l2.frag6
        e1_lt8 = p.reg(lt(ip6.payload_length, 8), 3, "s3_e1_lt8")
        e1_bw = p.reg(lt(window - 8, l3.off6_next), 3, "s3_e1_bw")
        # e1.rem is the IP bytes left after the header plus 8 (8 is taken off in S4).
        e1 = ExtensionStep(p, 3, byte_slice(l2.hdr, 40, 4), l2.e1_len, l2.off6p8, ip6.payload_length,
                           ip6.payload_length, "s3_e1")
        pl_big = p.reg(ip6.payload_length[11:].any(), 3, "s3_pl_big")

        # ---- S4: second extension header read (1/3); where L4 starts otherwise ---------------
        x6_3, f6_3 = p.at(x6, 3), p.at(f6, 3)
        v4, v6 = l2.v4, l2.v6
        e1_over = p.reg(~f6_3 & ~pl_big & ~e1.fits, 4, "s4_e1_over")
        # Where L4 starts unless the chain has two extension headers (the IP bytes left there
        # are chosen in S5, from registers).
        off_pre = p.reg(Mux(v4, l3.off4, Mux(x6_3, e1.off, l3.off6)), 4, "s4_off_pre", OFF_BITS)
        proto_pre = p.reg(Mux(v6, Mux(x6_3, e1.nh, l3.nh6), l3.proto_l3), 4, "s4_proto_pre")
        x1 = p.reg(is_ext(e1.nh), 4, "s4_x1")
        # L4 starts after a second extension header: the select of S5's offset muxes.
        late = p.reg(v6 & x6_3 & is_ext(e1.nh), 4, "s4_late")
        f1 = p.reg(e1.nh == IPV6_EXT_FRAGMENT, 4, "s4_f1")
        e2_lt8 = p.reg(lt(e1.rem, 16), 4, "s4_e2_lt8")   # rem1 < 8 (rem1 >= 0 when it matters)
        e2_bw = p.reg(lt(window - 8, e1.off), 4, "s4_e2_bw")
        e2_sel4 = p.reg(e1.off[4:2 + reader.index_bits], 4, "s4_e2_sel")
        rem1 = p.reg(e1.rem - 8, 4, "s4_rem1", 16)
        rem1m8 = p.reg(e1.rem - 16, 4, "s4_rem1m8", 16)
        off1p8 = p.reg(e1.off + 8, 4, "s4_off1p8", OFF_BITS)
        e2_l1 = reader.first(p.at(l2.window, 3), e1.off, e1.off_next, 14 + 40 + 8, 4, "s4_e2_l1")

        # ---- S5: extension header 1 outcome; second extension header read (2/3) -------------
        walk4, x6_4, f6_4 = l3.walk, p.at(x6, 4), p.at(f6, 4)
        e1_lt8_4, e1_bw_4 = p.at(e1_lt8, 4), p.at(e1_bw, 4)
        e1_go = walk4 & x6_4
        e1_ok = e1_go & ~e1_lt8_4 & ~e1_bw_4
        self.trunc_e1 = p.reg(e1_go & (e1_lt8_4 | (~e1_bw_4 & e1_over)), 5, "s5_trunc_e1")
        self.bw_e1 = p.reg(e1_go & ~e1_lt8_4 & e1_bw_4, 5, "s5_bw_e1")
        frag_e1 = p.reg(e1_ok & f6_4, 5, "s5_frag_e1")
        walk1 = p.reg(e1_ok & ~e1_over, 5, "s5_walk1")
        end0 = p.reg(walk4 & ~x6_4, 5, "s5_end0")
        e2_l2 = p.reg(reader.middle(e2_l1, e2_sel4), 5, "s5_e2_l2")
        e2_sel5 = p.reg(e2_sel4[2:], 5, "s5_e2_sel")
        # L4 read offset: the two-extension-header case is the only late one. Its base is chosen
        # here, straight into registers: the word offset for L4 bytes 0..3 and, separately, for
        # bytes 12..15 (why: a different value, so the two reads never share a select net).
        base = p.reg(Mux(late, off1p8, off_pre), 5, "s5_l4base")
        base12 = p.reg(Mux(late, off1p8 + 12, off_pre + 12), 5, "s5_l4base12", OFF_BITS)
        rbase = p.reg(Mux(late, rem1m8, Mux(p.at(v4, 4), p.at(l3.rem4, 4), Mux(x6_4, rem1, p.at(l3.rem6, 4)))),
                      5, "s5_rbase", 16)
        add = p.reg(late & ~f1, 5, "s5_l4add")

        # ---- S6: second extension header read (3/3) ------------------------------------------
        # Why only a 2:1 mux is left for this stage: its register can then sit by S7's compares
        # and adders.
        e2word_now = reader.last(e2_l2, e2_sel5)
        e2word = p.reg(e2word_now, 6, "s6_e2_word", 32)
        # Its hdr_ext_len for S7's adders, masked here: 0 for a fragment header, and for the L4
        # offset 0 unless L4 comes after it.
        e2_len_now = view(IPv6ExtHeader, e2word_now[:16]).hdr_ext_len
        e2_len = p.reg(Mux(p.at(f1, 5), 0, e2_len_now), 6, "s6_e2_len", 8)
        e2_l4len = p.reg(Mux(add, e2_len_now, 0), 6, "s6_e2_l4len", 8)
        rem1_big = p.reg(p.at(rem1, 5)[11:].any(), 6, "s6_rem1_big")

        # ---- S7: extension header 2 precompute; final L4 offset, length, protocol -----------
        e2 = ExtensionStep(p, 7, e2word, e2_len, p.at(off1p8, 6), p.at(rem1m8, 6), p.at(rem1, 6), "s7_e2")
        e2hdr = view(IPv6ExtHeader, e2word[:16])
        x2 = p.reg(is_ext(e2hdr.next_header), 7, "s7_x2")
        e2extra = Cat(Const(0, 3), e2_l4len)
        self.l4_offset_next = p.at(base, 6) + e2extra
        self.l4_offset12_next = p.at(base12, 6) + e2extra
        self.l4_offset = p.reg(self.l4_offset_next, 7, "s7_l4off", OFF_BITS)
        self.l4_offset12 = p.reg(self.l4_offset12_next, 7, "s7_l4off12", OFF_BITS)
        self.rem = p.reg(p.at(rbase, 6) - e2extra, 7, "s7_rem", 16)
        self.proto = p.reg(Mux(p.at(late, 6), e2hdr.next_header, p.at(proto_pre, 6)), 7, "s7_proto", 8)

        # ---- S8: extension header 2 outcome, end of the chain; fragment fields ---------------
        walk1_7, x1_7, f1_7 = p.at(walk1, 7), p.at(x1, 7), p.at(f1, 7)
        e2_lt8_7, e2_bw_7 = p.at(e2_lt8, 7), p.at(e2_bw, 7)
        end0_7 = p.at(end0, 7)
        e2_go = walk1_7 & x1_7
        e2_ok = e2_go & ~e2_lt8_7 & ~e2_bw_7
        e2_over = ~f1_7 & ~p.at(rem1_big, 7) & ~e2.fits
        walk2 = e2_ok & ~e2_over
        end1 = walk1_7 & ~x1_7
        end2 = walk2 & ~x2
        self.trunc_e2 = p.reg(e2_go & (e2_lt8_7 | (~e2_bw_7 & e2_over)), 8, "s8_trunc_e2")
        self.bw_e2 = p.reg((e2_go & ~e2_lt8_7 & e2_bw_7) | (walk2 & x2), 8, "s8_bw_e2")
        self.has_l4_offset = p.reg(p.at(l3.l4_v4, 7) | end0_7 | end1 | end2, 8, "s8_has_l4off")
        self.v6_end = p.reg(end0_7 | end1 | end2, 8, "s8_v6_end")
        frag_e1_7 = p.at(frag_e1, 7)
        has_l3_v4_7 = p.at(l3.has_l3_v4, 7)
        frag_e2 = e2_ok & f1_7
        self.ip_fragment = p.reg((has_l3_v4_7 & p.at(l3.frag4, 7)) | frag_e1_7 | frag_e2, 8, "s8_ip_fragment")
        self.fo = p.reg(Mux(frag_e2, e2.fo, Mux(frag_e1_7, p.at(e1.fo, 7), Mux(has_l3_v4_7, p.at(l3.fo4, 7), 0))),
                        8, "s8_fo", 13)
        fo4_zero = p.at(l3.fo4 == 0, 7, name="fo4z")
        self.fo_zero = p.reg(Mux(frag_e2, e2.fo0, Mux(frag_e1_7, p.at(e1.fo0, 7), ~has_l3_v4_7 | fo4_zero)),
                             8, "s8_fo_zero")

    def __repr__(self):
        return "Ipv6ExtensionStages()"
