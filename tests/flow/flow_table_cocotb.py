"""cocotb: the issue's SYN flood through the standalone flow table (``flood_top``) in Verilator.

100,000 random SYNs into a full 256-flow table while established flows keep passing. Requests
go back to back from one coroutine, responses and event strobes are collected by another; the
whole sequence must equal the golden model's answers, packet by packet, and the table's dump
(read through the management port) must equal the model's slots.
"""

from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from hdl.flow.flow_table import DEFAULT_TIMEOUTS, FlowTable, MgmtOp, Outcome, request_layout
from host_driver.model.flow import TCP, TCP_ACK, TCP_SYN, FlowEntry, FlowPacket
from host_driver.model.flow import FlowTable as ModelTable

SETS, WAYS = 64, 4


def flood_top(config):
    """The block under test (the factory ``sim.runner.run_cocotb`` builds)."""
    return FlowTable(sets=SETS, ways=WAYS)


def flood_traffic(flood: int, seed: int):
    """(packet, now) pairs: handshakes of flows for half the table, then ``flood`` random SYNs,
    every fourth followed by a packet of an established flow."""
    rng = random.Random(seed)
    keep = [FlowPacket(TCP, 0x0A000000 | i, 0xC0A80001, 10000 + i, 443) for i in range(SETS * WAYS // 2)]
    out = []
    for p in keep:
        out += [(FlowPacket(TCP, p.src, p.dst, p.sport, p.dport, TCP_SYN), 0),
                (FlowPacket(TCP, p.dst, p.src, p.dport, p.sport, TCP_SYN | TCP_ACK), 0),
                (FlowPacket(TCP, p.src, p.dst, p.sport, p.dport, TCP_ACK), 0)]
    for i in range(flood):
        now = i // 64
        out.append((FlowPacket(TCP, rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16), 80, TCP_SYN), now))
        if i % 4 == 0:
            p = keep[rng.randrange(len(keep))]
            out.append((FlowPacket(TCP, p.dst, p.src, p.dport, p.sport, TCP_ACK) if i % 8 else
                        FlowPacket(TCP, p.src, p.dst, p.sport, p.dport, TCP_ACK), now))
    return out


def pack_request(pkt: FlowPacket) -> int:
    return request_layout().const({"proto": pkt.proto, "ipv6": int(pkt.ipv6), "src_addr": pkt.src,
                                   "dst_addr": pkt.dst, "src_port": pkt.sport, "dst_port": pkt.dport,
                                   "flags": pkt.flags}).as_value().value


@cocotb.test()
async def syn_flood(dut):
    flood = int(os.environ.get("FLOOD", "100000"))
    table = flood_top(None)
    traffic = flood_traffic(flood, 6)
    model = ModelTable(sets=SETS, ways=WAYS)
    want = []
    for pkt, now in traffic:
        r = model.packet(pkt, now)
        want.append((r.found, r.established, r.to_server if r.found else False, r.outcome.value,
                     r.state.value if r.found else 0))
    requests = [(pack_request(p), now) for p, now in traffic]

    Clock(dut.clk, 6.4, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    dut.req__valid.value = 0
    dut.mgmt_req__valid.value = 0
    dut.resp__ready.value = 1
    dut.mgmt_resp__ready.value = 1
    for name, value in DEFAULT_TIMEOUTS.items():
        getattr(dut, name).value = value
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    got, events = [], {o: 0 for o in Outcome}
    strobes = {o: getattr(dut, f"event_{o.name.lower()}") for o in Outcome}

    async def sink():
        while len(got) < len(requests):
            await RisingEdge(dut.clk)
            await ReadOnly()
            for o, s in strobes.items():
                events[o] += int(s.value)
            if int(dut.resp__valid.value):
                got.append(table.response_layout.from_bits(int(dut.resp__payload.value)))

    sink_task = cocotb.start_soon(sink())
    for bits, now in requests:
        dut.req__payload.value = bits
        dut.now.value = now
        dut.req__valid.value = 1
        while True:
            await RisingEdge(dut.clk)
            if int(dut.req__ready.value):
                break
    dut.req__valid.value = 0
    await sink_task

    decoded = [(bool(g.found), bool(g.established), bool(g.to_server) and bool(g.found), g.outcome.value,
                g.state.value if g.found else 0) for g in got]
    for i, (a, b) in enumerate(zip(decoded, want)):
        assert a == b, f"packet {i}: {traffic[i][0]}: gateware {a}, model {b}"
    assert len(decoded) == len(want)
    assert {o.name.lower(): n for o, n in events.items() if n} == model.counts
    assert model.counts["table_full"] > flood // 2

    # The dump through the management port equals the model's slots.
    await RisingEdge(dut.clk)
    for s in range(SETS):
        for w in range(WAYS):
            dut.mgmt_req__payload.value = table.mgmt_request_layout.const(
                {"op": MgmtOp.READ, "set": s, "way": w}).as_value().value
            dut.mgmt_req__valid.value = 1
            while True:
                await RisingEdge(dut.clk)
                if int(dut.mgmt_req__ready.value):
                    break
            dut.mgmt_req__valid.value = 0
            while True:
                await RisingEdge(dut.clk)
                await ReadOnly()
                if int(dut.mgmt_resp__valid.value):
                    entry = FlowEntry.from_bits(int(dut.mgmt_resp__payload.value))
                    break
            await RisingEdge(dut.clk)
            assert entry == model.read(s, w), (s, w)
    dut._log.warning("flood of %d SYNs: %s", flood, model.counts)
