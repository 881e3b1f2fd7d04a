"""Amaranth-level tests of the data-path blocks around the parser: slice, arbiter, buffer, forwarder."""

import random

import pytest
from amaranth.sim import Simulator

from hdl.arbiter import PacketArbiter
from hdl.buffer import PacketBuffer
from hdl.config import NicConfig
from hdl.forward import Forwarder
from hdl.meta import DropReason, MalformedReason, Verdict
from hdl.skid import RegisterSlice


def frame_beats(frame: bytes, bpb: int):
    """Split a frame into (tdata, tkeep, tlast) beats, first byte in the low bits."""
    beats = []
    for off in range(0, max(len(frame), 1), bpb):
        chunk = frame[off:off + bpb]
        beats.append((int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1, off + bpb >= len(frame)))
    return beats


async def send_frames(ctx, port, frames, bpb, rng, idle=0.0, user=lambda i: 0):
    for n, frame in enumerate(frames):
        for data, keep, last in frame_beats(frame, bpb):
            while idle and rng.random() < idle:
                ctx.set(port.tvalid, 0)
                await ctx.tick()
            ctx.set(port.tdata, data)
            ctx.set(port.tkeep, keep)
            ctx.set(port.tlast, last)
            ctx.set(port.tuser, user(n))
            ctx.set(port.tvalid, 1)
            await ctx.tick().until(port.tready)
        ctx.set(port.tvalid, 0)


async def collect_frames(ctx, port, count, bpb, rng, stall=0.0, with_user=False, timeout=200000):
    frames, cur = [], b""
    for _ in range(timeout):
        ready = not (stall and rng.random() < stall)
        ctx.set(port.tready, ready)
        _, _, valid, data, keep, last, user = await ctx.tick().sample(
            port.tvalid, port.tdata, port.tkeep, port.tlast, port.tuser)
        if ready and valid:
            n = bin(keep).count("1")
            assert keep == (1 << n) - 1, "tkeep must be contiguous"
            cur += data.to_bytes(bpb, "little")[:n]
            if last:
                frames.append((cur, user) if with_user else cur)
                cur = b""
                if len(frames) == count:
                    return frames
    raise AssertionError(f"timed out with {len(frames)} of {count} frames")


def random_frames(rng, count, max_len=300):
    return [bytes(rng.randrange(256) for _ in range(rng.randrange(1, max_len))) for _ in range(count)]


@pytest.mark.parametrize("idle,stall", [(0, 0), (0.3, 0), (0, 0.4), (0.3, 0.4)])
def test_register_slice_passes_everything_in_order(idle, stall):
    rng = random.Random(1)
    dut = RegisterSlice(64, 3)
    frames = random_frames(rng, 40)
    got = []

    async def source(ctx):
        await send_frames(ctx, dut.s_axis, frames, 8, rng, idle, user=lambda i: i % 8)

    async def sink(ctx):
        got.extend(await collect_frames(ctx, dut.m_axis, len(frames), 8, random.Random(2), stall, True))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert [f for f, _ in got] == frames
    assert [u for _, u in got] == [i % 8 for i in range(len(frames))]


def test_register_slice_full_throughput():
    dut = RegisterSlice(64)
    frames = [bytes(64)] * 20
    cycles = []

    async def source(ctx):
        await send_frames(ctx, dut.s_axis, frames, 8, random.Random(0))

    async def sink(ctx):
        ctx.set(dut.m_axis.tready, 1)
        n = 0
        for cycle in range(400):
            _, _, valid = await ctx.tick().sample(dut.m_axis.tvalid)
            if valid:
                cycles.append(cycle)
                n += 1
                if n == 160:
                    return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert len(cycles) == 160 and cycles[-1] - cycles[0] == 159, "one beat per cycle, no bubble"


@pytest.mark.parametrize("stall", [0, 0.3])
def test_arbiter_keeps_frames_whole_and_tags_ports(stall):
    rng = random.Random(3)
    dut = PacketArbiter(64, 2)
    per_port = [random_frames(rng, 30), random_frames(rng, 30)]
    got = []

    def make_source(i):
        async def source(ctx):
            await send_frames(ctx, dut.inputs[i], per_port[i], 8, random.Random(10 + i), 0.2)
        return source

    async def sink(ctx):
        got.extend(await collect_frames(ctx, dut.m_axis, 60, 8, random.Random(5), stall, True))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for i in range(2):
        sim.add_testbench(make_source(i), background=True)
    sim.add_testbench(sink)
    sim.run()
    for port in range(2):
        assert [f for f, u in got if u >> 1 == port] == per_port[port]


def test_arbiter_no_bubble_between_ports():
    """Back-to-back frames from both ports alternate with no idle cycle."""
    dut = PacketArbiter(64, 2)
    frames = [bytes([i]) * 16 for i in range(10)]
    beats = []

    def make_source(i):
        async def source(ctx):
            await send_frames(ctx, dut.inputs[i], frames, 8, random.Random(0))
        return source

    async def sink(ctx):
        ctx.set(dut.m_axis.tready, 1)
        for _ in range(60):
            _, _, valid, user, last = await ctx.tick().sample(dut.m_axis.tvalid, dut.m_axis.tuser, dut.m_axis.tlast)
            beats.append((valid, user >> 1, last))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for i in range(2):
        sim.add_testbench(make_source(i), background=True)
    sim.add_testbench(sink)
    sim.run()
    first = next(i for i, b in enumerate(beats) if b[0])
    active = beats[first:first + 40]
    assert all(v for v, _, _ in active)
    ports = [p for _, p, last in active if last]
    assert ports == [ports[0], 1 - ports[0]] * 10


def _descriptor_stream(frames, verdicts):
    return list(zip(frames, verdicts))


@pytest.mark.parametrize("width", [64, 512])
@pytest.mark.parametrize("stall", [0, 0.3])
def test_buffer_forwards_or_discards_whole_frames(width, stall):
    rng = random.Random(7)
    cfg = NicConfig(data_width=width, max_frame=1000, buffer_bytes=4096)
    bpb = cfg.bytes_per_beat
    dut = PacketBuffer(cfg)
    frames = random_frames(rng, 60, 700) + [bytes(range(256)) * 6]  # last one oversize (1536 > 1000)
    plan = [(rng.random() < 0.3, rng.randrange(2)) for _ in frames[:-1]] + [(True, 0)]
    expect = {0: [], 1: []}
    for frame, (drop, port) in zip(frames, plan):
        if not drop:
            expect[port].append(frame)
    got = {}

    async def source(ctx):
        # The buffer always accepts; the producer sends only after `space` was high, like the
        # register stage in front of it. Each descriptor follows its frame's last beat by a few
        # cycles, like the parser's.
        pending = []

        async def cycle(valid):
            nonlocal pending
            ctx.set(dut.s_axis.tvalid, valid)
            ctx.set(dut.desc.valid, 0)
            if pending and pending[0][0] <= 0:
                _, d, p = pending.pop(0)
                ctx.set(dut.desc.payload.drop, d)
                ctx.set(dut.desc.payload.port, p)
                ctx.set(dut.desc.valid, 1)
            _, _, space = await ctx.tick().sample(dut.space)
            pending = [(t - 1, d, p) for t, d, p in pending]
            return space

        space = False
        for frame, (drop, port) in zip(frames, plan):
            for data, keep, last in frame_beats(frame, bpb):
                while not space:
                    space = await cycle(0)
                ctx.set(dut.s_axis.tdata, data)
                ctx.set(dut.s_axis.tkeep, keep)
                ctx.set(dut.s_axis.tlast, last)
                space = await cycle(1)
            pending.append((5, drop, port))
        while pending:
            await cycle(0)
        ctx.set(dut.desc.valid, 0)

    def make_sink(i):
        async def sink(ctx):
            got[i] = await collect_frames(ctx, dut.outputs[i], len(expect[i]), bpb, random.Random(20 + i), stall)
        return sink

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    for i in range(2):
        if expect[i]:
            sim.add_testbench(make_sink(i))
    sim.run()
    for i in range(2):
        assert got.get(i, []) == expect[i]


def test_forwarder_precedence_and_peer_port():
    cfg = NicConfig()
    dut = Forwarder(cfg)
    cases = [  # (in_port, rx_error, malformed bits) -> (verdict, reason, egress, desc port)
        (0, 0, 0, Verdict.FORWARD, DropReason.NONE, 0b10),
        (1, 0, 0, Verdict.FORWARD, DropReason.NONE, 0b01),
        (0, 1, 1 << MalformedReason.OVERSIZE, Verdict.DROP, DropReason.RX_ERROR, 0),
        (1, 0, (1 << MalformedReason.OVERSIZE) | (1 << MalformedReason.RUNT), Verdict.DROP, DropReason.OVERSIZE, 0),
        (0, 0, 1 << MalformedReason.TRUNC_L4, Verdict.DROP, DropReason.MALFORMED, 0),
    ]

    async def tb(ctx):
        for in_port, rx_error, malformed, verdict, reason, egress in cases:
            ctx.set(dut.parsed.payload.in_port, in_port)
            ctx.set(dut.parsed.payload.rx_error, rx_error)
            ctx.set(dut.parsed.payload.meta.malformed, malformed)
            ctx.set(dut.parsed.valid, 1)
            await ctx.tick()
            ctx.set(dut.parsed.valid, 0)
            assert ctx.get(dut.record.valid) and ctx.get(dut.desc.valid)
            assert ctx.get(dut.record.payload.verdict) == verdict
            assert ctx.get(dut.record.payload.reason) == reason
            assert ctx.get(dut.record.payload.egress) == egress
            assert ctx.get(dut.desc.payload.drop) == (verdict == Verdict.DROP)
            assert ctx.get(dut.desc.payload.port) == 1 - in_port
            await ctx.tick()
            assert not ctx.get(dut.record.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("depth", [4, 64])
@pytest.mark.parametrize("push_p,pop_p", [(1.0, 1.0), (0.7, 0.5), (0.5, 0.9)])
def test_beat_fifo_matches_a_queue(depth, push_p, pop_p):
    from hdl.ram import BeatFifo
    dut = BeatFifo(width=16, depth=depth)
    rng = random.Random(depth)
    sent, got = [], []

    async def tb(ctx):
        nxt = 0
        w_rdy_before = 0
        for _ in range(3000):
            # w_rdy is a look-ahead: high in the previous cycle is enough to write now.
            push = rng.random() < push_p and (w_rdy_before or ctx.get(dut.w_rdy))
            pop = rng.random() < pop_p
            ctx.set(dut.w_data, nxt)
            ctx.set(dut.w_en, push)
            ctx.set(dut.r_en, pop)
            _, _, w_rdy, r_rdy, r_data = await ctx.tick().sample(dut.w_rdy, dut.r_rdy, dut.r_data)
            w_rdy_before = w_rdy
            if push:
                sent.append(nxt)
                nxt = (nxt + 1) & 0xFFFF
            if pop and r_rdy:
                got.append(r_data)
        ctx.set(dut.w_en, 0)
        ctx.set(dut.r_en, 1)
        for _ in range(depth + 10):
            _, _, r_rdy, r_data = await ctx.tick().sample(dut.r_rdy, dut.r_data)
            if r_rdy:
                got.append(r_data)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got == sent
    assert len(sent) > 1000


def test_beat_fifo_streams_one_word_per_cycle():
    from hdl.ram import BeatFifo
    dut = BeatFifo(width=8, depth=64)
    reads = []

    async def tb(ctx):
        ctx.set(dut.r_en, 1)
        for i in range(300):
            ctx.set(dut.w_data, i & 0xFF)
            ctx.set(dut.w_en, 1)
            _, _, r_rdy = await ctx.tick().sample(dut.r_rdy)
            reads.append(r_rdy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    first = reads.index(1)
    assert all(reads[first:]), "after the pipeline fills, one word leaves every cycle"
