"""The offered traffic of a scenario: frames, their flows, VMs and arrival times.

Both paths see the same frames at the same arrival times (seeded: the same scenario gives the
same traffic on every machine). A synthetic mix is the simple IMIX (7 : 4 : 1 frames of 64, 594
and 1518 bytes on the wire, i.e. 60, 590 and 1514 without FCS) over ``flows`` TCP/UDP flows; a
pcap is replayed in order (looped to ``frames``). Arrivals are Poisson at the offered load, which
counts frame bytes as the NIC's ``--pace`` does (no preamble, gap or FCS).

Addresses: a frame to a VM carries that VM's MAC (:func:`sim.compare.topology.vm_mac`) as its
destination and, from another VM, that VM's MAC as its source; frames from the uplink come from
its router (:data:`sim.compare.topology.ROUTER_MAC`) and carry an 802.1Q tag when their VM is in a
VLAN other than 1 (the uplink trunk's native VLAN). A pcap's frames get the same addresses. East-
west flows pair VMs of one VLAN.
"""

from __future__ import annotations

import logging
import random
import struct
from dataclasses import dataclass, replace

from sim.compare.hostile import Planted

__all__ = ["Frame", "IMIX", "make_frames", "plant", "arrivals", "HOME_PREFIX"]

log = logging.getLogger(__name__)

#: Frame lengths without FCS and their weights (simple IMIX).
IMIX = ((60, 7), (590, 4), (1514, 1))
#: VM k (from 1) is sent to at 10.<k>.0.<host> and sends east-west from 10.<k>.1.<host>: its network
#: 10.<k>.0.0/16 (sim.compare.topology.vm_network, its firewall's $HOME_NET); the uplink's peers are
#: 198.18.0.0/15 (benchmarking range).
HOME_PREFIX = "10.0.0.0/8"
#: Destination ports of the synthetic flows and their weights (web, DNS, SSH, database, other).
_DPORTS = ((443, 40), (80, 20), (53, 10), (22, 5), (3306, 5), (None, 20))


@dataclass(frozen=True)
class Frame:
    """One frame of the traffic: bytes, the VM it belongs to, whether it comes from another VM of the
    host (east-west: ``src_vm``) or the uplink (``src_vm`` None), and its flow number."""
    data: bytes
    vm: str
    src_vm: str | None
    flow: int
    #: What the frame was planted to exercise (``[traffic] attack_share`` / ``payload_hit_share``), else None.
    planted: Planted | None = None

    @property
    def length(self) -> int:
        return len(self.data)


def ipv4_checksum(header: bytes) -> int:
    s = sum(struct.unpack("!10H", header))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _build(src_mac, dst_mac, src_ip, dst_ip, proto, sport, dport, length, payload_rng,
           payload: bytes | None = None, tcp_flags: int = 0x18) -> bytes:
    """An IPv4 TCP/UDP frame of ``length`` bytes with a random payload, or of ``payload``."""
    l4_len = 20 if proto == 6 else 8
    payload_len = max(0, length - 14 - 20 - l4_len) if payload is None else len(payload)
    total = 20 + l4_len + payload_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, proto, 0, src_ip, dst_ip)
    ip = ip[:10] + struct.pack("!H", ipv4_checksum(ip)) + ip[12:]
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, tcp_flags, 65535, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, dport, l4_len + payload_len, 0)
    if payload is None:
        payload = payload_rng.randbytes(payload_len)
    frame = dst_mac + src_mac + b"\x08\x00" + ip + l4 + payload
    return frame + bytes(max(0, 60 - len(frame)))


def _addresses(scenario, vm: str, src_vm: str | None, data: bytes) -> bytes:
    """``data`` with the MAC addresses (and uplink VLAN tag) of a frame to ``vm`` from ``src_vm``."""
    from sim.compare.topology import ROUTER_MAC, vm_mac
    names = [v.name for v in scenario.vms]
    dst = vm_mac(names.index(vm))
    src = ROUTER_MAC if src_vm is None else vm_mac(names.index(src_vm))
    vlan = scenario.vms[names.index(vm)].vlan
    tag = struct.pack("!HH", 0x8100, vlan) if src_vm is None and vlan != 1 else b""
    return dst + src + tag + data[12:]


def make_frames(scenario) -> list[Frame]:
    """The scenario's frames in order (synthetic IMIX or its pcap), each with its VM and flow."""
    t = scenario.traffic
    rng = random.Random(t.seed)
    vms = [v.name for v in scenario.vms]
    vlan = {v.name: v.vlan for v in scenario.vms}
    weights = [max(v.gbps, 1e-9) for v in scenario.vms]
    flows = []
    for _ in range(t.flows):
        vm = rng.choices(vms, weights)[0]
        peers = [v for v in vms if v != vm and vlan[v] == vlan[vm]]
        east_west = len(vms) > 1 and rng.random() < t.east_west and bool(peers)
        src_vm = rng.choice(peers) if east_west else None
        if len(vms) == 1 and rng.random() < t.east_west:
            src_vm = vm          # a lone VM's east-west traffic is between its own vNICs
        proto = 6 if rng.random() < 0.8 else 17
        dport = rng.choices([p for p, _ in _DPORTS], [w for _, w in _DPORTS])[0] or rng.randrange(1024, 65536)
        flows.append((vm, src_vm, proto, rng.randrange(1024, 65536), dport, rng.randrange(1, 250)))
    frames: list[Frame] = []
    if t.kind == "pcap":
        from sim.run.pcapio import read_capture
        cap = read_capture(t.pcap)
        data = [f.data for f in cap.frames if f.data]
        if not data:
            raise ValueError(f"{t.pcap}: no frames to replay")
        for i in range(t.frames):
            flow = i % len(flows)
            vm, src_vm = flows[flow][:2]
            frames.append(Frame(_addresses(scenario, vm, src_vm, data[i % len(data)]), vm, src_vm, flow))
        return frames
    sizes, size_w = [s for s, _ in IMIX], [w for _, w in IMIX]
    for _ in range(t.frames):
        flow = rng.randrange(len(flows))
        vm, src_vm, proto, sport, dport, host = flows[flow]
        vi = vms.index(vm) + 1
        dst_ip = bytes((10, vi, 0, host))
        if src_vm is None:
            src_ip = bytes((198, 18, flow >> 8 & 0xFF, flow & 0xFF))
        else:
            src_ip = bytes((10, vms.index(src_vm) + 1, 1, host))
        length = rng.choices(sizes, size_w)[0]
        data = _build(bytes(6), bytes(6), src_ip, dst_ip, proto, sport, dport, length, rng)
        frames.append(Frame(_addresses(scenario, vm, src_vm, data), vm, src_vm, flow))
    return plant(scenario, frames)


def plant(scenario, frames: list[Frame]) -> list[Frame]:
    """``frames`` with ``[traffic] attack_share`` of them replaced by attacks on the VMs' firewall
    drop rules and ``payload_hit_share`` by payloads holding their IDS rules' contents
    (:mod:`sim.compare.hostile`), at positions drawn from their own seeded generator, so the other
    frames are those of the same scenario without planting. Each planted frame is a flow of its own."""
    from sim.compare import hostile
    from sim.compare.firewall import chain_firewalls, chain_ids
    t = scenario.traffic
    n_attack, n_payload = round(t.attack_share * len(frames)), round(t.payload_hit_share * len(frames))
    if not n_attack and not n_payload:
        return frames
    rng = random.Random(f"secnic-planting-{t.seed}")
    kinds = []
    if n_attack:
        kinds.append(("attack", n_attack, hostile.attack_candidates(chain_firewalls(scenario))))
    if n_payload:
        kinds.append(("payload", n_payload, hostile.payload_candidates(chain_ids(scenario))))
    slots = rng.sample(range(len(frames)), sum(n for _, n, _ in kinds))
    out, flow = list(frames), t.flows
    gbps = {v.name: max(v.gbps, 1e-9) for v in scenario.vms}
    for kind, n, candidates in kinds:
        taken, slots = slots[:n], slots[n:]
        if not candidates:
            log.info("traffic: no %s to plant (no %s rule a synthetic frame can meet): %d frames left as they are",
                        "attack" if kind == "attack" else "payload hit",
                        "firewall drop" if kind == "attack" else "IDS content", n)
            continue
        by_vm: dict[str, list] = {}
        for c in candidates:
            by_vm.setdefault(c.vm, []).append(c)
        vms = sorted(by_vm, key=[v.name for v in scenario.vms].index)
        for i in sorted(taken):
            c = rng.choice(by_vm[rng.choices(vms, [gbps[v] for v in vms])[0]])
            src_ip, dst_ip, proto, sport, dport = hostile.header(c, rng)
            if kind == "attack":
                data = _build(bytes(6), bytes(6), src_ip, dst_ip, proto, sport, dport, 60, rng, b"",
                              tcp_flags=0x02)
            else:
                payload = hostile.attack_payload(c, dport, rng)[:1514 - 54]
                data = _build(bytes(6), bytes(6), src_ip, dst_ip, proto, sport, dport, 0, rng, payload)
            out[i] = replace(frames[i], data=_addresses(scenario, c.vm, None, data), vm=c.vm, src_vm=None, flow=flow,
                             planted=Planted(kind, c.sid))
            flow += 1
    return out


def arrivals(frames: list[Frame], gbps: float, seed: int) -> list[float]:
    """Poisson arrival times in ns for ``frames`` offered at ``gbps`` on average (first at 0)."""
    rng = random.Random(seed)
    mean_bytes = sum(f.length for f in frames) / len(frames)
    rate_per_ns = gbps / 8 / mean_bytes            # frames per ns
    t, out = 0.0, []
    for _ in frames:
        out.append(t)
        t += rng.expovariate(rate_per_ns)
    return out
