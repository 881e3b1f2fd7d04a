"""Amaranth-level tests of the MAC learning table (hdl/switch/mac_table.py) against the golden
model's ``MacTable`` (host_driver/model/switch.py): request by request, the table dump, and each
port's count of held entries (the per-port learning limit and its scrubber)."""

import gc
import random
import warnings
import zlib

import pytest
from amaranth.hdl import Fragment, Module, Signal, UnusedElaboratable
from amaranth.sim import Simulator

from hdl.switch.mac_table import MGMT_CYCLES, PACKET_CYCLES, LearnOutcome, MacTable, set_index
from host_driver.model.switch import MacTable as ModelTable
from host_driver.model.switch import mac_hash

TIME_BITS = 32


def mac_bytes(mac: int) -> bytes:
    return mac.to_bytes(6, "big")


def port_name(port: int) -> str:
    return f"p{port}"


class TB:
    """Drives one :class:`MacTable` from an amaranth.sim testbench, one request at a time, and
    does what the host driver will do on top of the management port (static entries, dump)."""

    def __init__(self, dut: MacTable, ctx):
        self.dut, self.ctx = dut, ctx
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.mgmt_resp.ready, 1)

    async def packet(self, vlan, dst, src, in_port, learn, now, aging, settle=0):
        """(dst_hit, dst_port, outcome name) of one packet request; then ``settle`` idle cycles
        (the scrubber's read slots)."""
        ctx, dut = self.ctx, self.dut
        ctx.set(dut.now, now)
        ctx.set(dut.aging, aging)
        ctx.set(dut.req.payload, {"vlan": vlan, "dst": dst, "src": src, "in_port": in_port, "learn": learn})
        ctx.set(dut.req.valid, 1)
        await ctx.tick().until(dut.req.ready)
        ctx.set(dut.req.valid, 0)
        for _ in range(20):
            _, _, valid, payload = await ctx.tick().sample(dut.resp.valid, dut.resp.payload)
            if valid:
                answer = bool(payload.dst_hit), payload.dst_port, payload.outcome.name.lower()
                if settle:
                    await ctx.tick().repeat(settle)
                return answer
        raise AssertionError("no response to a packet request within 20 cycles")

    def held(self):
        """Each port's count of held dynamic entries."""
        return [self.ctx.get(self.dut.held[p]) for p in range(self.dut.ports)]

    async def mgmt(self, set_, way, entry=None, now=None, aging=None, settle=0):
        """The entry at (set, way); with ``entry``, write it there (the answer is ``entry``), at
        ``now`` with ``aging`` if given (a write gives back the count of what it replaces); then
        ``settle`` idle cycles."""
        ctx, dut = self.ctx, self.dut
        if now is not None:
            ctx.set(dut.now, now)
            ctx.set(dut.aging, aging)
        ctx.set(dut.mgmt_req.payload, {"write": entry is not None, "set": set_, "way": way,
                                       "entry": entry or {}})
        ctx.set(dut.mgmt_req.valid, 1)
        await ctx.tick().until(dut.mgmt_req.ready)
        ctx.set(dut.mgmt_req.valid, 0)
        for _ in range(20):
            _, _, valid, payload = await ctx.tick().sample(dut.mgmt_resp.valid, dut.mgmt_resp.payload)
            if valid:
                if settle:
                    await ctx.tick().repeat(settle)
                return {f: getattr(payload, f) for f in ("valid", "static", "vlan", "mac", "port", "stamp")}
        raise AssertionError("no response to a management request within 20 cycles")

    def live(self, e, now, aging):
        return e["valid"] and (e["static"] or (now - e["stamp"]) % (1 << TIME_BITS) < aging)

    async def read_set(self, set_):
        return [await self.mgmt(set_, w) for w in range(self.dut.ways)]

    async def add_static(self, vlan, mac, port, now, aging):
        """Lock (VLAN, MAC) to ``port`` as a driver would: over the key's live entry, else in the
        lowest free or expired way. Returns the way, or None when the set is full."""
        set_ = mac_hash(vlan, mac_bytes(mac), self.dut.set_bits)
        entries = await self.read_set(set_)
        same = [w for w, e in enumerate(entries)
                if self.live(e, now, aging) and (e["vlan"], e["mac"]) == (vlan, mac)]
        free = [w for w, e in enumerate(entries) if not self.live(e, now, aging)]
        way = (same or free or [None])[0]
        if way is not None:
            new = {"valid": 1, "static": 1, "vlan": vlan, "mac": mac, "port": port, "stamp": 0}
            assert await self.mgmt(set_, way, new, now, aging, settle=self.dut.sets + 8) == new, \
                "a write answers with the entry written"
        return way

    async def dump(self, now, aging):
        """(set, VLAN, MAC, port, static) of every live entry, by set and way."""
        out = []
        for s in range(self.dut.sets):
            for e in await self.read_set(s):
                if self.live(e, now, aging):
                    out.append((s, e["vlan"], e["mac"], e["port"], bool(e["static"])))
        return out


def model_packet(table: ModelTable, vlan, dst, src, in_port, learn, now):
    """What the gateware must answer, in SwitchModel.process's order: learn, then look up."""
    outcome = "none"
    if learn and not src >> 40 & 1:
        outcome = table.learn(vlan, mac_bytes(src), port_name(in_port), now)
    found = table.lookup(vlan, mac_bytes(dst), now)
    return found is not None, 0 if found is None else int(found[1:]), outcome


def model_dump(table: ModelTable, now, set_bits):
    return [(mac_hash(e.vlan, e.mac, set_bits), e.vlan, int.from_bytes(e.mac, "big"), int(e.port[1:]), e.static)
            for e in table.entries(now)]


def run(dut, bench, *extra):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for proc in extra:
        sim.add_testbench(proc, background=True)
    sim.add_testbench(bench)
    sim.run()


def mac_pool(rng, n):
    """``n`` unicast MACs and two group MACs (a multicast and the broadcast)."""
    pool = [rng.getrandbits(48) & ~(1 << 40) for _ in range(n)]
    return pool + [0x01005E000001, 0xFFFFFFFFFFFF]


# --- The hash ------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 3, 10, 32])
def test_set_index_is_mac_hash(bits):
    rng = random.Random(bits)
    vlan, mac = Signal(12), Signal(48)
    m = Module()
    out = Signal(bits)
    m.d.comb += out.eq(set_index(vlan, mac, bits))
    keys = [(0, 0), (4095, (1 << 48) - 1)] + [(rng.getrandbits(12), rng.getrandbits(48)) for _ in range(300)]

    async def bench(ctx):
        for v, a in keys:
            ctx.set(vlan, v)
            ctx.set(mac, a)
            assert ctx.get(out) == mac_hash(v, mac_bytes(a), bits), f"VLAN {v} MAC {a:012x}"

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    if bits == 32:   # the whole CRC, not only its low bits
        assert mac_hash(5, mac_bytes(7), 32) == zlib.crc32(bytes([0, 5, 0, 0, 0, 0, 0, 7]))


# --- Random request sequences against the model ---------------------------------------------


@pytest.mark.parametrize("sets,ways,seed,start,limits", [
    (4, 2, 1, 0, {}),
    (8, 4, 2, 1000, {1: 3, 2: 5, 5: 1}),
    (2, 3, 3, (1 << TIME_BITS) - 2000, {0: 2, 3: 2}),
])
def test_random_requests_match_model(sets, ways, seed, start, limits):
    """Small sets fill up; a small MAC pool moves between ports; statics and deletes through the
    management port; time steps past ``aging`` and through many scrubber epochs (8 time units
    each), with the aging made longer, then shorter, on the way; some ports have a learning
    limit. After every request each port's count of held
    entries equals the model's, and after every 100 the dump does. Time starts at 0 (younger
    than ``aging``) or wraps around 2**32 (the model's does not)."""
    rng = random.Random(seed)
    aging = 60
    dut = MacTable(sets=sets, ways=ways, port_bits=3, epoch_bits=3)
    model = ModelTable(sets=sets, ways=ways, aging=aging, epoch_bits=3,
                       port_limit={port_name(p): v for p, v in limits.items()})
    pool = mac_pool(rng, 4 * sets * ways // 3)
    vlans = [1, 7, 4094]
    home = {mac: rng.randrange(8) for mac in pool}
    seen = {o.name.lower(): 0 for o in LearnOutcome}
    dumps = []

    async def bench(ctx):
        tb = TB(dut, ctx)
        for p, v in limits.items():
            ctx.set(dut.limit[p], v)
        nonlocal aging
        now = start
        for i in range(1, 801):
            if i in (400, 600):     # the driver changes the aging: longer, then shorter
                aging = model.aging = {400: 100, 600: 40}[i]
            now += rng.choice([0, 0, 1, 2, 5, 11, 30])
            vlan = rng.choice(vlans)
            if rng.random() < 0.02:
                mac = rng.choice(pool[:-2])
                port = home[mac] if rng.random() < 0.7 else rng.randrange(8)
                way = await tb.add_static(vlan, mac, port, now % (1 << TIME_BITS), aging)
                try:
                    model.add_static(vlan, mac_bytes(mac), port_name(port), now)
                except ValueError:
                    assert way is None, "the model's set is full, the gateware's is not"
                else:
                    assert way is not None, "the gateware's set is full, the model's is not"
            elif rng.random() < 0.03:
                # The driver deletes an entry (live, aged out, static or empty).
                set_, way = rng.randrange(sets), rng.randrange(ways)
                await tb.mgmt(set_, way, dict.fromkeys(("valid", "static", "vlan", "mac", "port", "stamp"), 0),
                              now % (1 << TIME_BITS), aging, settle=sets + 8)
                model.write(set_, way, None, now)
            else:
                dst, src = rng.choice(pool), rng.choice(pool[:-1])
                if rng.random() < 0.05:
                    dst = src
                # Mostly a MAC's own port, sometimes another (a move).
                in_port = home[src] if rng.random() < 0.8 else rng.randrange(8)
                learn = int(rng.random() < 0.9)
                want = model_packet(model, vlan, dst, src, in_port, learn, now)
                got = await tb.packet(vlan, dst, src, in_port, learn, now % (1 << TIME_BITS), aging, settle=sets + 8)
                assert got == want, f"request {i}: VLAN {vlan} dst {dst:012x} src {src:012x} port {in_port} at {now}"
                seen[got[2]] += 1
            assert tb.held() == [model.held.get(port_name(p), 0) for p in range(8)], f"held counts after {i}"
            if i % 100 == 0:
                got_dump = await tb.dump(now % (1 << TIME_BITS), aging)
                assert got_dump == model_dump(model, now, dut.set_bits), f"dump after {i}"
                dumps.append(len(got_dump))
        assert not ctx.get(dut.scrub_overrun), "the scrubber finished every sweep within its epoch"

    run(dut, bench)
    # The sequence reached every outcome (the limit's only with limits), counts were released by
    # aging, and the table was not empty when dumped.
    assert all(n for o, n in seen.items() if o != "learn_limit" or limits), seen
    assert bool(seen["learn_limit"]) == bool(limits)
    assert model.counts.get("aged_out", 0) > 10
    assert max(dumps) > 0


def test_dump_way_order():
    """A new entry takes the lowest free or expired way, in the model as in the gateware."""
    dut = MacTable(sets=2, ways=2, port_bits=3)
    model = ModelTable(sets=2, ways=2, aging=10)
    rng = random.Random(5)
    # Three unicast MACs in the same set.
    macs = []
    while len(macs) < 3:
        mac = rng.getrandbits(48) & ~(1 << 40)
        if mac_hash(1, mac_bytes(mac), 1) == 0:
            macs.append(mac)
    a, b, c = macs

    async def bench(ctx):
        tb = TB(dut, ctx)
        for mac, now in ((a, 0), (b, 5), (c, 12)):     # a expires at 10, c takes its way
            want = model_packet(model, 1, mac, mac, 2, 1, now)
            assert await tb.packet(1, mac, mac, 2, 1, now, 10) == want == (True, 2, "learned")
        assert [e["mac"] for e in await tb.read_set(0)] == [c, b]
        assert [int.from_bytes(e.mac, "big") for e in model.entries(12)] == [c, b]

    run(dut, bench)


def test_port_flood_is_held_to_its_limit():
    """A MAC flood from one port (random sources, as scenario 2 of docs/switch.md) learns only
    its limit; another port without one keeps learning; a static entry does not count. Once the
    flood's entries age out and the scrubber releases them, the port learns again."""
    limit, aging = 6, 40
    dut = MacTable(sets=64, ways=4, port_bits=3, epoch_bits=2)
    model = ModelTable(sets=64, ways=4, aging=aging, epoch_bits=2, port_limit={"p1": limit})
    rng = random.Random(31)
    flood = [rng.getrandbits(48) & ~(1 << 40) for _ in range(60)]
    others = [rng.getrandbits(48) & ~(1 << 40) for _ in range(12)]
    locked = 0x0200000000AA

    async def bench(ctx):
        tb = TB(dut, ctx)
        ctx.set(dut.limit[1], limit)
        assert await tb.add_static(1, locked, 1, 0, aging) is not None
        model.add_static(1, mac_bytes(locked), "p1", 0)
        outcomes = {"p1": [], "p2": []}
        for k in range(60):
            for port, macs in ((1, flood), (2, others)):
                if port == 2 and k >= len(others):
                    continue
                src = macs[k]
                want = model_packet(model, 1, 0xFFFFFFFFFFFF, src, port, 1, k // 4)
                got = await tb.packet(1, 0xFFFFFFFFFFFF, src, port, 1, k // 4, aging, settle=64)
                assert got == want
                outcomes[port_name(port)].append(got[2])
        assert outcomes["p1"].count("learned") == limit and outcomes["p1"].count("learn_limit") == 60 - limit
        assert outcomes["p2"] == ["learned"] * len(others)
        assert tb.held()[1:3] == [limit, len(others)]
        # The flood's entries age out at 40 + (their stamps 0..1); their release follows within
        # two epochs (8 time units): before, the port still holds its limit; after, it learns.
        late = rng.getrandbits(48) & ~(1 << 40)
        assert await tb.packet(1, 0xFFFFFFFFFFFF, late, 1, 1, 44, aging, settle=64) == (False, 0, "learn_limit")
        model_packet(model, 1, 0xFFFFFFFFFFFF, late, 1, 1, 44)
        assert await tb.packet(1, 0xFFFFFFFFFFFF, late, 1, 1, 60, aging, settle=64) == (False, 0, "learned")
        assert model_packet(model, 1, 0xFFFFFFFFFFFF, late, 1, 1, 60) == (False, 0, "learned")
        assert tb.held()[1] == model.held["p1"] == 1

    run(dut, bench)


def test_liveness_window():
    """A dynamic entry is live while ``(now - stamp) mod 2**32 < aging`` (the model's
    ``now - last_seen < aging`` on a clock that wraps): edges, stamps ahead of ``now``, aging
    longer than ``now``, aging 0. Entries written through the management port, looked up."""
    rng = random.Random(21)
    top = 1 << TIME_BITS
    cases = []
    for now, aging in ((1000, 60), (30, 60), (top - 5, 60), (7, 0), (0x12345678, 0x10000), (5, top - 1)):
        for delta in (0, 1, aging - 1, aging, aging + 1, -1, -2, -3, top // 2, rng.getrandbits(32)):
            cases.append((now, aging, (now - delta) % top))
    dut = MacTable(sets=2, ways=1, port_bits=3)
    mac = 0x020000000001
    set_ = mac_hash(1, mac_bytes(mac), 1)

    async def bench(ctx):
        tb = TB(dut, ctx)
        for now, aging, stamp in cases:
            entry = {"valid": 1, "static": 0, "vlan": 1, "mac": mac, "port": 5, "stamp": stamp}
            await tb.mgmt(set_, 0, entry)
            want = (now - stamp) % top < aging
            got = await tb.packet(1, mac, 0x020000000002, 0, 0, now, aging)
            assert got == ((True, 5, "none") if want else (False, 0, "none")), (now, aging, stamp)

    run(dut, bench)


def test_management_way_out_of_range():
    """With 3 ways, way 3 reads as empty and a write to it changes nothing."""
    dut = MacTable(sets=2, ways=3, port_bits=3)
    entry = {"valid": 1, "static": 1, "vlan": 9, "mac": 0x0A0000000001, "port": 6, "stamp": 0}
    empty = dict.fromkeys(entry, 0)

    async def bench(ctx):
        tb = TB(dut, ctx)
        assert await tb.mgmt(1, 3, entry) == entry
        assert await tb.read_set(1) == [empty] * 3
        assert await tb.mgmt(1, 3) == empty
        assert await tb.mgmt(1, 2, entry) == entry
        assert await tb.read_set(1) == [empty, empty, entry]
        assert await tb.mgmt(1, 3) == empty

    run(dut, bench)


# --- Concurrency, backpressure and cycles ----------------------------------------------------


def stream(dut: MacTable, reqs: list, aging: int, idle: float = 0, stall: float = 0) -> list:
    """Feed ``reqs`` ((vlan, dst, src, in_port, learn, now)) as fast as ``dut`` takes them (with
    ``idle``: random gaps), responses taken with random ``stall``s; the answers in order."""
    got = []

    async def source(ctx):
        src_rng = random.Random(12)
        ctx.set(dut.aging, aging)
        for vlan, dst, src, port, learn, t in reqs:
            while idle and src_rng.random() < idle:
                ctx.set(dut.req.valid, 0)
                await ctx.tick()
            ctx.set(dut.now, t)
            ctx.set(dut.req.payload, {"vlan": vlan, "dst": dst, "src": src, "in_port": port, "learn": learn})
            ctx.set(dut.req.valid, 1)
            await ctx.tick().until(dut.req.ready)
            ctx.set(dut.now, 0xDEAD)        # `now` matters only where a request is taken
        ctx.set(dut.req.valid, 0)

    async def sink(ctx):
        sink_rng = random.Random(13)
        for _ in range(40 * len(reqs)):
            if len(got) == len(reqs):
                return
            ready = not (stall and sink_rng.random() < stall)
            ctx.set(dut.resp.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.resp.valid, dut.resp.payload)
            if valid and ready:
                got.append((bool(payload.dst_hit), payload.dst_port, payload.outcome.name.lower()))
        raise AssertionError(f"{len(got)} responses to {len(reqs)} requests")

    run(dut, sink, source)
    return got


@pytest.mark.parametrize("idle,stall", [(0, 0), (0.3, 0.5)])
def test_streamed_requests_with_backpressure(idle, stall):
    """Requests back to back (or with gaps), responses taken with random stalls: the same
    answers as the model, in order."""
    rng = random.Random(11)
    aging = 40
    dut = MacTable(sets=4, ways=2, port_bits=3)
    model = ModelTable(sets=4, ways=2, aging=aging)
    pool = mac_pool(rng, 10)
    reqs, now = [], 0
    for _ in range(300):
        now += rng.choice([0, 1, 3, 9])
        reqs.append((rng.choice([1, 2]), rng.choice(pool), rng.choice(pool), rng.randrange(8),
                     int(rng.random() < 0.9), now))
    want = [model_packet(model, *r) for r in reqs]
    assert stream(dut, reqs, aging, idle, stall) == want


def test_back_to_back_requests_see_the_learn_before():
    """Requests back to back, each built on the one or two before it: its destination is the
    source just learned (a frame answering the one before), its source the same MAC on another
    port (a move right after the learn), or another MAC of the same set (the way the learn
    before took is no longer free). A table that overlaps requests must forward each learn to
    the requests behind it, in the model's order, to answer as the model does."""
    rng = random.Random(21)
    aging = 1000
    sets, ways = 4, 2
    dut = MacTable(sets=sets, ways=ways, port_bits=3)
    model = ModelTable(sets=sets, ways=ways, aging=aging)
    pool = [rng.getrandbits(48) & ~(1 << 40) for _ in range(24)]
    by_set = {}
    for mac in pool:
        by_set.setdefault(mac_hash(1, mac_bytes(mac), dut.set_bits), []).append(mac)
    reqs, now = [], 0
    for k in range(400):
        now += rng.choice([0, 0, 1, 2])
        port = rng.randrange(8)
        kind = rng.random()
        if k < 2 or kind < 0.1:
            src, dst = rng.choice(pool), rng.choice(pool)
        else:
            back = reqs[-rng.choice([1, 1, 2])]
            if kind < 0.4:                      # answer: to the source just learned
                src, dst = rng.choice(pool), back[2]
            elif kind < 0.6:                    # the same source again, maybe on another port
                src, dst = back[2], rng.choice(pool)
            else:                               # another MAC of the same set
                src = rng.choice(by_set[mac_hash(1, mac_bytes(back[2]), dut.set_bits)])
                dst = rng.choice([back[2], src, rng.choice(pool)])
        reqs.append((1, dst, src, port, 1, now))
    want = [model_packet(model, *r) for r in reqs]
    # Coverage: lookups of the entry the request just before learned, moves right after a
    # learn or move, and full sets.
    after = [(reqs[k - 1], want[k - 1], reqs[k], want[k]) for k in range(1, len(reqs))]
    assert sum(1 for a, wa, b, wb in after if wa[2] in ("learned", "moved") and b[1] == a[2] and wb[0]) > 25
    assert sum(1 for a, wa, b, wb in after if wa[2] in ("learned", "moved") and wb[2] == "moved"
               and b[2] == a[2]) > 10
    assert sum(1 for w in want if w[2] == "table_full") > 20
    assert stream(dut, reqs, aging) == want


def test_cycles_per_request():
    """Back to back: a packet request every PACKET_CYCLES cycles. With the management port busy
    all the time as well, requests alternate and packets still go through every 8 cycles."""
    assert PACKET_CYCLES + MGMT_CYCLES == 8
    dut = MacTable(sets=16, ways=4, port_bits=3)
    taken = {"pkt": [], "mgmt": []}

    async def bench(ctx):
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.mgmt_resp.ready, 1)
        ctx.set(dut.aging, 100)
        ctx.set(dut.req.payload, {"vlan": 1, "dst": 2, "src": 4, "in_port": 1, "learn": 1})
        ctx.set(dut.req.valid, 1)
        for cycle in range(200):
            if cycle == 100:
                ctx.set(dut.mgmt_req.valid, 1)
            _, _, pkt, mgmt = await ctx.tick().sample(dut.req.ready, dut.mgmt_req.ready)
            if pkt:
                taken["pkt"].append(cycle)
            if mgmt:
                taken["mgmt"].append(cycle)

    run(dut, bench)
    alone = [t for t in taken["pkt"] if t < 100]
    shared = [t for t in taken["pkt"] if t > 110]
    assert {b - a for a, b in zip(alone, alone[1:])} == {PACKET_CYCLES}
    assert {b - a for a, b in zip(shared, shared[1:])} == {PACKET_CYCLES + MGMT_CYCLES}
    assert len(taken["mgmt"]) >= 10


def test_latency():
    """Response valid 8 cycles after a packet request was taken, 4 after a management read, 7
    after a write (the figures of the MacTable docstring)."""
    dut = MacTable(sets=16, ways=4, port_bits=3)
    seen = []

    async def bench(ctx):
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.mgmt_resp.ready, 1)
        for kind, port, payload in (("pkt", dut.req, {"vlan": 1, "dst": 2, "src": 4, "in_port": 1, "learn": 1}),
                                    ("read", dut.mgmt_req, {"write": 0, "set": 3, "way": 1}),
                                    ("write", dut.mgmt_req, {"write": 1, "set": 3, "way": 1, "entry": {"valid": 1}})):
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
    assert seen == [("pkt", 8), ("read", 4), ("write", PACKET_CYCLES + 1)]


# --- Parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,message", [
    ({"sets": 6}, "sets must be a power of two of at least 2, not 6"),
    ({"sets": 1}, "sets must be a power of two of at least 2, not 1"),
    ({"ways": 0}, "ways must be a positive integer, not 0"),
    ({"port_bits": 0}, "port_bits must be a positive integer, not 0"),
    ({"time_bits": 0}, "time_bits must be a positive integer, not 0"),
])
def test_bad_parameters(kwargs, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)   # the half-built component
        with pytest.raises(ValueError, match=f"^{message}$"):
            MacTable(**kwargs)
        gc.collect()


def test_repr_and_defaults():
    table = MacTable()
    Fragment.get(table, None)    # the default size elaborates
    assert repr(table) == "MacTable(sets=1024, ways=4, port_bits=3, time_bits=32, ports=8, epoch_bits=4)"
    assert (table.set_bits, table.way_bits) == (10, 2)


def test_scrub_overrun_is_sticky():
    """Epochs shorter than a sweep (64 sets, a new epoch every 8 cycles): ``scrub_overrun`` rises
    and stays (SWITCH TABLE_STATUS bit 0); with epochs long enough it never does (above)."""
    dut = MacTable(sets=64, ways=2, port_bits=3, epoch_bits=0)

    async def bench(ctx):
        TB(dut, ctx)
        ctx.set(dut.aging, 4)
        for now in range(1, 40):
            ctx.set(dut.now, now)
            await ctx.tick().repeat(8)
        assert ctx.get(dut.scrub_overrun), "a sweep of 64 sets cannot finish in 8 cycles"
        for now in range(40, 44):          # long epochs again: the flag stays
            ctx.set(dut.now, now)
            await ctx.tick().repeat(400)
        assert ctx.get(dut.scrub_overrun)

    run(dut, bench)
