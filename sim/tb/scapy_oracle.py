"""Third-party oracle for the parser: what scapy's own dissection says about a frame.

:func:`expected_fields` returns, in the vocabulary of a trace.jsonl record
(:func:`host_driver.trace.trace_record`), the fields scapy determines for one frame. The golden
model and the gateware are both checked against it. Every field value and every offset comes
from scapy's dissection of the whole frame (``Ether(frame)``): field values from scapy's layers,
offsets from the header bytes scapy consumed for each layer. Nothing is re-dissected at offsets
computed here, and nothing comes from :mod:`hdl.packet.layouts` or the model.

On top of scapy's layers only the spec's limits that scapy has no notion of are applied
(docs/parser.md): at most two VLAN tags of TPID 0x8100/0x88A8 (scapy dissects any number, 0x9100
too), at most two IPv6 extension headers, the header window ``H``, ARP fields for Ethernet/IPv4
ARP only, no L4 for non-first fragments, the 8-byte ICMP/ICMPv6 header (scapy's ICMP layers are
longer for some types), and the frame-length flags (``runt``, ``oversize``).

**Malformed frames are not decided here.** When scapy cannot settle a layer the spec needs (it
hands back ``Raw`` for a header it could not fill, consumed fewer header bytes than the header's
own length field says, or the header's version/length fields contradict the bytes scapy got),
:class:`ScapyUndecided` is raised, naming the layer and why. Those frames carry the
``trunc_*``/``bad_*``/``ip_len_mismatch`` reasons, whose exact fields after a stop are the spec's
policy, not something scapy can tell: they are covered by hand-written expectations per named
edge case (:mod:`sim.tb.parser_cases`), written from docs/parser.md.

Compared fields (:data:`ORACLE_FIELDS`): frame_len, eth_src, eth_dst, vlan, vlan_pcp,
ethertype, l3, ip_src, ip_dst, ip_proto, ip_ttl, ip_fragment, frag_offset, sport, dport,
tcp_flags, icmp_type, icmp_code, l3_offset, l4_offset, payload_offset, beyond_window,
malformed.

Not compared (scapy cannot tell): the QinQ TPID bit per tag beyond what ``ethertype`` shows,
``verdict``/``reason``/``egress`` (NIC policy, not parsing), ``acl_rule``/``sids``, and
the PacketMeta bits that do not reach a trace record (``has_*`` flags other than through the
``null`` fields they control).
"""

from __future__ import annotations

import logging

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, _ICMPv6  # noqa: E402
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Dot3, Ether  # noqa: E402
from scapy.packet import Packet  # noqa: E402

__all__ = ["expected_fields", "ORACLE_FIELDS", "ScapyUndecided"]

ORACLE_FIELDS = ("frame_len", "eth_src", "eth_dst", "vlan", "vlan_pcp", "ethertype", "l3", "ip_src", "ip_dst",
                 "ip_proto", "ip_ttl", "ip_fragment", "frag_offset", "sport", "dport", "tcp_flags",
                 "icmp_type", "icmp_code", "l3_offset", "l4_offset", "payload_offset", "beyond_window",
                 "malformed")

# IEEE / IANA numbers and the spec's limits, written here independently of hdl.packet.layouts on purpose.
_TPIDS = (0x8100, 0x88A8)
_MAX_TAGS = 2
_MAX_EXT_HEADERS = 2
_ETH_IP, _ETH_ARP, _ETH_IP6 = 0x0800, 0x0806, 0x86DD
_EXT_NUMBERS = (0, 43, 44, 60)   # hop-by-hop, routing, fragment, destination options
_ICMP_HEADER = 8
_FRAME_LEN_MAX = 16383
_MIN_PHYSICAL = 60
_ETHERNET_BYTES = 14


class ScapyUndecided(ValueError):
    """Scapy's dissection cannot settle this frame: no oracle expectation.

    ``broken_header`` is True when scapy's own view shows a header the spec reads that is cut
    short or contradicts its length/version fields (the spec then sets a malformed reason other
    than runt/oversize); False when scapy merely stops where the spec reads on (bytes after a
    non-first IPv6 fragment header, an ARP body too short for scapy to tell its type)."""

    def __init__(self, message: str, *, broken_header: bool = True):
        super().__init__(message)
        self.broken_header = broken_header


class _Stop(Exception):
    """The spec stops here for a reason scapy does not know (window, tag or header limits)."""


def _header_len(layer: Packet) -> int:
    """Bytes scapy consumed for ``layer``'s own fields (its header, options included)."""
    if layer.raw_packet_cache is not None:
        return len(layer.raw_packet_cache)
    # Some layers drop that cache after dissecting (ICMP errors carrying the offending IP
    # header): what the layer was given less what it handed on to its payload.
    rest = layer.payload.original if isinstance(layer.payload, Packet) and layer.payload.original else b""
    return len(layer.original or b"") - len(rest)


def _need(layer: Packet, cls, what: str, size: int | None = None) -> Packet:
    """``layer`` if scapy dissected it whole as ``cls`` (``size`` header bytes when given);
    :class:`ScapyUndecided` otherwise."""
    if not isinstance(layer, cls):
        raise ScapyUndecided(f"scapy could not dissect the {what} (got {type(layer).__name__})")
    if size is not None and _header_len(layer) != size:
        raise ScapyUndecided(f"scapy dissected {_header_len(layer)} bytes of the {size}-byte {what}")
    return layer


class _Oracle:
    def __init__(self, frame: bytes, physical: bool, header_window: int, max_frame: int):
        self.frame = bytes(frame)
        self.L = len(frame)
        self.H = header_window
        self.out = dict.fromkeys(ORACLE_FIELDS)
        self.out.update(frame_len=min(self.L, _FRAME_LEN_MAX), vlan=[], vlan_pcp=[], ip_fragment=False,
                        frag_offset=0, beyond_window=False)
        # The only malformed reasons that depend on the frame's length alone, not on its headers.
        self.out["malformed"] = [r for r, bad in (("runt", physical and self.L < _MIN_PHYSICAL),
                                                  ("oversize", self.L > max_frame)) if bad]

    def run(self) -> dict:
        try:
            self.ethernet()
        except _Stop:
            pass
        return self.out

    def beyond_window(self, end: int) -> None:
        """A header ending at ``end`` is past the window: the parser never sees it."""
        if end > self.H:
            self.out["beyond_window"] = True
            raise _Stop

    def ethernet(self):
        o = self.out
        if self.L < _ETHERNET_BYTES:
            raise ScapyUndecided("shorter than an Ethernet header")
        pkt = Ether(self.frame)
        o["eth_dst"], o["eth_src"] = pkt.dst.lower(), pkt.src.lower()
        t = pkt.len if isinstance(pkt, Dot3) else pkt.type
        off = _header_len(pkt)
        layer = pkt.payload
        while len(o["vlan"]) < _MAX_TAGS and t in _TPIDS:
            tag = _need(layer, (Dot1Q, Dot1AD), f"VLAN tag {len(o['vlan'])}", 4)
            o["vlan"].append(tag.vlan)
            o["vlan_pcp"].append(tag.prio)
            t, off, layer = tag.type, off + _header_len(tag), tag.payload
        o["ethertype"] = t
        o["l3_offset"] = off
        if t == _ETH_IP:
            o["l3"] = "ipv4"
            self.ipv4(layer, off)
        elif t == _ETH_IP6:
            o["l3"] = "ipv6"
            self.ipv6(layer, off)
        elif t == _ETH_ARP:
            o["l3"] = "arp"
            self.arp(layer)

    def ipv4(self, layer, l3: int):
        o = self.out
        ip = _need(layer, IP, "IPv4 header")
        if ip.version != 4 or ip.ihl < 5:
            raise ScapyUndecided(f"IPv4 header with version {ip.version}, ihl {ip.ihl}")
        ip = _need(layer, IP, "IPv4 header", 4 * ip.ihl)
        hlen = _header_len(ip)
        # scapy hands the IP layer everything after the L2 headers and keeps ``len`` bytes of it
        if not hlen <= ip.len <= len(ip.original):
            raise ScapyUndecided(f"IPv4 total length {ip.len} with a {hlen}-byte header and "
                                 f"{len(ip.original)} bytes after L2")
        o.update(ip_src=ip.src, ip_dst=ip.dst, ip_proto=ip.proto, ip_ttl=ip.ttl,
                 ip_fragment=bool(ip.flags.MF) or ip.frag != 0, frag_offset=ip.frag)
        o["l4_offset"] = l3 + hlen
        if ip.frag == 0:
            self.l4(ip.proto, ip.payload, l3 + hlen, icmp=ICMP)

    def ipv6(self, layer, l3: int):
        o = self.out
        ip = _need(layer, IPv6, "IPv6 header", 40)
        if ip.version != 6:
            raise ScapyUndecided(f"IPv6 header with version {ip.version}")
        if ip.plen > len(ip.original) - _header_len(ip):
            raise ScapyUndecided(f"IPv6 payload length {ip.plen} with {len(ip.original) - 40} bytes after it")
        o.update(ip_src=ip.src, ip_dst=ip.dst, ip_proto=0, ip_ttl=ip.hlim)
        off = l3 + _header_len(ip)
        ip_end = off + ip.plen
        nh, layer, walked = ip.nh, ip.payload, 0
        while nh in _EXT_NUMBERS:
            if walked == _MAX_EXT_HEADERS:          # a third extension header is never walked
                o["beyond_window"] = True
                raise _Stop
            what = f"IPv6 extension header {walked} (next header {nh})"
            # any of scapy's extension header classes (routing has several), by their fields
            dissected = isinstance(layer, IPv6ExtHdrFragment) if nh == 44 else \
                isinstance(layer, Packet) and {"nh", "len"} <= set(layer.fields)
            if not dissected or _header_len(layer) < 8:
                raise ScapyUndecided(f"scapy could not dissect the {what} (got {type(layer).__name__}, "
                                     f"{_header_len(layer) if isinstance(layer, Packet) else 0} bytes)",
                                     broken_header=not o["frag_offset"])
            self.beyond_window(off + 8)
            size = 8 if nh == 44 else 8 * (layer.len + 1)
            if _header_len(layer) != size or off + size > ip_end:
                raise ScapyUndecided(f"the {what} of {size} bytes runs past the IPv6 payload")
            if nh == 44:
                o.update(ip_fragment=True, frag_offset=layer.offset)
            nh, layer, off, walked = layer.nh, layer.payload, off + size, walked + 1
        o["ip_proto"] = nh
        o["l4_offset"] = off
        if not o["frag_offset"]:
            self.l4(nh, layer, off, icmp=_ICMPv6)

    def arp(self, layer):
        o = self.out
        # Ethernet/IPv4 ARP only; other hardware/protocol types have no L3 fields and no flag.
        if not isinstance(layer, ARP) or _header_len(layer) < 8:
            given = len(layer.original or b"") if isinstance(layer, Packet) else 0
            # under 8 bytes every ARP is cut short; from 8 on scapy could not tell its type
            raise ScapyUndecided(f"scapy could not dissect the ARP header (got {type(layer).__name__}, "
                                 f"{given} bytes)", broken_header=given < 8)
        if (layer.hwtype, layer.ptype, layer.hwlen, layer.plen) != (1, _ETH_IP, 6, 4):
            return
        _need(layer, ARP, "Ethernet/IPv4 ARP body", 28)
        o.update(ip_src=layer.psrc, ip_dst=layer.pdst, ip_proto=layer.op & 0xFF)

    def l4(self, proto: int, layer, l4: int, icmp):
        o = self.out
        if proto == 6:
            cls, what, fixed = TCP, "TCP header", 20
        elif proto == 17:
            cls, what, fixed = UDP, "UDP header", 8
        elif (proto, icmp) in ((1, ICMP), (58, _ICMPv6)):
            cls, what, fixed = icmp, "ICMP header", _ICMP_HEADER
        else:
            return
        if not isinstance(layer, cls) or _header_len(layer) < fixed:
            given = len(layer.original or b"") if isinstance(layer, Packet) else 0
            # scapy's ICMP classes want type-specific bodies past the 8 bytes the spec reads
            raise ScapyUndecided(f"scapy could not dissect the {what} (got {type(layer).__name__}, "
                                 f"{given} bytes)", broken_header=given < fixed or cls is not icmp)
        self.beyond_window(l4 + fixed)
        if cls is TCP:
            o.update(sport=layer.sport, dport=layer.dport, tcp_flags=int(layer.flags))
            if layer.dataofs < 5 or _header_len(layer) != 4 * layer.dataofs:
                raise ScapyUndecided(f"TCP data offset {layer.dataofs} with {_header_len(layer)} header bytes")
            o["payload_offset"] = l4 + _header_len(layer)
        elif cls is UDP:
            o.update(sport=layer.sport, dport=layer.dport, payload_offset=l4 + _header_len(layer))
        else:
            if not {"type", "code"} <= set(layer.fields):
                # a few of scapy's ICMPv6 message classes have no such fields (e.g. fixed codes)
                raise ScapyUndecided(f"scapy's {type(layer).__name__} has no type/code fields",
                                     broken_header=False)
            o.update(icmp_type=layer.type, icmp_code=layer.code, payload_offset=l4 + _ICMP_HEADER)


def expected_fields(frame: bytes, *, physical: bool, header_window: int = 128, max_frame: int = 9216) -> dict:
    """Trace-record fields (:data:`ORACLE_FIELDS`) that scapy's dissection gives for ``frame``.

    Fields of layers not reached are ``None`` (``vlan``/``vlan_pcp`` empty lists,
    ``ip_fragment``/``beyond_window`` False, ``frag_offset`` 0), as in a trace record. Raises
    :class:`ScapyUndecided` for a frame scapy cannot settle (module docstring).
    """
    return _Oracle(frame, physical, header_window, max_frame).run()
