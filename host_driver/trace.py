"""The trace.jsonl formatter shared by every engine (model, Verilator, Icarus).

The simulator reads the parser's record port as a raw integer and converts it with
:func:`meta_from_bits`; the model produces the same dict directly. Both go through
:func:`trace_record`, so the traces agree byte for byte when the metadata agrees.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable

from amaranth.hdl import Shape
from amaranth.lib import data

from hdl.packet.layouts import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ethernet
from hdl.packet.meta import DropReason, L3Type, MalformedReason, PacketMeta, Verdict

__all__ = ["trace_record", "dumps_jsonl", "meta_from_bits", "field_decoder", "meta_to_bits", "format_mac", "format_ip",
           "malformed_labels"]

_FIELDS = [(name, f.offset, Shape.cast(f.shape).width) for name, f in data.Layout.cast(PacketMeta)]
_L3_LABELS = {L3Type.IPV4: "ipv4", L3Type.IPV6: "ipv6", L3Type.ARP: "arp"}
_L4_PORTS = {(L3Type.IPV4, IPPROTO_TCP), (L3Type.IPV6, IPPROTO_TCP),
             (L3Type.IPV4, IPPROTO_UDP), (L3Type.IPV6, IPPROTO_UDP)}
_L4_ICMP = {(L3Type.IPV4, IPPROTO_ICMP), (L3Type.IPV6, IPPROTO_ICMPV6)}


def field_decoder(layout):
    """A function turning an integer laid out as ``layout`` (an ``amaranth.lib.data`` layout)
    into ``{field: int}``; field offsets are resolved once (a long run decodes millions)."""
    fields = [(name, f.offset, (1 << Shape.cast(f.shape).width) - 1) for name, f in data.Layout.cast(layout)]

    def decode(bits: int) -> dict[str, int]:
        bits = int(bits)
        return {name: bits >> offset & mask for name, offset, mask in fields}
    return decode


#: Convert a raw PacketMeta value (as read from a record port) into the model's field dict.
meta_from_bits = field_decoder(PacketMeta)


def meta_to_bits(meta: dict) -> int:
    """Inverse of :func:`meta_from_bits` (fields missing from ``meta`` are zero)."""
    out = 0
    for name, offset, width in _FIELDS:
        value = int(meta.get(name, 0))
        if value >> width or value < 0:
            raise ValueError(f"PacketMeta.{name}={value} does not fit in {width} bits")
        out |= value << offset
    return out


# Caches: a long run formats the same few thousand addresses millions of times (trace.jsonl of a
# million-frame run spent most of its time here).
@functools.lru_cache(maxsize=1 << 16)
def format_mac(value: int) -> str:
    """48-bit integer as ``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


@functools.lru_cache(maxsize=1 << 16)
def format_ip(value: int, l3_type: int) -> str:
    """Address field as dotted IPv4 (IPv4, ARP) or compressed IPv6."""
    if L3Type(l3_type) is L3Type.IPV6:
        return str(ipaddress.IPv6Address(value))
    return str(ipaddress.IPv4Address(value & 0xFFFFFFFF))


def malformed_labels(mask: int) -> list[str]:
    """Reason labels of a malformed bit mask, in bit order."""
    return list(_malformed_labels(mask))


@functools.lru_cache(maxsize=1024)
def _malformed_labels(mask: int) -> tuple[str, ...]:
    return tuple(r.label for r in MalformedReason if mask >> r & 1)


def _label(enum_cls, value):
    return enum_cls(value).label


def trace_record(meta: dict, *, in_port_name: str, in_file: str, pcap_cnt: int, verdict, reason,
                 egress_names: Iterable[str], acl_rule=None, sids=()) -> dict:
    """One trace.jsonl record (DESIGN.md) from a PacketMeta field dict and the NIC's decision.

    ``verdict``/``reason`` are :class:`hdl.packet.meta.Verdict`/:class:`hdl.packet.meta.DropReason` values
    (or their ints); fields of layers the parser did not reach are ``null``.
    """
    m = meta
    malformed = malformed_labels(m["malformed"])
    no_eth = "trunc_l2" in malformed
    l3_type = L3Type(m["l3_type"])
    has_l3 = bool(m["has_l3"])
    has_l4 = bool(m["has_l4"])
    key = (l3_type, m["ip_proto"])
    tags = range(m["vlan_count"])
    reason = DropReason(reason)
    return {
        "in_port": in_port_name,
        "in_file": in_file,
        "pcap_cnt": pcap_cnt,
        "frame_len": m["frame_len"],
        "eth_src": None if no_eth and m["frame_len"] < Ethernet.BYTES else format_mac(m["eth_src"]),
        "eth_dst": None if no_eth and m["frame_len"] < Ethernet.BYTES else format_mac(m["eth_dst"]),
        "vlan": [m[f"vlan{i}_vid"] for i in tags],
        "vlan_pcp": [m[f"vlan{i}_pcp"] for i in tags],
        "ethertype": None if no_eth else m["ethertype"],
        "l3": _L3_LABELS.get(l3_type),
        "ip_src": format_ip(m["ip_src"], l3_type) if has_l3 else None,
        "ip_dst": format_ip(m["ip_dst"], l3_type) if has_l3 else None,
        "ip_proto": m["ip_proto"] if has_l3 else None,
        "ip_ttl": m["ip_ttl"] if has_l3 and l3_type is not L3Type.ARP else None,
        "ip_fragment": bool(m["ip_fragment"]),
        "frag_offset": m["ip_frag_offset"],
        "sport": m["sport"] if has_l4 and key in _L4_PORTS else None,
        "dport": m["dport"] if has_l4 and key in _L4_PORTS else None,
        "tcp_flags": m["tcp_flags"] if has_l4 and key[1] == IPPROTO_TCP and key in _L4_PORTS else None,
        "icmp_type": m["icmp_type"] if has_l4 and key in _L4_ICMP else None,
        "icmp_code": m["icmp_code"] if has_l4 and key in _L4_ICMP else None,
        "l3_offset": None if no_eth else m["l3_offset"],
        "l4_offset": m["l4_offset"] if m["has_l4_offset"] else None,
        "payload_offset": m["payload_offset"] if m["has_payload_offset"] else None,
        "beyond_window": bool(m["beyond_window"]),
        "malformed": malformed,
        "verdict": _label(Verdict, verdict),
        "reason": None if reason is DropReason.NONE else reason.label,
        "egress": list(egress_names),
        "acl_rule": acl_rule,
        "sids": list(sids),
    }


def dumps_jsonl(records: Iterable[dict]) -> str:
    """Records as JSON lines, compact and in insertion order (deterministic)."""
    return "".join(json.dumps(r, sort_keys=False, separators=(",", ":")) + "\n" for r in records)
