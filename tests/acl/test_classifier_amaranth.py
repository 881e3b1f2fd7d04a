"""Amaranth-level tests of the ACL classifier (hdl/acl/classifier.py) against the golden model
(host_driver/model/acl.py): random entry sets and random keys, key by key; the key rate; the hit
counters; and atomic replacement of the table while keys stream."""

import gc
import ipaddress
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hdl.acl.classifier import AclClassifier
from hdl.acl.layouts import AclAction, key_fields
from host_driver.model.acl import AclModel, classify, entry_matches
from host_driver.rules.compile import ACTION_ORDER, ClassifierEntry, Range
from host_driver.rules.program import AclTable

FIELDS = key_fields()
CAPACITY = 72          # two columns of 36: both halves of the RAM layout are exercised
ACTIONS = list(ACTION_ORDER)
V4_POOL = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "192.168.0.0/16", "0.0.0.0/0"]
V6_POOL = ["2001:db8::/32", "2001:db8:1::/48", "::/0", "2001:db8::1/128"]


def random_range(rng, width, small):
    """A range that expands to few prefixes (the table is small)."""
    lo = rng.randrange(1 << width)
    if rng.random() < 0.5:
        return Range(lo, lo)
    size = 1 << rng.randrange(small)
    lo &= ~(size - 1)
    return Range(lo, min(lo + size - 1, (1 << width) - 1))


def random_entry(rng, sid):
    """A random ClassifierEntry, fields "any" half the time."""
    v6 = rng.random() < 0.25
    pool = V6_POOL if v6 else V4_POOL
    e = dict(action=rng.choice(ACTIONS), sid=sid, gid=1, rev=1, priority=rng.randint(1, 3),
             ethertype=0x86DD if v6 else 0x0800, src=ipaddress.ip_network(rng.choice(pool)),
             dst=ipaddress.ip_network(rng.choice(pool)))
    maybe = lambda: rng.random() < 0.35  # noqa: E731
    if maybe():
        e["ip_proto"] = rng.choice([Range(6, 6), Range(17, 17), Range(1, 1), Range(0, 255)])
    if maybe():
        e["sport"] = random_range(rng, 16, 4)
    if maybe():
        e["dport"] = random_range(rng, 16, 4)
    if maybe():
        mask = rng.randrange(1, 256)
        e["tcp_flags"] = (rng.randrange(256) & mask, mask)
    if maybe():
        e["icmp_type"] = random_range(rng, 8, 2)
    if maybe():
        e["icmp_code"] = Range(0, 0)
    if maybe():
        e["ttl"] = random_range(rng, 8, 3)
    for name in ("flow_established", "flow_to_server", "fragment"):
        if maybe():
            e[name] = rng.random() < 0.5
    if rng.random() < 0.15:
        e["in_port"] = rng.randrange(4)
    if rng.random() < 0.15:
        e["vlan"] = rng.choice([1, 100])
    return ClassifierEntry(**e)


def random_table(rng, budget, first_sid=1):
    """Entries in classifier order, several per rule, whose ternary expansion fits ``budget``."""
    out, used, sid = [], 0, first_sid
    while True:
        rule = [random_entry(rng, sid) for _ in range(rng.choice([1, 1, 2]))]
        # One rule: one action and priority for all its entries.
        rule = [ClassifierEntry(**{**e.__dict__, "action": rule[0].action, "priority": rule[0].priority})
                for e in rule]
        cost = sum(e.ternary_count() for e in rule)
        if used + cost > budget:
            break
        out += rule
        used += cost
        sid += 1
    out.sort(key=lambda e: (ACTION_ORDER[e.action], e.priority, e.sid))
    return out


def key_inside(rng, e):
    """A key that ``e`` matches (a neighbour of its values)."""
    k = random_key(rng)
    k["ethertype"] = e.ethertype
    for name, net in (("ip_src", e.src), ("ip_dst", e.dst)):
        host = rng.randrange(net.num_addresses)
        k[name] = int(net.network_address) + host
    for name in ("ip_proto", "sport", "dport", "icmp_type", "icmp_code", "ttl"):
        r = getattr(e, name)
        if r is not None:
            k[name] = rng.randint(r.lo, r.hi)
    if e.tcp_flags is not None:
        v, m = e.tcp_flags
        k["tcp_flags"] = (k["tcp_flags"] & ~m | v) & 0xFF
    for name in ("flow_established", "flow_to_server", "fragment"):
        if getattr(e, name) is not None:
            k[name] = int(getattr(e, name))
    if e.in_port is not None:
        k["in_port"] = e.in_port
    if e.vlan is not None:
        k["vlan_tagged"], k["vlan_vid"] = 1, e.vlan
    # Nudge one field now and then, to land just outside.
    if rng.random() < 0.2:
        name = rng.choice(["sport", "dport", "ttl", "ip_proto", "icmp_type"])
        k[name] = (k[name] + rng.choice([-1, 1])) % (1 << FIELDS[name][1])
    return k


def random_key(rng):
    k = {name: rng.randrange(1 << width) for name, (_, width) in FIELDS.items()}
    k["ethertype"] = rng.choice([0x0800, 0x86DD, 0x0806])
    if k["ethertype"] == 0x0800:
        k["ip_src"] &= 0xFFFFFFFF
        k["ip_dst"] &= 0xFFFFFFFF
    return k


def make_keys(rng, entries, n):
    return [key_inside(rng, rng.choice(entries)) if entries and rng.random() < 0.8 else random_key(rng)
            for _ in range(n)]


class Expect:
    """What the gateware must answer for one table: model verdict mapped onto hardware indices."""

    def __init__(self, entries, table: AclTable):
        self.entries = entries
        self.placement = {table.live_base + i: t.source for i, t in enumerate(table.live)}
        self.slots = dict(table.slots)

    def check(self, key, res):
        v = classify(self.entries, key)
        got = (bool(res["hit"]), res["hit"] and self.placement.get(res["index"]),
               res["action"] if res["hit"] else None, res["slot"] if res["hit"] else None,
               bool(res["multi"]))
        matching = sum(entry_matches(e, key) for e in self.entries)
        want = (v.action is not None, v.action is not None and v.entry,
                AclAction[v.action.upper()] if v.action else None,
                self.slots[v.rule] if v.rule else None, matching > 1)
        if v.action is None and matching:
            # Only punt / mirror entries matched (they sort after every deciding one and decide
            # nothing in the verdict): the classifier still reports the first of them as its hit.
            i = next(i for i, e in enumerate(self.entries) if entry_matches(e, key))
            e = self.entries[i]
            want = (True, i, AclAction[e.action.upper()], self.slots[(e.gid, e.sid)], matching > 1)
        return got == want, got, want


async def apply_ops(ctx, dut, ops):
    """Drive the management ports as the driver will (one operation per cycle or so)."""
    for op in ops:
        if op.kind == "row":
            ctx.set(dut.row_addr, op.addr)
            ctx.set(dut.row_data, op.data)
            ctx.set(dut.row_we, 1)
            await ctx.tick()
            ctx.set(dut.row_we, 0)
        elif op.kind == "action":
            ctx.set(dut.act_index, op.addr)
            ctx.set(dut.act_data.as_value(), op.data)
            ctx.set(dut.act_we, 1)
            await ctx.tick()
            ctx.set(dut.act_we, 0)
        elif op.kind == "clear_counter":
            await read_counter(ctx, dut, op.addr, clear=True)
        elif op.kind == "commit":
            ctx.set(dut.commit, 1)
            await ctx.tick()
            ctx.set(dut.commit, 0)
        elif op.kind == "wait_commit":
            while ctx.get(dut.commit_busy):
                await ctx.tick()
        else:
            raise AssertionError(op.kind)


async def read_counter(ctx, dut, slot, clear=False):
    ctx.set(dut.cnt_slot, slot)
    ctx.set(dut.cnt_clear, clear)
    ctx.set(dut.cnt_en, 1)
    await ctx.tick().until(dut.cnt_ack)
    ctx.set(dut.cnt_en, 0)
    ctx.set(dut.cnt_clear, 0)
    for _ in range(4):
        _, _, valid, data = await ctx.tick().sample(dut.cnt_valid, dut.cnt_data)
        if valid:
            return data
    raise AssertionError("no counter data within 4 cycles")


def run(dut, testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


class Stream:
    """Keys in back to back (valid held high) and results out, with the generation each key got."""

    def __init__(self, dut):
        self.dut = dut
        self.keys = []
        self.taken = []       # (generation, cycle) of each key taken
        self.results = []     # (payload dict, cycle)
        self.done = False
        self.cycle = 0

    async def send(self, ctx, keys):
        dut = self.dut
        for key in keys:
            ctx.set(dut.s_key.payload, key)
            ctx.set(dut.s_key.valid, 1)
            await ctx.tick().until(dut.s_key.ready)
            self.keys.append(key)
        ctx.set(dut.s_key.valid, 0)

    async def collect(self, ctx):
        """Samples every clock edge: keys taken (with the generation) and results, by cycle."""
        dut = self.dut
        async for _, _, taken, gen, valid, payload in ctx.tick().sample(
                dut.s_key.valid & dut.s_key.ready, dut.generation, dut.m_result.valid, dut.m_result.payload):
            self.cycle += 1
            if taken:
                self.taken.append((gen, self.cycle))
            if valid:
                self.results.append(({"hit": payload.hit, "multi": payload.multi, "index": payload.index,
                                      "action": payload.action, "slot": payload.slot}, self.cycle))
            if self.done and len(self.results) == len(self.keys):
                return

    @property
    def sent(self):
        """(key, generation it was searched with, cycle it was taken)."""
        return [(k, g, c) for k, (g, c) in zip(self.keys, self.taken)]


@pytest.mark.parametrize("seed", [1, 2])
def test_random_tables_equal_model_key_by_key(seed):
    """Random table, random keys streamed back to back: every result equals the model's; keys go in
    at one per ``cycles_per_key``; results come ``latency`` cycles later; counters equal the model's."""
    rng = random.Random(seed)
    dut = AclClassifier(CAPACITY, 8)
    entries = random_table(rng, CAPACITY // 2)
    table = AclTable(dut.geometry)
    ops = table.replace(entries)
    expect = Expect(entries, table)
    keys = make_keys(rng, entries, 150)
    stream = Stream(dut)
    counts = {}

    async def main(ctx):
        await apply_ops(ctx, dut, ops)
        start = len(stream.results)
        await stream.send(ctx, keys)
        stream.done = True
        while len(stream.results) < start + len(keys):
            await ctx.tick()
        for rule, slot in table.slots.items():
            counts[rule] = await read_counter(ctx, dut, slot)

    async def collect(ctx):
        await stream.collect(ctx)

    run(dut, [main, collect])
    assert len(stream.results) == len(keys)
    bad = []
    for (key, _, _), (res, _) in zip(stream.sent, stream.results):
        ok, got, want = expect.check(key, res)
        if not ok:
            bad.append((key, got, want))
    assert not bad, f"{len(bad)} of {len(keys)} keys differ; first: {bad[0]}"
    hits = sum(r["hit"] for r, _ in stream.results)
    assert 0.3 * len(keys) < hits < len(keys), f"{hits} hits of {len(keys)}: the keys do not exercise the table"
    gaps = {b[2] - a[2] for a, b in zip(stream.sent, stream.sent[1:])}
    assert gaps == {dut.cycles_per_key}, f"keys accepted {gaps} cycles apart, not every {dut.cycles_per_key}"
    lat = {t_out - t_in for (_, _, t_in), (_, t_out) in zip(stream.sent, stream.results)}
    assert lat == {dut.latency}, f"latency {lat}, documented {dut.latency}"
    model = AclModel(entries)
    for key, _, _ in stream.sent:
        model.classify(key)
    assert counts == {rule: model.hits.get(rule, 0) for rule in table.slots}


def test_atomic_replacement_while_keys_stream():
    """Tables replaced five times while keys stream back to back: every result is the whole old
    table's answer or the whole new table's, as the generation the key was taken with says."""
    rng = random.Random(7)
    dut = AclClassifier(CAPACITY, 8)
    # Each table ends in a catch-all IPv4 rule of its own, so every IPv4 key has a different answer
    # in consecutive tables (index, slot): a key searched with a mix of both is always seen.
    catch_all = [ClassifierEntry(action="alert", sid=100 * (i + 1) + 99, gid=1, rev=1, priority=4, ethertype=0x0800,
                                 src=ipaddress.ip_network("0.0.0.0/0"), dst=ipaddress.ip_network("0.0.0.0/0"))
                 for i in range(6)]
    # (In classifier order: the catch-all is the last alert, before any punt / mirror entry.)
    tables = [sorted(random_table(rng, CAPACITY // 2 - 1, first_sid=100 * (i + 1)) + [catch_all[i]],
                     key=lambda e: (ACTION_ORDER[e.action], e.priority, e.sid)) for i in range(6)]
    table = AclTable(dut.geometry)
    first_ops = table.replace(tables[0])
    first_expect = Expect(tables[0], table)
    plans = []
    for entries in tables[1:]:
        ops = table.replace(entries)
        plans.append((ops, table.generation, Expect(entries, table)))
    all_keys = make_keys(rng, [e for t in tables for e in t], 1800)
    stream = Stream(dut)
    epochs = []   # (first cycle the new generation was live, generation, Expect)

    async def manage(ctx):
        for ops, gen, exp in plans:
            await apply_ops(ctx, dut, ops)
            epochs.append((gen, exp))
            for _ in range(rng.randrange(50, 200)):
                await ctx.tick()

    async def main(ctx):
        await apply_ops(ctx, dut, first_ops)
        ctx_tasks_started.append(True)
        await stream.send(ctx, all_keys)
        stream.done = True

    ctx_tasks_started = []

    async def delayed_manage(ctx):
        while not ctx_tasks_started:
            await ctx.tick()
        await manage(ctx)

    async def collect(ctx):
        await stream.collect(ctx)

    run(dut, [main, delayed_manage, collect])
    assert len(epochs) == 5 and len(stream.results) == len(all_keys)
    # Generation g alternates: walk the keys in order and move to the next table at each flip.
    sequence = [first_expect] + [exp for _, exp in epochs]
    at, flips, bad = 0, 0, []
    prev_gen = stream.sent[0][1]
    for (key, gen, _), (res, _) in zip(stream.sent, stream.results):
        if gen != prev_gen:
            at, prev_gen, flips = at + 1, gen, flips + 1
        ok, got, want = sequence[at].check(key, res)
        if not ok:
            bad.append((at, key, got, want))
    assert flips == 5, f"{flips} generation flips seen while keys streamed, expected 5"
    assert not bad, f"{len(bad)} keys answered from neither whole table; first: {bad[0]}"


def test_key_from_meta_equals_model_key():
    """``acl_key_from_meta`` (gateware) builds the key the model's ``acl_key`` builds from the same
    parsed frames (scapy packets through the model's parser)."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether

    from hdl.acl.classifier import acl_key_from_meta
    from hdl.acl.layouts import AclKey
    from hdl.packet.meta import PacketMeta
    from host_driver.model.acl import acl_key
    from host_driver.model.nic import parse_frame

    class Wrap(wiring.Component):
        meta: In(PacketMeta)
        in_port: In(3)
        est: In(1)
        to_server: In(1)
        key: Out(AclKey)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.key.eq(acl_key_from_meta(self.meta, self.in_port, self.est, self.to_server))
            return m

    rng = random.Random(3)
    frames = []
    for _ in range(40):
        if rng.random() < 0.3:
            l3 = IPv6(src="2001:db8::1", dst=f"2001:db8::{rng.randrange(1, 999):x}", hlim=rng.randrange(256))
        else:
            l3 = IP(src=f"10.0.0.{rng.randrange(256)}", dst="192.168.1.1", ttl=rng.randrange(256),
                    flags=rng.choice([0, 1]))
        l4 = rng.choice([TCP(sport=rng.randrange(65536), dport=80, flags=rng.randrange(512)),
                         UDP(sport=53, dport=rng.randrange(65536)),
                         ICMP(type=rng.randrange(20), code=rng.randrange(4))])
        eth = Ether() / Dot1Q(vlan=rng.randrange(4096)) if rng.random() < 0.3 else Ether()
        frames.append((bytes(eth / l3 / l4), rng.randrange(8), rng.randrange(2), rng.randrange(2)))
    dut = Wrap()
    got = []

    async def tb(ctx):
        for frame, port, est, ts in frames:
            meta = parse_frame(frame, physical=False, header_window=128, max_frame=16383)
            ctx.set(dut.meta, meta)
            ctx.set(dut.in_port, port)
            ctx.set(dut.est, est)
            ctx.set(dut.to_server, ts)
            key = ctx.get(dut.key)
            got.append(({name: getattr(key, name) for name in FIELDS}, acl_key(meta, port, est, ts)))

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    assert len(got) == len(frames)
    for hw, model in got:
        assert hw == model


def test_counter_read_and_clear_while_hits_stream():
    """Counters read and cleared at random moments while keys stream at line rate: per rule, the
    values read add up to the model's hit count (no hit lost or counted twice by a racing clear)."""
    rng = random.Random(11)
    dut = AclClassifier(CAPACITY, 8)
    entries = random_table(rng, CAPACITY // 2)
    table = AclTable(dut.geometry)
    ops = table.replace(entries)
    keys = make_keys(rng, entries, 300)
    stream = Stream(dut)
    totals = dict.fromkeys(table.slots, 0)
    started = []
    clears = []

    async def main(ctx):
        await apply_ops(ctx, dut, ops)
        started.append(True)
        await stream.send(ctx, keys)
        stream.done = True

    async def manage(ctx):
        while not started:
            await ctx.tick()
        rules = list(table.slots)
        while not stream.done:
            rule = rng.choice(rules)
            totals[rule] += await read_counter(ctx, dut, table.slots[rule], clear=True)
            clears.append(rule)
            for _ in range(rng.randrange(0, 12)):
                await ctx.tick()
        for _ in range(dut.latency + 8):
            await ctx.tick()
        for rule, slot in table.slots.items():
            totals[rule] += await read_counter(ctx, dut, slot, clear=True)

    async def collect(ctx):
        await stream.collect(ctx)

    run(dut, [main, manage, collect])
    model = AclModel(entries)
    for key in keys:
        model.classify(key)
    assert len(clears) > 100, f"only {len(clears)} clears raced the keys"
    assert totals == {rule: model.hits.get(rule, 0) for rule in table.slots}


def test_parameters_are_checked():
    from hdl.acl.layouts import TcamGeometry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)   # the half-built component
        with pytest.raises(ValueError, match=r"^cycles_per_key must be at least 8 with the hit counter bank, not 4$"):
            AclClassifier(256, 4)
        assert repr(AclClassifier(256, 8)) == "AclClassifier(entries=256, cycles_per_key=8)"
        gc.collect()
    with pytest.raises(ValueError, match=r"^cycles_per_key must be a power of two in 2\.\.64, not 6$"):
        TcamGeometry(256, 6)
    with pytest.raises(ValueError, match=r"^entries must be an integer in 1\.\.4096, not 5000$"):
        TcamGeometry(5000, 8)
    # The geometry the docs quote: 8 groups x 8 columns at 256 entries, 8 x 29 at 1024, 5 x 29 at R=16.
    geometries = (TcamGeometry(256, 8), TcamGeometry(1024, 8), TcamGeometry(1024, 16))
    assert [(g.groups, g.columns, g.chunk_bits) for g in geometries] == [(8, 8, 6), (8, 29, 6), (5, 29, 5)]
