"""The built-in line tester: generated frames and the egress signature."""

import pytest
from amaranth.sim import Simulator

from hdl.linetest import TEMPLATE_BYTES, FrameGenerator, SignatureChecker, default_template
from host_driver.model import parse_frame


def reference_signature(frames: list[bytes], bpb: int) -> int:
    """The checker's signature computed in Python from the bytes sent."""
    sig = 0
    for frame in frames:
        for off in range(0, len(frame), bpb):
            word = int.from_bytes(frame[off:off + bpb], "little")
            folded = 0
            while word:
                folded ^= word & 0xFFFFFFFF
                word >>= 32
            sig = ((sig << 1 | sig >> 31) & 0xFFFFFFFF) ^ folded
    return sig


@pytest.mark.parametrize("width", [64, 512])
@pytest.mark.parametrize("frame_len,gap", [(60, 0), (61, 3), (1500, 0), (200, 1)])
def test_generator_frames_and_signature(width, frame_len, gap):
    bpb = width // 8
    gen = FrameGenerator(width, 0)
    frames, beats_seen = [], []

    async def tb(ctx):
        template = default_template()
        ctx.set(gen.template, int.from_bytes(template, "little"))
        ctx.set(gen.frame_len, frame_len)
        ctx.set(gen.gap, gap)
        ctx.set(gen.seed, 0x1234)
        ctx.set(gen.m_axis.tready, 1)
        await ctx.tick().repeat(2)
        ctx.set(gen.enable, 1)
        cur = b""
        for _ in range(20 * (frame_len // bpb + gap + 2)):
            _, _, valid, data, keep, last = await ctx.tick().sample(
                gen.m_axis.tvalid, gen.m_axis.tdata, gen.m_axis.tkeep, gen.m_axis.tlast)
            beats_seen.append(valid)
            if valid:
                n = bin(keep).count("1")
                cur += data.to_bytes(bpb, "little")[:n]
                if last:
                    frames.append(cur)
                    cur = b""
                    if len(frames) == 4:
                        return

    sim = Simulator(gen)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
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
        assert ctx.get(dut.value) == reference_signature(frames, bpb)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
