"""Amaranth-level tests of the flow table (hdl/flow/flow_table.py) against the golden model's
``FlowTable`` (host_driver/model/flow.py): packet by packet, the dump, the cycles, a SYN flood."""

import gc
import random
import warnings

import pytest
from amaranth.hdl import Fragment, Instance, Module, Signal, UnusedElaboratable
from amaranth.sim import Simulator
from flowgen import traffic

from hdl.flow.flow_table import (
    DEFAULT_TIMEOUTS,
    LATENCY,
    MGMT_CYCLES,
    MGMT_READ_LATENCY,
    PACKET_CYCLES,
    FlowState,
    FlowTable,
    MgmtOp,
    Outcome,
    set_index,
)
from hdl.lib.ram import ECP5_TARGET
from host_driver.model.flow import TCP, TCP_ACK, TCP_SYN, FlowEntry, FlowPacket, FlowResult, Timeouts, flow_hash
from host_driver.model.flow import FlowTable as ModelTable

TIME_BITS = 32
#: Short timeouts so that random time steps cross them.
SHORT = Timeouts(tcp_new=40, tcp_established=150, tcp_closed=25, other_new=30, other_established=100)


def request(pkt: FlowPacket) -> dict:
    return {"proto": pkt.proto, "ipv6": int(pkt.ipv6), "src_addr": pkt.src, "dst_addr": pkt.dst,
            "src_port": pkt.sport, "dst_port": pkt.dport, "flags": pkt.flags}


def result_of(payload) -> FlowResult:
    found = bool(payload.found)
    return FlowResult(found, bool(payload.established), bool(payload.to_server) and found, payload.outcome,
                      payload.state if found else None)


def expected(model: ModelTable, pkt, now) -> FlowResult:
    r = model.packet(pkt, now)
    return FlowResult(r.found, r.established, r.to_server, r.outcome, r.state)


class TB:
    """Drives one :class:`FlowTable` from an amaranth.sim testbench, one request at a time."""

    def __init__(self, dut: FlowTable, ctx, timeouts: Timeouts | None = None):
        self.dut, self.ctx = dut, ctx
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.mgmt_resp.ready, 1)
        for name in DEFAULT_TIMEOUTS:
            ctx.set(getattr(dut, name), getattr(timeouts or Timeouts(), name))

    async def packet(self, pkt: FlowPacket, now: int) -> FlowResult:
        ctx, dut = self.ctx, self.dut
        ctx.set(dut.now, now % (1 << TIME_BITS))
        ctx.set(dut.req.payload, request(pkt))
        ctx.set(dut.req.valid, 1)
        await ctx.tick().until(dut.req.ready)
        ctx.set(dut.req.valid, 0)
        for _ in range(20):
            _, _, valid, payload = await ctx.tick().sample(dut.resp.valid, dut.resp.payload)
            if valid:
                return result_of(payload)
        raise AssertionError("no response to a packet request within 20 cycles")

    async def mgmt(self, op: MgmtOp, set_=0, way=0, entry: FlowEntry | None = None) -> FlowEntry:
        ctx, dut = self.ctx, self.dut
        bits = entry.to_bits(dut.addr_bits, TIME_BITS) if entry else 0
        ctx.set(dut.mgmt_req.payload, {"op": op, "set": set_, "way": way,
                                       "entry": dut.entry_layout.from_bits(bits)})
        ctx.set(dut.mgmt_req.valid, 1)
        await ctx.tick().until(dut.mgmt_req.ready)
        ctx.set(dut.mgmt_req.valid, 0)
        for _ in range(dut.sets + 20):
            _, _, valid, payload = await ctx.tick().sample(dut.mgmt_resp.valid, dut.mgmt_resp.payload)
            if valid:
                return FlowEntry.from_bits(payload.as_value().value, dut.addr_bits, TIME_BITS)
        raise AssertionError("no response to a management request")

    async def dump_raw(self) -> list[FlowEntry]:
        """Every slot, by set and way, as stored: what the driver's dump reads."""
        return [await self.mgmt(MgmtOp.READ, s, w) for s in range(self.dut.sets) for w in range(self.dut.ways)]


def run(dut, bench, *extra):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for proc in extra:
        sim.add_testbench(proc, background=True)
    sim.add_testbench(bench)
    sim.run()


# --- The hash ------------------------------------------------------------------------------


@pytest.mark.parametrize("bits,addr_bits", [(1, 128), (12, 128), (10, 32)])
def test_set_index_is_flow_hash(bits, addr_bits):
    """The XOR network equals the model's CRC-based ``flow_hash``, and is the same both ways."""
    rng = random.Random(bits)
    sig = {n: Signal(w, name=n) for n, w in (("proto", 8), ("ipv6", 1), ("sa", 128), ("sp", 16), ("da", 128),
                                              ("dp", 16))}
    m = Module()
    fwd, rev = Signal(bits), Signal(bits)
    m.d.comb += [fwd.eq(set_index(sig["proto"], sig["ipv6"], sig["sa"], sig["sp"], sig["da"], sig["dp"], bits,
                                  addr_bits)),
                 rev.eq(set_index(sig["proto"], sig["ipv6"], sig["da"], sig["dp"], sig["sa"], sig["sp"], bits,
                                  addr_bits))]
    amax = (1 << addr_bits) - 1
    pkts = [FlowPacket(6, 0, 0), FlowPacket(255, amax, amax, 65535, 65535, 0, True)]
    pkts += [FlowPacket(rng.choice([6, 17, 1]), rng.getrandbits(addr_bits), rng.getrandbits(addr_bits),
                        rng.getrandbits(16), rng.getrandbits(16), 0, rng.random() < 0.5) for _ in range(100)]

    async def bench(ctx):
        for p in pkts:
            for n, v in (("proto", p.proto), ("ipv6", p.ipv6), ("sa", p.src), ("sp", p.sport), ("da", p.dst),
                         ("dp", p.dport)):
                ctx.set(sig[n], int(v))
            want = flow_hash(p, bits, addr_bits)
            assert ctx.get(fwd) == want and ctx.get(rev) == want, p

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


# --- Random traffic against the model -------------------------------------------------------


@pytest.mark.parametrize("sets,ways,addr_bits,seed,start", [
    (4, 2, 128, 1, 0),
    (8, 4, 128, 2, 1000),
    (2, 3, 128, 3, (1 << TIME_BITS) - 500),      # the clock wraps
    (4, 2, 32, 4, 0),                            # IPv4-only build: IPv6 is unsupported
    (2048, 1, 32, 5, 0),                         # deeper than 1024 sets: RAMs in 36-bit slices
])   # up to 512 sets (the first four) a way is WideRam slices (512 x 36), as on the ULX3S
def test_random_traffic_matches_model(sets, ways, addr_bits, seed, start):
    """Handshakes, half-open, RST, FIN, midstream, port reuse, UDP/ICMP both ways, IPv6, time
    steps past the timeouts, small sets that fill: every answer equals the model's, and every 150
    packets the raw dump (every slot as stored) equals the model's slots (small tables; the deep
    one, whose RAMs are sliced, is checked on its answers)."""
    rng = random.Random(seed)
    dut = FlowTable(sets=sets, ways=ways, addr_bits=addr_bits)
    model = ModelTable(sets=sets, ways=ways, addr_bits=addr_bits, timeouts=SHORT)
    pkts = list(traffic(rng, 600, flows=min(3 * sets * ways, 24), jumps=(60, 200), start=start))
    seen_outcomes, seen_states, established = set(), set(), 0

    async def bench(ctx):
        nonlocal established
        tb = TB(dut, ctx, SHORT)
        for i, (pkt, now) in enumerate(pkts, 1):
            want = expected(model, pkt, now)
            got = await tb.packet(pkt, now)
            assert got == want, f"packet {i} {pkt} at {now}"
            seen_outcomes.add(got.outcome)
            seen_states.add(got.state)
            established += got.established
            if i % 150 == 0 and sets * ways <= 64:
                raw = await tb.dump_raw()
                assert raw == [model.read(s, w) for s in range(sets) for w in range(ways)], f"dump after {i}"

    run(dut, bench)
    want_outcomes = {Outcome.NEW, Outcome.EXISTING, Outcome.TABLE_FULL} if sets * ways <= 64 else \
        {Outcome.NEW, Outcome.EXISTING}
    if addr_bits == 32:
        want_outcomes.add(Outcome.UNSUPPORTED)
    assert want_outcomes <= seen_outcomes, seen_outcomes
    assert len(seen_states) >= 7 and established > 20, (seen_states, established)


def test_management_write_read_clear():
    """Entries written through the management port are read back and looked up; a way number of
    ``ways`` or more reads empty and writes nothing; CLEAR empties every slot."""
    dut = FlowTable(sets=4, ways=3)
    pkt = FlowPacket.of("10.0.0.2", "10.0.0.1", TCP, 80, 1234, TCP_ACK)    # server -> client
    set_ = flow_hash(pkt, 2)
    entry = FlowEntry(True, FlowState.ESTABLISHED, False, False, TCP, 0x0A000001, 0x0A000002, 1234, 80, 7)
    empty = FlowEntry()

    async def bench(ctx):
        tb = TB(dut, ctx)
        assert await tb.mgmt(MgmtOp.WRITE, set_, 3, entry) == entry
        assert [await tb.mgmt(MgmtOp.READ, set_, w) for w in range(4)] == [empty] * 4
        assert await tb.mgmt(MgmtOp.WRITE, set_, 2, entry) == entry
        assert await tb.mgmt(MgmtOp.READ, set_, 2) == entry
        got = await tb.packet(pkt, 10)
        assert got == FlowResult(True, True, False, Outcome.EXISTING, entry.state)
        assert await tb.mgmt(MgmtOp.CLEAR) == empty
        assert await tb.dump_raw() == [empty] * 12
        assert (await tb.packet(pkt, 11)).outcome == Outcome.NEW

    run(dut, bench)


# --- Cycles ---------------------------------------------------------------------------------


def test_cycles_per_request():
    """Back to back: a packet request every PACKET_CYCLES (8) cycles, the same with the management
    port reading all the time (the reads go in the packets' shadow); with writes all the time,
    packets and writes alternate."""
    assert PACKET_CYCLES == 8
    dut = FlowTable(sets=16, ways=4)
    taken = {"pkt": [], "mgmt": []}

    async def bench(ctx):
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.mgmt_resp.ready, 1)
        ctx.set(dut.req.payload, request(FlowPacket.of("10.0.0.1", "10.0.0.2", TCP, 1, 2, TCP_SYN)))
        ctx.set(dut.req.valid, 1)
        ctx.set(dut.mgmt_req.payload, {"op": MgmtOp.READ, "set": 3, "way": 1})
        for cycle in range(300):
            if cycle == 100:
                ctx.set(dut.mgmt_req.valid, 1)
            if cycle == 200:
                ctx.set(dut.mgmt_req.payload, {"op": MgmtOp.WRITE, "set": 3, "way": 1})
            _, _, pkt, mgmt = await ctx.tick().sample(dut.req.ready, dut.mgmt_req.ready)
            if pkt:
                taken["pkt"].append(cycle)
            if mgmt:
                taken["mgmt"].append(cycle)

    run(dut, bench)
    for lo, hi, gap in ((0, 100, PACKET_CYCLES), (110, 200, PACKET_CYCLES), (210, 300, PACKET_CYCLES + MGMT_CYCLES)):
        span = [t for t in taken["pkt"] if lo < t < hi]
        assert {b - a for a, b in zip(span, span[1:])} == {gap}, (lo, hi, span)
    reads = [t for t in taken["mgmt"] if 100 <= t < 200]
    assert {b - a for a, b in zip(reads, reads[1:])} <= {MGMT_READ_LATENCY + 1, MGMT_READ_LATENCY + 2}   # not in P7


def test_latency():
    """Response valid LATENCY (9) cycles after a packet request was taken, MGMT_READ_LATENCY (6)
    after a management read, 2 after a write."""
    dut = FlowTable(sets=16, ways=4)
    seen = []
    pkt = request(FlowPacket.of("10.0.0.1", "10.0.0.2", TCP, 1, 2, TCP_SYN))

    async def bench(ctx):
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.mgmt_resp.ready, 1)
        for kind, port, payload in (("pkt", dut.req, pkt), ("read", dut.mgmt_req, {"op": MgmtOp.READ, "set": 3}),
                                    ("write", dut.mgmt_req, {"op": MgmtOp.WRITE, "set": 3})):
            resp = dut.resp if kind == "pkt" else dut.mgmt_resp
            ctx.set(port.payload, payload)
            ctx.set(port.valid, 1)
            for cycle in range(30):
                _, _, ready, valid = await ctx.tick().sample(port.ready, resp.valid)
                if ready:
                    ctx.set(port.valid, 0)
                    taken = cycle
                if valid:
                    seen.append((kind, cycle - taken))
                    break

    run(dut, bench)
    assert seen == [("pkt", LATENCY), ("read", MGMT_READ_LATENCY), ("write", 2)]


@pytest.mark.parametrize("idle,stall", [(0, 0), (0.3, 0.6)])
def test_streamed_with_backpressure(idle, stall):
    """Requests back to back (or with gaps), responses taken with random stalls: the model's
    answers in order, and one event strobe per packet (the counters' increments)."""
    rng = random.Random(31)
    dut = FlowTable(sets=4, ways=2)
    model = ModelTable(sets=4, ways=2, timeouts=SHORT)
    pkts = list(traffic(rng, 300, flows=12))
    want = [expected(model, p, t) for p, t in pkts]
    got, events = [], {o: 0 for o in Outcome}

    async def source(ctx):
        src_rng = random.Random(32)
        for name in DEFAULT_TIMEOUTS:
            ctx.set(getattr(dut, name), getattr(SHORT, name))
        for pkt, now in pkts:
            while idle and src_rng.random() < idle:
                ctx.set(dut.req.valid, 0)
                await ctx.tick()
            ctx.set(dut.now, now)
            ctx.set(dut.req.payload, request(pkt))
            ctx.set(dut.req.valid, 1)
            await ctx.tick().until(dut.req.ready)
            ctx.set(dut.now, 0xDEAD)      # `now` matters only where a request is taken
        ctx.set(dut.req.valid, 0)

    async def sink(ctx):
        sink_rng = random.Random(33)
        strobes = [getattr(dut, f"event_{o.name.lower()}") for o in Outcome]
        for _ in range(40 * len(pkts)):
            if len(got) == len(pkts):
                return
            ready = not (stall and sink_rng.random() < stall)
            ctx.set(dut.resp.ready, ready)
            _, _, valid, payload, *ev = await ctx.tick().sample(dut.resp.valid, dut.resp.payload, *strobes)
            for o, e in zip(Outcome, ev):
                events[o] += e
            if valid and ready:
                got.append(result_of(payload))
        raise AssertionError(f"{len(got)} responses to {len(pkts)} requests")

    run(dut, sink, source)
    assert got == want
    assert {o.name.lower(): n for o, n in events.items() if n} == model.counts


# --- SYN flood ------------------------------------------------------------------------------


def syn_flood(sets, ways, flood, seed):
    """Fill half the table with established TCP flows, then ``flood`` random SYNs, each followed
    (one in four) by a packet of an established flow. Returns (results, established checks, dut
    dump, model) after asserting gateware == model packet by packet."""
    rng = random.Random(seed)
    dut = FlowTable(sets=sets, ways=ways)
    model = ModelTable(sets=sets, ways=ways)
    keep = [FlowPacket(TCP, 0x0A000000 | i, 0xC0A80001, 10000 + i, 443) for i in range(sets * ways // 2)]
    stats = {"checks": 0, "table_full": 0, "new": 0}
    admitted = []

    def rev(p, flags):
        return FlowPacket(TCP, p.dst, p.src, p.dport, p.sport, flags)

    async def bench(ctx):
        tb = TB(dut, ctx)
        now = 0

        async def both(pkt):
            want = expected(model, pkt, now)
            got = await tb.packet(pkt, now)
            assert got == want, pkt
            return got

        for p in keep:    # handshakes: a set that is full already keeps the flow out
            await both(FlowPacket(TCP, p.src, p.dst, p.sport, p.dport, TCP_SYN))
            await both(rev(p, TCP_SYN | TCP_ACK))
            await both(FlowPacket(TCP, p.src, p.dst, p.sport, p.dport, TCP_ACK))
        kept = [p for p in keep if (await both(FlowPacket(TCP, p.src, p.dst, p.sport, p.dport, TCP_ACK))).established]
        for i in range(flood):
            now += 1 if i % 64 == 0 else 0          # 100k SYNs take far less than the new timeout
            syn = FlowPacket(TCP, rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16), 80, TCP_SYN)
            r = await both(syn)
            stats[r.outcome.name.lower()] = stats.get(r.outcome.name.lower(), 0) + 1
            assert r.found == (r.outcome == Outcome.NEW) and not r.established
            if r.found:
                admitted.append(syn)
            if i % 4 == 0:
                p = kept[rng.randrange(len(kept))]
                r = await both(rev(p, TCP_ACK) if i % 8 else FlowPacket(TCP, p.src, p.dst, p.sport, p.dport, TCP_ACK))
                assert r.found and r.established and r.outcome == Outcome.EXISTING, p
                stats["checks"] += 1
        stats["kept"] = len(kept)
        stats["dump"] = await tb.dump_raw()
        stats["model_dump"] = [model.read(s, w) for s in range(sets) for w in range(ways)]
        stats["admitted"] = admitted

    run(dut, bench)
    return stats, model


def check_flood(stats, model, sets, ways, flood):
    assert stats["table_full"] > flood // 2, stats           # the flood met a full table...
    assert model.counts["table_full"] == stats["table_full"]
    assert stats["kept"] >= sets * ways // 4                 # ...and the established flows kept their entries
    live = [e for e in stats["dump"] if e.valid]
    assert len(live) == sets * ways                          # every slot taken, none silently
    assert stats["dump"] == stats["model_dump"]
    # Every flood packet answered `found` has its entry: no flow admitted without one.
    keys = {e.key() for e in live}
    for p in stats["admitted"]:
        lo, hi = sorted([(p.src, p.sport), (p.dst, p.dport)])
        assert (False, TCP, lo[0], hi[0], lo[1], hi[1]) in keys, p


def test_syn_flood_small():
    """A SYN flood of 300 random flows into a 32-flow table while established flows keep
    passing. The issue's 100,000-flow flood runs in Verilator (test_flow_table_cocotb.py):
    amaranth.sim takes about 30 ms a packet on this block."""
    stats, model = syn_flood(8, 4, 300, 5)
    check_flood(stats, model, 8, 4, 300)


# --- Parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,message", [
    ({"sets": 6}, "sets must be a power of two of at least 2, not 6"),
    ({"sets": 1}, "sets must be a power of two of at least 2, not 1"),
    ({"ways": 0}, "ways must be a positive integer, not 0"),
    ({"addr_bits": 64}, "addr_bits must be 32 or 128, not 64"),
    ({"time_bits": 0}, "time_bits must be a positive integer, not 0"),
])
def test_bad_parameters(kwargs, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)   # the half-built component
        with pytest.raises(ValueError, match=f"^{message}$"):
            FlowTable(**kwargs)
        gc.collect()


def _dp16kd(elaboratable) -> int:
    """DP16KD primitives in ``elaboratable`` elaborated for ECP5."""
    def walk(frag):
        return int(isinstance(frag, Instance) and frag.type == "DP16KD") + sum(walk(f) for f, *_ in frag.subfragments)
    return walk(Fragment.get(elaboratable, ECP5_TARGET))


@pytest.mark.parametrize("sets,ways,addr_bits,dp16kd", [
    (1024, 4, 128, 76),     # the default build: Yosys and nextpnr count 76 (docs/flow.md)
    (4096, 4, 32, 144),     # 16384 flows, IPv4 keys: 144 placed and routed
    (512, 2, 128, 20),      # the ULX3S's: 10 RAMs of 512 x 36 a way (Yosys: docs/security.md)
    (512, 4, 32, 16),
])
def test_block_rams_on_ecp5(sets, ways, addr_bits, dp16kd):
    """Block RAMs of a table, as the synthesis runs counted them: 1024 x 18 RAMs at 1024 sets,
    36-bit slices deeper, 512 x 36 (half the RAMs of 1024 x 18) at 512 sets and fewer."""
    assert _dp16kd(FlowTable(sets=sets, ways=ways, addr_bits=addr_bits)) == dp16kd


def test_repr_and_defaults():
    table = FlowTable()
    Fragment.get(table, None)    # the default size elaborates
    assert repr(table) == "FlowTable(sets=1024, ways=4, addr_bits=128, time_bits=32)"
    assert (table.set_bits, table.way_bits, table.entry_layout.size) == (10, 2, 334)
