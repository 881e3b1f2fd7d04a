"""Protocol header layouts: the one definition used by the parser, the golden model and tests.

Each header is an ``amaranth.lib.data.Struct`` whose fields are written here in wire order
(first field first, as drawn in the RFC). Amaranth places the first struct field in the least
significant bits, while the wire sends the most significant bit of the first field first, so
:func:`wire_header` builds the Struct with the fields reversed: the header's bytes read as a
big-endian integer are then exactly the Struct's bits.

Network byte order is handled in one place, :func:`swap_bytes`:

* on the host, ``Hdr.from_bits(int.from_bytes(raw, "big"))`` decodes, ``to_bytes`` encodes
  (see :func:`decode` / :func:`encode`);
* in gateware, AXI-Stream carries the first wire byte in ``tdata[7:0]``; ``swap_bytes`` of such a
  little-endian byte vector gives the big-endian integer, which ``Hdr(...)`` views field by field
  (see :func:`view`).

Refs: IEEE 802.3-2018 3.1.1 (Ethernet), IEEE 802.1Q-2018 9.6 (VLAN tag), RFC 826 (ARP),
RFC 791 (IPv4), RFC 8200 (IPv6 and its extension headers), RFC 9293 (TCP), RFC 768 (UDP),
RFC 792 (ICMP), RFC 4443 (ICMPv6).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Value, ValueCastable
from amaranth.lib import data

__all__ = [
    "wire_header", "swap_bytes", "decode", "encode", "view", "header_bytes",
    "Ethernet", "VlanTag", "Arp", "IPv4", "IPv6", "IPv6ExtHeader", "IPv6Fragment",
    "Tcp", "Udp", "Icmp", "Icmpv6",
    "ETH_IPV4", "ETH_IPV6", "ETH_ARP", "ETH_VLAN", "ETH_QINQ", "VLAN_TPIDS",
    "IPPROTO_ICMP", "IPPROTO_TCP", "IPPROTO_UDP", "IPPROTO_ICMPV6",
    "IPV6_EXT_HOPOPTS", "IPV6_EXT_ROUTING", "IPV6_EXT_FRAGMENT", "IPV6_EXT_DSTOPTS", "IPV6_EXT_HEADERS",
]

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100   # 802.1Q C-tag
ETH_QINQ = 0x88A8   # 802.1ad S-tag
VLAN_TPIDS = (ETH_VLAN, ETH_QINQ)

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

IPV6_EXT_HOPOPTS = 0
IPV6_EXT_ROUTING = 43
IPV6_EXT_FRAGMENT = 44
IPV6_EXT_DSTOPTS = 60
#: Extension headers the parser walks (length = 8 * (hdr_ext_len + 1), fragment fixed 8).
IPV6_EXT_HEADERS = (IPV6_EXT_HOPOPTS, IPV6_EXT_ROUTING, IPV6_EXT_FRAGMENT, IPV6_EXT_DSTOPTS)


def wire_header(name: str, fields: list[tuple[str, int]], doc: str) -> type[data.Struct]:
    """Make a ``data.Struct`` from ``(name, bits)`` pairs listed in wire order.

    The resulting class has ``WIRE_FIELDS`` (the list as given) and ``BYTES`` (its size).
    """
    total = sum(width for _, width in fields)
    if total % 8:
        raise ValueError(f"header {name} is {total} bits, not a whole number of bytes")
    annotations = {fname: width for fname, width in reversed(fields)}
    cls = type(name, (data.Struct,), {"__annotations__": annotations, "__doc__": doc,
                                        "__module__": __name__})
    cls.WIRE_FIELDS = tuple(fields)
    cls.BYTES = total // 8
    return cls


def header_bytes(header: type[data.Struct]) -> int:
    """Size of a wire header in bytes."""
    return header.BYTES


def swap_bytes(value, n_bytes: int):
    """Reverse the byte order of an ``n_bytes`` wide value (an ``int`` or an Amaranth value).

    This is the single network-byte-order helper: a little-endian byte vector (AXI-Stream
    order) becomes the big-endian integer that the wire headers are laid out for, and back.
    """
    if isinstance(value, int):
        if value < 0 or value >> (8 * n_bytes):
            raise ValueError(f"value {value:#x} does not fit in {n_bytes} bytes")
        return int.from_bytes(value.to_bytes(n_bytes, "little"), "big")
    if isinstance(value, ValueCastable):
        value = Value.cast(value)
    if not isinstance(value, Value):
        raise TypeError(f"swap_bytes takes an int or an Amaranth value, not {value!r}")
    if len(value) != 8 * n_bytes:
        raise ValueError(f"value is {len(value)} bits wide, not {n_bytes} bytes")
    return Cat(*(value[8 * i:8 * i + 8] for i in reversed(range(n_bytes))))


def decode(header: type[data.Struct], raw: bytes) -> data.Const:
    """Decode the first ``header.BYTES`` bytes of ``raw`` (wire order) into a Struct constant."""
    if len(raw) < header.BYTES:
        raise ValueError(f"{header.__name__} needs {header.BYTES} bytes, got {len(raw)}")
    return header.from_bits(int.from_bytes(bytes(raw[:header.BYTES]), "big"))


def encode(header: type[data.Struct], fields: dict) -> bytes:
    """Encode a field dict into wire bytes; fields not given are zero."""
    names = {name for name, _ in header.WIRE_FIELDS}
    unknown = set(fields) - names
    if unknown:
        raise ValueError(f"{header.__name__} has no field(s) {', '.join(sorted(unknown))}")
    bits = header.const(fields).as_bits()
    return bits.to_bytes(header.BYTES, "big")


def view(header: type[data.Struct], le_bytes):
    """View an Amaranth value holding ``header.BYTES`` bytes in AXI-Stream (LE) order as ``header``."""
    return header(swap_bytes(le_bytes, header.BYTES))


Ethernet = wire_header("Ethernet", [("dst", 48), ("src", 48), ("ethertype", 16)],
                       "Ethernet II header (IEEE 802.3 3.1.1); ``ethertype`` may be a VLAN TPID.")

VlanTag = wire_header("VlanTag", [("pcp", 3), ("dei", 1), ("vid", 12), ("ethertype", 16)],
                      "802.1Q/802.1ad tag body that follows a TPID: TCI then the next ethertype.")

Arp = wire_header("Arp", [("htype", 16), ("ptype", 16), ("hlen", 8), ("plen", 8), ("oper", 16),
                          ("sha", 48), ("spa", 32), ("tha", 48), ("tpa", 32)],
                  "ARP for IPv4 over Ethernet (RFC 826), 28 bytes.")

IPv4 = wire_header("IPv4", [("version", 4), ("ihl", 4), ("dscp", 6), ("ecn", 2), ("total_length", 16),
                            ("identification", 16), ("flag_reserved", 1), ("flag_df", 1), ("flag_mf", 1),
                            ("frag_offset", 13), ("ttl", 8), ("protocol", 8), ("checksum", 16),
                            ("src", 32), ("dst", 32)],
                   "IPv4 fixed header (RFC 791), 20 bytes; options follow up to ``ihl * 4``.")

IPv6 = wire_header("IPv6", [("version", 4), ("traffic_class", 8), ("flow_label", 20),
                            ("payload_length", 16), ("next_header", 8), ("hop_limit", 8),
                            ("src", 128), ("dst", 128)],
                   "IPv6 fixed header (RFC 8200 3), 40 bytes.")

IPv6ExtHeader = wire_header("IPv6ExtHeader", [("next_header", 8), ("hdr_ext_len", 8)],
                            "Common start of IPv6 hop-by-hop, routing and destination-options headers "
                            "(RFC 8200 4.3-4.6): length is 8 * (hdr_ext_len + 1) bytes.")

IPv6Fragment = wire_header("IPv6Fragment", [("next_header", 8), ("reserved", 8), ("frag_offset", 13),
                                            ("res", 2), ("m", 1), ("identification", 32)],
                           "IPv6 fragment header (RFC 8200 4.5), 8 bytes.")

Tcp = wire_header("Tcp", [("sport", 16), ("dport", 16), ("seq", 32), ("ack", 32), ("data_offset", 4),
                          ("reserved", 3), ("flags", 9), ("window", 16), ("checksum", 16), ("urgent", 16)],
                  "TCP fixed header (RFC 9293 3.1), 20 bytes. ``flags`` is NS CWR ECE URG ACK PSH RST SYN FIN "
                  "(bit 8 .. bit 0), as scapy numbers them.")

Udp = wire_header("Udp", [("sport", 16), ("dport", 16), ("length", 16), ("checksum", 16)],
                  "UDP header (RFC 768), 8 bytes.")

Icmp = wire_header("Icmp", [("type", 8), ("code", 8), ("checksum", 16)],
                   "ICMP header start (RFC 792), 4 bytes.")

Icmpv6 = wire_header("Icmpv6", [("type", 8), ("code", 8), ("checksum", 16)],
                     "ICMPv6 header start (RFC 4443 2.1), 4 bytes.")
