"""Issue 13's loop-storm scenario on the gateware (cocotb; run by test_switch_scenarios.py).

The testbench is the loop: whatever leaves ``vm1`` or ``vm3`` comes back into ``vm2`` (two
cables into one port, through a cable queue of :data:`CABLE_FRAMES` frames that drops what a
saturated link cannot carry). One broadcast sent into ``phy0`` then floods to vm1 and vm3, both
copies come back into vm2, which floods them to vm1 and vm3 again: the storm doubles each round
until the link is full, as in a real L2 loop. Three runs, each from reset, reprogrammed through
the driver:

* ``loop_storm_unchecked``: no storm control, no loop guard: the broadcast still circulates when
  the run ends, at vm2's line rate.
* ``loop_storm_limited``: a broadcast storm limit on vm2: the broadcasts vm2 admits per cycle
  equal the limit within 5 %, and CSR reads keep completing while every link is saturated (their
  latency is written to ``SECNIC_SCENARIO_OUT`` for the docs).
* ``loop_storm_guarded``: loop guard on: the first broadcast that comes back blocks vm2, the storm
  stops, the flight recorder froze with the loop frame last, and the driver's unblock clears it.
"""

from __future__ import annotations

import json
import os
from collections import deque

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from hdl.packet.meta import DropReason
from hdl.switch.settings import StormClass
from host_driver.blocks.switch import Switch
from sim.tb.nic import TB

#: Frames the loop's cable holds; more are lost (what the looped-back link cannot carry).
CABLE_FRAMES = 16
BROADCAST = bytes.fromhex("ffffffffffff" "020000000042" "88b5") + bytes(50)
#: vm2's storm limit in the limited run: bytes per 1024 cycles (5 Gb/s at 156.25 MHz: 4 bytes per
#: cycle, half the W=64 link). Each admitted broadcast comes back twice, so vm2 is offered twice
#: the limit and the storm lives on at the limit. (A limit that admits less than one frame per
#: trip round the loop kills a one-frame storm instead.)
LIMIT_RATE = 4096
LIMIT_BURST = 1500


async def _cable(tb: TB, stop: list[bool], lost: list[int]) -> None:
    """vm1's and vm3's egress into vm2's ingress, a frame at a time, at most CABLE_FRAMES queued."""
    queue: deque[bytes] = deque()
    edge = RisingEdge(tb.dut.clk)
    src = tb.sources["vm2"]
    while not stop[0]:
        for port in ("vm1", "vm3"):
            sink = tb.sinks[port]
            while not sink.empty():
                frame = bytes(sink.recv_nowait().tdata)
                if len(queue) < CABLE_FRAMES:
                    queue.append(frame)
                else:
                    lost[0] += 1
        while queue and src.count() < 2:
            await src.send(tb.make_frame(queue.popleft(), False))
        await edge


async def _start(dut, *, storm: bool = False, guard: bool = False):
    tb = TB(dut)
    await tb.reset()
    tb.start_record_monitor()
    nic = await tb.driver()
    sw = Switch(nic)
    vm2 = tb.config.ports.index("vm2")
    if storm:
        await sw.set_storm_limit(vm2, StormClass.BROADCAST, LIMIT_RATE, LIMIT_BURST)
    if guard:
        await nic.write(sw.block, "LOOP_MOVES", 16)
        await nic.write(sw.block, "LOOP_WINDOW", 1000)
        await nic.write(sw.block, "CONTROL", 1)
    stop, lost = [False], [0]
    cable = cocotb.start_soon(_cable(tb, stop, lost))
    await tb.send("phy0", BROADCAST)
    return tb, nic, sw, stop, lost, cable


def _admitted_on(tb: TB, port: int, since: int, until: int) -> list:
    return [r for r in tb.records if r.in_port == port and since <= r.cycle < until and not r.reason]


@cocotb.test()
async def loop_storm_unchecked(dut):
    tb, nic, sw, stop, lost, cable = await _start(dut)
    await ClockCycles(dut.clk, 20_000)
    vm2 = tb.config.ports.index("vm2")
    now = tb.cycle()
    late = _admitted_on(tb, vm2, now - 2_000, now)
    total = _admitted_on(tb, vm2, 0, now)
    # vm2's link is saturated: a 66-byte frame every 9 beats at W=64 (8 data beats + the switch's
    # one-frame-per-8-cycles minimum), so ~220 in the last 2000 cycles; it never stops.
    assert len(late) > 150, f"the storm died out: {len(late)} broadcasts in the last 2000 cycles"
    assert len(total) > 1500 and lost[0] > 0
    stop[0] = True
    await cable


@cocotb.test()
async def loop_storm_limited(dut):
    tb, nic, sw, stop, lost, cable = await _start(dut, storm=True)
    await ClockCycles(dut.clk, 5_000)              # past the burst
    vm2 = tb.config.ports.index("vm2")
    # CSR reads while every looped link is saturated: cycles per 32-bit read.
    latencies = []
    for _ in range(50):
        t0 = tb.cycle()
        await nic.read_counter64(nic.block("PORT", vm2), "RX_PACKETS")
        latencies.append((tb.cycle() - t0) / 2)
    start = tb.cycle()
    await ClockCycles(dut.clk, 60_000)
    end = tb.cycle()
    admitted = _admitted_on(tb, vm2, start, end)
    got = sum(r.meta["frame_len"] for r in admitted) / (end - start)
    want = LIMIT_RATE / 1024
    assert abs(got - want) / want < 0.05, f"vm2 admitted {got:.4f} bytes/cycle, the limit is {want:.4f}"
    dropped = [r for r in tb.records if r.in_port == vm2 and r.reason == DropReason.STORM_BROADCAST]
    assert dropped, "no storm drops: the storm did not exceed the limit"
    def storm_drops():
        return sum(1 for r in tb.records if r.in_port == vm2 and r.reason == DropReason.STORM_BROADCAST)
    before = storm_drops()                      # the storm goes on while the counter is read
    counted = (await nic.counters())["ports"]["vm2"]["switch"]["drop_storm_broadcast"]
    assert before <= counted <= storm_drops()
    state = await sw.recorder_state()
    assert state.frozen and state.trigger == "storm" and state.port == "vm2"
    out = os.environ.get("SECNIC_SCENARIO_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({"admitted_bytes_per_cycle": got, "limit_bytes_per_cycle": want,
                       "csr_read_cycles": {"max": max(latencies), "mean": sum(latencies) / len(latencies)},
                       "cable_lost": lost[0]}, f)
    stop[0] = True
    await cable


@cocotb.test()
async def loop_storm_guarded(dut):
    tb, nic, sw, stop, lost, cable = await _start(dut, guard=True)
    await ClockCycles(dut.clk, 5_000)
    vm2 = tb.config.ports.index("vm2")
    assert await sw.blocked() == ["vm2"]
    blocked = [r for r in tb.records if r.in_port == vm2 and r.reason == DropReason.LOOP_BLOCKED]
    admitted = _admitted_on(tb, vm2, 0, tb.cycle())
    assert blocked and not admitted, "the first returning broadcast must be the loop: nothing admitted on vm2"
    counters = await nic.counters()
    assert counters["switch"]["loop_events"] == 1
    state = await sw.recorder_state()
    assert state.frozen and state.trigger == "loop" and state.port == "vm2"
    records = await sw.recorder()
    assert [r["in_port"] for r in records] == ["phy0", "vm2"]
    assert records[-1]["drop"] == "loop_blocked" and records[0]["egress"] == ["vm1", "vm2", "vm3"]
    # Quiet now: nothing circulates, and the driver's unblock opens the port again.
    n = len(tb.records)
    await ClockCycles(dut.clk, 2_000)
    assert len(tb.records) == n
    await sw.unblock(1 << vm2)
    assert await sw.blocked() == []
    assert not await sw.scrub_overrun(), "default epochs are long enough for the scrubber"
    stop[0] = True
    await cable


@cocotb.test()
async def stalled_port(dut):
    """phy0's egress never ready (a stalled port): vm1 and vm2 keep talking at line rate and lose
    nothing; what floods to phy0 fills its queue and is then dropped there alone, counted."""
    tb = TB(dut)
    await tb.reset()
    tb.start_record_monitor()
    tb.sinks["phy0"].pause = True
    a, b, p = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b"), bytes.fromhex("02000000000f")
    await tb.send("vm1", b"\xff" * 6 + a + b"\x88\xb5" + bytes(50))
    await tb.send("vm2", b"\xff" * 6 + b + b"\x88\xb5" + bytes(50))
    await tb.send("phy0", b"\xff" * 6 + p + b"\x88\xb5" + bytes(50))
    await tb.cycles(200)
    n = 400
    for k in range(n):
        await tb.send("vm1", b + a + b"\x88\xb5" + k.to_bytes(2, "big") + bytes(48))
        await tb.send("vm2", a + b + b"\x88\xb5" + k.to_bytes(2, "big") + bytes(48))
        # vm3 to the host behind phy0, which is learned there: phy0's queue fills, then drops
        await tb.send("vm3", p + bytes.fromhex("02000000000c") + b"\x88\xb5" + k.to_bytes(2, "big") + bytes(1000))
    await tb.wait_egress({"vm1": n + 2, "vm2": n + 2}, 200_000)
    nic = await tb.driver()
    counters = await nic.counters()
    phy0 = counters["ports"]["phy0"]
    queued = tb.config.switch.egress_queue_bytes
    assert phy0["switch"]["tx_queue_drop"] > 0
    assert phy0["tx_packets"] == 0 and tb.sinks["phy0"].count() == 0
    # every frame for phy0 was queued or dropped at its queue: no more queued than fit
    to_phy0 = sum(1 for r in tb.records if 0 in r.egress_ports)
    assert to_phy0 - phy0["switch"]["tx_queue_drop"] <= queued // 64
    for p in ("vm1", "vm2"):
        assert counters["ports"][p]["switch"]["tx_queue_drop"] == 0
