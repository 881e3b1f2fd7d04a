"""Named parser edge cases with hand-written expectations, for frames scapy cannot settle.

Each :class:`NamedCase` is a frame that breaks (or sits on the edge of) a rule of
docs/parser.md, with the ``PacketMeta`` fields the spec gives it, worked out by hand from that
document: where a step says "stop", later fields stay zero. The third-party oracle
(:mod:`sim.tb.scapy_oracle`) declines exactly this kind of frame, so these values are what holds
the golden model (tests/host/test_model.py) and both gateware parsers
(tests/parser/test_parser_amaranth.py) to the spec there. They are never computed by the model.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP

from hdl.packet.meta import L3Type, MalformedReason

__all__ = ["NamedCase", "malformed_cases", "ETH_FIELDS", "V4_SRC", "V4_DST", "V6_SRC", "V6_DST"]

MR = MalformedReason
SRC_MAC = "02:00:00:00:00:02"
ETH_FIELDS = {"eth_dst": 0x020000000001, "eth_src": 0x020000000002}
V4_SRC, V4_DST = "10.0.0.1", "10.0.0.2"
V6_SRC, V6_DST = "2001:db8::1", "2001:db8::2"


@dataclass(frozen=True)
class NamedCase:
    """One edge case: ``frame`` received on a physical or virtual port, and every ``PacketMeta``
    field the spec gives it that is not zero (``frame_len`` and ``malformed`` included)."""
    name: str
    frame: bytes
    physical: bool
    fields: dict = field(default_factory=dict)

    def expected_meta(self, meta_fields) -> dict:
        """The whole ``PacketMeta`` as a dict over ``meta_fields``: the listed fields, zero elsewhere."""
        unknown = set(self.fields) - set(meta_fields)
        if unknown:
            raise ValueError(f"{self.name}: no PacketMeta field(s) {', '.join(sorted(unknown))}")
        return {name: self.fields.get(name, 0) for name in meta_fields}


def _bits(*reasons) -> int:
    return sum(1 << r for r in reasons)


def _ip(addr: str) -> int:
    return int(ipaddress.ip_address(addr))


def _case(name, frame, physical, *reasons, **fields) -> NamedCase:
    return NamedCase(name, frame, physical, {"frame_len": len(frame), "malformed": _bits(*reasons), **fields})


def malformed_cases() -> list[NamedCase]:
    """The named edge cases (docs/parser.md section in each comment)."""
    hdr = bytes.fromhex("020000000001" "020000000002")
    v4_eth, v6_eth, arp_eth = hdr + b"\x08\x00", hdr + b"\x86\xdd", hdr + b"\x08\x06"
    v4_addr = {"ip_src": _ip(V4_SRC), "ip_dst": _ip(V4_DST)}
    v6_addr = {"ip_src": _ip(V6_SRC), "ip_dst": _ip(V6_DST)}
    l3v4 = {**ETH_FIELDS, "ethertype": 0x0800, "l3_offset": 14, "l3_type": L3Type.IPV4}
    l3v6 = {**ETH_FIELDS, "ethertype": 0x86DD, "l3_offset": 14, "l3_type": L3Type.IPV6}
    l3arp = {**ETH_FIELDS, "ethertype": 0x0806, "l3_offset": 14, "l3_type": L3Type.ARP}
    v4_hdr = {**l3v4, **v4_addr, "has_l3": 1, "ip_ttl": 64}
    v6_hdr = {**l3v6, **v6_addr, "has_l3": 1, "ip_ttl": 5}
    v4_l4 = {**v4_hdr, "l4_offset": 34, "has_l4_offset": 1}
    tcp_l4 = {**v4_l4, "ip_proto": 6, "has_l4": 1, "sport": 100, "dport": 200, "tcp_flags": 0x02}
    phys, virt = True, False

    def ipv4(**kw):
        return bytes(IP(src=V4_SRC, dst=V4_DST, ttl=64, **kw))

    def ipv6(**kw):
        return bytes(IPv6(src=V6_SRC, dst=V6_DST, hlim=5, **kw))

    def tcp_with_offset(data_offset):
        raw = bytes(TCP(sport=100, dport=200, flags="S"))
        return raw[:12] + bytes([data_offset << 4]) + raw[13:]

    udp_v4 = ipv4(proto=17) + bytes(UDP(sport=1, dport=2))
    v6_udp = bytes(IPv6(src=V6_SRC, dst=V6_DST, hlim=5) / UDP(sport=1, dport=2))
    arp = bytes(ARP(op=1, hwsrc=SRC_MAC, psrc=V4_SRC, pdst=V4_DST))
    tcp = tcp_with_offset(5)
    # A 64-byte hop-by-hop header (hdr_ext_len 7, one PadN option of 60 bytes) before TCP.
    hbh64_tcp = bytes([6, 7, 1, 60]) + bytes(60)
    return [
        # -- section 2: L < 14, or a tag cut short (complete tags stay parsed, ethertype 0)
        _case("trunc_l2_13", hdr + b"\x08", virt, MR.TRUNC_L2),
        _case("trunc_l2_13_phys", hdr + b"\x08", phys, MR.TRUNC_L2, MR.RUNT),
        _case("trunc_l2_1", b"\x55", virt, MR.TRUNC_L2),
        _case("trunc_l2_partial_tag", hdr + b"\x81\x00\x00\x05\x08", virt, MR.TRUNC_L2, **ETH_FIELDS),
        _case("trunc_l2_partial_second_tag", hdr + b"\x88\xa8\x20\x05\x81\x00\x00\x07\x08", virt,
              MR.TRUNC_L2, **ETH_FIELDS, vlan_count=1, vlan0_tpid_qinq=1, vlan0_pcp=1, vlan0_vid=5),
        # two tags then a third cut short: the third is never parsed, so nothing is truncated
        _case("third_tag_cut", hdr + b"\x81\x00\x00\x01\x81\x00\x00\x02\x81\x00\x00", virt,
              **ETH_FIELDS, vlan_count=2, vlan0_vid=1, vlan1_vid=2, ethertype=0x8100, l3_offset=22),
        # -- section 3, IPv4
        # exactly 14 bytes: the Ethernet header is whole (no trunc_l2), the IPv4 header is missing
        _case("ethernet_header_only", v4_eth, virt, MR.TRUNC_L3, **l3v4),
        _case("vlan_then_nothing", hdr + b"\x81\x00\x00\x05\x08\x00", virt, MR.TRUNC_L3, **ETH_FIELDS,
              vlan_count=1, vlan0_vid=5, ethertype=0x0800, l3_offset=18, l3_type=L3Type.IPV4),
        _case("trunc_l3_ipv4", v4_eth + udp_v4[:19], virt, MR.TRUNC_L3, **l3v4),
        _case("trunc_l3_ipv4_options", v4_eth + b"\x46" + udp_v4[1:20] + b"\x01\x01", virt, MR.TRUNC_L3,
              **l3v4),
        _case("bad_version_v4", v4_eth + b"\x65" + udp_v4[1:], virt, MR.BAD_IP_VERSION, **l3v4),
        _case("bad_ihl", v4_eth + b"\x44" + udp_v4[1:], virt, MR.BAD_IPV4_IHL, **l3v4),
        _case("total_length_too_big", v4_eth + ipv4(proto=17, len=200) + bytes(26), phys,
              MR.IP_LEN_MISMATCH, **v4_hdr, ip_proto=17),
        _case("total_length_below_ihl", v4_eth + ipv4(proto=6, len=16) + bytes(26), phys,
              MR.IP_LEN_MISMATCH, **v4_hdr, ip_proto=6),
        # -- section 3, IPv6
        _case("trunc_l3_ipv6", v6_eth + v6_udp[:39], virt, MR.TRUNC_L3, **l3v6),
        _case("bad_version_v6", v6_eth + bytes([v6_udp[0] & 0x0F]) + v6_udp[1:], virt, MR.BAD_IP_VERSION,
              **l3v6),
        _case("ipv6_payload_length_too_big", v6_eth + ipv6(plen=9, nh=17) + bytes(8), virt,
              MR.IP_LEN_MISMATCH, **v6_hdr),
        _case("ipv6_ext_past_ip_end", v6_eth + ipv6(plen=4, nh=0) + bytes(8), virt, MR.TRUNC_L3, **v6_hdr),
        _case("ipv6_fragment_past_ip_end", v6_eth + ipv6(plen=4, nh=44) + b"\x11\x00\x00\x08" + bytes(2),
              virt, MR.TRUNC_L3, **v6_hdr),
        _case("ipv6_ext_longer_than_payload", v6_eth + ipv6(plen=16, nh=0) + b"\x11\x02" + bytes(14),
              virt, MR.TRUNC_L3, **v6_hdr),
        # -- section 3, ARP: checked only from 8 bytes on; other ARP has no fields and no flag
        _case("arp_short", arp_eth + arp[:7], virt, MR.TRUNC_L3, **l3arp),
        _case("arp_truncated", arp_eth + arp[:27], virt, MR.TRUNC_L3, **l3arp),
        _case("arp_not_ipv4", arp_eth + b"\x00\x06" + arp[2:], virt, **l3arp),
        _case("arp_not_ipv4_cut", arp_eth + b"\x00\x06" + arp[2:10], virt, **l3arp),
        # -- section 4: l4_avail counts IP payload bytes, not Ethernet padding
        _case("ipv4_header_only", v4_eth + ipv4(proto=17), virt, MR.TRUNC_L4, **v4_l4, ip_proto=17),
        _case("trunc_l4_udp", v4_eth + ipv4(proto=17, len=24) + bytes(UDP(sport=1, dport=2)) + bytes(20),
              phys, MR.TRUNC_L4, **v4_l4, ip_proto=17),
        _case("trunc_l4_tcp", v4_eth + ipv4(proto=6, len=39) + tcp + bytes(6), phys, MR.TRUNC_L4,
              **v4_l4, ip_proto=6),
        _case("trunc_l4_icmp", v4_eth + ipv4(proto=1, len=24) + bytes([8, 0, 0, 0]) + bytes(22), phys,
              MR.TRUNC_L4, **v4_l4, ip_proto=1),
        _case("tcp_offset_below_5", v4_eth + ipv4(proto=6, len=40) + tcp_with_offset(4) + bytes(6), phys,
              MR.BAD_TCP_OFFSET, **tcp_l4),
        _case("tcp_offset_past_ip_end", v4_eth + ipv4(proto=6, len=44) + tcp_with_offset(7) + bytes(6),
              phys, MR.BAD_TCP_OFFSET, **tcp_l4),
        # a non-first fragment stops before L4: its short payload is not trunc_l4
        _case("later_fragment_short_payload", v4_eth + ipv4(proto=6, frag=5, len=24) + bytes(4) + bytes(22),
              phys, **v4_l4, ip_proto=6, ip_fragment=1, ip_frag_offset=5),
        # the window is checked before the TCP data offset: past it, a bad offset is not seen
        _case("bad_tcp_offset_beyond_window",
              v6_eth + ipv6(plen=64 + 20, nh=0) + hbh64_tcp + tcp_with_offset(4) + bytes(6), virt,
              **v6_hdr, ip_proto=6, l4_offset=118, has_l4_offset=1, beyond_window=1),
    ]
