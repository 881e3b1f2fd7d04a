"""Scenario files for ``secnic compare`` (TOML; every key documented in docs/compare.md).

::

    name = "default"
    calibration = "../calibration/calibration.json"   # optional; default: the shipped one

    [host]
    cores = 32            # physical cores of the host
    clock_ghz = 2.5       # their clock; calibrated costs scale by calibration clock / this
    vswitch_cores = 4     # cores the software vSwitch may use
    ring = 1024           # descriptors per ring (vSwitch port, vNIC) before drops
    mode = "interrupt"    # or "poll": polling cores count as busy all the time

    [[vm]]
    name = "vm1"
    cores = 4             # the VM's own (application) cores
    vnics = 1
    gbps = 2.0            # traffic the VM sends and receives at its nominal load (consolidation)
    vlan = 1              # its VLAN (its NIC port's access VLAN; tagged on the uplink unless 1)

    [traffic]
    kind = "imix"         # or "pcap" (then pcap = "FILE")
    flows = 256
    frames = 4000         # frames simulated per sweep point
    east_west = 0.7       # share of the traffic between VMs of the host (rest from the uplink)
    seed = 1
    attack_share = 0.01   # share of frames planted to meet a firewall drop rule (telnet, SMB, ...)
    payload_hit_share = 0.01   # share planted with an IDS content rule's literals in a real-looking payload

    [sweep]
    gbps = [1, 2, 4, 8, 12, 16, 20]   # offered load, whole host
    reference_gbps = 1    # load of the capacity answer, chaining and loop storm (default: lowest of gbps)

    [chain.vm1]           # the VM's service chain: appliances in order, each one VM
    rules = "rules/default.rules"
    hops = [{kind = "firewall", cores = 2}, {kind = "ids", cores = 4}]

    [storm]               # the loop-storm case
    broadcast_limit_mbps = 100
    duration_us = 500

    [nic]                 # hdl.config.NicConfig options
    data_width = 64

Errors raise :class:`ScenarioError` naming the file and the key path (``chain.vm1.hops[2].kind``),
and for TOML syntax errors line and column as tomllib gives them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ScenarioError", "Scenario", "Host", "Vm", "Traffic", "Hop", "Chain", "Storm", "HOP_KINDS",
           "load_scenario", "parse_scenario", "DEFAULT_CALIBRATION"]

#: Appliance kinds a chain may hold (the vSwitch between them is implied: docs/compare.md).
HOP_KINDS = ("firewall", "ids")
TRAFFIC_KINDS = ("imix", "pcap")
MODES = ("interrupt", "poll")
#: The calibration file shipped with secnic (measured on the project's reference machine).
DEFAULT_CALIBRATION = Path(__file__).resolve().parents[2] / "calibration" / "calibration.json"


class ScenarioError(ValueError):
    """A bad scenario file: the message names the file, and the key or line:column."""


@dataclass(frozen=True)
class Host:
    """The host the VMs share: ``cores`` at ``clock_ghz``; the vSwitch's cores, ring size and mode."""
    cores: int = 32
    clock_ghz: float = 2.5
    vswitch_cores: int = 4
    ring: int = 1024
    mode: str = "interrupt"


@dataclass(frozen=True)
class Vm:
    """A tenant VM: its own cores, vNICs and nominal traffic in Gb/s (for consolidation), its VLAN."""
    name: str
    cores: int = 4
    vnics: int = 1
    gbps: float = 2.0
    vlan: int = 1


@dataclass(frozen=True)
class Hop:
    """One appliance VM of a chain: ``kind`` (firewall, ids) on ``cores`` vCPUs."""
    kind: str
    cores: int = 2


@dataclass(frozen=True)
class Chain:
    """A VM's service chain: appliance hops in order and the Suricata rule file they enforce."""
    vm: str
    hops: tuple[Hop, ...]
    rules: Path | None = None


@dataclass(frozen=True)
class Traffic:
    """The offered traffic: a synthetic IMIX over ``flows`` flows, or a pcap replayed."""
    kind: str = "imix"
    pcap: Path | None = None
    flows: int = 256
    frames: int = 4000
    east_west: float = 0.7
    seed: int = 1
    attack_share: float = 0.01
    payload_hit_share: float = 0.01


@dataclass(frozen=True)
class Storm:
    """The loop-storm case: the NIC's broadcast storm limit and how long the loop is simulated."""
    broadcast_limit_mbps: float = 100.0
    duration_us: float = 500.0


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario (see the module docstring)."""
    name: str
    path: Path
    host: Host
    vms: tuple[Vm, ...]
    traffic: Traffic
    sweep_gbps: tuple[float, ...]
    reference_gbps: float
    chains: dict[str, Chain]
    storm: Storm
    nic: dict = field(default_factory=dict)
    calibration: Path = DEFAULT_CALIBRATION

    def nic_config(self):
        """The NIC build of the offloaded path (:class:`hdl.config.NicConfig`)."""
        from hdl.config import NicConfig
        try:
            return NicConfig.from_dict(self.nic, source=f"{self.path} [nic]")
        except ValueError as exc:
            raise ScenarioError(str(exc)) from None

    def rule_files(self) -> list[Path]:
        return sorted({c.rules for c in self.chains.values() if c.rules is not None})

    def to_dict(self) -> dict:
        """Plain data for report.json (paths relative to the scenario file where they can be)."""
        def rel(p):
            if p is None:
                return None
            try:
                return str(Path(p).relative_to(self.path.parent))
            except ValueError:
                return str(p)
        return {
            "name": self.name, "file": self.path.name,
            "host": vars(self.host), "vms": [vars(v) for v in self.vms],
            "traffic": {**vars(self.traffic), "pcap": rel(self.traffic.pcap)},
            "sweep_gbps": list(self.sweep_gbps), "reference_gbps": self.reference_gbps,
            "chains": {k: {"hops": [vars(h) for h in c.hops], "rules": rel(c.rules)} for k, c in self.chains.items()},
            "storm": vars(self.storm), "nic": self.nic,
        }


class _Reader:
    """Reads one table with typed getters; unknown keys and bad values raise with the key path."""

    def __init__(self, file: Path, path: str, table, allowed: tuple[str, ...]):
        self.file, self.path = file, path
        if not isinstance(table, dict):
            self.fail("", f"must be a table, not {type(table).__name__}")
        self.table = table
        for key in table:
            if key not in allowed:
                self.fail(key, f"unknown key (known: {', '.join(allowed)})")

    def key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path and key else (self.path or key)

    def fail(self, key: str, why: str):
        raise ScenarioError(f"{self.file}: {self.key(key)}: {why}")

    def get(self, key, default, kind, *, low=None, high=None, choices=None):
        if key not in self.table:
            return default
        v = self.table[key]
        ok = isinstance(v, kind) and not (kind in (int, float, (int, float)) and isinstance(v, bool))
        if not ok:
            names = {int: "an integer", float: "a number", (int, float): "a number", str: "a string",
                     bool: "true or false", list: "an array"}
            self.fail(key, f"must be {names.get(kind, kind)}, not {v!r}")
        if choices is not None and v not in choices:
            self.fail(key, f"unknown {key} {v!r} (known: {', '.join(choices)})")
        if low is not None and v < low:
            self.fail(key, f"must be at least {low}, not {v!r}")
        if high is not None and v > high:
            self.fail(key, f"must be at most {high}, not {v!r}")
        return v

    def path_of(self, key, default=None) -> Path | None:
        v = self.get(key, None, str)
        if v is None:
            return default
        p = Path(v)
        return p if p.is_absolute() else (self.file.parent / p).resolve()


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file (:class:`ScenarioError` on any problem)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends in "(at line L, column C)"; lead with file:line:col as compilers do.
        # (Python 3.11's exception has no lineno/colno attributes: read them from the message.)
        m = re.search(r"at line (\d+), column (\d+)", str(exc))
        where = f"{path}:{m.group(1)}:{m.group(2)}" if m else str(path)
        raise ScenarioError(f"{where}: TOML syntax error: {exc}") from None
    return parse_scenario(doc, path.resolve())


def parse_scenario(doc: dict, path: Path) -> Scenario:
    """A :class:`Scenario` from a parsed TOML document read from ``path``."""
    top = _Reader(path, "", doc, ("name", "calibration", "host", "vm", "traffic", "sweep", "chain", "storm", "nic"))
    name = top.get("name", path.stem, str)
    calibration = top.path_of("calibration", DEFAULT_CALIBRATION)

    h = _Reader(path, "host", doc.get("host", {}), ("cores", "clock_ghz", "vswitch_cores", "ring", "mode"))
    host = Host(cores=h.get("cores", 32, int, low=1), clock_ghz=float(h.get("clock_ghz", 2.5, (int, float), low=0.1)),
                vswitch_cores=h.get("vswitch_cores", 4, int, low=1), ring=h.get("ring", 1024, int, low=1),
                mode=h.get("mode", "interrupt", str, choices=MODES))
    if host.vswitch_cores > host.cores:
        h.fail("vswitch_cores", f"must be at most host.cores ({host.cores}), not {host.vswitch_cores}")

    vm_list = doc.get("vm", [])
    if not isinstance(vm_list, list) or not vm_list:
        top.fail("vm", "needs at least one [[vm]] table")
    vms = []
    for i, raw in enumerate(vm_list):
        r = _Reader(path, f"vm[{i}]", raw, ("name", "cores", "vnics", "gbps", "vlan"))
        if "name" not in raw:
            r.fail("name", "missing (every VM needs a name)")
        vm = Vm(name=r.get("name", "", str), cores=r.get("cores", 4, int, low=1), vnics=r.get("vnics", 1, int, low=1),
                gbps=float(r.get("gbps", 2.0, (int, float), low=0)), vlan=r.get("vlan", 1, int, low=1, high=4094))
        if any(v.name == vm.name for v in vms):
            r.fail("name", f"duplicate VM name {vm.name!r}")
        vms.append(vm)

    t = _Reader(path, "traffic", doc.get("traffic", {}), ("kind", "pcap", "flows", "frames", "east_west", "seed",
                                                          "attack_share", "payload_hit_share"))
    traffic = Traffic(kind=t.get("kind", "imix", str, choices=TRAFFIC_KINDS), pcap=t.path_of("pcap"),
                      flows=t.get("flows", 256, int, low=1), frames=t.get("frames", 4000, int, low=100, high=1_000_000),
                      east_west=float(t.get("east_west", 0.7, (int, float), low=0, high=1)),
                      seed=t.get("seed", 1, int),
                      attack_share=float(t.get("attack_share", 0.01, (int, float), low=0, high=0.5)),
                      payload_hit_share=float(t.get("payload_hit_share", 0.01, (int, float), low=0, high=0.5)))
    hostile = traffic.attack_share + traffic.payload_hit_share
    if hostile > 0.5:
        t.fail("payload_hit_share", "attack_share + payload_hit_share must be at most 0.5 (the rest is the "
                                    f"scenario's own traffic), not {hostile:g}")
    if traffic.kind == "pcap":
        for key in ("attack_share", "payload_hit_share"):
            if t.table.get(key):
                t.fail(key, "plants hostile frames in synthetic traffic only: a replayed pcap keeps its own "
                            "frames (set it to 0 or leave it out)")
        traffic = Traffic(**{**vars(traffic), "attack_share": 0.0, "payload_hit_share": 0.0})
        if traffic.pcap is None:
            t.fail("pcap", "missing: kind = \"pcap\" needs pcap = \"FILE.pcap\"")
        if not traffic.pcap.is_file():
            t.fail("pcap", f"no such file {traffic.pcap}")

    s = _Reader(path, "sweep", doc.get("sweep", {}), ("gbps", "reference_gbps"))
    loads = s.get("gbps", [1, 2, 4, 8, 12, 16, 20], list)
    for i, g in enumerate(loads):
        if isinstance(g, bool) or not isinstance(g, (int, float)) or g <= 0:
            s.fail(f"gbps[{i}]", f"must be a positive number of Gb/s, not {g!r}")
    if not loads or list(loads) != sorted(set(loads)):
        s.fail("gbps", "must be a non-empty, strictly increasing list of offered loads")
    reference = float(s.get("reference_gbps", loads[0], (int, float)))
    if reference not in [float(g) for g in loads]:
        s.fail("reference_gbps", f"must be one of the sweep's loads {list(loads)}, not {reference:g}")

    chains_raw = doc.get("chain", {})
    c = _Reader(path, "chain", chains_raw, tuple(v.name for v in vms))
    chains = {}
    for vm in vms:
        raw = chains_raw.get(vm.name, {"hops": []})
        r = _Reader(path, f"chain.{vm.name}", raw, ("hops", "rules"))
        hops_raw = r.get("hops", [], list)
        hops = []
        for i, hop in enumerate(hops_raw):
            hr = _Reader(path, f"chain.{vm.name}.hops[{i}]", hop, ("kind", "cores"))
            if "kind" not in hop:
                hr.fail("kind", f"missing (one of {', '.join(HOP_KINDS)})")
            hops.append(Hop(kind=hr.get("kind", "", str, choices=HOP_KINDS), cores=hr.get("cores", 2, int, low=1)))
        rules = r.path_of("rules")
        if rules is not None and not rules.is_file():
            r.fail("rules", f"no such rule file {rules}")
        if hops and rules is None:
            r.fail("rules", "missing: a chain with appliances needs the rule file they enforce")
        chains[vm.name] = Chain(vm.name, tuple(hops), rules)
    del c

    st = _Reader(path, "storm", doc.get("storm", {}), ("broadcast_limit_mbps", "duration_us"))
    storm = Storm(broadcast_limit_mbps=float(st.get("broadcast_limit_mbps", 100.0, (int, float), low=0)),
                  duration_us=float(st.get("duration_us", 500.0, (int, float), low=10, high=100_000)))
    nic = doc.get("nic", {})
    if not isinstance(nic, dict):
        top.fail("nic", f"must be a table, not {type(nic).__name__}")
    scenario = Scenario(name=name, path=path, host=host, vms=tuple(vms), traffic=traffic,
                        sweep_gbps=tuple(float(g) for g in loads), reference_gbps=reference, chains=chains,
                        storm=storm, nic=dict(nic),
                        calibration=calibration)
    scenario.nic_config()       # a bad [nic] option fails now, naming the file
    return scenario
