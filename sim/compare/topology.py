"""The NIC the comparison runs: a switch configuration derived from the scenario (docs/compare.md).

:func:`topology` turns a scenario's VMs into the NIC's ports: the uplink(s) ``phy0`` (``phy1``,
``phy2`` for the loop storm) as trunks carrying every VLAN with native VLAN 1, one access port per
VM in the VM's VLAN (``[[vm]] vlan``, default 1), and the ``host`` port (access, VLAN 1). The
switch fabric has at most :data:`MAX_PORTS` ports; VMs beyond what is left share the VM ports
(round robin among the ports of their VLAN), as VMs behind one port would share a bridge on the
host: frames between two VMs behind one port never reach the NIC (:meth:`Topology.bridged`).

Every VM has its own MAC address (:func:`vm_mac`); frames from the uplink come from the uplink's
router (:data:`ROUTER_MAC`). Before the traffic, each VM port sends one **learning frame** from
its VM's address to that same address: the switch learns the address on the port and, finding
the destination on the ingress port, sends the frame nowhere (``same_port``), so the traffic is
switched to known ports from its first frame and the learning frames add nothing to any egress.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Topology", "topology", "loop_ports", "vm_mac", "vm_network", "ROUTER_MAC", "MAX_PORTS", "HOST_PORT",
           "LEARN_ETHERTYPE"]

#: The switch fabric's port limit (hdl.switch.settings.SwitchSettings: 2..8 ports).
MAX_PORTS = 8
#: The port that punts to and injects from the host CPU.
HOST_PORT = "host"
#: Source MAC of every frame from the uplink (its router; locally administered).
ROUTER_MAC = bytes.fromhex("02005e0000fe")
#: EtherType of the learning frames (IEEE 802 local experimental).
LEARN_ETHERTYPE = 0x88B5
_NAME = re.compile(r"[a-z][a-z0-9_]{0,15}")


def vm_mac(index: int) -> bytes:
    """The MAC address of the scenario's VM number ``index`` (0-based; locally administered)."""
    return b"\x02\x5e\x00\x01" + struct.pack("!H", index + 1)


def vm_network(index: int) -> ipaddress.IPv4Network:
    """The IPv4 addresses of the scenario's VM number ``index`` (0-based): ``10.<index + 1>.0.0/16``.
    The synthetic traffic sends to ``10.<k>.0.<host>`` and, east-west, from ``10.<k>.1.<host>``
    (sim.compare.traffic); the VM's firewall takes this network as its ``$HOME_NET``."""
    if not 0 <= index < 255:
        raise ValueError(f"VM number {index + 1} has no address: at most 255 VMs (10.1.0.0/16 .. 10.255.0.0/16)")
    return ipaddress.IPv4Network(f"10.{index + 1}.0.0/16")


@dataclass(frozen=True)
class Topology:
    """The NIC's ports for a scenario: ``switch`` (a :class:`host_driver.switch_config.SwitchConfig`),
    the port of each VM, its VLAN and MAC, the uplinks, and the VMs that share another VM's port."""
    switch: object
    uplinks: tuple[str, ...]
    port_of: dict[str, str]
    vlan_of: dict[str, int]
    mac_of: dict[str, bytes]
    shared: tuple[str, ...]

    def nic_config(self, nic: dict, *, source: str):
        """The :class:`hdl.config.NicConfig` of this switch with the scenario's ``[nic]`` build options."""
        from host_driver.switch_config import nic_config
        opts = {**nic, "physical_ports": list(self.uplinks)}
        return nic_config(self.switch, opts, source=source)

    def bridged(self, frame) -> bool:
        """Whether a frame goes between two VMs behind one NIC port (so it never reaches the NIC)."""
        return frame.src_vm is not None and self.port_of[frame.src_vm] == self.port_of[frame.vm]

    def ingress_port(self, frame) -> str:
        """The port a frame enters the NIC by: the first uplink, or its source VM's port."""
        return self.uplinks[0] if frame.src_vm is None else self.port_of[frame.src_vm]

    def learning_frames(self) -> list[tuple[str, bytes]]:
        """One frame per VM, from its port, addressed to itself (see the module docstring)."""
        out = []
        for vm, port in self.port_of.items():
            mac = self.mac_of[vm]
            out.append((port, mac + mac + struct.pack("!H", LEARN_ETHERTYPE) + bytes(46)))
        return out

    def describe(self) -> str:
        """One sentence for the report: the ports and what shares them."""
        vm_ports = {}
        for vm, port in self.port_of.items():
            vm_ports.setdefault(port, []).append(vm)
        parts = [(p if vms == [p] else f"{p} ({'+'.join(vms)})") + f" (VLAN {self.vlan_of[vms[0]]})"
                 for p, vms in vm_ports.items()]
        text = (f"switch of {len(self.switch.ports)} ports: {', '.join(self.uplinks)} (uplink trunk, native VLAN 1), "
                f"one per VM: {', '.join(parts)}, {HOST_PORT}")
        if self.shared:
            text += (f"; {', '.join(self.shared)} share a port (the switch has at most {MAX_PORTS} ports): "
                     "frames between VMs behind one port are bridged on the host, not by the NIC")
        return text


def topology(scenario, uplinks: int = 1, broadcast_limit_mbps: float = 0.0, burst: int = 2 * 1514,
             loop_guard: bool = True, *, storm_ports: Sequence[str] | None = None,
             loop_block: bool = True) -> Topology:
    """The NIC's switch for ``scenario``: ``uplinks`` trunks, VM access ports, the host port; a
    broadcast storm limit on each of ``storm_ports`` (default: the uplinks) when
    ``broadcast_limit_mbps`` > 0; loop guard on (``loop_block``: it blocks the port it finds a loop
    on; else it only reports the loop) or off. ValueError when a VM beyond the port limit has no
    port of its VLAN to share."""
    from host_driver.switch_config import SwitchConfig
    up = tuple(f"phy{i}" for i in range(uplinks))
    free = MAX_PORTS - uplinks - 1
    if free < 1:
        raise ValueError(f"{uplinks} uplinks leave no port for the VMs (the switch has {MAX_PORTS})")
    taken = set(up) | {HOST_PORT}
    port_of, vlan_of, mac_of, shared = {}, {}, {}, []
    own: list[str] = []                  # ports of their own, in VM order
    for i, vm in enumerate(scenario.vms):
        vlan = getattr(vm, "vlan", 1)
        vlan_of[vm.name], mac_of[vm.name] = vlan, vm_mac(i)
        if len(own) < free:
            name = vm.name if _NAME.fullmatch(vm.name) and vm.name not in taken else f"vm{len(own) + 1}"
            while name in taken:
                name += "_"
            taken.add(name)
            own.append(name)
            port_of[vm.name] = name
            continue
        same = [p for p in own if vlan_of[next(v for v, q in port_of.items() if q == p)] == vlan]
        if not same:
            raise ValueError(f"vm {vm.name!r} (VLAN {vlan}) is beyond the switch's {MAX_PORTS} ports and no "
                             "VM port of its VLAN is left to share")
        k = sum(1 for s in shared if vlan_of[s] == vlan)
        port_of[vm.name] = same[k % len(same)]
        shared.append(vm.name)
    ports = {p: {"mode": "trunk", "native": 1} for p in up}
    for p in own:
        vm = next(v for v, q in port_of.items() if q == p)
        ports[p] = {"vlan": vlan_of[vm]}
    ports[HOST_PORT] = {"vlan": 1}
    table: dict = {"ports": ports}
    if broadcast_limit_mbps > 0:
        policed = up if storm_ports is None else tuple(storm_ports)
        unknown = set(policed) - set(ports)
        if unknown:
            raise ValueError(f"storm ports {sorted(unknown)} are not ports of this switch ({', '.join(ports)})")
        table["storm"] = {p: {"broadcast": {"mbps": broadcast_limit_mbps, "burst": burst}} for p in policed}
    if not loop_guard:
        table["loop_guard"] = False
    elif not loop_block:
        table["loop_guard"] = {"block": False}
    return Topology(SwitchConfig.from_toml(table), up, port_of, vlan_of, mac_of, tuple(shared))


def loop_ports(topo: Topology, n: int) -> tuple[str, ...]:
    """The ``n`` ports the loop storm closes through one external flooding switch: the first uplink
    and the last ``n - 1`` VM ports of VLAN 1 (the uplink's native VLAN, so a broadcast from the
    uplink floods to them), as VMs that bridge their vNIC onto the physical network would. Fewer
    when the scenario has fewer such VM ports; ValueError when it has none (no loop to close)."""
    own = list(dict.fromkeys(topo.port_of.values()))
    vlan1 = [p for p in own if topo.vlan_of[next(v for v, q in topo.port_of.items() if q == p)] == 1]
    if not vlan1:
        raise ValueError("the loop storm needs a VM port in VLAN 1 (the uplink's native VLAN) to close its loop")
    return (topo.uplinks[0], *vlan1[-(n - 1):]) if n > 1 else (topo.uplinks[0],)
