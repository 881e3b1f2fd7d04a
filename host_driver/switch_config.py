"""The switch's runtime configuration: the ``[switch]`` table of nic.toml and the built-in profiles.

What the driver programs into the switch (docs/switch.md): each port's VLAN membership, storm
limits, mirror sessions, the MAC table's aging and port limit, loop guard. Build parameters
(ports, width, clock, table size) stay in :class:`hdl.config.NicConfig`. ::

    [switch.ports]
    phy0 = { mode = "trunk", native = 1 }          # every VLAN; add vlans = [1, 2] to limit
    vm1  = { mode = "access", vlan = 1 }
    [switch.storm.vm1]
    broadcast = { mbps = 100, burst = 1500 }      # also multicast, unknown_unicast
    [[switch.mirror]]
    to = "mon"
    ingress = ["vm1"]
    egress = ["phy0"]
    [switch.table]
    aging_s = 300
    port_limit = 64                               # dynamic entries per port; 0: no limit
    # or per port: port_limit = { vm1 = 16, vm2 = 16 }   (ports not named: no limit)
    [switch.loop_guard]
    moves = 16
    window_us = 1000
    block = true
    [switch]                                      # (keys of the [switch] table itself)
    ingress = "drop"                              # per-port ingress FIFOs that drop whole frames;
    ingress_fifo_bytes = 16384                    # "pause" (default): hold the source back

A mistake raises :class:`SwitchConfigError` naming the key (``switch.ports.vm1.vlan``); the
command line turns it into exit status 2.

The security stage's build options come from a ``[security]`` table beside it (either NIC kind;
:func:`security_settings`, docs/security.md)::

    [security]
    acl_entries = 256          # ternary ACL entries
    flow_sets = 1024           # flow table: sets (a power of two) x ways
    flow_ways = 4
    flow_addr_bits = 128       # 32: IPv4 flows only
    default_deny = false       # power-on value of CONTROL bit 0
    bypass_port = "host"       # a port name or index, or false: frames from it are not inspected
                               # (default: the "host" port when the NIC has one)
    matcher_index_bits = 11    # payload matcher: log2 buckets (4..20; 0: no matcher)
    matcher_max_hits = 4       # hit slots per frame (1..16)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hdl.config import INGRESS_MODES
from hdl.switch.settings import TICK_SHIFT, SwitchPort, SwitchSettings
from hdl.switch.settings import StormClass as HwStormClass
from host_driver.model.switch import (
    FlightRecorder,
    LoopGuard,
    MacTable,
    MirrorSession,
    PortVlan,
    StormClass,
    StormLimit,
    SwitchModel,
)

__all__ = ["SwitchConfig", "SwitchConfigError", "StormSetting", "LoopGuardSetting", "PROFILES", "profile",
           "nic_config", "security_settings"]


class SwitchConfigError(ValueError):
    """A bad ``[switch]`` table; the message starts with the key."""


@dataclass(frozen=True)
class StormSetting:
    """A storm limit as a user writes it: megabits per second and a burst in bytes."""
    mbps: float
    burst: int


@dataclass(frozen=True)
class LoopGuardSetting:
    """Loop guard as a user writes it: MAC moves within a window in microseconds, block or not."""
    moves: int = 16
    window_us: float = 1000.0
    block: bool = True


@dataclass(frozen=True)
class SwitchConfig:
    """Port VLANs (in port order), storm limits, mirror sessions, table and loop-guard settings."""
    ports: Mapping[str, PortVlan]
    storm: Mapping[tuple[str, StormClass], StormSetting] = field(default_factory=dict)
    mirrors: tuple[MirrorSession, ...] = ()
    aging_s: float = 300.0
    #: Learning limit: one for every port, or per port name (0 / None / a port not named: none).
    port_limit: int | Mapping[str, int] | None = None
    loop_guard: LoopGuardSetting | None = LoopGuardSetting()
    #: A bump in the wire: two ports, every frame to the other one untouched (no learning, no
    #: VLAN rules): the NIC before the switch, :class:`host_driver.model.nic.NicModel`.
    wire: bool = False
    #: Build sizes: MAC table sets and ways (``[switch.table]``), each port's output queue and the
    #: flight recorder's depth (``[switch]``).
    sets: int = 1024
    ways: int = 4
    egress_queue_bytes: int = 16384
    recorder_depth: int = 512
    #: Ingress (``[switch]``): "pause" or "drop", and each port's ingress FIFO in bytes; None leaves
    #: :class:`hdl.config.NicConfig`'s own value (docs/switch.md, "Ingress").
    ingress: str | None = None
    ingress_fifo_bytes: int | None = None

    @classmethod
    def from_toml(cls, table: Mapping, *, key: str = "switch") -> SwitchConfig:
        """Read a ``[switch]`` table (already parsed TOML)."""
        _only(table, key, {"ports", "storm", "mirror", "table", "loop_guard", "wire", "egress_queue_bytes",
                           "recorder_depth", "ingress", "ingress_fifo_bytes"})
        ports_t = _table(table.get("ports"), f"{key}.ports", required=True)
        if not ports_t:
            raise SwitchConfigError(f"{key}.ports: a switch needs ports")
        ports = {name: _port(spec, f"{key}.ports.{name}") for name, spec in ports_t.items()}
        wire = table.get("wire", False)
        if not isinstance(wire, bool):
            raise SwitchConfigError(f"{key}.wire: must be true or false, not {wire!r}")
        if wire:
            if len(ports) != 2:
                raise SwitchConfigError(f"{key}.wire: a bump in the wire has two ports, not {len(ports)}")
            extra = sorted(set(table) - {"ports", "wire"})
            if extra:
                raise SwitchConfigError(f"{key}.{extra[0]}: a bump in the wire does not switch; drop it or wire")
            return cls(ports, wire=True, loop_guard=None)
        storm = {}
        for port, classes in _table(table.get("storm", {}), f"{key}.storm").items():
            where = f"{key}.storm.{port}"
            if port not in ports:
                raise SwitchConfigError(f"{where}: no port {port!r} in {key}.ports")
            _only(_table(classes, where), where, {c.value for c in StormClass})
            for cls_name, spec in classes.items():
                w = f"{where}.{cls_name}"
                spec = _table(spec, w)
                _only(spec, w, {"mbps", "burst"})
                storm[port, StormClass(cls_name)] = StormSetting(_number(spec, "mbps", w, 0.0, 1e6, required=True),
                                                                 int(_number(spec, "burst", w, 64, 1 << 20,
                                                                             required=True, integer=True)))
        mirrors = []
        mirror_list = table.get("mirror", [])
        if not isinstance(mirror_list, list):
            raise SwitchConfigError(f"{key}.mirror: must be an array of tables ([[{key}.mirror]])")
        for k, spec in enumerate(mirror_list):
            w = f"{key}.mirror[{k}]"
            spec = _table(spec, w)
            _only(spec, w, {"to", "ingress", "egress"})
            to = spec.get("to")
            if to not in ports:
                raise SwitchConfigError(f"{w}.to: must name a port of {key}.ports, not {to!r}")
            sides = {}
            for side in ("ingress", "egress"):
                names = spec.get(side, [])
                if not isinstance(names, list) or any(n not in ports for n in names):
                    raise SwitchConfigError(f"{w}.{side}: must list ports of {key}.ports, not {names!r}")
                if to in names:
                    raise SwitchConfigError(f"{w}.{side}: the session mirrors its own destination {to!r}")
                sides[side] = frozenset(names)
            mirrors.append(MirrorSession(to, sides["ingress"], sides["egress"]))
        table_t = _table(table.get("table", {}), f"{key}.table")
        _only(table_t, f"{key}.table", {"aging_s", "port_limit", "sets", "ways"})
        aging = _number(table_t, "aging_s", f"{key}.table", 1, 1e6) or 300.0
        if isinstance(table_t.get("port_limit"), dict):
            w = f"{key}.table.port_limit"
            for name in table_t["port_limit"]:
                if name not in ports:
                    raise SwitchConfigError(f"{w}.{name}: no port {name!r} in {key}.ports")
            limit = {name: int(_number(table_t["port_limit"], name, w, 0, 1 << 20, integer=True))
                     for name in table_t["port_limit"]}
            limit = {name: v for name, v in limit.items() if v} or None
        else:
            limit = _number(table_t, "port_limit", f"{key}.table", 0, 1 << 20, integer=True)
            limit = int(limit) if limit else None
        sets = int(_number(table_t, "sets", f"{key}.table", 2, 1 << 16, integer=True) or 1024)
        if sets & (sets - 1):
            raise SwitchConfigError(f"{key}.table.sets: must be a power of two, not {sets}")
        ways = int(_number(table_t, "ways", f"{key}.table", 1, 8, integer=True) or 4)
        queue = int(_number(table, "egress_queue_bytes", key, 1024, 1 << 20, integer=True) or 16384)
        depth = int(_number(table, "recorder_depth", key, 2, 1 << 16, integer=True) or 512)
        if depth & (depth - 1):
            raise SwitchConfigError(f"{key}.recorder_depth: must be a power of two, not {depth}")
        lg_t = table.get("loop_guard", {})
        loop_guard = None
        if lg_t is not False:
            w = f"{key}.loop_guard"
            lg_t = _table(lg_t, w)
            _only(lg_t, w, {"moves", "window_us", "block"})
            block = lg_t.get("block", True)
            if not isinstance(block, bool):
                raise SwitchConfigError(f"{w}.block: must be true or false, not {block!r}")
            loop_guard = LoopGuardSetting(int(_number(lg_t, "moves", w, 2, 1 << 16, integer=True) or 16),
                                          _number(lg_t, "window_us", w, 1, 1e7) or 1000.0, block)
        ingress = table.get("ingress")
        if ingress is not None and ingress not in INGRESS_MODES:
            raise SwitchConfigError(f"{key}.ingress: must be {' or '.join(map(repr, INGRESS_MODES))}, not {ingress!r}")
        fifo = _number(table, "ingress_fifo_bytes", key, 0, 1 << 20, integer=True)
        if fifo is not None and fifo != 0 and (fifo & (fifo - 1) or fifo < 256):
            raise SwitchConfigError(f"{key}.ingress_fifo_bytes: must be 0 or a power of two in 256..1048576, "
                                    f"not {fifo}")
        if ingress == "drop" and fifo == 0:
            raise SwitchConfigError(f"{key}.ingress_fifo_bytes: ingress = \"drop\" needs a FIFO, not 0")
        return cls(ports, storm, tuple(mirrors), aging, limit, loop_guard,
                   sets=sets, ways=ways, egress_queue_bytes=queue, recorder_depth=depth, ingress=ingress,
                   ingress_fifo_bytes=fifo)

    def aging_ticks(self, clock_mhz: float) -> int:
        """The aging time in the switch's ticks (2**TICK_SHIFT cycles)."""
        return max(1, int(self.aging_s * clock_mhz * 1e6) >> TICK_SHIFT)

    def window_ticks(self, clock_mhz: float) -> int:
        """Loop guard's window in ticks (at least 1)."""
        return max(1, int(self.loop_guard.window_us * clock_mhz) >> TICK_SHIFT)

    def limit_of(self, port: str) -> int:
        """The learning limit of ``port`` (0: none)."""
        if isinstance(self.port_limit, Mapping):
            return self.port_limit.get(port, 0)
        return self.port_limit or 0

    def model(self, clock_mhz: float, *, sets: int = 1024, ways: int = 4,
              recorder_depth: int = 1024) -> SwitchModel:
        """The golden model configured as the driver would program the switch (time in cycles at
        ``clock_mhz``; the MAC table and loop guard in ticks, as the gateware). A bump in the wire
        has none: ValueError."""
        if self.wire:
            raise ValueError("a bump in the wire does not switch: its model is host_driver.model.nic.NicModel")
        storm = {k: StormLimit.from_rate(v.mbps, v.burst, clock_mhz) for k, v in self.storm.items()}
        guard = None
        if self.loop_guard is not None:
            guard = LoopGuard(self.loop_guard.moves, self.window_ticks(clock_mhz), self.loop_guard.block)
        limits = {p: min(self.limit_of(p), sets * ways) for p in self.ports if self.limit_of(p)}
        table = MacTable(sets=sets, ways=ways, aging=self.aging_ticks(clock_mhz), port_limit=limits or None,
                         epoch_bits=SwitchSettings(ports=(SwitchPort(),) * 2, mac_sets=sets).scrub_epoch_bits)
        return SwitchModel(self.ports, table, storm, guard, FlightRecorder(recorder_depth), self.mirrors,
                           tick_shift=TICK_SHIFT)

    def settings(self, port_names, clock_mhz: float, **build) -> SwitchSettings:
        """The gateware's build settings for NIC ports ``port_names`` (same names, in NIC order),
        with this configuration as the registers' power-on values; ``build`` passes table and
        queue sizes (:class:`hdl.switch.settings.SwitchSettings`). ValueError for a bump in the wire.
        A port limit above the table's size is that size (a port cannot hold more)."""
        if self.wire:
            raise ValueError("a bump in the wire has no switch settings")
        names = list(port_names)
        if sorted(names) != sorted(self.ports):
            raise ValueError(f"switch ports {sorted(self.ports)} differ from the NIC's {names}")
        ports = []
        for name in names:
            p = self.ports[name]
            if p.mode == "access":
                ports.append(SwitchPort(False, p.vlan))
            else:
                ports.append(SwitchPort(True, p.vlan or 0, None if p.trunks is None else tuple(sorted(p.trunks))))
        storm = []
        for (port, cls), st in self.storm.items():
            limit = StormLimit.from_rate(st.mbps, st.burst, clock_mhz)
            storm.append((names.index(port), HwStormClass[cls.name], limit.rate, limit.burst))
        if len(self.mirrors) > 1:
            raise ValueError("the gateware has one mirror session")
        mirror = {}
        if self.mirrors:
            ms = self.mirrors[0]
            mirror = {"mirror_to": names.index(ms.to),
                      "mirror_ingress": sum(1 << names.index(p) for p in ms.ingress),
                      "mirror_egress": sum(1 << names.index(p) for p in ms.egress)}
        guard = {}
        if self.loop_guard is not None:
            guard = {"loop_moves": self.loop_guard.moves, "loop_window": self.window_ticks(clock_mhz),
                     "loop_block": self.loop_guard.block}
        sizes = {"mac_sets": self.sets, "mac_ways": self.ways, "egress_queue_bytes": self.egress_queue_bytes,
                 "recorder_depth": self.recorder_depth} | build
        size = sizes["mac_sets"] * sizes["mac_ways"]
        limits = tuple(min(self.limit_of(name), size) for name in names)
        return SwitchSettings(ports=tuple(ports), aging=self.aging_ticks(clock_mhz), storm=tuple(sorted(storm)),
                              **mirror, **guard, **sizes, port_limits=limits if any(limits) else ())


def _only(table: Mapping, key: str, allowed: set[str]) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise SwitchConfigError(f"{key}.{sorted(unknown)[0]}: unknown key; {key} takes "
                                f"{', '.join(sorted(allowed))}")


def _table(value, key: str, required: bool = False) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        what = type(value).__name__ if value is not None else "missing"
        raise SwitchConfigError(f"{key}: must be a table, not {what}")
    return value


def _number(table: Mapping, name: str, key: str, lo: float, hi: float, *, required: bool = False,
            integer: bool = False):
    if name not in table:
        if required:
            raise SwitchConfigError(f"{key}.{name}: required")
        return None
    v = table[name]
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) or not lo <= v <= hi:
        kind = "an integer" if integer else "a number"
        raise SwitchConfigError(f"{key}.{name}: must be {kind} in {lo:g}..{hi:g}, not {v!r}")
    return v


def _vlan(v, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4094:
        raise SwitchConfigError(f"{key}: must be a VLAN 1..4094, not {v!r}")
    return v


def _port(spec, key: str) -> PortVlan:
    spec = _table(spec, key)
    mode = spec.get("mode", "access")
    if mode == "access":
        _only(spec, key, {"mode", "vlan"})
        return PortVlan("access", _vlan(spec.get("vlan", 1), f"{key}.vlan"))
    if mode == "trunk":
        _only(spec, key, {"mode", "native", "vlans"})
        native = spec.get("native", 1)
        native = None if native == "none" else _vlan(native, f"{key}.native")
        vlans = spec.get("vlans", "all")
        if vlans == "all":
            trunks = None
        elif isinstance(vlans, list) and vlans:
            trunks = frozenset(_vlan(v, f"{key}.vlans[{i}]") for i, v in enumerate(vlans))
        else:
            raise SwitchConfigError(f"{key}.vlans: must be \"all\" or a list of VLANs, not {vlans!r}")
        return PortVlan("trunk", native, trunks)
    raise SwitchConfigError(f"{key}.mode: must be \"access\" or \"trunk\", not {mode!r}")


#: Built-in profiles (``--config NAME``), issue 13: ``switch`` (vm1..vm4 access ports in VLAN 1, phy0
#: a trunk of every VLAN with native VLAN 1, host an access port, mon the monitor port) and
#: ``bump-in-the-wire`` (phy0 <-> vm1, every VLAN passes: the NIC before the switch).
PROFILES: dict[str, dict] = {
    "switch": {
        "ports": {"phy0": {"mode": "trunk", "native": 1}, **{f"vm{i}": {"vlan": 1} for i in range(1, 5)},
                  "host": {"vlan": 1}, "mon": {"vlan": 1}},
        "mirror": [{"to": "mon", "ingress": [], "egress": []}],
    },
    "bump-in-the-wire": {
        "wire": True,
        "ports": {"phy0": {"mode": "trunk", "native": 1}, "vm1": {"mode": "trunk", "native": 1}},
    },
}


def profile(name: str) -> SwitchConfig:
    """A built-in profile by name (KeyError listing the names)."""
    if name not in PROFILES:
        raise KeyError(f"no switch profile {name!r}; built in: {', '.join(PROFILES)}")
    return SwitchConfig.from_toml(PROFILES[name])


def nic_config(switch: SwitchConfig, nic: Mapping | None = None, *, source: str = "config"):
    """The :class:`hdl.config.NicConfig` of a switch configuration and a ``[nic]`` table of build
    options (its ``ports``, if given, must name the switch's ports; the switch's order is the port
    order otherwise). A bump in the wire builds no switch. ValueError / SwitchConfigError naming
    the key."""
    from hdl.config import NicConfig
    nic = dict(nic or {})
    names = list(switch.ports)
    if "ports" in nic:
        if sorted(nic["ports"]) != sorted(names):
            raise SwitchConfigError(f"nic.ports: {list(nic['ports'])} must name the ports of switch.ports {names}")
        names = list(nic["ports"])
    nic["ports"] = names
    nic.setdefault("physical_ports", [names[0]])
    if "switch" in nic:
        raise SwitchConfigError("nic.switch: the switch is configured in the [switch] table")
    for name in ("ingress", "ingress_fifo_bytes"):
        value = getattr(switch, name)
        if value is None:
            continue
        if name in nic and nic[name] != value:
            raise SwitchConfigError(f"nic.{name}: {nic[name]!r} differs from switch.{name} {value!r}; set it once")
        nic[name] = value
    if not switch.wire:
        clock = nic.get("clock_mhz", NicConfig.clock_mhz)
        if isinstance(clock, bool) or not isinstance(clock, int | float) or clock <= 0:
            raise ValueError(f"{source} [nic]: clock_mhz must be positive, not {clock!r}")
        try:
            nic["switch"] = switch.settings(names, clock)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    return NicConfig.from_dict(nic, source=f"{source} [nic]")


def security_settings(table, ports, *, key: str = "security"):
    """The :class:`hdl.security.settings.SecuritySettings` of a ``[security]`` table for a NIC with
    port names ``ports`` (module docstring). :class:`SwitchConfigError` naming the key."""
    from hdl.security.settings import AUTO_BYPASS, SecuritySettings
    table = _table(table, key, required=True)
    defaults = SecuritySettings()
    _only(table, key, set(defaults.as_dict()))
    values = {}
    for name, lo, hi in (("acl_entries", 1, 4096), ("flow_sets", 2, 1 << 20), ("flow_ways", 1, 16),
                         ("flow_addr_bits", 32, 128), ("matcher_index_bits", 0, 20),
                         ("matcher_max_hits", 1, 16)):
        v = _number(table, name, key, lo, hi, integer=True)
        if v is not None:
            values[name] = v
    if values.get("flow_sets", 2) & (values.get("flow_sets", 2) - 1):
        raise SwitchConfigError(f"{key}.flow_sets: must be a power of two, not {values['flow_sets']}")
    if values.get("flow_addr_bits", 32) not in (32, 128):
        raise SwitchConfigError(f"{key}.flow_addr_bits: must be 32 or 128, not {values['flow_addr_bits']}")
    if values.get("matcher_index_bits", 0) in range(1, 4):
        raise SwitchConfigError(f"{key}.matcher_index_bits: must be 0 (no matcher) or in 4..20, "
                                f"not {values['matcher_index_bits']}")
    if "default_deny" in table:
        if not isinstance(table["default_deny"], bool):
            raise SwitchConfigError(f"{key}.default_deny: must be true or false, not {table['default_deny']!r}")
        values["default_deny"] = table["default_deny"]
    if "bypass_port" in table:
        b = table["bypass_port"]
        if b is False:
            values["bypass_port"] = None
        elif b == AUTO_BYPASS:
            values["bypass_port"] = AUTO_BYPASS
        elif isinstance(b, str) and b in ports:
            values["bypass_port"] = list(ports).index(b)
        elif not isinstance(b, bool) and isinstance(b, int) and 0 <= b < len(ports):
            values["bypass_port"] = b
        else:
            raise SwitchConfigError(f"{key}.bypass_port: must name a port ({', '.join(ports)}), give its index, "
                                    f"or be false, not {b!r}")
    try:
        return SecuritySettings(**values)
    except ValueError as exc:
        raise SwitchConfigError(f"{key}: {exc}") from None
