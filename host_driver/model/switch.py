"""Golden model of the NIC's L2 switch fabric (issue 13): MAC learning, VLANs, flooding.

The reference the switch gateware will be held to; itself held frame for frame to Open vSwitch's
NORMAL pipeline (tests/switch/test_switch_vs_ovs.py). One frame at a time, in arrival order:

1. **Ingress VLAN.** An access port puts untagged frames (and priority-tagged ones, VID 0) into
   its VLAN and drops 802.1Q-tagged ones (``tagged_on_access``). A trunk puts untagged frames into
   its native VLAN (dropped with ``no_native_vlan`` if it has none) and tagged frames into their
   VID if it carries it (``vlan_not_member`` otherwise). The outer tag, 802.1Q (0x8100) or 802.1ad
   (0x88a8), is the VLAN tag, as in Open vSwitch; an inner tag is payload (QinQ passes through
   trunks with its inner tag untouched) (:data:`SWITCH_TPIDS`).
2. **Reserved group addresses** 01:80:c2:00:00:00-0f (STP, LACP, LLDP...) are never forwarded
   (``reserved``), as IEEE 802.1D says, nor is Cisco's 01:00:0c:cc:cc:cc (CDP, VTP, DTP): OVS
   drops both by default, without learning their source.
3. **Learning** of (VLAN, source MAC) on the ingress port, unless the source is a group address:
   a hashed, set-associative table (:class:`MacTable`), entries aged out after ``aging`` time
   units, static entries that learning never moves, a per-port limit (port security). A full set
   learns nothing (``table_full``): entries already there survive a MAC flood.
4. **Storm control.** Per ingress port, a token bucket for each of broadcast, multicast and unknown
   unicast (:class:`StormLimit`: bytes per 1024 cycles and a burst in bytes) drops what exceeds
   it (``storm_broadcast``, ``storm_multicast``, ``storm_unknown``). Learning comes first, so a
   storm's source MACs still move (what loop guard watches).
5. **Forwarding.** Group destinations and unknown unicast flood to every other port of the VLAN;
   a known unicast goes to its port, or nowhere when that is the ingress port (``same_port``).
   Loop guard (:class:`LoopGuard`) watches MAC moves and returning broadcasts; a port it blocks
   takes nothing in (``loop_blocked``) and sends nothing until the driver clears it.
   Loops and storms are :class:`SwitchEvent` s, reported once per episode, and freeze the
   :class:`FlightRecorder` (the last frames' records, the triggering one last).
7. **Mirroring** (:class:`MirrorSession`): copies of what chosen ports receive and send go to a
   monitor port, which carries nothing else, as Open vSwitch's mirrors do.
6. **Egress tagging.** Access ports and a trunk's native VLAN send untagged; other VLANs leave a
   trunk with an 802.1Q tag (the ingress tag's PCP and DEI kept, 0 for untagged ingress).
"""

from __future__ import annotations

import enum
import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hdl.switch.settings import RECENT_BROADCASTS

__all__ = ["CISCO_RESERVED", "PortVlan", "SwitchDrop", "MacEntry", "MacTable", "SwitchModel", "SwitchResult",
           "mac_hash",
           "StormLimit", "StormClass", "LoopGuard", "SwitchEvent", "FlightRecorder",
           "MirrorSession",
           "SWITCH_TPIDS", "RESERVED_PREFIX", "format_mac", "parse_mac"]

log = logging.getLogger(__name__)

#: TPIDs the switch classifies by: the outer tag, 802.1Q or 802.1ad, is the frame's VLAN (as in
#: Open vSwitch); an inner tag travels untouched as payload (QinQ pass-through).
SWITCH_TPIDS = (0x8100, 0x88A8)
#: IEEE 802.1D reserved group addresses 01:80:c2:00:00:00 to 0f share these five bytes.
RESERVED_PREFIX = bytes.fromhex("0180c20000")
#: Cisco's CDP/VTP/DTP address, which Open vSwitch does not forward either.
CISCO_RESERVED = bytes.fromhex("01000ccccccc")


def format_mac(mac: bytes | int) -> str:
    raw = mac.to_bytes(6, "big") if isinstance(mac, int) else bytes(mac)
    return ":".join(f"{b:02x}" for b in raw)


def parse_mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return raw


def mac_hash(vlan: int, mac: bytes, bits: int) -> int:
    """Set index of (VLAN, MAC): the low ``bits`` bits of the CRC-32 of the 8-byte key
    ``vlan (16 bits, big-endian) + mac``. A CRC is linear, so the gateware computes it as a fixed
    XOR network of the key bits, and the model and the gateware agree by construction."""
    return zlib.crc32(vlan.to_bytes(2, "big") + bytes(mac)) & ((1 << bits) - 1)


@dataclass(frozen=True)
class PortVlan:
    """A port's VLAN membership: ``access`` in ``vlan``, or ``trunk`` carrying ``trunks`` (None: every
    VLAN) with native VLAN ``vlan`` (None: untagged frames are dropped)."""
    mode: str = "access"
    vlan: int | None = 1
    trunks: frozenset[int] | None = None

    def __post_init__(self):
        if self.mode not in ("access", "trunk"):
            raise ValueError(f"port mode must be 'access' or 'trunk', not {self.mode!r}")
        if self.mode == "access" and self.vlan is None:
            raise ValueError("an access port needs a VLAN")
        for v in ([self.vlan] if self.vlan is not None else []) + sorted(self.trunks or ()):
            if not 1 <= v <= 4094:
                raise ValueError(f"VLAN {v} out of range 1..4094")

    def carries(self, vlan: int) -> bool:
        if self.mode == "access":
            return vlan == self.vlan
        return vlan == self.vlan or self.trunks is None or vlan in self.trunks


class SwitchDrop(enum.Enum):
    """Why the switch sent a frame nowhere (each is counted per ingress port)."""
    TAGGED_ON_ACCESS = "tagged_on_access"
    NO_NATIVE_VLAN = "no_native_vlan"
    VLAN_NOT_MEMBER = "vlan_not_member"
    RESERVED = "reserved"
    SAME_PORT = "same_port"
    RUNT = "runt"
    STORM_BROADCAST = "storm_broadcast"
    STORM_MULTICAST = "storm_multicast"
    STORM_UNKNOWN = "storm_unknown"
    LOOP_BLOCKED = "loop_blocked"
    MONITOR_PORT = "monitor_port"


class StormClass(enum.Enum):
    """The traffic storm control polices, each with its own bucket per port."""
    BROADCAST = "broadcast"
    MULTICAST = "multicast"
    UNKNOWN_UNICAST = "unknown_unicast"


_STORM_DROP = {StormClass.BROADCAST: SwitchDrop.STORM_BROADCAST, StormClass.MULTICAST: SwitchDrop.STORM_MULTICAST,
               StormClass.UNKNOWN_UNICAST: SwitchDrop.STORM_UNKNOWN}


@dataclass
class StormLimit:
    """A token bucket: ``rate`` bytes per 1024 cycles, at most ``burst`` bytes saved up (full at
    start). A frame passes when the bucket holds its length, which it then takes; otherwise it
    is dropped and takes nothing. Integer arithmetic in 1/1024 bytes, as the gateware counts."""
    rate: int
    burst: int
    _tokens: int = field(default=-1, repr=False)
    _last: int = field(default=0, repr=False)

    def __post_init__(self):
        if self.rate < 0 or self.burst < 0:
            raise ValueError(f"storm limit rate and burst must be >= 0, not {self.rate}, {self.burst}")

    def admit(self, length: int, now: int) -> bool:
        if self._tokens < 0:
            self._tokens, self._last = self.burst * 1024, now
        self._tokens = min(self.burst * 1024, self._tokens + self.rate * (now - self._last))
        self._last = now
        if self._tokens >= length * 1024:
            self._tokens -= length * 1024
            return True
        return False

    @classmethod
    def from_rate(cls, mbps: float, burst: int, clock_mhz: float) -> StormLimit:
        """A limit of ``mbps`` megabits per second at ``clock_mhz`` (rounded down to the unit)."""
        return cls(int(mbps * 1e6 / 8 * 1024 / (clock_mhz * 1e6)), burst)


@dataclass
class MacEntry:
    vlan: int
    mac: bytes
    port: str
    last_seen: int
    static: bool = False


#: The scrubber's epoch is ``2**DEFAULT_EPOCH_BITS`` time units unless a table says otherwise
#: (:attr:`hdl.switch.settings.SwitchSettings.scrub_epoch_bits` for a build).
DEFAULT_EPOCH_BITS = 4


@dataclass
class MacTable:
    """Hashed set-associative MAC table: ``sets`` x ``ways`` entries keyed by (VLAN, MAC), way by
    way as the gateware stores them.

    Learning a key not live in its set takes the lowest way that is free or aged out; a set with
    neither learns nothing and counts ``table_full`` (no eviction of live entries). Static entries
    never age and never move.

    **Port limit** (port security): ``port_limit`` (one number for every port, or a mapping of
    port name to limit; 0 or None: no limit) caps the dynamic entries a port *holds*; a new
    source on a port holding its limit is not learned (``learn_limit``, also counted per port in
    :attr:`limited`). A port holds an entry from its learning (or its move onto the port) until
    the entry moves away, the driver overwrites a live entry, or, once it aged out, its
    **release** (docs/switch.md, "Port limit and the scrubber"): time is cut into epochs of
    ``2**epoch_bits`` units; the gateware's scrubber sweeps the table once per epoch, and an
    aged-out entry is released at the end of the epoch whose sweep finds it (stamp epoch +
    ``D`` with ``D = ceil(aging / 2**epoch_bits) + 1``), or at the end of the epoch in which a
    learn or the driver overwrites its way, whichever is first. Releases take effect at the
    first request of a new epoch (:meth:`advance`).
    """
    sets: int = 1024
    ways: int = 4
    aging: int = 300
    port_limit: int | Mapping[str, int] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    epoch_bits: int = DEFAULT_EPOCH_BITS

    def __post_init__(self):
        if self.sets < 1 or self.sets & (self.sets - 1):
            raise ValueError(f"sets must be a power of two, not {self.sets}")
        self._bits = self.sets.bit_length() - 1
        self._slots: list[list[MacEntry | None]] = [[None] * self.ways for _ in range(self.sets)]
        #: Dynamic entries each port holds (what the limit is checked against).
        self.held: dict[str, int] = {}
        #: Over-limit sources per port (``learn_limit``).
        self.limited: dict[str, int] = {}
        self._pending: dict[str, int] = {}     # released at the next epoch step
        self._epoch: int | None = None
        self._swept = 0                         # stamp epochs up to this one were swept
        self._d = 0                             # D as the last step used it
        self._now = 0

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _live(self, e: MacEntry, now: int) -> bool:
        return e.static or now - e.last_seen < self.aging

    def _set(self, vlan: int, mac: bytes) -> list[MacEntry | None]:
        return self._slots[mac_hash(vlan, mac, self._bits)]

    def limit_of(self, port: str) -> int:
        """The port's limit (0: none)."""
        if isinstance(self.port_limit, Mapping):
            return self.port_limit.get(port, 0) or 0
        return self.port_limit or 0

    def _delay(self) -> int:
        """Epochs from a stamp's epoch to the sweep that finds it aged out (for ``aging`` now; the
        steps follow a longer one by one epoch per step, so that the window never moves back)."""
        return -(-self.aging >> self.epoch_bits) + 1

    def advance(self, now: int, *, continuous: bool = False) -> None:
        """Step to ``now``'s epoch, as the gateware does at a request of a new epoch: release what
        is pending, then sweep stamp epochs up to ``epoch - D``. ``continuous``: as a table whose
        time runs on (the switch), which steps at every epoch: the same as a step to the epoch
        before ``now``'s and then to ``now``'s."""
        self._now = now
        epoch = now >> self.epoch_bits
        if self._epoch is None:
            self._epoch, self._d = epoch, self._delay()
            self._swept = epoch - self._d
            return
        if continuous and epoch - 1 > self._epoch:
            self._step(epoch - 1)
        if epoch != self._epoch:
            self._step(epoch)

    def _step(self, epoch: int) -> None:
        for port, n in self._pending.items():
            self.held[port] = max(0, self.held.get(port, 0) - n)
            self.counts["aged_out"] = self.counts.get("aged_out", 0) + n
        self._pending = {}
        swept = epoch - self._d
        target = self._delay()
        self._d = target if target <= self._d else self._d + 1
        for entries in self._slots:
            for e in entries:
                if e is not None and not e.static and self._swept < e.last_seen >> self.epoch_bits <= swept:
                    self._pending[e.port] = self._pending.get(e.port, 0) + 1
        self._epoch, self._swept = epoch, swept

    def _drop(self, e: MacEntry | None, now: int) -> None:
        """``e``'s way is overwritten at ``now``: a live dynamic entry stops counting at once; an
        aged-out one that no sweep found yet is released at the end of this epoch."""
        if e is None or e.static:
            return
        if self._live(e, now):
            self.held[e.port] = max(0, self.held.get(e.port, 0) - 1)
        elif self._swept < e.last_seen >> self.epoch_bits <= now >> self.epoch_bits:
            self._pending[e.port] = self._pending.get(e.port, 0) + 1

    def lookup(self, vlan: int, mac: bytes, now: int) -> str | None:
        self.advance(now)
        for e in self._set(vlan, mac):
            if e is not None and e.vlan == vlan and e.mac == mac and self._live(e, now):
                return e.port
        return None

    def learn(self, vlan: int, mac: bytes, port: str, now: int) -> str:
        """Learn (VLAN, MAC) on ``port``; the outcome: ``learned``, ``refreshed``, ``moved``,
        ``static``, ``static_move``, ``learn_limit`` or ``table_full`` (the last four learn nothing)."""
        self.advance(now)
        entries = self._set(vlan, mac)
        for e in entries:
            if e is not None and e.vlan == vlan and e.mac == mac and self._live(e, now):
                if e.static:
                    if e.port != port:
                        self._count("static_move")   # a locked MAC seen elsewhere: not learned
                        return "static_move"
                    return "static"
                outcome = "refreshed"
                if e.port != port:                   # a move is not limited (the MAC is not new)
                    self.held[e.port] -= 1
                    self.held[port] = self.held.get(port, 0) + 1
                    e.port = port
                    self._count("moved")
                    outcome = "moved"
                e.last_seen = now
                return outcome
        limit = self.limit_of(port)
        if limit and self.held.get(port, 0) >= limit:
            self._count("learn_limit")
            self.limited[port] = self.limited.get(port, 0) + 1
            return "learn_limit"
        for way, e in enumerate(entries):
            if e is None or not self._live(e, now):
                self._drop(e, now)
                entries[way] = MacEntry(vlan, bytes(mac), port, now)
                self.held[port] = self.held.get(port, 0) + 1
                self._count("learned")
                return "learned"
        self._count("table_full")
        return "table_full"

    def write(self, set_index: int, way: int, entry: MacEntry | None, now: int) -> None:
        """The driver writes ``entry`` (None: an invalid entry, a delete) at (set, way) at ``now``,
        as the gateware's management write does (a way number >= ``ways`` writes nothing)."""
        self.advance(now)
        if way >= self.ways:
            return
        entries = self._slots[set_index]
        self._drop(entries[way], now)
        entries[way] = entry
        if entry is not None and not entry.static:
            self.held[entry.port] = self.held.get(entry.port, 0) + 1

    def read(self, set_index: int, way: int) -> MacEntry | None:
        """The entry stored at (set, way), aged out or not (None: invalid)."""
        return self._slots[set_index][way] if way < self.ways else None

    def add_static(self, vlan: int, mac: bytes, port: str, now: int | None = None) -> None:
        """Lock (VLAN, MAC) to ``port`` as the driver does: over the key's live entry, else into the
        lowest free or aged-out way; ValueError if its set has none."""
        now = self._now if now is None else now
        entries = self._set(vlan, mac)
        same = [w for w, e in enumerate(entries)
                if e is not None and e.vlan == vlan and e.mac == mac and self._live(e, now)]
        free = [w for w, e in enumerate(entries) if e is None or not self._live(e, now)]
        if not same and not free:
            raise ValueError(f"no room for static {format_mac(mac)} VLAN {vlan}: its set is full")
        self.write(mac_hash(vlan, mac, self._bits), (same or free)[0], MacEntry(vlan, bytes(mac), port, 0, True), now)

    def entries(self, now: int) -> list[MacEntry]:
        """Every live entry, by set and way (the order a driver's dump reads them)."""
        return [e for entries in self._slots for e in entries if e is not None and self._live(e, now)]


@dataclass
class LoopGuard:
    """Loop detection, as the gateware does it. Two signatures of an L2 loop make a loop on the
    port where the frame arrived:

    * ``moves`` MAC moves onto one port within a window of ``window`` ticks (the window opens
      with the first move after the previous one ran out);
    * with ``broadcasts``, a broadcast coming back: one with the source MAC and length of one of
      the last :data:`RECENT_BROADCASTS` broadcasts, arriving on another port than that one
      within ``window`` ticks. (A one-way loop returns the frame always on the same port, so its
      source moves only once: this is what catches it.)

    With ``block``, that port is blocked (nothing in, nothing out) until the driver clears it
    (:meth:`SwitchModel.clear_block`)."""
    moves: int = 16
    window: int = 153              # 1 ms in ticks of 1024 cycles at 156.25 MHz
    block: bool = True
    broadcasts: bool = True
    _moves: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    _recent: list[list] = field(default_factory=list, repr=False)
    _next: int = field(default=0, repr=False)

    def mac_moved(self, port: str, now: int) -> bool:
        """Count a move onto ``port``; True when it is the ``moves``-th of its window."""
        start, count = self._moves.get(port, (None, 0))
        if start is None or now - start >= self.window:
            start, count = now, 0
        count += 1
        self._moves[port] = (start, count)
        return count == self.moves

    def broadcast_seen(self, port: str, signature: tuple[bytes, int], now: int) -> bool:
        """A broadcast with ``signature`` (source MAC, length) arrives on ``port``: True if it came
        back. The recent broadcasts: the entry with this signature takes the port and time, or
        the oldest-written entry is replaced."""
        if not self.broadcasts:
            return False
        back = any(sig == signature and p != port and now - t < self.window for sig, p, t in self._recent)
        for entry in self._recent:
            if entry[0] == signature:
                entry[1:] = [port, now]
                return back
        if len(self._recent) < RECENT_BROADCASTS:
            self._recent.append([signature, port, now])
        else:
            self._recent[self._next] = [signature, port, now]
        self._next = (self._next + 1) % RECENT_BROADCASTS
        return back


@dataclass(frozen=True)
class MirrorSession:
    """SPAN, as Open vSwitch's ``Mirror`` does it: a frame received on an ``ingress`` port and
    admitted into a VLAN (forwarded or not: reserved and same-port frames too, but not one the
    ingress VLAN rules drop), or sent out of an ``egress`` port, is copied once to ``to``,
    formatted as if forwarded there (that port's tagging for the frame's VLAN, whichever VLANs it
    carries; a copy taken where the frame left untagged has PCP 0). The destination port takes
    no other traffic: it is not flooded to and learns nothing."""
    to: str
    ingress: frozenset[str] = frozenset()
    egress: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SwitchEvent:
    """Something the switch reports to the driver: ``loop_mac_move``, ``loop_broadcast`` or
    ``storm`` on ``port`` at ``time``."""
    time: int
    kind: str
    port: str
    detail: str = ""


@dataclass
class FlightRecorder:
    """The last ``depth`` frame records; frozen (no longer overwritten) by a trigger: a loop, a
    storm drop (``freeze_on_storm``) or :meth:`freeze`, until :meth:`rearm`."""
    depth: int = 1024
    freeze_on_storm: bool = True
    frozen_by: SwitchEvent | str | None = None
    records: list[dict] = field(default_factory=list)

    def record(self, rec: dict) -> None:
        if self.frozen_by is None:
            self.records.append(rec)
            del self.records[:-self.depth]

    def freeze(self, why: SwitchEvent | str = "command") -> None:
        if self.frozen_by is None:
            self.frozen_by = why

    def rearm(self) -> None:
        self.frozen_by = None
        self.records.clear()


@dataclass
class SwitchResult:
    """What the switch did with one frame: ``egress`` maps port name to the bytes sent there."""
    vlan: int | None
    egress: dict[str, bytes]
    drop: SwitchDrop | None = None
    flooded: bool = False
    #: Mirror copies, (destination port, bytes), in the order they leave.
    mirrored: list[tuple[str, bytes]] = field(default_factory=list)
    #: (VLAN, TPID, PCP and DEI bits, untagged frame) once the frame was admitted into a VLAN.
    admitted: tuple[int, int, int, bytes] | None = None


def _outer_tag(frame: bytes) -> tuple[int, int] | None:
    """(TCI, TPID) of the outer 802.1Q tag the switch classifies by, or None."""
    if len(frame) >= 18:
        tpid = int.from_bytes(frame[12:14], "big")
        if tpid in SWITCH_TPIDS:
            return int.from_bytes(frame[14:16], "big"), tpid
    return None


class SwitchModel:
    """The switch: ``ports`` (name -> :class:`PortVlan`, in port order) and a :class:`MacTable`."""

    def __init__(self, ports: Mapping[str, PortVlan], table: MacTable | None = None,
                 storm: Mapping[tuple[str, StormClass], StormLimit] | None = None,
                 loop_guard: LoopGuard | None = None, recorder: FlightRecorder | None = None,
                 mirrors: Sequence[MirrorSession] = (), tick_shift: int = 0):
        if not ports:
            raise ValueError("a switch needs ports")
        self.ports = dict(ports)
        self.table = table if table is not None else MacTable()
        #: (ingress port, class) -> bucket; a pair not listed is not policed.
        self.storm = dict(storm or {})
        for port, _ in self.storm:
            if port not in self.ports:
                raise ValueError(f"storm limit for unknown port {port!r}")
        self.mirrors = tuple(mirrors)
        for m in self.mirrors:
            if m.to not in self.ports or not (m.ingress | m.egress) <= set(self.ports):
                raise ValueError(f"mirror session to {m.to!r} names an unknown port")
            if m.to in m.ingress | m.egress:
                raise ValueError(f"mirror session to {m.to!r} mirrors its own destination")
        self._mirror_ports = {m.to for m in self.mirrors}
        self.loop_guard = loop_guard
        self.recorder = recorder if recorder is not None else FlightRecorder()
        self.blocked: set[str] = set()
        self.events: list[SwitchEvent] = []
        self._active: set[tuple[str, str, str]] = set()
        self._freeze: SwitchEvent | None = None
        self.drops: dict[tuple[str, SwitchDrop], int] = {}
        #: The MAC table's stamps and loop guard's window count ticks of 2**tick_shift time units
        #: (the gateware's: 1024 cycles); storm buckets count the units (cycles).
        self.tick_shift = tick_shift

    def _drop(self, port: str, why: SwitchDrop, vlan: int | None, admitted=None) -> SwitchResult:
        self.drops[port, why] = self.drops.get((port, why), 0) + 1
        return SwitchResult(vlan, {}, why, admitted=admitted)

    def _event(self, event: SwitchEvent) -> None:
        # Reported once, when a port enters the state: a storm until its bucket admits a frame
        # again, a loop until the driver clears the port.
        key = (event.kind, event.port, event.detail if event.kind == "storm" else "")
        if key in self._active:
            return
        self._active.add(key)
        self.events.append(event)
        if event.kind.startswith("loop"):
            self._freeze = self._freeze or event
            if self.loop_guard is not None and self.loop_guard.block:
                self.blocked.add(event.port)
        elif self.recorder.freeze_on_storm:
            self._freeze = self._freeze or event

    @classmethod
    def from_settings(cls, settings, names: Sequence[str]) -> SwitchModel:
        """The model of a gateware build's switch at power-on: ``settings`` is its
        :class:`hdl.switch.settings.SwitchSettings`, ``names`` the NIC's port names."""
        from hdl.switch.settings import TICK_SHIFT
        ports = {}
        for name, p in zip(names, settings.ports, strict=True):
            if not p.trunk:
                ports[name] = PortVlan("access", p.pvid)
            else:
                ports[name] = PortVlan("trunk", p.pvid or None, None if p.vlans is None else frozenset(p.vlans))
        storm = {(names[port], StormClass[c.name]): StormLimit(rate, burst) for port, c, rate, burst in settings.storm
                 if rate or burst}
        mirrors = ()
        if settings.mirror_to is not None:
            mirrors = (MirrorSession(names[settings.mirror_to],
                                     frozenset(n for i, n in enumerate(names) if settings.mirror_ingress >> i & 1),
                                     frozenset(n for i, n in enumerate(names) if settings.mirror_egress >> i & 1)),)
        guard = None
        if settings.loop_moves:
            guard = LoopGuard(settings.loop_moves, settings.loop_window, settings.loop_block)
        limits = {names[i]: limit for i, limit in enumerate(settings.port_limits) if limit}
        table = MacTable(sets=settings.mac_sets, ways=settings.mac_ways, aging=settings.aging,
                         port_limit=limits or None, epoch_bits=settings.scrub_epoch_bits)
        return cls(ports, table, storm, guard, FlightRecorder(settings.recorder_depth), mirrors,
                   tick_shift=TICK_SHIFT)

    def clear_block(self, port: str) -> None:
        """The driver unblocks a port loop guard blocked (and rearms its loop events)."""
        self.blocked.discard(port)
        self._active = {k for k in self._active if not (k[0].startswith("loop") and k[1] == port)}

    def process(self, in_port: str, frame: bytes, now: int = 0) -> SwitchResult:
        """Switch one frame arriving on ``in_port`` at time ``now`` (cycles: aging, storm buckets and
        loop guard count in them), and keep its record in the flight recorder."""
        self._freeze = None
        if in_port in self._mirror_ports:      # a monitor port only receives copies
            res = self._drop(in_port, SwitchDrop.MONITOR_PORT, None)
            self.recorder.record({"time": now, "in_port": in_port, "length": len(frame), "vlan": None,
                                  "dst": format_mac(frame[0:6]) if len(frame) >= 6 else None,
                                  "src": format_mac(frame[6:12]) if len(frame) >= 12 else None,
                                  "drop": res.drop.value, "egress": []})
            return res
        res = self._switch(in_port, frame, now)
        if self.mirrors:
            res.mirrored = self._mirror(in_port, res)
        self.recorder.record({"time": now, "in_port": in_port, "length": len(frame), "vlan": res.vlan,
                              "dst": format_mac(frame[0:6]) if len(frame) >= 6 else None,
                              "src": format_mac(frame[6:12]) if len(frame) >= 12 else None,
                              "drop": res.drop.value if res.drop else None, "egress": sorted(res.egress)})
        if self._freeze is not None:       # the frame that triggered is the recorder's last
            self.recorder.freeze(self._freeze)
        return res

    def _switch(self, in_port: str, frame: bytes, now: int) -> SwitchResult:
        cfg = self.ports[in_port]
        if in_port in self.blocked:
            return self._drop(in_port, SwitchDrop.LOOP_BLOCKED, None)
        if len(frame) < 14:
            return self._drop(in_port, SwitchDrop.RUNT, None)
        tag = _outer_tag(frame)
        pcp_dei = 0
        if tag is not None and tag[0] & 0xFFF:
            vid = tag[0] & 0xFFF
            if cfg.mode == "access":
                return self._drop(in_port, SwitchDrop.TAGGED_ON_ACCESS, vid)
            if not cfg.carries(vid):
                return self._drop(in_port, SwitchDrop.VLAN_NOT_MEMBER, vid)
            vlan = vid
        else:
            if cfg.vlan is None:
                return self._drop(in_port, SwitchDrop.NO_NATIVE_VLAN, None)
            vlan = cfg.vlan
        tpid = 0x8100
        if tag is not None:
            pcp_dei, tpid = tag[0] & 0xF000, tag[1]
            inner = frame[:12] + frame[16:]       # the untagged frame (priority tags removed too)
        else:
            inner = frame
        admitted = (vlan, tpid, pcp_dei, inner)
        dst, src = inner[0:6], inner[6:12]
        if dst[:5] == RESERVED_PREFIX and dst[5] <= 0x0F or dst == CISCO_RESERVED:
            return self._drop(in_port, SwitchDrop.RESERVED, vlan, admitted)
        tick = now >> self.tick_shift
        self.table.advance(tick, continuous=True)
        if not src[0] & 1:
            learned = self.table.learn(vlan, src, in_port, tick)
            if learned == "moved" and self.loop_guard is not None and self.loop_guard.mac_moved(in_port, tick):
                self._event(SwitchEvent(now, "loop_mac_move", in_port, format_mac(src)))
        if (dst == b"\xff" * 6 and self.loop_guard is not None
                and self.loop_guard.broadcast_seen(in_port, (src, len(frame)), tick)):
            self._event(SwitchEvent(now, "loop_broadcast", in_port, format_mac(src)))
        if in_port in self.blocked:
            return self._drop(in_port, SwitchDrop.LOOP_BLOCKED, vlan)
        known = None if dst[0] & 1 else self.table.lookup(vlan, dst, tick)
        if dst[0] & 1 or known is None:
            cls = (StormClass.BROADCAST if dst == b"\xff" * 6 else StormClass.MULTICAST if dst[0] & 1
                   else StormClass.UNKNOWN_UNICAST)
            limit = self.storm.get((in_port, cls))
            if limit is not None:
                if not limit.admit(len(frame), now):
                    self._event(SwitchEvent(now, "storm", in_port, cls.value))
                    return self._drop(in_port, _STORM_DROP[cls], vlan, admitted)
                self._active.discard(("storm", in_port, cls.value))
            out_ports, flooded = self._flood(in_port, vlan), True
        elif known == in_port:
            return self._drop(in_port, SwitchDrop.SAME_PORT, vlan, admitted)
        else:
            out_ports, flooded = [known], False
        out_ports = [p for p in out_ports if p not in self.blocked]
        egress = {p: self._egress_frame(p, vlan, tpid, pcp_dei, inner) for p in out_ports}
        return SwitchResult(vlan, egress, None, flooded, admitted=admitted)

    def _flood(self, in_port: str, vlan: int) -> list[str]:
        return [p for p, cfg in self.ports.items()
                if p != in_port and p not in self._mirror_ports and cfg.carries(vlan)]

    def _mirror(self, in_port: str, res: SwitchResult) -> list[tuple[str, bytes]]:
        if res.admitted is None:
            return []
        vlan, tpid, pcp_dei, inner = res.admitted
        copies = []
        for m in self.mirrors:
            if in_port in m.ingress:
                copies.append((m.to, self._egress_frame(m.to, vlan, tpid, pcp_dei, inner)))
                continue
            sent = [q for q in res.egress if q in m.egress]
            if sent:
                # OVS copies the frame as it left a selected port: one that left untagged has lost
                # its priority (the copy is tagged again with PCP 0). Which port, when several are
                # selected, follows OVS's internal output order and varies between its runs; the
                # model keeps the priority when any selected port sent the frame tagged.
                tagged = any(self.ports[q].mode == "trunk" and vlan != self.ports[q].vlan for q in sent)
                copies.append((m.to, self._egress_frame(m.to, vlan, tpid, pcp_dei if tagged else 0, inner)))
        return copies

    def monitor_copy(self, res: SwitchResult) -> tuple[str, bytes] | None:
        """(monitor port, bytes) of a copy of a switched frame made as the session's ingress copy is
        (tagged for the monitor port in the frame's VLAN, its priority kept); None without a session
        or for a frame no VLAN admitted. The security stage's ACL mirror sends it (docs/security.md)."""
        if not self.mirrors or res.admitted is None:
            return None
        vlan, tpid, pcp_dei, inner = res.admitted
        to = self.mirrors[0].to
        return to, self._egress_frame(to, vlan, tpid, pcp_dei, inner)

    def send_as_admitted(self, frame: bytes, vlan: int, ports: Iterable[str]) -> dict[str, bytes]:
        """The bytes each of ``ports`` sends for ``frame`` (as received) admitted into ``vlan``, tagged
        per port as a switched frame is; nothing learned or counted. The host path's re-injections
        (docs/security.md, "IPS: divert and re-inject") leave this way."""
        tag = _outer_tag(frame)
        tpid, pcp_dei, inner = 0x8100, 0, frame
        if tag is not None:
            pcp_dei, tpid, inner = tag[0] & 0xF000, tag[1], frame[:12] + frame[16:]
        return {p: self._egress_frame(p, vlan, tpid, pcp_dei, inner) for p in ports}

    def _egress_frame(self, port: str, vlan: int, tpid: int, pcp_dei: int, inner: bytes) -> bytes:
        cfg = self.ports[port]
        if cfg.mode == "access" or vlan == cfg.vlan:
            return inner
        tag = tpid.to_bytes(2, "big") + (pcp_dei | vlan).to_bytes(2, "big")
        return inner[:12] + tag + inner[12:]

    def add_static(self, vlan: int, mac: str | bytes, port: str, now: int | None = None) -> None:
        """Lock (VLAN, MAC) to ``port`` (at ``now`` in cycles; default: the last frame's time)."""
        if port not in self.ports:
            raise ValueError(f"unknown port {port!r}")
        tick = None if now is None else now >> self.tick_shift
        self.table.add_static(vlan, parse_mac(mac) if isinstance(mac, str) else mac, port, tick)

    def mac_table(self, now: int = 0) -> list[tuple[str, int, str, bool]]:
        """(port, VLAN, MAC, static) of every live entry."""
        return [(e.port, e.vlan, format_mac(e.mac), e.static) for e in self.table.entries(now)]

    def run(self, frames: Iterable[tuple[str, bytes]], times: Iterable[int] | None = None) -> dict[str, list[bytes]]:
        """Switch ``frames`` in order (at ``times``, default all at 0); every port's egress in order."""
        out: dict[str, list[bytes]] = {p: [] for p in self.ports}
        times = iter(times) if times is not None else None
        for port, frame in frames:
            now = next(times) if times is not None else 0
            res = self.process(port, frame, now)
            for q, data in [*res.egress.items(), *res.mirrored]:
                out[q].append(data)
        return out


def ports_from_names(names: Sequence[str], trunk: str | None = None) -> dict[str, PortVlan]:
    """Every port an access port in VLAN 1, ``trunk`` (if given) a trunk of every VLAN, native 1."""
    return {n: PortVlan("trunk", 1, None) if n == trunk else PortVlan("access", 1) for n in names}
