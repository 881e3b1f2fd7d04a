"""Build parameters of the switch fabric, and the power-on values of its registers.

:class:`SwitchSettings` is part of :class:`hdl.config.NicConfig` (``config.switch``; None builds the
two-port bump in the wire). It holds the table sizes, the queue depths and the time base, which
are fixed at build time, and the switch's runtime configuration (port VLANs, storm limits, the
mirror session, aging, loop guard) as the **reset values** of the registers the driver may
rewrite (docs/switch.md, "Registers"). The host driver turns a user's ``[switch]`` table into one
(:meth:`host_driver.switch_config.SwitchConfig.settings`).

Time: the MAC table's stamps, its aging and loop guard's window count **ticks** of
``2**TICK_SHIFT`` cycles (6.55 us at 156.25 MHz), so 32-bit stamps wrap after 7.8 hours, far
beyond any aging. Storm buckets count cycles.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["SwitchPort", "SwitchSettings", "StormClass", "TICK_SHIFT", "TIME_BITS", "VLAN_COUNT", "RECENT_BROADCASTS",
           "STORM_RATE_BITS", "STORM_BURST_BITS"]

#: One tick of the switch's coarse time is 2**TICK_SHIFT cycles.
TICK_SHIFT = 10
#: Width of the coarse time and of the MAC table's stamps.
TIME_BITS = 32
#: Loop guard remembers this many recent broadcasts (source MAC and length) to spot one coming back.
RECENT_BROADCASTS = 4
#: VLAN IDs 0..4095 index the VLAN table (0 and 4095 are never members).
VLAN_COUNT = 4096
#: Storm limit: rate in bytes per 1024 cycles (1/1024 bytes per cycle), burst in bytes.
STORM_RATE_BITS = 16
STORM_BURST_BITS = 20


class StormClass(enum.IntEnum):
    """The traffic storm control polices, each with a bucket per ingress port."""
    BROADCAST = 0
    MULTICAST = 1
    UNKNOWN_UNICAST = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class SwitchPort:
    """A port's VLAN membership: ``trunk`` or access; ``pvid`` the VLAN of untagged frames (the
    access VLAN, or the trunk's native VLAN; 0: a trunk without one); ``vlans`` the VLANs a trunk
    carries besides its native one (None: every VLAN 1..4094)."""
    trunk: bool = False
    pvid: int = 1
    vlans: tuple[int, ...] | None = None

    def __post_init__(self):
        if not 0 <= self.pvid <= 4094 or (self.pvid == 0 and not self.trunk):
            raise ValueError(f"port VLAN must be 1..4094 (0 only for a trunk without native VLAN), not {self.pvid}")
        if self.vlans is not None:
            if not self.trunk:
                raise ValueError("only a trunk carries a VLAN list")
            if any(not 1 <= v <= 4094 for v in self.vlans):
                raise ValueError(f"VLANs must be 1..4094, not {self.vlans}")

    def carries(self, vlan: int) -> bool:
        if not 1 <= vlan <= 4094:
            return False
        if vlan == self.pvid:
            return True
        return self.trunk and (self.vlans is None or vlan in self.vlans)


@dataclass(frozen=True)
class SwitchSettings:
    """The switch fabric of one build (see the module docstring).

    Parameters
    ----------
    ports:
        One :class:`SwitchPort` per NIC port, in port order (power-on VLAN membership).
    mac_sets, mac_ways:
        MAC table geometry (:class:`hdl.switch.mac_table.MacTable`).
    egress_queue_bytes:
        Each port's output queue; it must hold a maximum frame.
    recorder_depth:
        Frame records the flight recorder keeps (a power of two).
    aging:
        MAC aging in ticks (power-on value).
    storm:
        ``((port, StormClass, rate, burst), ...)``: power-on storm limits; rate 0 and burst 0
        (the default for a pair not listed) means not policed.
    mirror_to:
        The monitor port's index, or None for no mirror session.
    mirror_ingress, mirror_egress:
        Port masks whose received / sent frames are copied to ``mirror_to``.
    loop_moves, loop_window:
        Loop guard: ``loop_moves`` MAC moves onto one port within ``loop_window`` ticks is a
        loop (0 moves: off). ``loop_block``: block the port until the driver clears it.
    """
    ports: tuple[SwitchPort, ...]
    mac_sets: int = 1024
    mac_ways: int = 4
    egress_queue_bytes: int = 16384
    recorder_depth: int = 512
    aging: int = 300 * 156_250_000 >> TICK_SHIFT
    storm: tuple[tuple[int, StormClass, int, int], ...] = ()
    mirror_to: int | None = None
    mirror_ingress: int = 0
    mirror_egress: int = 0
    loop_moves: int = 0
    loop_window: int = 153
    loop_block: bool = True
    port_limits: tuple[int, ...] = ()

    @property
    def scrub_epoch_bits(self) -> int:
        """The MAC table scrubber's epoch is ``2**scrub_epoch_bits`` ticks: long enough for a sweep
        of every set at one set per two cycles (its worst case), twice over."""
        return max(4, (4 * self.mac_sets - 1).bit_length() - TICK_SHIFT)

    def port_limit(self, port: int) -> int:
        """Power-on learning limit of ``port`` (0: none)."""
        return self.port_limits[port] if port < len(self.port_limits) else 0

    def __post_init__(self):
        n = len(self.ports)
        if not 2 <= n <= 8:
            raise ValueError(f"the switch has 2..8 ports, not {n}")
        if self.mac_sets < 2 or self.mac_sets & (self.mac_sets - 1):
            raise ValueError(f"mac_sets must be a power of two, not {self.mac_sets}")
        if not 1 <= self.mac_ways <= 8:
            raise ValueError(f"mac_ways must be 1..8, not {self.mac_ways}")
        if self.recorder_depth < 2 or self.recorder_depth & (self.recorder_depth - 1):
            raise ValueError(f"recorder_depth must be a power of two, not {self.recorder_depth}")
        if not 0 < self.aging < 1 << (TIME_BITS - 1):
            raise ValueError(f"aging must be 1..2**31 ticks, not {self.aging}")
        for port, cls, rate, burst in self.storm:
            if not 0 <= port < n or not isinstance(cls, StormClass):
                raise ValueError(f"bad storm limit {(port, cls, rate, burst)}")
            if not 0 <= rate < 1 << STORM_RATE_BITS or not 0 <= burst < 1 << STORM_BURST_BITS:
                raise ValueError(f"storm rate must be < 2**{STORM_RATE_BITS} and burst < 2**{STORM_BURST_BITS}")
        if self.mirror_to is not None:
            if not 0 <= self.mirror_to < n:
                raise ValueError(f"mirror_to must be a port index, not {self.mirror_to}")
            if (self.mirror_ingress | self.mirror_egress) >> self.mirror_to & 1:
                raise ValueError("a mirror session cannot mirror its own destination")
        if (self.mirror_ingress | self.mirror_egress) >> n:
            raise ValueError("mirror masks name ports the switch does not have")
        if len(self.port_limits) > n or any(not 0 <= v <= self.mac_sets * self.mac_ways for v in self.port_limits):
            raise ValueError(f"port_limits must be one per port at most, each 0..{self.mac_sets * self.mac_ways} "
                             f"(the table's size), not {self.port_limits}")
        if not 0 <= self.loop_moves < 1 << 16 or not 0 < self.loop_window < 1 << 24:
            raise ValueError("loop_moves must be 0..65535 and loop_window 1..2**24-1 ticks")

    def storm_limit(self, port: int, cls: StormClass) -> tuple[int, int]:
        """(rate, burst) of ``port``'s bucket for ``cls``; (0, 0): not policed."""
        for p, c, rate, burst in self.storm:
            if p == port and c == cls:
                return rate, burst
        return 0, 0

    def vlan_members(self, vlan: int) -> int:
        """Port mask of the VLAN table's row ``vlan`` at power-on."""
        return sum(1 << i for i, p in enumerate(self.ports) if p.carries(vlan))

    def as_dict(self) -> dict:
        return {"ports": [{"trunk": p.trunk, "pvid": p.pvid, "vlans": list(p.vlans) if p.vlans is not None else None}
                          for p in self.ports],
                "mac_sets": self.mac_sets, "mac_ways": self.mac_ways, "egress_queue_bytes": self.egress_queue_bytes,
                "recorder_depth": self.recorder_depth, "aging": self.aging,
                "storm": [[p, c.label, r, b] for p, c, r, b in self.storm], "mirror_to": self.mirror_to,
                "mirror_ingress": self.mirror_ingress, "mirror_egress": self.mirror_egress,
                "loop_moves": self.loop_moves, "loop_window": self.loop_window, "loop_block": self.loop_block,
                "port_limits": list(self.port_limits)}

    @classmethod
    def from_dict(cls, d: dict) -> SwitchSettings:
        d = dict(d)
        d["ports"] = tuple(SwitchPort(p["trunk"], p["pvid"], tuple(p["vlans"]) if p.get("vlans") is not None else None)
                           for p in d["ports"])
        d["storm"] = tuple((p, StormClass[c.upper()], r, b) for p, c, r, b in d.get("storm", ()))
        d["port_limits"] = tuple(d.get("port_limits", ()))
        return cls(**d)
