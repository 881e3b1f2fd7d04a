"""The switch's golden model against Open vSwitch's NORMAL pipeline, frame for frame.

Random sequences over six ports (a trunk with a native VLAN, one without, access ports in two
VLANs, a few MACs per port):
unknown and known unicast, broadcast, IPv4 multicast, reserved group addresses, frames tagged
for VLANs the ports do and do not carry, priority tags, tagged frames on access ports and QinQ.
Every port's egress must equal OVS's (sim/tb/ovs.py) in content and order, and the MAC table
must equal ``fdb/show``. Skipped, with the reason, where OVS is not installed (`make setup`
installs it when it runs as root).
"""

from __future__ import annotations

import pytest

from host_driver.model.switch import PortVlan, SwitchModel, format_mac
from sim.tb.traffic import switch_frames

PORTS = {
    "phy0": PortVlan("trunk", 1, None),
    "vm1": PortVlan("access", 1),
    "vm2": PortVlan("access", 1),
    "vm3": PortVlan("access", 2),
    "vm4": PortVlan("access", 2),
    "up2": PortVlan("trunk", None, frozenset({2, 100})),     # no native VLAN: untagged frames dropped
}


def _ovs_ports():
    from sim.tb.ovs import OvsPort
    return [OvsPort(name, cfg.mode, cfg.vlan, None if cfg.trunks is None else tuple(sorted(cfg.trunks)))
            for name, cfg in PORTS.items()]


def _mac(port_index: int, k: int) -> bytes:
    return bytes([0x02, 0, 0, 0, port_index + 1, k])


def random_frames(seed: int, n: int) -> list[tuple[str, bytes]]:
    """Frames over the switch's ports (not its monitor port): :func:`sim.tb.traffic.switch_frames`."""
    return switch_frames(PORTS, seed, n)


@pytest.fixture(scope="module")
def ovs_unavailable_reason():
    from sim.tb.ovs import ovs_unavailable
    return ovs_unavailable()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_model_forwards_as_ovs_does(seed, ovs_unavailable_reason, tmp_path):
    if ovs_unavailable_reason:
        pytest.skip(ovs_unavailable_reason)
    from sim.tb.ovs import OvsSwitch
    frames = random_frames(seed, 160)
    model = SwitchModel(PORTS)
    want = model.run(frames)
    with OvsSwitch(tmp_path / "ovs", _ovs_ports()) as ovs:
        ovs.send_all(frames)
        got = ovs.egress()
        fdb = ovs.fdb()
    for port in PORTS:
        assert len(got[port]) == len(want[port]), f"{port}: OVS sent {len(got[port])} frames, model {len(want[port])}"
        for k, (g, w) in enumerate(zip(got[port], want[port], strict=True)):
            assert g == w, f"{port} frame {k}: OVS {g[:20].hex()}... model {w[:20].hex()}..."
    assert sorted(fdb) == sorted((p, v, m) for p, v, m, _ in model.mac_table())
    assert sum(map(len, want.values())) > len(frames), "the sequence must flood, or little is compared"


def test_sequences_cover_every_case():
    """The generator really produces what the comparison claims to cover."""
    frames = random_frames(1, 160)
    kinds = set()
    for port, f in frames:
        dst, tpid = f[:6], f[12:14]
        kinds.add("bcast" if dst == b"\xff" * 6 else "reserved" if dst[:5] == bytes.fromhex("0180c20000")
                  else "mcast" if dst[0] & 1 else "unicast")
        if tpid == b"\x81\x00":
            kinds.add("prio" if int.from_bytes(f[14:16], "big") & 0xFFF == 0 else f"tag-{PORTS[port].mode}")
        if tpid == b"\x88\xa8":
            kinds.add("qinq")
    assert kinds >= {"bcast", "reserved", "mcast", "unicast", "prio", "tag-trunk", "tag-access", "qinq"}
    assert format_mac(_mac(0, 1)) == "02:00:00:00:01:01"


def test_mirror_as_ovs_does(ovs_unavailable_reason, tmp_path):
    """A mirror session (received on vm1 and phy0, sent out of vm3 and up2) to a monitor trunk:
    the copies, their tags and their order equal OVS's."""
    if ovs_unavailable_reason:
        pytest.skip(ovs_unavailable_reason)
    from host_driver.model.switch import MirrorSession
    from sim.tb.ovs import OvsMirror, OvsPort, OvsSwitch
    ports = {**PORTS, "mon": PortVlan("trunk", 1, None)}
    frames = random_frames(4, 160) + [("mon", bytes.fromhex("ffffffffffff020000000099") + b"\x08\x00" + bytes(46))]
    model = SwitchModel(ports, mirrors=[MirrorSession("mon", frozenset({"vm1", "phy0"}), frozenset({"vm3", "up2"}))])
    want = model.run(frames)
    ovs_ports = _ovs_ports() + [OvsPort("mon", "trunk", 1)]
    with OvsSwitch(tmp_path / "ovs", ovs_ports, mirrors=[OvsMirror("mon", ("vm1", "phy0"), ("vm3", "up2"))]) as ovs:
        ovs.send_all(frames)
        got = ovs.egress()
    assert len(want["mon"]) > 40, "the session must copy plenty, or little is compared"
    for port in PORTS:
        assert got[port] == want[port], f"{port}: OVS sent {len(got[port])} frames, model {len(want[port])}"
    # The PCP of a copy selected where the frame left through several selected ports, some tagged
    # and some not, follows OVS's internal output order, which varies between runs: compare the
    # copies with the PCP of their tag masked.
    assert [_no_pcp(f) for f in got["mon"]] == [_no_pcp(f) for f in want["mon"]]


def _no_pcp(frame: bytes) -> bytes:
    if frame[12:14] in (b"\x81\x00", b"\x88\xa8"):
        return frame[:14] + bytes([frame[14] & 0x1F]) + frame[15:]
    return frame
