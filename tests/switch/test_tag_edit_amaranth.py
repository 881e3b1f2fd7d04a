"""TagEdit (hdl/switch/tag_edit.py) against the bytes the switch model puts on the wire.

Random frames (1 byte to a few beats, around every length where a beat boundary moves), every
operation, source idle cycles and sink backpressure, at W=64 (the tag straddles beats 1 and 2),
W=128 and W=512. The expected bytes come from plain slicing, as host_driver.model.switch builds
an egress frame: ``frame[:12] + tag + frame[12:]`` to insert, ``frame[:12] + frame[16:]`` to strip.
"""

from __future__ import annotations

import gc
import random

import pytest
from amaranth.sim import Simulator
from conftest import collect_frames, send_frames

from hdl.switch.tag_edit import TagEdit, TagOp

TAG = 0x81002005   # TPID 0x8100, PCP 1, VID 5


def expected(frame: bytes, op: TagOp, tag: int) -> bytes:
    t = tag.to_bytes(4, "big")
    if op is TagOp.INSERT:
        return frame if len(frame) <= 12 else frame[:12] + t + frame[12:]
    if op is TagOp.STRIP:
        return frame[:12] + frame[16:]
    if op is TagOp.REWRITE:
        return frame[:12] + t[:max(0, min(4, len(frame) - 12))] + frame[16:]
    return frame


def _simulate(dut, edits, source, sink) -> None:
    """Run the three testbenches until the sink returns."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(edits, background=True)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()


def _cases(rng: random.Random, bpb: int, n: int):
    lengths = list(range(1, 3 * bpb + 20)) + [rng.randrange(1, 300) for _ in range(n)]
    return [(bytes(rng.randrange(256) for _ in range(length)), rng.choice(list(TagOp)),
             rng.randrange(1 << 32)) for length in lengths]


@pytest.mark.parametrize("width", [64, 128, 512])
@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.3, 0.4)])
def test_tag_edit_matches_the_model(width, idle, stall):
    bpb = width // 8
    rng = random.Random(width + int(10 * stall))
    cases = _cases(rng, bpb, 150)
    dut = TagEdit(width)
    got = []

    async def edits(ctx):
        for _, op, tag in cases:
            ctx.set(dut.edit.payload.op, op)
            ctx.set(dut.edit.payload.tag, tag)
            ctx.set(dut.edit.valid, 1)
            await ctx.tick().until(dut.edit.ready)
        ctx.set(dut.edit.valid, 0)

    async def source(ctx):
        await send_frames(ctx, dut.s_axis, [f for f, _, _ in cases], bpb, random.Random(1), idle,
                          user=lambda i: i % 2)

    async def sink(ctx):
        got.extend(await collect_frames(ctx, dut.m_axis, len(cases), bpb, random.Random(2), stall, True))

    _simulate(dut, edits, source, sink)
    for k, ((frame, op, tag), (out, user)) in enumerate(zip(cases, got, strict=True)):
        assert out == expected(frame, op, tag), f"case {k}: {op.name} on {len(frame)} bytes: {out.hex()}"
        assert user == k % 2, f"case {k}: tuser lost"


def test_full_rate_when_nothing_grows():
    """KEEP and REWRITE frames go through at one beat per cycle."""
    dut = TagEdit(64)
    frames = [bytes(64)] * 20
    beats = []

    async def edits(ctx):
        ctx.set(dut.edit.payload.op, TagOp.REWRITE)
        ctx.set(dut.edit.valid, 1)

    async def source(ctx):
        await send_frames(ctx, dut.s_axis, frames, 8, random.Random(0))

    async def sink(ctx):
        ctx.set(dut.m_axis.tready, 1)
        for cycle in range(400):
            _, _, valid = await ctx.tick().sample(dut.m_axis.tvalid)
            if valid:
                beats.append(cycle)
                if len(beats) == 160:
                    return

    _simulate(dut, edits, source, sink)
    assert beats[-1] - beats[0] == 159, "one beat per cycle, no bubble between frames"


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_narrow_bus_refused():
    with pytest.raises(ValueError):
        TagEdit(32)
    gc.collect()   # the half-built component warns when collected: here, under the filter
