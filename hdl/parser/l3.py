"""Pipelined parser, stages S3..S4: IPv4, IPv6 (fixed header) and ARP checks and outcome."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value

from hdl.lib.pipeline import Pipeline
from hdl.packet.layouts import ETH_IPV4, Arp, IPv4, IPv6, view
from hdl.parser.l2 import EthernetStages
from hdl.parser.window import OFF_BITS, byte_slice, lt

__all__ = ["L3Stages"]


class L3Stages:
    """S3 checks the L3 header (from the bytes S2 selected) as independent flags; S4 decides.

    Members (pipeline values, by stage)
    -----------------------------------
    S3 : ip_src, ip_dst (128 bits; IPv4 and ARP addresses in the low 32), ttl, proto_l3 (IPv4
        protocol or the ARP operation's low byte), off4 (L4 offset after IPv4 options), rem4
        (IPv4 payload bytes), fo4, frag4 (IPv4 fragment offset, fragment flag), off6 (offset
        after the IPv6 fixed header), rem6 (IPv6 payload length), nh6 (IPv6 next header)
    S4 : trunc_l3, bad_ver, bad_ihl, mismatch, has_l3, has_l3_v4, ttl_en, proto_en, l4_v4
        (IPv4 with a consistent length: L4 follows), walk (IPv6 with a consistent length: its
        extension chain is walked)
    """

    def __init__(self, p: Pipeline, cfg, l2: EthernetStages):
        hdr, avail, avail40 = l2.hdr, l2.avail, l2.avail40
        is_v4, is_v6 = l2.is_v4, l2.is_v6

        # ---- S3: IPv4 / IPv6 / ARP checks as independent flags --------------------------------
        ip4 = view(IPv4, byte_slice(hdr, 0, 20))
        ip6 = view(IPv6, byte_slice(hdr, 0, 40))
        arp = view(Arp, byte_slice(hdr, 0, 28))
        ihl_bytes = Cat(Const(0, 2), ip4.ihl)
        v4_short = p.reg(lt(avail, 20), 3, "s3_v4_short")
        v4_ver = p.reg(ip4.version != 4, 3, "s3_v4_ver")
        v4_ihl = p.reg(ip4.ihl < 5, 3, "s3_v4_ihl")
        v4_topt = p.reg(lt(avail, ihl_bytes), 3, "s3_v4_topt")
        # IP length mismatch, as flags of one carry chain each (combined in S4): the 16-bit IP
        # lengths are compared with the low 16 bits of the 18-bit byte counts, whose top bits
        # are flags of their own (why: mixed widths put logic after the carry chain).
        v4_long = p.reg(lt(avail[:16], ip4.total_length), 3, "s3_v4_long")
        v4_lshort = p.reg(lt(ip4.total_length, ihl_bytes), 3, "s3_v4_lshort")
        avail_big = p.reg(avail[16:].any(), 3, "s3_avail_big")
        self.off4 = p.reg(p.at(l2.l3_offset, 2) + ihl_bytes, 3, "s3_off4", OFF_BITS)
        self.rem4 = p.reg(ip4.total_length - ihl_bytes, 3, "s3_rem4", 16)
        self.fo4 = p.reg(ip4.frag_offset, 3, "s3_fo4")
        self.frag4 = p.reg(ip4.flag_mf | (ip4.frag_offset != 0), 3, "s3_frag4")
        v6_short = p.reg(lt(avail, 40), 3, "s3_v6_short")
        v6_ver = p.reg(ip6.version != 6, 3, "s3_v6_ver")
        v6_long = p.reg(lt(avail40[:16], ip6.payload_length), 3, "s3_v6_long")
        avail40_big = p.reg(avail40[16:].any(), 3, "s3_avail40_big")
        self.off6_next = p.at(l2.l3_offset, 2) + 40      # its input, for the beyond-window check
        self.off6 = p.reg(self.off6_next, 3, "s3_off6", OFF_BITS)
        self.rem6 = p.reg(ip6.payload_length, 3, "s3_rem6")
        self.nh6 = p.reg(ip6.next_header, 3, "s3_nh6")
        arp_ok = p.reg((arp.htype == 1) & (arp.ptype == ETH_IPV4) & (arp.hlen == 6) & (arp.plen == 4), 3,
                       "s3_arp_ok")
        arp_s8 = p.reg(lt(avail, 8), 3, "s3_arp_s8")
        arp_s28 = p.reg(lt(avail, 28), 3, "s3_arp_s28")

        def ip_addr(v6, v4, spa):
            # Why bits 32..127 (IPv6 only) have a clear of their own, straight from a register:
            # Yosys puts it on the flip-flops' LSR, and through an inverter it missed timing.
            v6 = Value.cast(v6)
            return Cat(Mux(is_v6, v6[:32], Mux(is_v4, v4, spa)), Mux(l2.not_v6, 0, v6[32:]))

        self.ip_src = p.reg(ip_addr(ip6.src, ip4.src, arp.spa), 3, "s3_ip_src", 128)
        self.ip_dst = p.reg(ip_addr(ip6.dst, ip4.dst, arp.tpa), 3, "s3_ip_dst", 128)
        self.ttl = p.reg(Mux(is_v6, ip6.hop_limit, ip4.ttl), 3, "s3_ttl")
        self.proto_l3 = p.reg(Mux(is_v4, ip4.protocol, arp.oper[:8]), 3, "s3_proto_l3")

        # ---- S4: L3 outcome -------------------------------------------------------------------
        v4, v6, ar = l2.v4, l2.v6, l2.arp
        v4_hdr_ok = v4 & ~v4_short & ~v4_ver & ~v4_ihl
        v4_len = (v4_long & ~avail_big) | v4_lshort
        v6_len = v6_long & ~avail40_big
        has_l3_v4 = v4_hdr_ok & ~v4_topt
        has_l3_v6 = v6 & ~v6_short & ~v6_ver
        has_l3_arp = ar & ~arp_s8 & arp_ok & ~arp_s28
        self.trunc_l3 = p.reg((v4 & v4_short) | (v4_hdr_ok & v4_topt) | (v6 & v6_short)
                              | (ar & (arp_s8 | (arp_ok & arp_s28))), 4, "s4_trunc_l3")
        self.bad_ver = p.reg((v4 & ~v4_short & v4_ver) | (v6 & ~v6_short & v6_ver), 4, "s4_bad_ver")
        self.bad_ihl = p.reg(v4 & ~v4_short & ~v4_ver & v4_ihl, 4, "s4_bad_ihl")
        self.mismatch = p.reg((has_l3_v4 & v4_len) | (has_l3_v6 & v6_len), 4, "s4_mismatch")
        self.has_l3 = p.reg(has_l3_v4 | has_l3_v6 | has_l3_arp, 4, "s4_has_l3")
        self.has_l3_v4 = p.reg(has_l3_v4, 4, "s4_has_l3_v4")
        self.ttl_en = p.reg(has_l3_v4 | has_l3_v6, 4, "s4_ttl_en")
        self.proto_en = p.reg(has_l3_v4 | has_l3_arp, 4, "s4_proto_en")
        self.l4_v4 = p.reg(has_l3_v4 & ~v4_len, 4, "s4_l4_v4")
        self.walk = p.reg(has_l3_v6 & ~v6_len, 4, "s4_walk")

    def __repr__(self):
        return "L3Stages()"
