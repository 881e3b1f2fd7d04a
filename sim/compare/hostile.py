"""Hostile frames planted in the synthetic traffic, taken from the scenario's own compiled rules.

Random payloads never hold a rule's literal and the synthetic flows' ports meet no drop rule, so
a comparison on them alone never exercises the security functions it prices. ``[traffic]
attack_share`` and ``payload_hit_share`` (docs/compare.md) replace that share of the frames with:

* **attacks** (:func:`attack_candidates`): a frame from the uplink whose header meets one of its
  VM's firewall ``drop`` / ``reject`` rules (telnet, SMB, RDP, a blocklisted source ...): the
  rule's protocol, a source address and ports from the rule's own sets, a destination in the VM's
  network. A SYN with no payload, as a scan or a connection attempt is.
* **payload hits** (:func:`payload_candidates`): a frame to the VM whose header meets one of its
  IDS's content rules and whose payload holds the rule's positive contents where a real attack
  carries them (:func:`attack_payload`): the URI of an HTTP request, the question of a DNS query,
  the user name of a MySQL login, else a line of text; ``nocase`` contents in mixed case; each
  content at an offset its ``offset`` / ``depth`` / ``distance`` / ``within`` allow.

Everything comes from the compiled rules (:mod:`sim.compare.firewall`), so any rule file works.
Rules a header cannot be built for here (ICMP, ``flags``, ``flow``, ``dsize``, ``ttl``, only
negated contents, an address set outside the VM's network) are not planted; the log says how
many. A planted frame records what was planted (:attr:`Planted.kind`, :attr:`Planted.sid`): the
paths' verdicts and alerts on it are what the report and tests/compare hold against it.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import struct
from dataclasses import dataclass

__all__ = ["Planted", "Candidate", "attack_candidates", "payload_candidates", "header", "attack_payload", "HTTP_PORTS"]

log = logging.getLogger(__name__)

#: Destination ports whose payload is written as an HTTP request.
HTTP_PORTS = frozenset((80, 8000, 8008, 8080, 8888))
#: The uplink's peers (sim.compare.traffic): a planted frame's source is taken from here when the rule allows.
_UPLINK_PEERS = ipaddress.IPv4Network("198.18.0.0/15")
_PROTO = {"tcp": 6, "udp": 17, "ip": 6}
_SYN, _PSH_ACK = 0x02, 0x18


@dataclass(frozen=True)
class Planted:
    """What a planted frame was made to exercise: ``kind`` ``attack`` (a firewall drop/reject rule)
    or ``payload`` (a content rule), and that rule's ``sid``."""
    kind: str
    sid: int


@dataclass(frozen=True)
class Candidate:
    """One rule a frame to ``vm`` can be planted for: its header and (payload hits) its contents."""
    vm: str
    sid: int
    proto: int
    src: object          # IntervalSet of IPv4 sources
    sport: object        # IntervalSet of source ports
    dst: object          # IntervalSet of IPv4 destinations, within the VM's network
    dport: object        # IntervalSet of destination ports
    contents: tuple = ()


def _plantable_header(rule, network: ipaddress.IPv4Network):
    """(proto, src, dst) of a rule header that a TCP/UDP frame to ``network`` can meet, else None."""
    from host_driver.rules.expr import IntervalSet
    if rule.proto not in _PROTO or rule.bidirectional:
        return None
    if any(getattr(rule, a) is not None for a in ("tcp_flags", "flow", "itype", "icode", "ttl", "ip_protos")):
        return None
    net = IntervalSet(rule.dst.v4.top, [(int(network.network_address) + 1, int(network.broadcast_address) - 1)])
    dst = rule.dst.v4 & net
    if not dst or not rule.src.v4:
        return None
    return _PROTO[rule.proto], rule.src.v4, dst


def attack_candidates(firewalls) -> list[Candidate]:
    """Every header-only ``drop`` / ``reject`` rule of each VM's firewall (:func:`sim.compare.firewall.
    chain_firewalls`) that a frame from the uplink to that VM can meet."""
    from sim.compare.firewall import POLICY_DROP
    out, skipped = [], 0
    for vm, fw in firewalls.items():
        for rule in fw.compiled.rules:
            if rule.verdict != "offloaded" or rule.action not in POLICY_DROP:
                continue
            head = _plantable_header(rule, fw.network)
            if head is None:
                skipped += 1
                continue
            out.append(Candidate(vm, rule.sid, head[0], head[1], rule.sport, head[2], rule.dport))
    if skipped:
        log.info("attack planting: %d drop rules have a header not planted here (ICMP, flags, flow ...)", skipped)
    return out


def payload_candidates(ids) -> list[Candidate]:
    """Every content rule of each VM's IDS (:func:`sim.compare.firewall.chain_ids`, already scoped to
    the VM) whose header and contents a frame can be made to meet."""
    from host_driver.rules.content import parse_content_rule
    out, skipped = [], 0
    for vm, chain in ids.items():
        for rule in chain.content:
            head = _plantable_header(rule, chain.network)
            cr = parse_content_rule(rule)
            positive = tuple(c for c in cr.contents if not c.negated)
            if head is None or cr.dsize is not None or not positive:
                skipped += 1
                continue
            out.append(Candidate(vm, rule.sid, head[0], head[1], rule.sport, head[2], rule.dport, positive))
    if skipped:
        log.info("payload planting: %d content rules not planted here (ICMP, flow, dsize, only negated ...)", skipped)
    return out


def _pick(iset, rng: random.Random, prefer: tuple[int, int] | None = None) -> int:
    """A value of ``iset``, inside ``prefer`` when the two meet."""
    from host_driver.rules.expr import IntervalSet
    if prefer is not None:
        inside = iset & IntervalSet(iset.top, [prefer])
        if inside:
            iset = inside
    lo, hi = rng.choice(iset.intervals)
    return rng.randint(lo, min(hi, lo + 4095))


def header(c: Candidate, rng: random.Random) -> tuple[bytes, bytes, int, int, int]:
    """(source IP, destination IP, protocol, source port, destination port) meeting ``c``'s rule."""
    src = _pick(c.src, rng, (int(_UPLINK_PEERS.network_address), int(_UPLINK_PEERS.broadcast_address)))
    dst = _pick(c.dst, rng)
    sport = _pick(c.sport, rng, (1024, 65535))
    dport = _pick(c.dport, rng, (1024, 65535))
    return struct.pack("!I", src), struct.pack("!I", dst), c.proto, sport, dport


def _mixed_case(data: bytes, rng: random.Random) -> bytes:
    return bytes(b ^ 0x20 if chr(b).isalpha() and rng.random() < 0.5 else b for b in data)


def _blob(contents, rng: random.Random) -> tuple[bytes, int]:
    """The positive contents one after the other as the rule wants them (``distance`` gaps of
    filler), and how far the first may sit from the start (its ``depth`` window, else unbounded: -1)."""
    out = b""
    for i, c in enumerate(contents):
        pattern = _mixed_case(c.pattern, rng) if c.nocase else c.pattern
        if i and c.relative:
            out += b"x" * max(0, c.distance or 0)
        elif i:
            out += b"&"
        out += pattern
    first = contents[0]
    room = -1
    if first.depth is not None:
        room = (first.offset or 0) + first.depth - len(first.pattern)
    return out, room


def _http(blob: bytes, host: str) -> tuple[bytes, int]:
    head = b"GET /search.php?q="
    return (head + blob + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)"
            b"\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n", len(head))


def _dns(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    """A DNS query; a 4-byte blob is its question's type and class (where a tunnel's TXT query
    shows), a longer one a label of the name."""
    hdr = struct.pack("!HHHHHH", rng.randrange(65536), 0x0100, 1, 0, 0, 0)
    labels = [f"{rng.getrandbits(40):010x}".encode(), b"t", b"example", b"net"]
    if len(blob) == 4:
        qname = b"".join(bytes((len(x),)) + x for x in labels) + b"\x00"
        return hdr + qname + blob, len(hdr) + len(qname)
    qname = bytes((len(blob),)) + blob + b"".join(bytes((len(x),)) + x for x in labels) + b"\x00"
    return hdr + qname + struct.pack("!HH", 16, 1), len(hdr) + 1


def _mysql(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    """A MySQL HandshakeResponse41 (client login) with the blob as its user name."""
    body = struct.pack("<IIB", 0x000FA685, 1 << 24, 33) + bytes(23) + blob + b"\x00" + b"\x14" + rng.randbytes(20) \
        + b"mysql_native_password\x00"
    return struct.pack("<I", len(body))[:3] + b"\x01" + body, 4 + 32


def _text(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    head = b"USER guest\r\nCMD "
    return head + blob + b"\r\n", len(head)


def attack_payload(c: Candidate, dport: int, rng: random.Random) -> bytes:
    """A payload holding ``c``'s contents where an attack on its protocol carries them (module docstring)."""
    blob, room = _blob(c.contents, rng)
    first = c.contents[0]
    if c.proto == 6 and dport in HTTP_PORTS:
        payload, at = _http(blob, f"www{rng.randrange(100)}.example.com")
    elif c.proto == 17 and dport == 53:
        payload, at = _dns(blob, rng)
    elif c.proto == 6 and dport == 3306:
        payload, at = _mysql(blob, rng)
    else:
        payload, at = _text(blob, rng)
    lo = first.offset or 0
    if first.startswith or at < lo or (room >= 0 and at > room):
        at = lo                                   # the protocol's place breaks the rule's window: put it there
        payload = payload[:at].ljust(at, b" ") + blob + b"\r\n"
    if first.endswith:
        payload = payload[:at] + blob
    return payload
