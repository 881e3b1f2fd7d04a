"""Golden model of the flow table (issue 14): connection state per 5-tuple, Suricata's meanings.

The reference the gateware ``hdl/flow/flow_table.py`` is held to packet by packet, written from
Suricata's documented behaviour (docs/flow.md, "Semantics"), not from the HDL:

* **Flow key.** (protocol, address family, the two endpoints), the endpoints in a canonical order
  (the smaller (address, port) first), so both directions of a connection find one entry. The
  side that sent the packet which created the flow is the **client**: its packets are
  ``to_server``, the other side's ``to_client`` (Suricata's ``flow:to_server``/``to_client``).
* **Established** (Suricata's ``flow:established``, docs "Flow Keywords"): for TCP, after the
  three-way handshake (SYN from the client, SYN-ACK from the server, ACK from the client); the
  flag a packet carries is the flow's state *before* that packet, as Suricata's flow engine sets
  it before its stream engine runs, so the handshake's own ACK is not established, the packets
  after it are. A FIN from one side keeps the flow established; a FIN from each side, or a RST,
  closes it. Other protocols: established once traffic has been seen both ways, the first reply
  included.
* **Table.** ``sets`` x ``ways`` slots; a flow lives in the set its key hashes to
  (:func:`flow_hash`). A slot is *live* while ``(now - stamp) mod 2**time_bits`` is below the
  timeout of its state (new / established / closed, TCP or other). A packet of a live flow
  refreshes its stamp; a packet of no live flow creates one in the **lowest-numbered** slot that
  is empty or expired; with none, nothing is evicted: ``table_full``, counted, and the packet
  has no flow (not established, neither direction), which a default-deny policy must not admit.

Times are integers in the caller's unit (the gateware's: 1 ms, see docs/flow.md).
"""

from __future__ import annotations

import ipaddress
import logging
import zlib
from dataclasses import dataclass, field, fields, replace

# The entry encoding and the state and outcome numbers are the gateware's (one definition).
from hdl.flow.flow_table import DEFAULT_TIMEOUTS, FlowState, Outcome, entry_layout

__all__ = ["FlowState", "Outcome", "Timeouts", "FlowPacket", "FlowEntry", "FlowResult", "FlowTable",
           "flow_hash", "TCP", "TCP_FIN", "TCP_SYN", "TCP_RST", "TCP_ACK"]

log = logging.getLogger(__name__)

TCP = 6
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


ESTABLISHED_STATES = (FlowState.ESTABLISHED, FlowState.FIN_CLIENT, FlowState.FIN_SERVER)


@dataclass(frozen=True)
class Timeouts:
    """Idle timeouts per state, in time units. Defaults: Suricata's ``flow-timeouts`` of its
    default suricata.yaml (tcp new 60 s, established 600 s, closed 60 s; udp/icmp/other new 30 s,
    established 300 s) in milliseconds."""
    tcp_new: int = DEFAULT_TIMEOUTS["tcp_new"]
    tcp_established: int = DEFAULT_TIMEOUTS["tcp_established"]
    tcp_closed: int = DEFAULT_TIMEOUTS["tcp_closed"]
    other_new: int = DEFAULT_TIMEOUTS["other_new"]
    other_established: int = DEFAULT_TIMEOUTS["other_established"]

    def of(self, proto: int, state: FlowState) -> int:
        tcp = proto == TCP
        if state == FlowState.CLOSED:
            return self.tcp_closed if tcp else 0
        if state in ESTABLISHED_STATES:
            return self.tcp_established if tcp else self.other_established
        return self.tcp_new if tcp else self.other_new


@dataclass(frozen=True)
class FlowPacket:
    """What the table needs of a packet. Addresses are integers (IPv4 in the low 32 bits with
    ``ipv6`` False); ``flags`` is the TCP flags byte (ignored for other protocols)."""
    proto: int
    src: int
    dst: int
    sport: int = 0
    dport: int = 0
    flags: int = 0
    ipv6: bool = False

    @classmethod
    def of(cls, src: str, dst: str, proto: int, sport: int = 0, dport: int = 0, flags: int = 0) -> FlowPacket:
        a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        if a.version != b.version:
            raise ValueError(f"mixed address families: {src!r} -> {dst!r}")
        return cls(proto, int(a), int(b), sport, dport, flags, a.version == 6)


@dataclass
class FlowEntry:
    """One slot as stored: the canonical key (``lo`` endpoint first), who the client is, state,
    last-seen stamp. ``valid`` False: an empty slot (the other fields are zero)."""
    valid: bool = False
    state: FlowState = FlowState.NEW
    client_hi: bool = False    # the client is the ``hi`` endpoint
    ipv6: bool = False
    proto: int = 0
    lo_addr: int = 0
    hi_addr: int = 0
    lo_port: int = 0
    hi_port: int = 0
    stamp: int = 0

    def key(self):
        return (self.ipv6, self.proto, self.lo_addr, self.hi_addr, self.lo_port, self.hi_port)

    def to_bits(self, addr_bits: int = 128, time_bits: int = 32) -> int:
        """The entry as the gateware stores it (:func:`hdl.flow.flow_table.entry_layout`)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values = {k: (v if isinstance(v, FlowState) else int(v)) for k, v in values.items()}
        return entry_layout(addr_bits, time_bits).const(values).as_value().value

    @classmethod
    def from_bits(cls, bits: int, addr_bits: int = 128, time_bits: int = 32) -> FlowEntry:
        """Decode an entry read through the management port (the driver's dump)."""
        view = entry_layout(addr_bits, time_bits).from_bits(bits)
        values = {f.name: getattr(view, f.name) for f in fields(cls)}
        return cls(**{k: (FlowState(v) if k == "state" else bool(v) if k in ("valid", "client_hi", "ipv6")
                          else int(v)) for k, v in values.items()})


@dataclass(frozen=True)
class FlowResult:
    """The table's answer to one packet. ``to_server`` means something only when ``found``."""
    found: bool
    established: bool
    to_server: bool
    outcome: Outcome
    state: FlowState | None = None


def _endpoint_bytes(addr: int, port: int, addr_bits: int) -> bytes:
    return addr.to_bytes(addr_bits // 8, "big") + port.to_bytes(2, "big")


def flow_hash(pkt: FlowPacket, bits: int, addr_bits: int = 128) -> int:
    """Set index of a packet's flow: the low ``bits`` bits of
    ``crc32(src endpoint) ^ crc32(dst endpoint) ^ crc32(proto, ipv6)``, each endpoint the address
    (``addr_bits / 8`` big-endian bytes) then the port (2 bytes). XOR makes it the same both ways;
    a CRC is affine over GF(2), so the gateware computes it as a fixed XOR network."""
    h = (zlib.crc32(_endpoint_bytes(pkt.src, pkt.sport, addr_bits))
         ^ zlib.crc32(_endpoint_bytes(pkt.dst, pkt.dport, addr_bits))
         ^ zlib.crc32(bytes([pkt.proto, int(pkt.ipv6)])))
    return h & ((1 << bits) - 1)


@dataclass
class FlowTable:
    """The flow table: ``sets`` x ``ways`` slots (see the module docstring for the semantics).

    ``counts`` counts the outcomes by their lower-case names.
    """
    sets: int = 1024
    ways: int = 4
    addr_bits: int = 128
    time_bits: int = 32
    timeouts: Timeouts = field(default_factory=Timeouts)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if self.sets < 2 or self.sets & (self.sets - 1):
            raise ValueError(f"sets must be a power of two of at least 2, not {self.sets!r}")
        if self.addr_bits not in (32, 128):
            raise ValueError(f"addr_bits must be 32 or 128, not {self.addr_bits!r}")
        self.set_bits = self.sets.bit_length() - 1
        self.clear()

    def clear(self) -> None:
        """Empty every slot (the management port's clear)."""
        self._slots = [[FlowEntry() for _ in range(self.ways)] for _ in range(self.sets)]

    def live(self, e: FlowEntry, now: int) -> bool:
        age = (now - e.stamp) % (1 << self.time_bits)
        return e.valid and age < self.timeouts.of(e.proto, e.state)

    def packet(self, pkt: FlowPacket, now: int) -> FlowResult:
        """Look the packet's flow up, update or create it; the answer for the classifier."""
        now %= 1 << self.time_bits
        if pkt.ipv6 and self.addr_bits < 128:
            return self._count(FlowResult(False, False, False, Outcome.UNSUPPORTED))
        src, dst = (pkt.src, pkt.sport), (pkt.dst, pkt.dport)
        swap = src > dst                        # the packet's source is the ``hi`` endpoint
        (lo_addr, lo_port), (hi_addr, hi_port) = (dst, src) if swap else (src, dst)
        key = (pkt.ipv6, pkt.proto, lo_addr, hi_addr, lo_port, hi_port)
        slots = self._slots[flow_hash(pkt, self.set_bits, self.addr_bits)]
        tcp = pkt.proto == TCP
        for e in slots:
            if self.live(e, now) and e.key() == key:
                to_server = swap == e.client_hi
                old = e.state
                e.stamp = now
                if tcp and pkt.flags & TCP_SYN and not pkt.flags & (TCP_ACK | TCP_RST) \
                        and old in (FlowState.TCP_MIDSTREAM, FlowState.CLOSED):
                    # A new connection on the 5-tuple of a dead one (port reuse): the SYN's
                    # sender is the new client.
                    e.state, e.client_hi = FlowState.SYN_SENT, swap
                    return self._count(FlowResult(True, False, True, Outcome.NEW, e.state))
                if tcp:
                    e.state = self._tcp_next(old, pkt.flags, to_server)
                    established = old in ESTABLISHED_STATES
                else:
                    if old == FlowState.NEW and not to_server:
                        e.state = FlowState.ESTABLISHED
                    established = e.state == FlowState.ESTABLISHED
                return self._count(FlowResult(True, established, to_server, Outcome.EXISTING, e.state))
        for way, e in enumerate(slots):
            if not self.live(e, now):
                state = self._tcp_first(pkt.flags) if tcp else FlowState.NEW
                slots[way] = FlowEntry(True, state, swap, pkt.ipv6, pkt.proto, lo_addr, hi_addr,
                                       lo_port, hi_port, now)
                return self._count(FlowResult(True, False, True, Outcome.NEW, state))
        return self._count(FlowResult(False, False, False, Outcome.TABLE_FULL))

    @staticmethod
    def _tcp_first(flags: int) -> FlowState:
        if flags & TCP_RST:
            return FlowState.CLOSED
        if flags & TCP_SYN and not flags & TCP_ACK:
            return FlowState.SYN_SENT
        return FlowState.TCP_MIDSTREAM

    @staticmethod
    def _tcp_next(s: FlowState, flags: int, to_server: bool) -> FlowState:
        syn, ack, fin = flags & TCP_SYN, flags & TCP_ACK, flags & TCP_FIN
        if flags & TCP_RST:
            return FlowState.CLOSED
        if syn:
            # SYN-ACK from the server answers the client's SYN; other SYNs (retransmissions,
            # a SYN to the client) change nothing.
            if ack and s == FlowState.SYN_SENT and not to_server:
                return FlowState.SYN_RECV
            return s
        if s == FlowState.SYN_RECV and ack and to_server:
            return FlowState.ESTABLISHED
        if fin:
            if s == FlowState.ESTABLISHED:
                return FlowState.FIN_CLIENT if to_server else FlowState.FIN_SERVER
            if (s == FlowState.FIN_CLIENT and not to_server) or (s == FlowState.FIN_SERVER and to_server):
                return FlowState.CLOSED
        return s

    def _count(self, result: FlowResult) -> FlowResult:
        name = result.outcome.name.lower()
        self.counts[name] = self.counts.get(name, 0) + 1
        if result.outcome == Outcome.TABLE_FULL:
            log.debug("flow table full")
        return result

    # --- the management port -------------------------------------------------------------

    def read(self, set_: int, way: int) -> FlowEntry:
        """The slot at (set, way) as stored, expired or not (a copy)."""
        return replace(self._slots[set_][way])

    def write(self, set_: int, way: int, entry: FlowEntry) -> None:
        self._slots[set_][way] = replace(entry)

    def dump(self, now: int) -> list[tuple[int, int, FlowEntry]]:
        """(set, way, entry) of every live flow, by set and way: what the driver's dump reads."""
        now %= 1 << self.time_bits
        return [(s, w, replace(e)) for s, slots in enumerate(self._slots) for w, e in enumerate(slots)
                if self.live(e, now)]
