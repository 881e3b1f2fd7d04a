"""Pipelined parser, stages S10..S11: the metadata record, every field gated by its enable."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Signal

from hdl.lib.pipeline import Pipeline, StageError
from hdl.packet.layouts import Icmp, Tcp, view
from hdl.packet.meta import MalformedReason, PacketMeta
from hdl.parser.capture import WindowCapture
from hdl.parser.ipv6_ext import Ipv6ExtensionStages
from hdl.parser.l2 import EthernetStages
from hdl.parser.l3 import L3Stages
from hdl.parser.l4 import L4Stages
from hdl.parser.window import OFF_BITS

__all__ = ["MetaRecord", "LAST"]

#: The stage whose registers drive ``meta``.
LAST = 11


class MetaRecord:
    """Assembles S11, the registered ``meta`` record, from every earlier stage.

    Everything that comes straight from an early stage is delayed to S10 and gated there by a
    registered enable: each field's clear is driven straight by a register (why: from an enable
    through an inverter, it missed timing). S10 also merges the malformed flags that several
    stage groups raise.

    Members (S11)
    -------------
    valid : one-cycle pulse per frame
    meta : :class:`~hdl.packet.meta.PacketMeta`
    in_port, rx_error
    """

    def __init__(self, m, p: Pipeline, cap: WindowCapture, l2: EthernetStages, l3: L3Stages,
                 ext: Ipv6ExtensionStages, l4: L4Stages):
        pre = LAST - 1

        # ---- S10: fields several stage groups contribute to -----------------------------------
        proto_en = p.reg(p.at(l3.proto_en, 8) | ext.v6_end, 9, "s9_proto_en")
        ip_proto = p.reg(Mux(proto_en, p.at(ext.proto, 9), 0), pre, "s10_ip_proto", 8)
        bw = p.reg(p.at(ext.bw_e1, 9) | p.at(ext.bw_e2, 9), pre, "s10_bw")
        trunc_l3 = p.reg(p.at(l3.trunc_l3, 9) | p.at(ext.trunc_e1, 9) | p.at(ext.trunc_e2, 9), pre, "s10_trunc_l3")

        # ---- S11 (meta): every field gated by its registered enable --------------------------
        tcp_bad = l4.has_l4 & l4.is_tcp & l4.bad_data_offset
        pay_en = l4.has_l4 & ~(l4.is_tcp & l4.bad_data_offset)
        sel = l4.payload_sel
        tcp_pay = Cat(*l4.payload_cands).word_select(sel, OFF_BITS) if len(sel) else l4.payload_cands[0]
        pay_off = Mux(l4.is_tcp, tcp_pay, l4.l4_plus8)
        tcp = view(Tcp, Cat(l4.word0, Const(0, 64), l4.word3, Const(0, 32)))
        icmp = view(Icmp, l4.word0)
        out = Signal(PacketMeta, reset_less=True)
        mal = [None] * len(MalformedReason)

        def gate(value, clr):
            """``value``, or 0 where ``clr`` (the meta register's synchronous clear)."""
            return Mux(clr, 0, value)

        def at(value):
            return p.at(value, pre)

        def clr(en, name):
            """The complement of ``en``, registered in its own stage and delayed to S10."""
            return p.at(~en, pre, name=name)

        l2_clr = clr(l2.l2_ok, "l2_clr")
        mal[MalformedReason.RUNT] = at(l2.runt)
        mal[MalformedReason.OVERSIZE] = at(l2.oversize)
        mal[MalformedReason.TRUNC_L2] = at(l2.trunc_l2)
        mal[MalformedReason.TRUNC_L3] = trunc_l3
        mal[MalformedReason.BAD_IP_VERSION] = at(l3.bad_ver)
        mal[MalformedReason.BAD_IPV4_IHL] = at(l3.bad_ihl)
        mal[MalformedReason.IP_LEN_MISMATCH] = at(l3.mismatch)
        mal[MalformedReason.TRUNC_L4] = l4.trunc_l4
        mal[MalformedReason.BAD_TCP_OFFSET] = tcp_bad
        v0_en, v1_en = at(l2.vlan0_en), at(l2.vlan1_en)
        v0_clr, v1_clr = clr(l2.vlan0_en, "v0_clr"), clr(l2.vlan1_en, "v1_clr")
        vlan0, vlan1 = at(l2.vlan0), at(l2.vlan1)
        eth_clr = clr(l2.eth_en, "eth_clr")
        ip_clr = clr(l3.has_l3, "ip_clr")
        l3_type = Cat(p.at(l2.v4 | l2.arp, pre, name="l3t0"), p.at(l2.v6 | l2.arp, pre, name="l3t1"))
        fields = {
            "frame_len": at(l2.frame_len),
            "eth_dst": gate(at(l2.eth_dst), eth_clr),
            "eth_src": gate(at(l2.eth_src), eth_clr),
            "vlan_count": Cat(v0_en & ~v1_en, v1_en),
            "vlan0_tpid_qinq": gate(vlan0[0], v0_clr),
            "vlan0_pcp": gate(vlan0[1:4], v0_clr),
            "vlan0_vid": gate(vlan0[4:16], v0_clr),
            "vlan1_tpid_qinq": gate(vlan1[0], v1_clr),
            "vlan1_pcp": gate(vlan1[1:4], v1_clr),
            "vlan1_vid": gate(vlan1[4:16], v1_clr),
            "ethertype": gate(at(l2.ethertype), l2_clr),
            "l3_offset": gate(at(l2.l3_offset), l2_clr),
            "l3_type": l3_type,
            "has_l3": at(l3.has_l3),
            "ip_src": gate(at(l3.ip_src), ip_clr),
            "ip_dst": gate(at(l3.ip_dst), ip_clr),
            "ip_proto": ip_proto,
            "ip_ttl": gate(at(l3.ttl), clr(l3.ttl_en, "ttl_clr")),
            "ip_fragment": at(ext.ip_fragment),
            "ip_frag_offset": at(ext.fo),
            "has_l4": l4.has_l4,
            "sport": gate(tcp.sport, l4.ports_clr),
            "dport": gate(tcp.dport, l4.ports_clr),
            "tcp_flags": gate(tcp.flags, l4.tcp_clr),
            "icmp_type": gate(icmp.type, l4.icmp_clr),
            "icmp_code": gate(icmp.code, l4.icmp_clr),
            "l4_offset": l4.l4_offset,
            "has_l4_offset": l4.has_l4_offset,
            "payload_offset": gate(pay_off, ~pay_en),
            "has_payload_offset": pay_en,
            "beyond_window": bw | l4.bw_l4,
            "malformed": Cat(*mal),
        }
        for field, value in fields.items():
            if p.stage_of(value) != pre:
                raise StageError(f"meta.{field} is made from stage {p.stage_of(value)}, not {pre}")
            m.d.sync += getattr(out, field).eq(value)
        self.meta = out
        self.valid = p.at(cap.valid, LAST)
        self.in_port = p.at(cap.in_port, LAST)
        self.rx_error = p.at(cap.rx_error, LAST)

    def __repr__(self):
        return "MetaRecord()"

