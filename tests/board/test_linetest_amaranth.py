"""The built-in line tester: generated frames and the egress signature."""

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from hdl.board.linetest import TEMPLATE_BYTES, CompactFrameGenerator, FrameGenerator, SignatureChecker, default_template
from host_driver.blocks.linetest import expected_frames, expected_signature
from host_driver.model.nic import parse_frame


def run_generator(width, count, *, frame_len, gap, seed, template, stall=0.0, rng=None, max_cycles=20_000):
    """Run a FrameGenerator alone until ``count`` frames left it (``tready`` low with probability
    ``stall``); returns the frames and ``tvalid`` in every cycle from enable on."""
    bpb = width // 8
    gen = FrameGenerator(width, 0)
    frames, valids = [], []

    async def tb(ctx):
        ctx.set(gen.template, int.from_bytes(template, "little"))
        ctx.set(gen.frame_len, frame_len)
        ctx.set(gen.gap, gap)
        ctx.set(gen.seed, seed)
        await ctx.tick().repeat(4)
        ctx.set(gen.enable, 1)
        cur = b""
        for _ in range(max_cycles):
            ready = not (stall and rng.random() < stall)
            ctx.set(gen.m_axis.tready, ready)
            _, _, valid, data, keep, last = await ctx.tick().sample(
                gen.m_axis.tvalid, gen.m_axis.tdata, gen.m_axis.tkeep, gen.m_axis.tlast)
            valids.append(valid)
            if valid and ready:
                cur += data.to_bytes(bpb, "little")[:bin(keep).count("1")]
                if last:
                    frames.append(cur)
                    cur = b""
                    if len(frames) == count:
                        return

    sim = Simulator(gen)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return frames, valids


@pytest.mark.parametrize("width", [64, 512])
@pytest.mark.parametrize("frame_len,gap", [(60, 0), (61, 3), (1500, 0), (200, 1)])
def test_generator_frames_and_signature(width, frame_len, gap):
    bpb = width // 8
    frames, beats_seen = run_generator(width, 4, frame_len=frame_len, gap=gap, seed=0x1234,
                                       template=default_template(),
                                       max_cycles=20 * (frame_len // bpb + gap + 2))
    assert len(frames) == 4
    for frame in frames:
        assert len(frame) == frame_len
        assert frame[:min(frame_len, TEMPLATE_BYTES)] == default_template()[:frame_len]
        meta = parse_frame(frame, physical=True, header_window=128, max_frame=9216)
        assert meta["malformed"] == 0 and meta["has_l4"] == 1 and meta["dport"] == 9
    if frame_len > TEMPLATE_BYTES + bpb:
        assert frames[0][TEMPLATE_BYTES:] != frames[1][TEMPLATE_BYTES:], "payload comes from the LFSR"
    # GAP idle cycles between frames (none: back to back at one beat per cycle)
    n_beats = -(-frame_len // bpb)
    first = beats_seen.index(1)
    expected = ([1] * n_beats + [0] * gap) * 3 + [1] * n_beats
    assert beats_seen[first:first + len(expected)] == expected


@pytest.mark.parametrize("width,frame_len,gap,seed,stall", [
    (64, 100, 3, 0x5EED1234, 0.3), (64, 61, 0, 0, 0.0), (128, 200, 1, 0xFFFFFFFF, 0.5),
    (512, 60, 0, 7, 0.2), (512, 300, 2, 0x1, 0.0),
])
def test_expected_frames_match_generator(width, frame_len, gap, seed, stall):
    """The driver's reference (host_driver.blocks.linetest.expected_frames) against the gateware
    generator, with a template of random bytes and random ``tready``: the frames do not depend
    on timing."""
    import random
    rng = random.Random(width + frame_len)
    template = bytes(rng.randrange(256) for _ in range(TEMPLATE_BYTES))
    frames, _ = run_generator(width, 5, frame_len=frame_len, gap=gap, seed=seed, template=template,
                              stall=stall, rng=rng)
    assert frames == expected_frames(5, frame_len, width // 8, seed=seed, template=template)


@pytest.mark.parametrize("width", [64, 512])
def test_signature_checker_matches_reference(width):
    import random
    bpb = width // 8
    rng = random.Random(width)
    frames = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(20)]
    dut = SignatureChecker(width)

    async def tb(ctx):
        for frame in frames:
            for off in range(0, len(frame), bpb):
                chunk = frame[off:off + bpb]
                ctx.set(dut.tdata, int.from_bytes(chunk, "little") | (rng.getrandbits(width) << 8 * len(chunk))
                        & ((1 << width) - 1))
                ctx.set(dut.tkeep, (1 << len(chunk)) - 1)
                ctx.set(dut.beat, 1)
                await ctx.tick()
                ctx.set(dut.beat, 0)
                await ctx.tick()
        await ctx.tick().repeat(3)
        assert ctx.get(dut.value) == expected_signature(frames, bpb)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


# -- compact build (NicConfig.compact): the same frames, cycle for cycle -------------------------------

class _GeneratorPair(Elaboratable):
    """The default and the compact FrameGenerator side by side on the same inputs."""

    def __init__(self, width):
        self.default = FrameGenerator(width, 0)
        self.compact = CompactFrameGenerator(width, 0)

    def elaborate(self, platform):
        m = Module()
        m.submodules.default = self.default
        m.submodules.compact = self.compact
        return m


@pytest.mark.parametrize("width", [64, 128, 512])
@pytest.mark.parametrize("frame_len,gap,template,stall", [
    (60, 0, "default", 0.0), (61, 3, "random", 0.3), (64, 1, "random", 0.0), (65, 0, "default", 0.5),
    (200, 2, "random", 0.2), (1500, 0, "random", 0.0), (7, 0, "random", 0.3), (127, 5, "default", 0.0),
])
def test_compact_generator_matches_default(width, frame_len, gap, template, stall):
    """Every output of the compact generator equals the default one's in every cycle, under random
    ``tready``, across enable on/off and a change of length, gap, seed and template between runs."""
    import random
    rng = random.Random(frame_len * 7 + gap + width)
    pair = _GeneratorPair(width)
    gens = (pair.default, pair.compact)
    tmpl = default_template() if template == "default" else bytes(rng.randrange(256) for _ in range(TEMPLATE_BYTES))
    beats = []

    def set_all(ctx, name, value):
        for g in gens:
            ctx.set(getattr(g, name), value)

    async def tb(ctx):
        runs = [(frame_len, gap, 0x1234, tmpl), (frame_len + 3, gap + 1, 0, tmpl[::-1])]
        for run_len, run_gap, seed, run_tmpl in runs:
            set_all(ctx, "enable", 0)
            await ctx.tick().repeat(40)            # let the last frame finish and the generator idle
            set_all(ctx, "template", int.from_bytes(run_tmpl, "little"))
            set_all(ctx, "frame_len", run_len)
            set_all(ctx, "gap", run_gap)
            set_all(ctx, "seed", seed)
            await ctx.tick().repeat(4)
            set_all(ctx, "enable", 1)
            frames = 0
            for _ in range(8 * (run_len // (width // 8) + run_gap + 2) * 4):
                ready = not (stall and rng.random() < stall)
                for g in gens:
                    ctx.set(g.m_axis.tready, ready)
                await ctx.tick()
                outs = [tuple(ctx.get(getattr(g.m_axis, f)) for f in ("tvalid", "tdata", "tkeep", "tlast"))
                        + (ctx.get(g.busy),) for g in gens]
                assert outs[0] == outs[1], f"cycle {len(beats)}: default {outs[0]} != compact {outs[1]}"
                beats.append(outs[0][0])
                if outs[0][0] and outs[0][3] and ready:
                    frames += 1
                    if frames == 3:
                        set_all(ctx, "enable", 0)       # stop after the frame in flight

    sim = Simulator(pair)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert sum(beats) > 6, "frames were generated"
