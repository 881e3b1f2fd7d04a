"""Deterministic test and demo traffic built with scapy (seeded; same seed, same bytes).

* :func:`edge_case_frames`: parser edge cases, every size class from 14 to max_frame + 1 bytes;
* :func:`demo_mix`: an IMIX-like mix of realistic traffic on the two ports;
* :func:`udp_frames`: a run of plain Ethernet/IPv4/UDP frames of one size (testbench stimulus).
"""

from __future__ import annotations

import logging
import random

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

__all__ = ["edge_case_frames", "demo_mix", "udp_frames", "switch_frames", "DEFAULT_MAX_FRAME", "IMIX_WIRE_SIZES"]

log = logging.getLogger(__name__)

DEFAULT_MAX_FRAME = 9216
#: IMIX sizes on the wire including the 4-byte FCS (frames here carry no FCS), and weights.
IMIX_WIRE_SIZES = ((64, 58), (576, 33), (1500, 8), (9000, 1))

_MAC_A, _MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"
_V4_A, _V4_B = "10.0.0.1", "10.0.0.2"
_V6_A, _V6_B = "2001:db8::1", "2001:db8::2"


def _eth(tags=()):
    """Ethernet header plus VLAN tags given as (tpid, vid, pcp) outer first."""
    if not tags:
        return Ether(src=_MAC_A, dst=_MAC_B)
    pkt = Ether(src=_MAC_A, dst=_MAC_B, type=tags[0][0])
    for i, (_tpid, vid, pcp) in enumerate(tags):
        nxt = tags[i + 1][0] if i + 1 < len(tags) else None
        cls = Dot1AD if _tpid == 0x88A8 else Dot1Q
        tag = cls(vlan=vid, prio=pcp) if nxt is None else cls(vlan=vid, prio=pcp, type=nxt)
        pkt = pkt / tag
    return pkt


def _l34(kind: str, payload: bytes, rng: random.Random):
    sport, dport = rng.randrange(1024, 65536), rng.choice((80, 443, 53, 22, 8080, rng.randrange(1, 65536)))
    if kind == "tcp":
        return IP(src=_V4_A, dst=_V4_B) / TCP(sport=sport, dport=dport, flags=rng.randrange(512)) / payload
    if kind == "udp":
        return IP(src=_V4_A, dst=_V4_B) / UDP(sport=sport, dport=dport) / payload
    if kind == "icmp":
        return IP(src=_V4_A, dst=_V4_B) / ICMP(type=8, code=0, id=sport) / payload
    if kind == "ipv6-tcp":
        return IPv6(src=_V6_A, dst=_V6_B) / TCP(sport=sport, dport=dport, flags="PA") / payload
    if kind == "ipv6-udp":
        return IPv6(src=_V6_A, dst=_V6_B) / UDP(sport=sport, dport=dport) / payload
    if kind == "icmpv6":
        return IPv6(src=_V6_A, dst=_V6_B) / ICMPv6EchoRequest(id=sport) / payload
    raise ValueError(kind)


_KINDS = ("tcp", "udp", "icmp", "ipv6-tcp", "ipv6-udp")


def _payload(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def _set_byte(frame: bytes, index: int, value: int) -> bytes:
    b = bytearray(frame)
    b[index] = value
    return bytes(b)


def _set_u16(frame: bytes, index: int, value: int) -> bytes:
    b = bytearray(frame)
    b[index:index + 2] = value.to_bytes(2, "big")
    return bytes(b)


def edge_case_frames(seed: int = 1, max_frame: int = DEFAULT_MAX_FRAME) -> list[bytes]:
    """Parser edge cases (a few thousand frames, 14 to ``max_frame + 1`` bytes, some shorter).

    Covers: payload 0..127 byte by byte for IPv4 TCP/UDP/ICMP and IPv6 TCP/UDP, 512/1500/9000
    byte payloads, every total size 14..300 and up to ``max_frame`` and ``max_frame + 1``, VLAN,
    QinQ (0x8100/0x8100, 0x88a8/0x8100) and a third tag, IPv4 options, first and non-first
    fragments, IPv6 hop-by-hop/routing/destination/fragment headers (one to three, some
    reaching past the window), ARP (valid, other hardware/protocol, truncated), ICMP and ICMPv6,
    truncated and runt frames, bad IP versions, IHL below 5, bad IP and TCP lengths.
    """
    rng = random.Random(seed)
    out: list[bytes] = []
    add = out.append

    # 1. payload sweeps
    for kind in _KINDS:
        for n in range(128):
            add(bytes(_eth() / _l34(kind, _payload(rng, n), rng)))
        for n in (512, 1500, 9000):
            add(bytes(_eth() / _l34(kind, _payload(rng, n), rng)))
    for n in (0, 1, 8, 56, 100):
        add(bytes(_eth() / _l34("icmpv6", _payload(rng, n), rng)))

    # 2. every total size 14..300, then coarse up to max_frame and one past it
    base = bytes(_eth() / IP(src=_V4_A, dst=_V4_B) / UDP(sport=1, dport=2))
    sizes = (list(range(14, 301)) + list(range(301, max_frame + 1, 997))
             + [1514, 1518, max_frame, max_frame + 1])
    for size in sizes:
        if size < len(base):
            add(base[:size])     # plain truncation (frames too short for their headers)
        else:
            udp = IP(src=_V4_A, dst=_V4_B) / UDP(sport=1, dport=2)
            add(bytes(_eth() / udp / _payload(rng, size - len(base))))
    for size in (max_frame + 1, max_frame + 100, 16383, 16384, 16500):
        add(bytes(_eth() / _l34("udp", _payload(rng, size - 42), rng)))

    # 3. VLAN, QinQ and three tags
    tag_sets = [((0x8100, 100, 3),), ((0x88A8, 4095, 7),), ((0x8100, 10, 0), (0x8100, 20, 5)),
                ((0x88A8, 1, 6), (0x8100, 2, 1)), ((0x8100, 1, 0), (0x8100, 2, 0), (0x8100, 3, 0)),
                ((0x88A8, 7, 0), (0x8100, 8, 0), (0x8100, 9, 0))]
    for tags in tag_sets:
        for kind in (*_KINDS, "icmpv6"):
            for n in (0, 1, 6, 40, 90, 200):
                add(bytes(_eth(tags) / _l34(kind, _payload(rng, n), rng)))
        add(bytes(_eth(tags) / ARP(psrc=_V4_A, pdst=_V4_B)))
        full = bytes(_eth(tags) / _l34("tcp", b"", rng))
        for cut in range(12, min(len(full), 14 + 4 * len(tags) + 24)):
            add(full[:cut])

    # 4. IPv4 options
    for ihl in range(6, 16):
        opts = [IPOption_NOP()] * (4 * (ihl - 5))
        for kind in ("tcp", "udp", "icmp"):
            l4 = _l34(kind, _payload(rng, rng.randrange(0, 40)), rng)
            ip = IP(src=_V4_A, dst=_V4_B, options=opts) / l4.payload
            add(bytes(_eth() / ip))
    add(bytes(_eth() / IP(options=[IPOption_RR(routers=["1.2.3.4"] * 9)]) / TCP()))

    # 5. IPv4 fragments
    for kind in ("tcp", "udp", "icmp"):
        for off in (0, 1, 2, 185, 8191):
            for mf in (0, 1):
                l4 = _l34(kind, _payload(rng, 30), rng)
                add(bytes(_eth() / IP(src=_V4_A, dst=_V4_B, flags=mf, frag=off, proto=l4.proto)
                          / Raw(bytes(l4.payload))))

    # 6. IPv6 extension headers
    def hbh(n_opts):
        return IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\0" * n_opts)] if n_opts else [])
    ext_makers = [
        lambda: hbh(0), lambda: hbh(4), lambda: hbh(12), lambda: hbh(60), lambda: hbh(200),
        lambda: IPv6ExtHdrDestOpt(), lambda: IPv6ExtHdrRouting(addresses=[_V6_A]),
        lambda: IPv6ExtHdrFragment(offset=0, m=1, id=7), lambda: IPv6ExtHdrFragment(offset=3, m=0, id=7),
        lambda: IPv6ExtHdrFragment(offset=0, m=0, id=9),
    ]
    for depth in (1, 2, 3):
        for _ in range(60):
            chain = [rng.choice(ext_makers)() for _ in range(depth)]
            kind = rng.choice(("ipv6-tcp", "ipv6-udp", "icmpv6"))
            l4 = _l34(kind, _payload(rng, rng.randrange(0, 64)), rng)
            pkt = IPv6(src=_V6_A, dst=_V6_B)
            for ext in chain:
                pkt = pkt / ext
            add(bytes(_eth() / (pkt / l4.payload)))
    full = bytes(_eth() / IPv6() / hbh(4) / IPv6ExtHdrFragment() / UDP() / (b"x" * 3))
    for i in range(0, 30):
        add(_set_u16(full[:54 + 8 + i], 18, len(full[:54 + 8 + i]) - 54))   # ext chain cut, plen consistent

    # 7. ARP
    for op in (1, 2, 3, 256 + 2):
        add(bytes(_eth() / ARP(op=op, psrc=_V4_A, pdst=_V4_B)))
    add(bytes(_eth() / ARP(hwtype=6, psrc=_V4_A, pdst=_V4_B)))
    add(bytes(_eth() / ARP(ptype=0x86DD, plen=16, psrc=_V6_A, pdst=_V6_B)))
    add(bytes(_eth() / ARP(hwlen=8, hwsrc=b"\1" * 8, hwdst=b"\2" * 8, psrc=_V4_A, pdst=_V4_B)))
    arp = bytes(_eth() / ARP(psrc=_V4_A, pdst=_V4_B))
    for cut in range(14, 14 + 29):
        add(arp[:cut])
    odd = bytes(_eth() / ARP(hwtype=6, psrc=_V4_A, pdst=_V4_B))
    for cut in range(14, 14 + 29, 3):
        add(odd[:cut])

    # 8. ICMP / ICMPv6 variety, and cross-version ICMP
    for t, c in ((0, 0), (3, 1), (3, 13), (5, 1), (11, 0), (8, 0), (13, 0), (255, 255)):
        add(bytes(_eth() / IP(src=_V4_A, dst=_V4_B) / ICMP(type=t, code=c) / _payload(rng, 20)))
    for layer in (ICMPv6EchoRequest(), ICMPv6EchoReply(), ICMPv6DestUnreach(code=4), ICMPv6ND_NS(tgt=_V6_B)):
        add(bytes(_eth() / IPv6(src=_V6_A, dst=_V6_B) / layer))
    add(bytes(_eth() / IP(proto=58) / ICMPv6EchoRequest()))
    add(bytes(_eth() / IPv6(nh=1) / ICMP()))
    for n in range(0, 10):
        add(bytes(_eth() / IP(src=_V4_A, dst=_V4_B, proto=1) / _payload(rng, n)))
        add(bytes(_eth() / IPv6(src=_V6_A, dst=_V6_B, nh=58) / _payload(rng, n)))

    # 9. truncations of complete frames, every length
    for pkt in (_eth() / _l34("tcp", b"abc", rng), _eth() / _l34("ipv6-udp", b"", rng),
                _eth(((0x8100, 5, 1),)) / _l34("icmp", b"", rng)):
        full = bytes(pkt)
        for cut in range(0, len(full)):
            add(full[:cut])
    # the same with the IP length fixed up to what is left (L4 truncation, not ip_len_mismatch)
    for kind in ("tcp", "udp", "icmp"):
        full = bytes(_eth() / _l34(kind, b"", rng))
        for cut in range(34, len(full)):
            add(_set_u16(full[:cut], 16, cut - 14))
    for kind in ("ipv6-tcp", "ipv6-udp", "icmpv6"):
        full = bytes(_eth() / _l34(kind, b"", rng))
        for cut in range(54, len(full)):
            add(_set_u16(full[:cut], 18, cut - 54))

    # 10. bad versions, IHL, lengths, TCP offsets
    tcp4 = bytes(_eth() / IP(src=_V4_A, dst=_V4_B) / TCP() / _payload(rng, 30))
    udp6 = bytes(_eth() / IPv6(src=_V6_A, dst=_V6_B) / UDP() / _payload(rng, 30))
    for v in (0, 1, 4, 6, 7, 15):
        add(_set_byte(tcp4, 14, v << 4 | 5))
        add(_set_byte(udp6, 14, v << 4 | (udp6[14] & 0xF)))
    for ihl in range(0, 16):
        add(_set_byte(tcp4, 14, 0x40 | ihl))
    for total in (0, 1, 19, 20, 39, 40, 69, 70, 71, 200, 65535):
        add(_set_u16(tcp4, 16, total))
    for plen in (0, 7, 8, 37, 38, 39, 1000, 65535):
        add(_set_u16(udp6, 18, plen))
    for dataofs in range(16):
        add(_set_byte(tcp4, 14 + 20 + 12, dataofs << 4 | (tcp4[14 + 20 + 12] & 0xF)))
    tcp4_short = bytes(_eth() / IP(src=_V4_A, dst=_V4_B) / TCP() / b"ab")
    for dataofs in range(16):
        add(_set_byte(tcp4_short, 46, dataofs << 4))

    # 11. other ethertypes, 802.3 length frames
    for et in (0x0000, 0x05DC, 0x0600, 0x88CC, 0x8847, 0x9100, 0xFFFF):
        add(bytes(Ether(src=_MAC_A, dst=_MAC_B, type=et) / _payload(rng, 46)))

    # 12. headers that reach past the window (long option chains before L4)
    for n_opts in range(40, 120, 8):
        add(bytes(_eth() / IPv6(src=_V6_A, dst=_V6_B) / hbh(n_opts) / TCP() / Raw(b"x")))
        add(bytes(_eth(((0x8100, 1, 0), (0x8100, 2, 0))) / IPv6() / hbh(n_opts) / UDP()))

    # 13. seeded fuzz: random bytes behind each known ethertype
    for _ in range(300):
        et = rng.choice((0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8))
        add(bytes(Ether(src=_MAC_A, dst=_MAC_B, type=et)) + _payload(rng, rng.randrange(0, 140)))
    # and random single-byte corruption of valid frames
    valid = [bytes(_eth() / _l34(k, _payload(rng, 20), rng)) for k in (*_KINDS, "icmpv6")]
    for _ in range(300):
        f = bytearray(rng.choice(valid))
        i = rng.randrange(12, min(len(f), 80))
        f[i] = rng.randrange(256)
        add(bytes(f))

    log.debug("edge_case_frames(seed=%d): %d frames", seed, len(out))
    return out


def _pad_to(pkt, size: int, rng: random.Random) -> bytes:
    raw = bytes(pkt)
    if len(raw) >= size:
        return raw
    # grow the payload, then rebuild so IP/UDP lengths and checksums stay consistent
    return bytes(pkt / Raw(rng.randbytes(size - len(raw))))


def demo_mix(n: int = 2000, seed: int = 1) -> list[tuple[str, bytes]]:
    """``n`` frames of an IMIX-like mix, each with the port it arrives on (``phy0`` or ``vm1``).

    Sizes follow :data:`IMIX_WIRE_SIZES` (minus the FCS); traffic is mostly IPv4 TCP and UDP
    on a few dozen flows, with ICMP, ARP, some IPv6, a few VLAN-tagged frames and about 1%
    malformed frames (truncated IP, bad IHL, bad lengths, runts on the uplink).
    """
    rng = random.Random(seed)
    sizes, weights = zip(*IMIX_WIRE_SIZES, strict=True)
    hosts = [f"10.1.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(20)]
    remotes = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
               for _ in range(40)]
    flows = [(rng.choice(hosts), rng.choice(remotes), rng.randrange(1024, 65536),
              rng.choice((80, 443, 443, 53, 22, 8080, 3306)), rng.choice(("tcp", "tcp", "tcp", "udp")))
             for _ in range(60)]
    out = []
    for _ in range(n):
        port = "phy0" if rng.random() < 0.55 else "vm1"
        size = rng.choices(sizes, weights)[0] - 4
        r = rng.random()
        src_mac, dst_mac = ("02:aa:00:00:00:01", "02:bb:00:00:00:02")[:: 1 if port == "phy0" else -1]
        eth = Ether(src=src_mac, dst=dst_mac)
        if rng.random() < 0.03:
            eth = eth / Dot1Q(vlan=rng.choice((10, 20, 100)), prio=rng.randrange(8))
        if r < 0.02:
            arp = ARP(op=rng.choice((1, 2)), psrc=rng.choice(hosts), pdst=rng.choice(hosts))
            frame = bytes(eth / arp).ljust(60, b"\0")     # the MAC pads to the minimum
        elif r < 0.05:
            ip = IP(src=rng.choice(hosts), dst=rng.choice(remotes))
            frame = _pad_to(eth / ip / ICMP(type=8, id=rng.randrange(65536)), size, rng)
        elif r < 0.15:
            l4 = (TCP(sport=rng.randrange(1024, 65536), dport=443, flags="PA") if rng.random() < 0.7
                  else UDP(sport=rng.randrange(1024, 65536), dport=53))
            ip6 = IPv6(src=f"2001:db8::{rng.randrange(1, 999)}", dst=f"2001:db8:1::{rng.randrange(1, 999)}")
            frame = _pad_to(eth / ip6 / l4, size, rng)
        else:
            src, dst, sport, dport, proto = rng.choice(flows)
            if port == "phy0":
                src, dst, sport, dport = dst, src, dport, sport
            l4 = TCP(sport=sport, dport=dport, flags=rng.choice(("A", "PA", "PA", "S", "SA", "FA"))) \
                if proto == "tcp" else UDP(sport=sport, dport=dport)
            frame = _pad_to(eth / IP(src=src, dst=dst, ttl=rng.choice((64, 128, 255))) / l4, size, rng)
        if rng.random() < 0.01:
            frame = _corrupt(frame, rng)
        out.append((port, frame))
    return out


def _corrupt(frame: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if frame[12:14] != b"\x08\x00":
        return frame[:rng.randrange(1, 14)]
    if kind == 0:
        return frame[:rng.randrange(14, 34)]          # truncated IPv4 header
    if kind == 1:
        return _set_byte(frame, 14, 0x43)             # IHL 3
    if kind == 2:
        return _set_u16(frame, 16, len(frame) + 100)  # total length past the frame
    return _set_byte(frame, 14, 0x65)                 # version 6 under the IPv4 ethertype


#: Ethernet (14) + IPv4 (20) + UDP (8) header bytes: the shortest frame :func:`udp_frames` makes.
UDP_HEADER_BYTES = 42


def udp_frames(count: int, size: int = 128, *, src: str = "10.0.0.1", dst: str = "10.0.0.2",
               sport: int = 1024, dport: int = 5001, src_mac: str = _MAC_A, dst_mac: str = _MAC_B,
               seed: int = 1) -> list[bytes]:
    """``count`` Ethernet/IPv4/UDP frames of ``size`` bytes each (no FCS), made with scapy.

    Frame ``k`` has source port ``sport + k`` (so every frame differs) and a seeded random payload;
    lengths and checksums are scapy's, so the parser takes them as well-formed.
    """
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, not {count!r}")
    if not isinstance(size, int) or not UDP_HEADER_BYTES <= size <= DEFAULT_MAX_FRAME:
        raise ValueError(f"size must be an integer in {UDP_HEADER_BYTES}..{DEFAULT_MAX_FRAME} bytes, not {size!r}")
    if not (isinstance(sport, int) and 0 <= sport and sport + max(count, 1) - 1 <= 0xFFFF):
        raise ValueError(f"source ports {sport}..{sport + count - 1} do not fit in 0..65535")
    rng = random.Random(seed)
    return [bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst) / UDP(sport=sport + k, dport=dport)
                  / rng.randbytes(size - UDP_HEADER_BYTES)) for k in range(count)]


def switch_frames(ports, seed: int, n: int, *, ethertype: bytes = b"\x08\x00",
                  payload: tuple[int, int] = (42, 90)) -> list[tuple[str, bytes]]:
    """``n`` random frames over a switch's ``ports`` (name -> an object with ``mode``, "access" or
    "trunk", such as :class:`host_driver.model.switch.PortVlan`): each port's three hosts talk to
    each other's, with every kind of destination and tag a switch must tell apart (known and
    unknown unicast, broadcast, IPv4 multicast, IEEE and Cisco reserved addresses, 802.1Q tags of
    VLANs carried and not, priority tags, QinQ on trunks, tags on access ports). A frame is
    destination, source, tag, ``ethertype``, a 4-byte sequence number and zeros (``payload``:
    the range of their count)."""
    rng = random.Random(seed)
    names = list(ports)
    hosts = {p: [bytes([0x02, 0, 0, 0, i + 1, k]) for k in range(3)] for i, p in enumerate(names)}
    everyone = [m for ms in hosts.values() for m in ms]
    out = []
    for seq in range(n):
        port = rng.choice(names)
        src = rng.choice(hosts[port])
        kind = rng.random()
        if kind < 0.55:
            dst = rng.choice(everyone)
        elif kind < 0.65:
            dst = bytes([0x02, 0xEE, 0, 0, 0, rng.randrange(4)])           # nobody's: unknown unicast
        elif kind < 0.8:
            dst = b"\xff" * 6
        elif kind < 0.9:
            dst = bytes([0x01, 0x00, 0x5E, 0, 0, rng.randrange(1, 4)])     # IPv4 multicast
        else:
            dst = rng.choice([bytes([0x01, 0x80, 0xC2, 0, 0, rng.choice([0x00, 0x02, 0x0E, 0x0F, 0x10])]),
                              bytes.fromhex("01000ccccccc")])
        tag = b""
        t = rng.random()
        if ports[port].mode == "trunk":
            if t < 0.45:
                tag = b"\x81\x00" + (rng.randrange(8) << 13 | rng.choice([1, 2, 2, 3, 100])).to_bytes(2, "big")
            elif t < 0.5:
                tag = b"\x81\x00" + (5 << 13).to_bytes(2, "big")          # priority tag
            elif t < 0.55:
                tag = b"\x88\xa8" + (100).to_bytes(2, "big") + b"\x81\x00" + (7).to_bytes(2, "big")
        elif t < 0.05:
            tag = b"\x81\x00" + (2).to_bytes(2, "big")                    # tagged on an access port
        elif t < 0.08:
            tag = b"\x81\x00" + (3 << 13).to_bytes(2, "big")              # priority tag
        body = seq.to_bytes(4, "big") + bytes(rng.randrange(*payload))
        out.append((port, dst + src + tag + ethertype + body))
    return out
