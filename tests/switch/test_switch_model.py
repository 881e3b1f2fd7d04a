"""The switch's golden model (host_driver/model/switch.py) on the cases docs/switch.md names.

Open vSwitch holds the same model frame for frame in tests/switch/test_switch_vs_ovs.py; these
cases pin what OVS cannot show (the set-associative table, static entries, the port limit).
"""

from __future__ import annotations

import pytest

from host_driver.model.switch import (
    MacTable,
    PortVlan,
    SwitchDrop,
    SwitchModel,
    format_mac,
    mac_hash,
    parse_mac,
)

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"


def eth(dst: str, src: str, *, vid: int | None = None, pcp: int = 0, tpid: int = 0x8100, payload: bytes = b"") -> bytes:
    tag = b"" if vid is None else tpid.to_bytes(2, "big") + (pcp << 13 | vid).to_bytes(2, "big")
    return parse_mac(dst) + parse_mac(src) + tag + b"\x08\x00" + (payload or bytes(46))


def switch(**ports) -> SwitchModel:
    return SwitchModel(ports or {"p1": PortVlan(), "p2": PortVlan(), "p3": PortVlan()})


def test_unknown_unicast_floods_then_learned_goes_to_one_port():
    sw = switch()
    first = sw.process("p1", eth(B, A))
    assert first.flooded and set(first.egress) == {"p2", "p3"}
    sw.process("p2", eth(A, B))              # B answers: A is known, B is learned
    second = sw.process("p1", eth(B, A))
    assert not second.flooded and set(second.egress) == {"p2"}
    assert sorted(sw.mac_table()) == [("p1", 1, A, False), ("p2", 1, B, False)]


def test_never_back_out_of_the_ingress_port():
    sw = switch()
    sw.process("p1", eth(B, A))
    res = sw.process("p1", eth(A, C))        # C sends to A, whom it shares p1 with
    assert res.egress == {} and res.drop is SwitchDrop.SAME_PORT
    assert "p1" not in sw.process("p1", eth(BCAST, A)).egress


def test_broadcast_stays_in_its_vlan():
    sw = switch(p1=PortVlan("access", 1), p2=PortVlan("access", 2), p3=PortVlan("access", 1),
                t=PortVlan("trunk", 1, None))
    res = sw.process("p1", eth(BCAST, A))
    assert set(res.egress) == {"p3", "t"}
    res = sw.process("p2", eth(BCAST, B))
    assert set(res.egress) == {"t"}


def test_trunk_tags_all_but_its_native_vlan():
    sw = switch(p1=PortVlan("access", 1), p2=PortVlan("access", 2), t=PortVlan("trunk", 1, None))
    untagged = eth(BCAST, A)
    assert sw.process("p1", untagged).egress["t"] == untagged
    out = sw.process("p2", eth(BCAST, B)).egress["t"]
    assert out == eth(BCAST, B, vid=2)
    # and back: the tag is stripped towards the access port, the PCP kept on trunks
    assert sw.process("t", eth(BCAST, C, vid=2, pcp=5)).egress == {"p2": eth(BCAST, C)}


def test_ingress_vlan_rules():
    sw = switch(p1=PortVlan("access", 1), t=PortVlan("trunk", None, frozenset({2, 3})),
                t2=PortVlan("trunk", 1, frozenset({2})), p2=PortVlan("access", 2))
    assert sw.process("p1", eth(BCAST, A, vid=2)).drop is SwitchDrop.TAGGED_ON_ACCESS
    assert sw.process("t", eth(BCAST, A)).drop is SwitchDrop.NO_NATIVE_VLAN
    assert sw.process("t", eth(BCAST, A, vid=7)).drop is SwitchDrop.VLAN_NOT_MEMBER
    res = sw.process("t", eth(BCAST, A, vid=2, pcp=5))
    assert set(res.egress) == {"t2", "p2"}
    assert res.egress["t2"] == eth(BCAST, A, vid=2, pcp=5), "the PCP travels with the frame between trunks"
    # a priority tag (VID 0) on an access port is an untagged frame of its VLAN
    res = sw.process("p1", eth(BCAST, B, vid=0, pcp=3))
    assert res.drop is None and res.vlan == 1 and res.egress["t2"] == eth(BCAST, B)
    assert sw.drops[("p1", SwitchDrop.TAGGED_ON_ACCESS)] == 1


def test_qinq_switched_by_its_outer_tag():
    """An 802.1ad frame is in the VLAN of its outer tag (as in OVS) and keeps that tag's TPID
    between trunks; its inner tag is payload."""
    sw = switch(p1=PortVlan("access", 1), t=PortVlan("trunk", 1, None), t2=PortVlan("trunk", None, frozenset({100})))
    qinq = eth(BCAST, A, vid=100, tpid=0x88A8)
    res = sw.process("t", qinq)
    assert res.vlan == 100 and res.egress == {"t2": qinq}
    assert sw.process("p1", qinq).drop is SwitchDrop.TAGGED_ON_ACCESS


@pytest.mark.parametrize("last", [0x00, 0x02, 0x0E, 0x0F])
def test_reserved_group_addresses_are_not_forwarded(last):
    sw = switch()
    res = sw.process("p1", eth(f"01:80:c2:00:00:{last:02x}", A))
    assert res.egress == {} and res.drop is SwitchDrop.RESERVED
    assert sw.process("p1", eth("01:80:c2:00:00:10", A)).flooded   # just outside the range
    assert sw.process("p1", eth("01:00:0c:cc:cc:cc", B)).drop is SwitchDrop.RESERVED   # Cisco CDP/VTP
    assert sw.mac_table() == [("p1", 1, A, False)], "the source of a reserved frame is not learned"


def test_aging():
    sw = SwitchModel({"p1": PortVlan(), "p2": PortVlan()}, MacTable(aging=100))
    sw.process("p2", eth(A, B), now=0)
    assert not sw.process("p1", eth(B, A), now=99).flooded
    assert sw.process("p1", eth(B, A), now=150).flooded        # B last seen at 0, A at 99
    assert ("p2", 1, B, False) not in sw.mac_table(now=150)
    assert sw.table.counts["aged_out"] == 1


def test_static_entry_never_moves_nor_ages():
    sw = SwitchModel({"p1": PortVlan(), "p2": PortVlan(), "p3": PortVlan()}, MacTable(aging=10))
    sw.add_static(1, B, "p2")
    sw.process("p3", eth(A, B), now=5)       # B spoofed on p3
    assert sw.process("p1", eth(B, A), now=1000).egress.keys() == {"p2"}
    assert ("p2", 1, B, True) in sw.mac_table(now=1000)
    assert sw.table.counts["static_move"] == 1


def test_port_limit():
    sw = SwitchModel({"p1": PortVlan(), "p2": PortVlan()}, MacTable(port_limit=2))
    for k in range(5):
        sw.process("p1", eth(BCAST, f"02:00:00:00:01:{k:02x}"))
    assert len(sw.mac_table()) == 2 and sw.table.counts["learn_limit"] == 3


def test_full_set_keeps_its_entries():
    """A MAC flood fills sets; what was learned before survives and the rest is counted."""
    table = MacTable(sets=4, ways=2)
    sw = SwitchModel({"p1": PortVlan(), "p2": PortVlan()}, table)
    sw.process("p2", eth(A, B))
    for k in range(200):
        sw.process("p1", eth(BCAST, f"02:00:00:01:{k >> 8:02x}:{k & 255:02x}"))
    assert len(sw.mac_table()) == 8
    assert ("p2", 1, B, False) in sw.mac_table()
    assert table.counts["table_full"] == 200 - 7


def test_hash_spreads_keys_over_sets():
    sets = [mac_hash(1, parse_mac(f"02:00:00:00:{k >> 8:02x}:{k & 255:02x}"), 8) for k in range(4096)]
    counts = [sets.count(s) for s in range(256)]
    assert min(counts) > 0 and max(counts) < 3 * 4096 / 256
    assert mac_hash(1, parse_mac(A), 10) != mac_hash(2, parse_mac(A), 10)


def test_mac_text():
    assert format_mac(parse_mac("02-00-00-00-00-0A")) == "02:00:00:00:00:0a"
    with pytest.raises(ValueError):
        parse_mac("02:00")
    with pytest.raises(ValueError):
        PortVlan("access", 4095)


def test_storm_control_holds_broadcast_to_its_rate():
    """Broadcast offered at line rate (a 60-byte frame every 8 cycles) for a million cycles
    through a limit of 800 bytes per 1024 cycles (about 1 Gb/s at 156.25 MHz) plus a 1500-byte
    burst: what passes is within 5 % of the limit, and the excess is counted."""
    from host_driver.model.switch import StormClass, StormLimit
    limit = StormLimit(rate=800, burst=1500)
    sw = SwitchModel({"p1": PortVlan(), "p2": PortVlan()}, storm={("p1", StormClass.BROADCAST): limit})
    frame = eth(BCAST, A)[:64]
    cycles, passed = 1_000_000, 0
    for t in range(0, cycles, 8):
        passed += len(sw.process("p1", frame, now=t).egress.get("p2", b""))
    allowed = 800 * cycles / 1024 + 1500
    assert 0.95 * allowed <= passed <= allowed
    assert sw.drops[("p1", SwitchDrop.STORM_BROADCAST)] == cycles // 8 - passed // len(frame)


def test_storm_classes_have_their_own_buckets():
    from host_driver.model.switch import StormClass, StormLimit
    storm = {("p1", StormClass.MULTICAST): StormLimit(0, 64), ("p1", StormClass.UNKNOWN_UNICAST): StormLimit(0, 128)}
    sw = SwitchModel({"p1": PortVlan(), "p2": PortVlan()}, storm=storm)
    sw.process("p2", eth(A, B))                                    # B known on p2
    mcast = eth("01:00:5e:00:00:01", A)[:64]
    unknown = eth(C, A)[:64]
    assert [bool(sw.process("p1", mcast).egress) for _ in range(3)] == [True, False, False]
    assert [bool(sw.process("p1", unknown).egress) for _ in range(3)] == [True, True, False]
    assert all(sw.process("p1", eth(B, A)[:64]).egress for _ in range(10)), "known unicast is not policed"
    assert all(sw.process("p1", eth(BCAST, A)[:64]).egress for _ in range(10)), "no broadcast limit set"
    assert sw.drops[("p1", SwitchDrop.STORM_MULTICAST)] == 2 and sw.drops[("p1", SwitchDrop.STORM_UNKNOWN)] == 1


def test_storm_rate_from_megabits():
    from host_driver.model.switch import StormLimit
    # 100 Mb/s at 156.25 MHz: 12.5e6 bytes/s over 156.25e6 cycles/s = 0.08 bytes/cycle = 81.92 per 1024
    assert StormLimit.from_rate(100, 1500, 156.25).rate == 81
    with pytest.raises(ValueError):
        StormLimit(-1, 10)


def _loop_switch(**guard):
    from host_driver.model.switch import FlightRecorder, LoopGuard
    return SwitchModel({"p1": PortVlan(), "p2": PortVlan(), "p3": PortVlan()},
                       loop_guard=LoopGuard(**guard), recorder=FlightRecorder(depth=8))


def test_loop_guard_blocks_on_a_returning_broadcast_and_the_recorder_freezes():
    """A loop between p2 and p3: the broadcast A sent on p1 comes back in on p3. Loop guard blocks
    p3, the recorder keeps the frames up to the loop, and the driver's clear unblocks."""
    sw = _loop_switch(window=1000, broadcasts=True)
    frame = eth(BCAST, A)
    assert set(sw.process("p1", frame, now=0).egress) == {"p2", "p3"}
    res = sw.process("p3", frame, now=10)              # the same broadcast, back through the loop
    assert res.drop is SwitchDrop.LOOP_BLOCKED and sw.blocked == {"p3"}
    assert [(e.kind, e.port) for e in sw.events] == [("loop_broadcast", "p3")]
    assert set(sw.process("p1", eth(BCAST, B), now=20).egress) == {"p2"}, "nothing out of a blocked port"
    assert sw.recorder.frozen_by is sw.events[0]
    assert [r["in_port"] for r in sw.recorder.records] == ["p1", "p3"]
    sw.clear_block("p3")
    assert set(sw.process("p1", eth(BCAST, C), now=3000).egress) == {"p2", "p3"}
    assert not sw.process("p3", eth(BCAST, A), now=5000).drop, "outside the window it is a new frame"


def test_loop_guard_counts_mac_moves():
    sw = _loop_switch(moves=4, window=100, block=False, broadcasts=False)
    for k in range(8):                                 # A flaps between p1 and p2 every cycle
        sw.process("p1" if k % 2 else "p2", eth(BCAST, A, payload=bytes([k]) * 46), now=k)
    # moves count on the port the MAC moves to: the fourth onto p1 (cycles 1, 3, 5, 7) fires
    assert [(e.time, e.kind, e.port) for e in sw.events] == [(7, "loop_mac_move", "p1")]
    assert not sw.blocked and sw.table.counts["moved"] == 7
    quiet = _loop_switch(moves=4, window=100, broadcasts=False)
    for k in range(8):                                 # the same moves, slower than the window allows
        quiet.process("p1" if k % 2 else "p2", eth(BCAST, A, payload=bytes([k]) * 46), now=k * 100)
    assert not quiet.events


def test_storm_event_once_per_episode():
    from host_driver.model.switch import StormClass, StormLimit
    sw = SwitchModel({"p1": PortVlan(), "p2": PortVlan()}, storm={("p1", StormClass.BROADCAST): StormLimit(64, 60)})
    for t in range(0, 400, 8):
        sw.process("p1", eth(BCAST, A)[:60], now=t)
    assert [(e.kind, e.detail) for e in sw.events] == [("storm", "broadcast")]
    assert sw.recorder.frozen_by is sw.events[0]
    sw.recorder.rearm()
    assert sw.recorder.frozen_by is None and sw.recorder.records == []


def test_mirror_sessions_copy_to_the_monitor_port_only():
    """Copies of admitted frames, once per session, formatted for the monitor port (as OVS does)."""
    from host_driver.model.switch import MirrorSession
    ports = {"vm1": PortVlan(), "vm2": PortVlan(), "vm3": PortVlan("access", 2), "t": PortVlan("trunk", 1, None),
             "mon": PortVlan("trunk", 1, None)}
    sw = SwitchModel(ports, mirrors=[MirrorSession("mon", ingress=frozenset({"vm1"}), egress=frozenset({"t"}))])
    flood = sw.process("vm1", eth(BCAST, A))
    assert set(flood.egress) == {"vm2", "t"}, "the monitor port is never flooded to"
    assert flood.mirrored == [("mon", eth(BCAST, A))], "received on vm1 and sent out of t: one copy"
    assert sw.process("vm1", eth(BCAST, A, vid=5)).mirrored == [], "a frame the VLAN rules drop is not copied"
    assert sw.process("vm1", eth("01:80:c2:00:00:00", A)).mirrored == [("mon", eth("01:80:c2:00:00:00", A))]
    # a VLAN-2 frame leaving t is copied tagged: the monitor port is a trunk with native VLAN 1
    assert sw.process("vm3", eth(BCAST, C)).mirrored == [("mon", eth(BCAST, C, vid=2))]
    spy = "02:00:00:00:00:99"
    assert sw.process("mon", eth(BCAST, spy)).egress == {} and all(m != spy for _, _, m, _ in sw.mac_table())
    assert sw.run([("vm2", eth(A, B))])["mon"] == [], "unicast to vm1 leaves through no mirrored port"
    with pytest.raises(ValueError):
        SwitchModel(ports, mirrors=[MirrorSession("mon", ingress=frozenset({"mon"}))])


def test_port_limit_release_follows_the_epochs():
    """An aged-out entry stops counting against its port's limit at the start of scrubber epoch
    ``(stamp >> k) + D + 1`` (``D = ceil(aging / 2**k) + 1``), or at the start of the epoch
    after a learn took its way, whichever comes first (docs/switch.md, "Port limit and the
    scrubber")."""
    a, b, c = (parse_mac(f"02:00:00:00:00:0{k}") for k in (1, 2, 3))
    t = MacTable(aging=20, epoch_bits=3, port_limit={"p1": 1})        # epochs of 8, D = 4
    assert t.learn(1, a, "p1", 5) == "learned"                        # stamp epoch 0
    assert t.learn(1, b, "p1", 25) == "learn_limit"                   # a aged out at 25, still held
    assert t.learn(1, b, "p1", 39) == "learn_limit"                   # epoch 4 found it: pending
    assert t.learn(1, b, "p1", 40) == "learned" and t.held == {"p1": 1}   # epoch 5: released
    assert t.limited == {"p1": 2} and t.counts["aged_out"] == 1
    # A learn into the aged-out entry's way releases it at the next epoch instead.
    t = MacTable(sets=1, ways=2, aging=20, epoch_bits=3, port_limit={"p1": 1})
    assert t.learn(1, a, "p1", 5) == "learned"
    assert t.learn(1, b, "p2", 26) == "learned"                       # into a's way (way 0)
    assert t.learn(1, c, "p1", 31) == "learn_limit"
    assert t.learn(1, c, "p1", 32) == "learned"                       # epoch 4, not 5
