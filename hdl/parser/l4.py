"""Pipelined parser, stages S8..S10: the L4 header (TCP, UDP, ICMP, ICMPv6) read at its offset
and checked."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux

from hdl.lib.pipeline import Pipeline
from hdl.packet.layouts import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Tcp, view
from hdl.parser.ipv6_ext import Ipv6ExtensionStages
from hdl.parser.l2 import EthernetStages
from hdl.parser.window import OFF_BITS, WindowReader, lt

__all__ = ["L4Stages"]


class L4Stages:
    """Reads L4 bytes 0..3 and 12..15 at the L4 offset and decides L4.

    ====  =============================================================================
    S8    read the L4 bytes (1/3); L4 protocol, length and window compares
    S9    read the L4 bytes (2/3)
    S10   read the L4 bytes (3/3); L4 outcome, TCP data offset check and payload offset
          candidates (from the last read mux's inputs)
    ====  =============================================================================

    Members (pipeline values, all of S10)
    -------------------------------------
    word0, word3 : L4 bytes 0..3 and 12..15
    has_l4, trunc_l4, bw_l4, is_tcp, bad_data_offset
    ports_clr, tcp_clr, icmp_clr : clears of the port, TCP flag and ICMP fields
    payload_cands, payload_sel : TCP payload offset for each word the last read could pick, and
        that read's select
    l4_plus8 : L4 offset + 8 (UDP / ICMP payload offset)
    l4_offset, has_l4_offset : the L4 offset field (0 without one) and its flag
    """

    def __init__(self, p: Pipeline, cfg, reader: WindowReader, l2: EthernetStages, ext: Ipv6ExtensionStages):
        window = cfg.header_window
        l4off, rem, proto = ext.l4_offset, ext.rem, ext.proto

        # ---- S8: L4 read (1/3); protocol, length and window compares -------------------------
        # The read takes three stages (S8 4:1, S9 4:1, S10 the rest), each word with its own selects.
        win7 = p.at(l2.window, 7)
        w0_l1 = reader.first(win7, l4off, ext.l4_offset_next, 14 + 20, 8, "s8_w0_l1")
        w3_l1 = reader.first(win7, ext.l4_offset12, ext.l4_offset12_next, 14 + 20 + 12, 8, "s8_w3_l1")
        w0_sel8 = p.reg(l4off[4:2 + reader.index_bits], 8, "s8_w0_sel")
        w3_sel8 = p.reg(ext.l4_offset12[4:2 + reader.index_bits], 8, "s8_w3_sel")
        tcp = p.reg(proto == IPPROTO_TCP, 8, "s8_tcp")
        udp = p.reg(proto == IPPROTO_UDP, 8, "s8_udp")
        icmp4 = p.reg(proto == IPPROTO_ICMP, 8, "s8_icmp4")
        icmp6 = p.reg(proto == IPPROTO_ICMPV6, 8, "s8_icmp6")
        lt8 = p.reg(lt(rem, 8), 8, "s8_lt8")
        lt20 = p.reg(lt(rem, 20), 8, "s8_lt20")
        lt64 = p.reg(lt(rem, 64), 8, "s8_lt64")
        past8 = p.reg(lt(window - 8, l4off), 8, "s8_past8")
        past20 = p.reg(lt(window - 20, l4off), 8, "s8_past20")

        # ---- S9: L4 read (2/3) ---------------------------------------------------------------
        w0_l2 = p.reg(reader.middle(w0_l1, w0_sel8), 9, "s9_w0_l2")
        w3_l2 = p.reg(reader.middle(w3_l1, w3_sel8), 9, "s9_w3_l2")
        w0_sel9 = p.reg(w0_sel8[2:], 9, "s9_w0_sel")
        w3_sel9 = p.reg(w3_sel8[2:], 9, "s9_w3_sel")

        # ---- S10: L4 read (3/3); L4 outcome, TCP data offset check ---------------------------
        self.word0 = p.reg(reader.last(w0_l2, w0_sel9), 10, "s10_w0", 32)
        self.word3 = p.reg(reader.last(w3_l2, w3_sel9), 10, "s10_w3", 32)
        is_tcp, is_udp = p.at(tcp, 9), p.at(udp, 9)
        is_icmp = (p.at(l2.v4, 9) & p.at(icmp4, 9)) | (p.at(l2.v6, 9) & p.at(icmp6, 9))
        l4off9, has_l4off9 = p.at(l4off, 9), p.at(ext.has_l4_offset, 9)
        l4_go = has_l4off9 & p.at(ext.fo_zero, 9) & (is_tcp | is_udp | is_icmp)
        short = Mux(is_tcp, p.at(lt20, 9), p.at(lt8, 9))
        past = Mux(is_tcp, p.at(past20, 9), p.at(past8, 9))
        has_l4 = l4_go & ~short & ~past
        self.has_l4 = p.reg(has_l4, 10, "s10_has_l4")
        self.trunc_l4 = p.reg(l4_go & short, 10, "s10_trunc_l4")
        self.bw_l4 = p.reg(l4_go & ~short & past, 10, "s10_bw_l4")
        self.ports_clr = p.reg(~(has_l4 & (is_tcp | is_udp)), 10, "s10_ports_clr")
        self.tcp_clr = p.reg(~(has_l4 & is_tcp), 10, "s10_tcp_clr")
        self.icmp_clr = p.reg(~(has_l4 & is_icmp), 10, "s10_icmp_clr")
        self.is_tcp = p.reg(is_tcp, 10, "s10_tcp")
        # TCP data offset check (combined with the L4 outcome in S11): the offset nibble is
        # taken straight from the last L4 read mux. 4 * d > rem is d > rem // 4 when rem < 64,
        # never otherwise.
        w3_now = reader.last(w3_l2, w3_sel9)
        d_off = view(Tcp, Cat(Const(0, 96), w3_now, Const(0, 32))).data_offset
        self.bad_data_offset = p.reg((d_off < 5) | (p.at(lt64, 9) & (d_off > p.at(rem, 9)[2:6])), 10, "s10_bad_do")
        # TCP payload offset: one adder per candidate word of the last read mux, each into a
        # register; S11 selects.
        self.payload_cands = []
        for j in range(len(w3_l2) // 32):
            d_j = view(Tcp, Cat(Const(0, 96), w3_l2[32 * j:32 * (j + 1)], Const(0, 32))).data_offset
            self.payload_cands.append(p.reg(l4off9 + Cat(Const(0, 2), d_j), 10, f"s10_tcp_pay{j}", OFF_BITS))
        self.payload_sel = p.at(w3_sel9, 10)
        self.l4_plus8 = p.reg(l4off9 + 8, 10, "s10_l4p8", OFF_BITS)
        self.l4_offset = p.reg(Mux(has_l4off9, l4off9, 0), 10, "s10_l4_offset", OFF_BITS)
        self.has_l4_offset = p.at(has_l4off9, 10)

    def __repr__(self):
        return "L4Stages()"
