"""Third-party oracle for the parser: what scapy's dissection says about a frame.

:func:`expected_fields` returns, in the vocabulary of a trace.jsonl record
(:func:`host_driver.trace.trace_record`), the fields scapy determines for one frame. The
golden model and the gateware are both checked against it. It uses scapy's classes and field
decoding (``Ether``, ``Dot1Q``/``Dot1AD``, ``IP``, ``IPv6`` and its extension headers, ``ARP``,
``TCP``, ``UDP``, ``ICMP``, ``ICMPv6*``) and nothing from :mod:`hdl.packet.layouts` or the model.

Where scapy has no opinion, the spec's policy (docs/parser.md) is applied on top of scapy's
field values: the two-tag limit (scapy dissects any number of tags, and also treats 0x9100 as
a tag), the two-extension-header limit and the header window ``H`` (scapy has neither), the
ARP-for-IPv4 check, and the stop semantics (layers after a stop are ``None``). Scapy's own
truncation behaviour (it hands back ``Raw`` for a header it cannot fill) is used to
classify ``trunc_*``; ``ip_len_mismatch``/``bad_ip_version``/``bad_ipv4_ihl``/``bad_tcp_offset``
come from scapy's ``len``/``plen``/``version``/``ihl``/``dataofs`` fields.

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
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6Unknown,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    _ICMPv6,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Dot3, Ether  # noqa: E402
from scapy.packet import Packet  # noqa: E402

__all__ = ["expected_fields", "ORACLE_FIELDS"]

ORACLE_FIELDS = ("frame_len", "eth_src", "eth_dst", "vlan", "vlan_pcp", "ethertype", "l3", "ip_src", "ip_dst",
                 "ip_proto", "ip_ttl", "ip_fragment", "frag_offset", "sport", "dport", "tcp_flags",
                 "icmp_type", "icmp_code", "l3_offset", "l4_offset", "payload_offset", "beyond_window",
                 "malformed")

# IEEE / IANA numbers, written here independently of hdl.packet.layouts on purpose.
_TPIDS = (0x8100, 0x88A8)
_ETH_IP, _ETH_ARP, _ETH_IP6 = 0x0800, 0x0806, 0x86DD
_EXT_CLASSES = {0: IPv6ExtHdrHopByHop, 43: IPv6ExtHdrRouting, 44: IPv6ExtHdrFragment, 60: IPv6ExtHdrDestOpt}
_REASONS = ("runt", "trunc_l2", "trunc_l3", "bad_ip_version", "bad_ipv4_ihl", "ip_len_mismatch", "trunc_l4",
            "bad_tcp_offset", "oversize")
_FRAME_LEN_MAX = 16383
_MIN_PHYSICAL = 60


class _Stop(Exception):
    pass


def _layer(layer: Packet, cls, raw: bytes) -> Packet:
    """``layer`` if scapy dissected it as ``cls``; otherwise let scapy's ``cls`` dissect ``raw``."""
    if isinstance(layer, cls):
        return layer
    return cls(raw)


class _Oracle:
    def __init__(self, frame: bytes, physical: bool, header_window: int, max_frame: int):
        self.frame = bytes(frame)
        self.L = len(frame)
        self.H = header_window
        self.bad: set[str] = set()
        self.out = dict.fromkeys(ORACLE_FIELDS)
        self.out.update(frame_len=min(self.L, _FRAME_LEN_MAX), vlan=[], vlan_pcp=[], ip_fragment=False,
                        frag_offset=0, beyond_window=False)
        if self.L > max_frame:
            self.bad.add("oversize")
        if physical and self.L < _MIN_PHYSICAL:
            self.bad.add("runt")

    def stop(self, reason: str | None = None):
        if reason:
            self.bad.add(reason)
        raise _Stop

    def run(self) -> dict:
        try:
            self.ethernet()
        except _Stop:
            pass
        self.out["malformed"] = [r for r in _REASONS if r in self.bad]
        return self.out

    def ethernet(self):
        o = self.out
        if self.L < 14:
            self.stop("trunc_l2")
        pkt = Ether(self.frame)
        o["eth_dst"], o["eth_src"] = pkt.dst.lower(), pkt.src.lower()
        t = pkt.len if isinstance(pkt, Dot3) else pkt.type
        layer = pkt.payload
        n = 0
        while n < 2 and t in _TPIDS:
            if not isinstance(layer, (Dot1Q, Dot1AD)):     # scapy could not fill the tag
                o["ethertype"] = None
                o["l3_offset"] = None
                self.stop("trunc_l2")
            o["vlan"].append(layer.vlan)
            o["vlan_pcp"].append(layer.prio)
            t = layer.type
            layer = layer.payload
            n += 1
        o["ethertype"] = t
        l3 = o["l3_offset"] = 14 + 4 * n
        raw = self.frame[l3:]
        if t == _ETH_IP:
            o["l3"] = "ipv4"
            self.ipv4(layer, raw, l3)
        elif t == _ETH_IP6:
            o["l3"] = "ipv6"
            self.ipv6(layer, raw, l3)
        elif t == _ETH_ARP:
            o["l3"] = "arp"
            self.arp(layer, raw)

    def ipv4(self, layer, raw: bytes, l3: int):
        o = self.out
        if not isinstance(layer, IP):
            self.stop("trunc_l3")       # scapy needs 20 bytes for an IP header
        ip = layer
        if ip.version != 4:
            self.stop("bad_ip_version")
        if ip.ihl < 5:
            self.stop("bad_ipv4_ihl")
        hlen = ip.ihl * 4
        if len(raw) < hlen:
            self.stop("trunc_l3")
        o.update(ip_src=ip.src, ip_dst=ip.dst, ip_proto=ip.proto, ip_ttl=ip.ttl,
                 ip_fragment=bool(ip.flags.MF) or ip.frag != 0, frag_offset=ip.frag)
        if ip.len > len(raw) or ip.len < hlen:
            self.stop("ip_len_mismatch")
        o["l4_offset"] = l3 + hlen
        if ip.frag != 0:
            return
        self.l4("ipv4", ip.proto, ip.payload, raw[hlen:ip.len], l3 + hlen)

    def ipv6(self, layer, raw: bytes, l3: int):
        o = self.out
        if not isinstance(layer, IPv6):
            self.stop("trunc_l3")
        ip = layer
        if ip.version != 6:
            self.stop("bad_ip_version")
        o.update(ip_src=ip.src, ip_dst=ip.dst, ip_proto=0, ip_ttl=ip.hlim)
        if 40 + ip.plen > len(raw):
            self.stop("ip_len_mismatch")
        payload = raw[40:40 + ip.plen]
        pos = 0                          # offset inside the IPv6 payload
        nh = ip.nh
        layer = ip.payload
        for _ in range(2):
            if nh not in _EXT_CLASSES:
                break
            if pos + 8 > len(payload):
                self.stop("trunc_l3")
            if l3 + 40 + pos + 8 > self.H:
                o["beyond_window"] = True
                self.stop()
            ext = _layer(layer, _EXT_CLASSES[nh], payload[pos:])
            if nh == 44:
                o["ip_fragment"] = True
                o["frag_offset"] = ext.offset
                size = 8
            else:
                size = 8 * (ext.len + 1)
            nh = ext.nh
            pos += size
            layer = ext.payload
            if pos > len(payload):
                self.stop("trunc_l3")
        if nh in _EXT_CLASSES:
            o["beyond_window"] = True
            self.stop()
        o["ip_proto"] = nh
        o["l4_offset"] = l3 + 40 + pos
        if o["frag_offset"]:
            return
        self.l4("ipv6", nh, layer, payload[pos:], l3 + 40 + pos)

    def arp(self, layer, raw: bytes):
        o = self.out
        if len(raw) < 8:
            self.stop("trunc_l3")
        # scapy returns Raw for an ARP shorter than its 28 bytes; let it decode the fixed part.
        arp = layer if isinstance(layer, ARP) else ARP(raw[:28].ljust(28, b"\0"))
        if (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) != (1, 0x0800, 6, 4):
            return
        if len(raw) < 28:
            self.stop("trunc_l3")
        o.update(ip_src=arp.psrc, ip_dst=arp.pdst, ip_proto=arp.op & 0xFF)

    def l4(self, l3: str, proto: int, layer, raw: bytes, l4: int):
        o = self.out
        if proto == 6:
            cls, h = TCP, 20
        elif proto == 17:
            cls, h = UDP, 8
        elif proto == 1 and l3 == "ipv4":
            cls, h = ICMP, 8
        elif proto == 58 and l3 == "ipv6":
            cls, h = _ICMPv6, 8
        else:
            return
        if len(raw) < h:
            self.stop("trunc_l4")
        if l4 + h > self.H:
            o["beyond_window"] = True
            self.stop()
        if cls is _ICMPv6:
            dissected = isinstance(layer, _ICMPv6) and {"type", "code"} <= set(layer.fields)
            hdr = layer if dissected else ICMPv6Unknown(raw)
        else:
            hdr = _layer(layer, cls, raw)
        if cls is TCP:
            o.update(sport=hdr.sport, dport=hdr.dport, tcp_flags=int(hdr.flags))
            if hdr.dataofs < 5 or 4 * hdr.dataofs > len(raw):
                self.stop("bad_tcp_offset")
            o["payload_offset"] = l4 + 4 * hdr.dataofs
        elif cls is UDP:
            o.update(sport=hdr.sport, dport=hdr.dport, payload_offset=l4 + 8)
        else:
            o.update(icmp_type=hdr.type, icmp_code=hdr.code, payload_offset=l4 + 8)


def expected_fields(frame: bytes, *, physical: bool, header_window: int = 128, max_frame: int = 9216) -> dict:
    """Trace-record fields (:data:`ORACLE_FIELDS`) that scapy's dissection gives for ``frame``.

    Fields of layers not reached are ``None`` (``vlan``/``vlan_pcp`` empty lists,
    ``ip_fragment``/``beyond_window`` False, ``frag_offset`` 0), as in a trace record.
    """
    return _Oracle(frame, physical, header_window, max_frame).run()
