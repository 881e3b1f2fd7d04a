"""The loop storm's testbench (cocotb; run by :func:`sim.compare.storm_tb.run_storm`, which documents it).

One test, ``storm``: learning frames, then the normal traffic and one broadcast with the external
flooding switch closing the loop between the uplinks, cycle by cycle; the results go to the spec's
``out`` file as JSON.
"""

from __future__ import annotations

import heapq
import json
import os
from collections import Counter

import cocotb
from cocotb.triggers import RisingEdge

from sim.compare.storm_tb import SPEC_ENV
from sim.tb.nic import TB


@cocotb.test()
async def storm(dut):
    spec = json.loads(open(os.environ[SPEC_ENV]).read())
    tb = TB(dut)
    await tb.reset()
    ports = list(tb.config.ports)
    uplinks = spec["uplinks"]
    for port, frame in spec["learn"]:
        await tb.send(port, bytes.fromhex(frame))
    await tb.cycles(spec["warmup_cycles"])
    for sink in tb.sinks.values():
        sink.clear()
    storm = bytes.fromhex(spec["storm_frame"])
    t0 = tb.cycle()
    end = t0 + spec["duration_cycles"]
    stop = end + spec["drain_cycles"]
    delay = spec["loop_delay_cycles"]
    cable = spec["cable_frames"]
    # Per ingress port: frames waiting for their cycle, (due, sequence, bytes, from the loop?).
    pending: dict[str, list] = {p: [] for p in ports}
    seq = 0
    expected: dict[str, Counter] = {p: Counter() for p in ports}
    for port, at, frame, dest in spec["normal"]:
        seq += 1
        data = bytes.fromhex(frame)
        heapq.heappush(pending[port], (t0 + at, seq, data, False))
        expected[dest][data] += 1
    seq += 1
    heapq.heappush(pending[uplinks[0]], (t0 + spec["storm_at_cycle"], seq, storm, False))
    in_cable = dict.fromkeys(uplinks, 0)     # the external switch's queue towards each uplink
    lost = 0
    storm_out = dict.fromkeys(ports, 0)
    storm_bytes = dict.fromkeys(ports, 0)
    normal_out = dict.fromkeys(ports, 0)
    normal_bytes = dict.fromkeys(ports, 0)
    got: dict[str, Counter] = {p: Counter() for p in ports}
    edge = RisingEdge(dut.clk)
    now = tb.cycle()
    while now < stop:
        for port in ports:
            sink = tb.sinks[port]
            while not sink.empty():
                data = bytes(sink.recv_nowait().tdata)
                if port in uplinks:
                    # The external switch floods it to the other uplinks (the loop); it drops what
                    # its queue towards a port cannot hold.
                    for back in uplinks:
                        if back == port:
                            continue
                        if in_cable[back] >= cable or now >= end:
                            lost += now < end
                            continue
                        seq += 1
                        in_cable[back] += 1
                        heapq.heappush(pending[back], (now + delay, seq, data, True))
                if now >= end:
                    got[port][data] += 1
                    continue
                if data == storm:
                    storm_out[port] += 1
                    storm_bytes[port] += len(data)
                else:
                    normal_out[port] += 1
                    normal_bytes[port] += len(data)
                got[port][data] += 1
        for port, queue in pending.items():
            src = tb.sources[port]
            while queue and queue[0][0] <= now and src.count() < 2:
                _, _, data, looped = heapq.heappop(queue)
                if looped:
                    in_cable[port] -= 1
                src.send_nowait(tb.make_frame(data, False))
        await edge
        now = tb.cycle()
    delivered = sum(min(n, got[p][data]) for p in ports for data, n in expected[p].items())
    nic = await tb.driver()
    counters = await nic.counters()
    result = {
        "cycles": spec["duration_cycles"],
        "storm_frames_out": storm_out, "storm_bytes_out": storm_bytes,
        "normal_frames_out": normal_out, "normal_bytes_out": normal_bytes,
        "normal_frames": sum(sum(c.values()) for c in expected.values()),
        "normal_delivered_frames": delivered,
        "cable_lost": lost,
        "counters": counters,
    }
    with open(spec["out"], "w") as f:
        json.dump(result, f)
