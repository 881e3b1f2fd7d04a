"""Open vSwitch's NORMAL pipeline through the reference harness (sim/tb/ovs.py, docs/switch.md).

These tests pin down what OVS 3.1 does, so that the harness is trusted before secnic's switch
fabric is compared against it: each asserts the exact frames every port sent and, where it
matters, the MAC table. They skip with a reason when Open vSwitch is not installed.
"""

from __future__ import annotations

import logging
import os
import random
import time

import pytest

from sim.tb.ovs import OvsError, OvsPort, OvsSwitch, ovs_unavailable

pytestmark = pytest.mark.skipif(ovs_unavailable() is not None, reason=str(ovs_unavailable()))

log = logging.getLogger(__name__)

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
BROADCAST = "ff:ff:ff:ff:ff:ff"

#: The secnic `switch` profile in small: a trunk uplink with native VLAN 1, two access ports in
#: VLAN 1, one in VLAN 2, and a trunk with no native VLAN carrying VLANs 2 and 3.
PORTS = (
    OvsPort("phy0", mode="trunk", vlan=1),
    OvsPort("vm1"),
    OvsPort("vm2"),
    OvsPort("vm3", vlan=2),
    OvsPort("tr0", mode="trunk", vlan=None, trunks=(2, 3)),
)
NAMES = [p.name for p in PORTS]


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def frame(dst: str, src: str, *, tags: bytes = b"", size: int = 60) -> bytes:
    """An Ethernet frame (IPv4 ethertype, zero payload) of ``size`` bytes, VLAN ``tags`` after the MACs."""
    return (mac(dst) + mac(src) + tags + b"\x08\x00").ljust(size, b"\x00")


def dot1q(vid: int, pcp: int = 0, tpid: int = 0x8100) -> bytes:
    return tpid.to_bytes(2, "big") + ((pcp << 13) | vid).to_bytes(2, "big")


def untagged(f: bytes) -> bytes:
    """``f`` with its first VLAN tag removed (bytes 12..15)."""
    return f[:12] + f[16:]


def tagged(f: bytes, tag: bytes) -> bytes:
    return f[:12] + tag + f[12:]


def only(**sent) -> dict[str, list[bytes]]:
    """The egress of every port: the frames given, nothing elsewhere."""
    return {name: sent.get(name, []) for name in NAMES}


@pytest.fixture
def switch(tmp_path):
    with OvsSwitch(tmp_path / "ovs", PORTS) as sw:
        yield sw


def test_unknown_unicast_floods_its_vlan_but_not_back(switch):
    f = frame(B, A)
    switch.send("vm1", f)
    # phy0 carries VLAN 1 as its native VLAN: untagged. vm3 and tr0 are not in VLAN 1.
    assert switch.egress() == only(phy0=[f], vm2=[f])


def test_learned_unicast_goes_to_one_port(switch):
    a_to_b, b_to_a = frame(B, A), frame(A, B)
    switch.send("vm1", a_to_b)          # B unknown: flooded (and a datapath flow would cache that)
    switch.send("vm2", b_to_a)          # A was learned on vm1
    switch.send("vm1", a_to_b)          # B is now known: only vm2, not the cached flood
    assert switch.egress() == only(phy0=[a_to_b], vm1=[b_to_a], vm2=[a_to_b, a_to_b])


def test_fdb_lists_learned_macs_with_port_and_vlan(switch):
    switch.send("vm1", frame(B, A))
    switch.send("vm2", frame(A, B))
    switch.send("vm3", frame(BROADCAST, C))
    assert switch.fdb() == [("vm1", 1, A), ("vm2", 1, B), ("vm3", 2, C)]


def test_broadcast_stays_in_its_vlan(switch):
    in_vlan1, in_vlan2 = frame(BROADCAST, A), frame(BROADCAST, C)
    switch.send("vm1", in_vlan1)
    switch.send("vm3", in_vlan2)
    assert switch.egress() == only(phy0=[in_vlan1, tagged(in_vlan2, dot1q(2))], vm2=[in_vlan1],
                                   tr0=[tagged(in_vlan2, dot1q(2))])


def test_trunk_sends_native_vlan_untagged_and_others_tagged(switch):
    switch.send("vm1", frame(BROADCAST, A))
    switch.send("vm3", frame(BROADCAST, C))
    vlan1, vlan2 = switch.egress()["phy0"]
    assert vlan1 == frame(BROADCAST, A)
    assert vlan2[12:16] == b"\x81\x00\x00\x02"          # TPID 0x8100, PCP 0, DEI 0, VID 2
    assert len(vlan2) == 64 and untagged(vlan2) == frame(BROADCAST, C)


def test_tagged_frames_into_a_trunk_lose_their_tag_on_access_ports(switch):
    # A frame tagged with the native VLAN is accepted as that VLAN; priority-tagged (VID 0) too.
    v2, v1, prio = (frame(BROADCAST, A, tags=dot1q(2)), frame(BROADCAST, A, tags=dot1q(1)),
                    frame(BROADCAST, A, tags=dot1q(0, pcp=5)))
    for f in (v2, v1, prio):
        switch.send("phy0", f)
    # OVS strips the tag and does not pad again: 60 bytes in, 56 out.
    assert switch.egress() == only(vm3=[untagged(v2)], tr0=[v2], vm1=[untagged(v1), untagged(prio)],
                                   vm2=[untagged(v1), untagged(prio)])
    assert len(untagged(v2)) == 56
    # A VLAN no port carries is still learned, and flooded nowhere.
    switch.send("phy0", frame(BROADCAST, B, tags=dot1q(5)))
    assert ("phy0", 5, B) in switch.fdb()


def test_tagged_frame_on_access_port_is_dropped_priority_tag_is_not(switch):
    for vid in (10, 1):                                 # another VLAN, and the port's own VLAN
        switch.send("vm1", frame(BROADCAST, A, tags=dot1q(vid)))
    assert switch.egress() == only()
    assert switch.fdb() == []                           # dropped before learning
    prio = frame(BROADCAST, A, tags=dot1q(0, pcp=3))
    switch.send("vm1", prio)
    # Priority-tagged: taken as the access VLAN, leaves untagged (PCP lost); phy0's native VLAN too.
    assert switch.egress() == only(phy0=[untagged(prio)], vm2=[untagged(prio)])


def test_trunk_without_native_vlan_drops_untagged(switch):
    switch.send("tr0", frame(BROADCAST, A))
    switch.send("tr0", frame(BROADCAST, A, tags=dot1q(0)))     # priority-tagged is VLAN 0 too
    switch.send("tr0", frame(BROADCAST, B, tags=dot1q(4)))     # a VLAN tr0 does not carry
    assert switch.egress() == only()
    assert switch.fdb() == []


def test_trunk_of_every_vlan_without_native_vlan(tmp_path):
    # trunks=None and no native VLAN: every VLAN 1..4094 is carried, untagged frames are not.
    ports = [OvsPort("up", mode="trunk", vlan=None), OvsPort("v4094", vlan=4094), OvsPort("v1")]
    with OvsSwitch(tmp_path / "ovs", ports) as sw:
        sw.send("up", frame(BROADCAST, A))
        high = frame(BROADCAST, B, tags=dot1q(4094))
        sw.send("up", high)
        sw.send("v1", frame(BROADCAST, C))
        assert sw.egress() == {"up": [tagged(frame(BROADCAST, C), dot1q(1))], "v4094": [untagged(high)], "v1": []}
        assert sw.fdb() == [("up", 4094, B), ("v1", 1, C)]      # the untagged frame was not taken as VLAN 0


@pytest.mark.parametrize("dst", ["01:80:c2:00:00:00", "01:80:c2:00:00:02", "01:80:c2:00:00:0e",
                                 "01:80:c2:00:00:0f", "01:00:0c:cc:cc:cc"])
def test_reserved_group_addresses_are_dropped(switch, dst):
    # STP, slow protocols (LACP), LLDP, the rest of 802.1D's 01:80:c2:00:00:0x, Cisco CDP/VTP:
    # OVS's NORMAL drops them (other_config:forward-bpdu=false, the default).
    switch.send("vm1", frame(dst, A))
    assert switch.egress() == only()
    assert switch.fdb() == []                           # and does not learn their source


def test_group_addresses_outside_the_reserved_block_flood(switch):
    gmrp_like, ipv4_mcast = frame("01:80:c2:00:00:10", A), frame("01:00:5e:00:00:01", A)
    switch.send("vm1", gmrp_like)
    switch.send("vm1", ipv4_mcast)                     # no IGMP snooping: multicast floods
    assert switch.egress() == only(phy0=[gmrp_like, ipv4_mcast], vm2=[gmrp_like, ipv4_mcast])


def test_multicast_source_is_forwarded_but_not_learned(switch):
    f = frame(BROADCAST, "01:00:00:00:00:01")
    switch.send("vm1", f)
    assert switch.egress() == only(phy0=[f], vm2=[f])
    assert switch.fdb() == []


def test_qinq_frame_on_trunk_uses_outer_tag_as_vlan(switch):
    # OVS treats an 802.1ad (0x88a8) outer tag as the frame's VLAN (vlan-limit 1: inner tag is payload).
    qinq = frame(BROADCAST, A, tags=dot1q(2, tpid=0x88A8) + dot1q(7))
    switch.send("phy0", qinq)
    # vm3 (access VLAN 2) gets the outer tag stripped, the inner 0x8100 tag kept; tr0 gets it as is.
    assert switch.egress() == only(vm3=[untagged(qinq)], tr0=[qinq])
    assert untagged(qinq)[12:16] == b"\x81\x00\x00\x07"
    assert switch.fdb() == [("phy0", 2, A)]


def test_short_frames_pass_unpadded(switch):
    header_only, short = frame(BROADCAST, A, size=14), frame(BROADCAST, B, size=20)
    switch.send("vm1", header_only)
    switch.send("vm2", short)
    assert switch.egress() == only(phy0=[header_only, short], vm2=[header_only], vm1=[short])
    with pytest.raises(ValueError, match="at least a 14-byte Ethernet header, got 13 bytes"):
        switch.send("vm1", header_only[:13])


def test_jumbo_frame_leaves_every_port(switch):
    jumbo = frame(BROADCAST, A, size=9216)
    switch.send("vm1", jumbo)
    assert switch.egress() == only(phy0=[jumbo], vm2=[jumbo])


def test_full_mac_table_evicts_from_the_port_with_most_entries(tmp_path):
    on_vm1 = [f"02:00:00:00:01:{i:02x}" for i in range(8)]
    on_vm2 = [f"02:00:00:00:02:{i:02x}" for i in range(3)]
    with OvsSwitch(tmp_path / "ovs", PORTS, mac_table_size=10) as sw:
        sw.send_all([("vm1", frame(BROADCAST, m)) for m in on_vm1] + [("vm2", frame(BROADCAST, m)) for m in on_vm2])
        table = sw.fdb()
    # The 11th MAC evicts the oldest entry of vm1 (8 entries), not the oldest overall nor vm2's.
    assert table == sorted([("vm1", 1, m) for m in on_vm1[1:]] + [("vm2", 1, m) for m in on_vm2])


@pytest.mark.slow
def test_mac_entries_age_out(tmp_path):
    # 15 s is OVS's shortest aging time; a refreshed entry lives on, an idle one goes.
    with OvsSwitch(tmp_path / "ovs", PORTS, mac_aging_s=15) as sw:
        sw.send_all([("vm1", frame(BROADCAST, A)), ("vm2", frame(BROADCAST, B))])
        time.sleep(10)
        sw.send("vm2", frame(BROADCAST, B))
        time.sleep(7)
        assert sw.fdb() == [("vm2", 1, B)]
        sw.send("vm1", frame(B, A))                       # B still known: goes to vm2 only
        assert sw.egress()["vm2"][-1] == frame(B, A) and sw.egress()["phy0"][-1] != frame(B, A)


def test_settings_ovs_would_clamp_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"mac_table_size must be 10..1000000 \(OVS's range\), not 2"):
        OvsSwitch(tmp_path / "ovs", PORTS, mac_table_size=2)
    with pytest.raises(ValueError, match=r"mac_aging_s must be 15..3600 \(OVS's range\), not 5"):
        OvsSwitch(tmp_path / "ovs", PORTS, mac_aging_s=5)


def learning_switch(frames, ports):
    """Expected egress of a plain learning switch with every port in one VLAN (a naive model)."""
    table, egress = {}, {p: [] for p in ports}
    for port, f in frames:
        dst, src = f[0:6], f[6:12]
        if not src[0] & 1:
            table[src] = port
        if dst[0] & 1 or dst not in table:
            targets = [p for p in ports if p != port]
        else:
            targets = [] if table[dst] == port else [table[dst]]   # learned on its own ingress: dropped
        for p in targets:
            egress[p].append(f)
    return egress


@pytest.mark.parametrize("seed", [1, 2])
def test_random_sequence_matches_a_learning_switch(tmp_path, seed):
    # Frame-for-frame and in order: the harness keeps OVS's one-frame-at-a-time semantics.
    rng = random.Random(seed)
    ports = ["vm1", "vm2", "vm3", "vm4"]
    pool = {p: [f"02:00:00:00:{i:02x}:{j:02x}" for j in range(3)] for i, p in enumerate(ports)}
    everyone = [m for macs in pool.values() for m in macs] + ["02:ff:00:00:00:01", BROADCAST, "01:00:5e:00:00:07"]
    frames = []
    for n in range(300):
        port = rng.choice(ports)
        f = frame(rng.choice(everyone), rng.choice(pool[port]), size=rng.choice((60, 64, 128)))
        frames.append((port, f[:-2] + n.to_bytes(2, "big")))        # a sequence number: order is checked
    with OvsSwitch(tmp_path / "ovs", [OvsPort(p) for p in ports]) as sw:
        sw.send_all(frames)
        assert sw.egress() == learning_switch(frames, ports)
        learned = {(port, mac(m)) for port, macs in pool.items() for m in macs
                   if any(p == port and f[6:12] == mac(m) for p, f in frames)}
        assert {(port, mac(m)) for port, vlan, m in sw.fdb()} == learned


def test_deep_work_directory(tmp_path):
    # A unix socket path holds 108 bytes; the harness reaches a deeper one through its directory.
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "ovs"
    with OvsSwitch(deep, PORTS[1:3]) as sw:
        sw.send("vm1", frame(B, A))
        assert sw.egress() == {"vm1": [], "vm2": [frame(B, A)]}


def test_send_rate(switch, caplog):
    frames = [("vm1", frame(B, A)), ("vm2", frame(A, B))] * 250
    t0 = time.monotonic()
    switch.send_all(frames)
    rate = len(frames) / (time.monotonic() - t0)
    log.info("OVS reference: %.0f frames/s through send() (%d frames)", rate, len(frames))
    egress = switch.egress()
    assert len(egress["vm1"]) == 250 and len(egress["vm2"]) == 250
    assert rate > 200, f"only {rate:.0f} frames/s"      # 116/s with an ovs-appctl process per command


def test_unknown_port_and_bad_port_config_are_refused(switch):
    with pytest.raises(ValueError, match="no port 'vm9' on this switch"):
        switch.send("vm9", frame(B, A))
    with pytest.raises(ValueError, match="an access port needs a VLAN"):
        OvsPort("vm1", vlan=None)
    with pytest.raises(ValueError, match="trunks are for trunk ports"):
        OvsPort("vm1", trunks=(2,))
    with pytest.raises(ValueError, match=r"VLAN must be 1..4094, not 4095"):
        OvsPort("phy0", mode="trunk", vlan=4095)


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited daemon may stay a zombie when init does not reap it)."""
    try:
        status = open(f"/proc/{pid}/status").read()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_close_stops_both_daemons_and_is_idempotent(tmp_path):
    sw = OvsSwitch(tmp_path / "ovs", PORTS[:2])
    pids = [int((tmp_path / "ovs" / f).read_text()) for f in ("ovsdb-server.pid", "ovs-vswitchd.pid")]
    assert all(running(pid) for pid in pids) and sorted(daemons_in(tmp_path / "ovs")) == sorted(pids)
    with pytest.raises(OvsError, match="still running"):
        OvsSwitch(tmp_path / "ovs", PORTS[:2])      # the workdir is taken; the first switch is untouched
    sw.send("vm1", frame(B, A))
    sw.close()
    sw.close()
    assert not any(running(pid) for pid in pids)
    with pytest.raises(OvsError, match="is not running"):
        sw.send("vm1", frame(B, A))


def test_failed_start_reports_the_daemon_log_and_leaves_nothing_running(tmp_path):
    workdir = tmp_path / "ovs"
    (workdir / "db.sock").mkdir(parents=True)          # ovsdb-server cannot listen there
    with pytest.raises(OvsError) as failure:
        OvsSwitch(workdir, PORTS[:1])
    message = str(failure.value)
    assert "database connection failed" in message
    assert f"last lines of {workdir / 'ovsdb-server.log'}" in message
    assert "binding failed: Is a directory" in message
    assert daemons_in(workdir) == []


def daemons_in(workdir) -> list[int]:
    """Live processes whose command line names ``workdir`` (the OVS daemons of one switch)."""
    found = []
    for proc in os.listdir("/proc"):
        try:
            cmdline = open(f"/proc/{proc}/cmdline", "rb").read().decode(errors="replace")
        except (OSError, ValueError):
            continue
        if proc.isdigit() and f"={workdir}/" in cmdline and running(int(proc)):
            found.append(int(proc))
    return found
