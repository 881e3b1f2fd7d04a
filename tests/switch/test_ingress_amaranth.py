"""Amaranth-level tests of the per-port ingress FIFO (hdl/switch/ingress.py).

The FIFO is held to what a port promises, not to a second copy of its logic: the source never
waits; every frame that leaves is byte for byte a frame that was sent, in order, never a piece of
one; every frame sent is either delivered or counted as dropped exactly once, by reason; a frame
longer than the FIFO is always dropped and counted ``too_long``; a reader that keeps up loses
nothing; a stalled reader loses nothing until ``depth`` beats are stored.
"""

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hdl.switch.ingress import IngressFifo

W = 64
BPB = W // 8


def frame(seq: int, length: int) -> bytes:
    """A frame whose first bytes carry its sequence number, so a mixed-up or cut frame shows."""
    head = seq.to_bytes(4, "big")
    body = bytes((seq * 7 + k) & 0xFF for k in range(max(0, length - 4)))
    return (head + body)[:length]


def beats_of(data: bytes) -> list[tuple[int, int, int]]:
    """(tdata, tkeep, tlast) of each beat of ``data``, packed."""
    out = []
    for off in range(0, len(data), BPB):
        chunk = data[off:off + BPB]
        out.append((int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1, int(off + BPB >= len(data))))
    return out


def run_fifo(depth: int, frames: list[bytes], ready, *, drain_cycles: int = 2000, mutate=None):
    """Send ``frames`` back to back (one beat every cycle, the source never looks at tready) into
    an :class:`IngressFifo` of ``depth`` beats whose reader is ready when ``ready(cycle)``.

    Returns (frames out, fate of each frame sent: "kept", "full" or "too_long", cycles with
    tready low)."""
    dut = IngressFifo(W, depth)
    if mutate is not None:
        mutate(dut)
    beats = [b for f in frames for b in beats_of(f)]
    result = {"out": [], "fates": [], "stalls": 0}

    async def bench(ctx):
        s, o = dut.s_axis, dut.m_axis
        cur = bytearray()
        cycle = 0
        n = len(beats)
        while cycle < n + drain_cycles:
            if cycle < n:
                data, keep, last = beats[cycle]
                ctx.set(s.tdata, data)
                ctx.set(s.tkeep, keep)
                ctx.set(s.tlast, last)
                ctx.set(s.tvalid, 1)
            else:
                ctx.set(s.tvalid, 0)
            ctx.set(o.tready, int(ready(cycle)))
            (_, _, s_ready, s_valid, o_valid, o_ready, o_data, o_keep, o_last, end, full, too_long) = \
                await ctx.tick().sample(s.tready, s.tvalid, o.tvalid, o.tready, o.tdata, o.tkeep, o.tlast,
                                        dut.frame_end, dut.drop_full, dut.drop_too_long)
            if s_valid and not s_ready:
                result["stalls"] += 1
            if end:
                result["fates"].append("too_long" if too_long else "full" if full else "kept")
            if o_valid and o_ready:
                cur += int(o_data).to_bytes(BPB, "little")[:bin(int(o_keep)).count("1")]
                if o_last:
                    result["out"].append(bytes(cur))
                    cur.clear()
            cycle += 1
        assert not cur, "the FIFO released part of a frame"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result["out"], result["fates"], result["stalls"]


def check_accounting(frames, out, fates, depth):
    """What every run must show, whatever the timing."""
    assert len(fates) == len(frames), "every frame's last beat is seen once"
    kept = [f for f, fate in zip(frames, fates, strict=True) if fate == "kept"]
    assert out == kept, "the frames out are exactly the frames kept, whole, in order"
    for f, fate in zip(frames, fates, strict=True):
        too_long = -(-len(f) // BPB) > depth
        assert (fate == "too_long") == too_long, f"a {len(f)}-byte frame into {depth} beats: {fate}"


def test_reader_that_keeps_up_loses_nothing():
    frames = [frame(i, random.Random(i).randint(1, 300)) for i in range(60)]
    out, fates, stalls = run_fifo(64, frames, lambda c: True)
    assert stalls == 0
    assert fates == ["kept"] * len(frames)
    assert out == frames


@pytest.mark.parametrize("depth", [16, 64])
def test_random_reader_drops_whole_frames_only(depth):
    rng = random.Random(depth)
    lengths = [rng.choice([1, 8, 9, 60, 64, 100, 200, 8 * depth, 8 * depth + 1, 9216 if depth == 64 else 300])
               for _ in range(120)]
    frames = [frame(i, n) for i, n in enumerate(lengths)]
    pattern = [rng.random() < 0.35 for _ in range(4096)]
    out, fates, stalls = run_fifo(depth, frames, lambda c: pattern[c % len(pattern)], drain_cycles=3000)
    assert stalls == 0, "the source never waits"
    check_accounting(frames, out, fates, depth)
    assert fates.count("full") > 0 and fates.count("kept") > 10, fates


def test_stalled_reader_holds_depth_beats_then_drops():
    depth = 16
    # With the reader stalled, the RAM holds `depth` beats and the output queue a few more of
    # frames already stored (five words): four frames of four beats always fit, eight never.
    frames = [frame(i, 32) for i in range(8)]
    out, fates, _ = run_fifo(depth, frames, lambda c: c > 200)
    check_accounting(frames, out, fates, depth)
    assert fates[:4] == ["kept"] * 4, fates
    assert 4 * fates.count("kept") <= depth + 5, fates
    assert "full" in fates and fates[fates.index("full"):] == ["full"] * (8 - fates.index("full")), fates


def test_jumbo_longer_than_the_fifo_is_dropped_whole_and_the_port_goes_on():
    depth = 64      # 512 bytes
    frames = [frame(0, 60), frame(1, 9216), frame(2, 60), frame(3, depth * BPB), frame(4, depth * BPB + 1),
              frame(5, 64)]
    out, fates, stalls = run_fifo(depth, frames, lambda c: True)
    assert stalls == 0
    assert fates == ["kept", "too_long", "kept", "kept", "too_long", "kept"]
    assert out == [frames[0], frames[2], frames[3], frames[5]]


def test_depth_must_be_a_power_of_two():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)   # the half-built component
        with pytest.raises(ValueError, match=r"^ingress FIFO depth must be a power of two of at least 4 beats, "
                                             r"not 12$"):
            IngressFifo(W, 12)
        gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        assert repr(IngressFifo(W, 16)) == "IngressFifo(data_width=64, depth=16)"
        gc.collect()
