"""Packet buffer cases the mutation run (``make mutants``) found untested: frames at the
``max_frame`` boundary, and the frames that follow an oversize one.

The buffer stores an oversize frame's first ``ceil(max_frame / bytes_per_beat)`` beats and its
last beat only (the parser flags it and its descriptor says drop). The frames here sit on both
sides of that limit: a frame of exactly ``max_frame`` bytes must leave whole, and the reader
must find the end of a truncated oversize frame, or every later frame is stuck behind it.
"""

import random

import pytest
from amaranth.sim import Simulator

from hdl.config import NicConfig
from hdl.datapath.buffer import PacketBuffer


def _beats(frame: bytes, bpb: int):
    """(tdata, tkeep, tlast) beats of ``frame``, first byte in the low bits."""
    out = []
    for off in range(0, len(frame), bpb):
        chunk = frame[off:off + bpb]
        out.append((int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1, off + bpb >= len(frame)))
    return out


def _run(cfg: NicConfig, plan: list[tuple[bytes, bool, int]], max_cycles: int = 60_000) -> dict[int, list[bytes]]:
    """Send ``(frame, drop, port)`` through a PacketBuffer (honouring ``space`` one cycle ahead, the
    descriptor 5 cycles after each frame's last beat); return the frames seen on each port."""
    dut = PacketBuffer(cfg)
    bpb = cfg.bytes_per_beat
    expected = {p: sum(1 for _, drop, port in plan if not drop and port == p) for p in (0, 1)}
    got: dict[int, list[bytes]] = {0: [], 1: []}

    async def source(ctx):
        pending = []      # (cycles to wait, drop, port)

        async def cycle(valid):
            nonlocal pending
            ctx.set(dut.s_axis.tvalid, valid)
            ctx.set(dut.desc.valid, 0)
            if pending and pending[0][0] <= 0:
                _, drop, port = pending.pop(0)
                ctx.set(dut.desc.payload.drop, drop)
                ctx.set(dut.desc.payload.port, port)
                ctx.set(dut.desc.valid, 1)
            _, _, space = await ctx.tick().sample(dut.space)
            pending = [(t - 1, d, p) for t, d, p in pending]
            return space

        space = False
        for frame, drop, port in plan:
            for data, keep, last in _beats(frame, bpb):
                while not space:
                    space = await cycle(0)
                ctx.set(dut.s_axis.tdata, data)
                ctx.set(dut.s_axis.tkeep, keep)
                ctx.set(dut.s_axis.tlast, last)
                space = await cycle(1)
            pending.append((5, drop, port))
        while pending:
            await cycle(0)

    def sink(port):
        async def bench(ctx):
            out = dut.outputs[port]
            rng = random.Random(port)
            cur = b""
            for _ in range(max_cycles):
                ready = rng.random() >= 0.2
                ctx.set(out.tready, ready)
                _, _, valid, data, keep, last = await ctx.tick().sample(out.tvalid, out.tdata, out.tkeep, out.tlast)
                if valid and ready:
                    cur += data.to_bytes(bpb, "little")[:bin(keep).count("1")]
                    if last:
                        got[port].append(cur)
                        cur = b""
                        if len(got[port]) == expected[port]:
                            return
            raise AssertionError(f"port {port}: {len(got[port])} of {expected[port]} frames after {max_cycles} cycles")
        return bench

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    for port in (0, 1):
        if expected[port]:
            sim.add_testbench(sink(port))
    sim.run()
    return got


@pytest.mark.parametrize("width,compact", [(64, False), (512, False), (64, True)],
                         ids=["w64", "w512", "w64-compact"])
def test_max_frame_leaves_whole_and_oversize_frames_do_not_block(width, compact):
    # 1001 bytes: not a whole number of beats at any width, so the last beat is partial.
    cfg = NicConfig(data_width=width, max_frame=1001, buffer_bytes=4096, compact=compact)
    bpb = cfg.bytes_per_beat

    def frame(n, seed):
        return bytes((seed + 7 * i) & 0xFF for i in range(n))

    plan = [
        (frame(cfg.max_frame, 1), False, 1),            # exactly max_frame: every beat kept
        (frame(cfg.max_frame - 1, 2), False, 0),
        (frame(cfg.max_frame + 1, 3), True, 0),         # oversize by one byte: dropped
        (frame(cfg.max_frame - bpb, 4), False, 1),
        (frame(3 * cfg.max_frame, 5), True, 1),         # far over: its tail is not stored, its end is
        (frame(60, 6), False, 0),
        (frame(cfg.max_frame, 7), False, 0),
    ]
    got = _run(cfg, plan)
    for port in (0, 1):
        want = [f for f, drop, p in plan if not drop and p == port]
        assert [len(f) for f in got[port]] == [len(f) for f in want], f"port {port}: frame lengths"
        assert got[port] == want, f"port {port}: frame bytes"
