"""EgressFanout (hdl/switch/egress.py): queue admission against plain room decisions.

The fan-out keeps its edit commands in its own FIFO (EditQueue, which never checks its room),
decides whether a port takes a frame from a registered copy of that FIFO's room, and counts its
beat queue with the reader's reads a cycle late (issue 13's timing rounds). The reference is the
same fan-out with its edits in ``amaranth.lib.fifo.SyncFIFO``, deciding from the room that FIFO
reports (``w_rdy``) and from a plain count of the beat queue written here. Both run side by side on the same frames into
three ports with random backpressure, one port stalled or slow so that its queues fill: every
output beat and every ``queue_drop`` pulse must be equal, cycle for cycle.
"""

from __future__ import annotations

import random

from amaranth import Module, Signal
from amaranth.lib import fifo
from amaranth.sim import Simulator
from conftest import frame_beats

from hdl.config import NicConfig
from hdl.switch.egress import EDIT_QUEUE_DEPTH, EgressFanout
from hdl.switch.tag_edit import EDIT_LAYOUT
from host_driver.switch_config import SwitchConfig

PORTS = ("phy0", "vm1", "vm2")


class PlainRoomFanout(EgressFanout):
    """The reference: edits in amaranth's SyncFIFO, admission from its own ``w_rdy``, and an exact
    word count of the beat queue."""

    def _edit_queue(self):
        return fifo.SyncFIFO(width=EDIT_LAYOUT.size, depth=EDIT_QUEUE_DEPTH)

    def _edit_room(self, m, edits, port):
        return edits.w_rdy

    def _queue_room(self, m, port, admitted, read, need):
        words = Signal(range(self.queue_beats + 1))
        m.d.sync += words.eq(words + admitted - read)
        return (self.queue_beats - 1 - words) >= need


def _config() -> NicConfig:
    cfg = SwitchConfig.from_toml({"ports": {"phy0": {"mode": "trunk", "native": 1}, "vm1": {"vlan": 1},
                                            "vm2": {"vlan": 2}}})
    # A 2 KiB queue (256 beats) holds more short frames than the edit queue does.
    return NicConfig(data_width=64, ports=PORTS, physical_ports=("phy0",), max_frame=200,
                     switch=cfg.settings(list(PORTS), 156.25, mac_sets=64, mac_ways=4,
                                         egress_queue_bytes=2048))


def _frame(rng: random.Random, length: int, egress: int):
    frame = bytes(rng.randrange(256) for _ in range(length))
    return frame, {"egress": egress, "beats": len(frame_beats(frame, 8)), "vlan": rng.choice([1, 2]),
                   "qinq": rng.randrange(2), "pcp_dei": rng.randrange(16), "in_tagged": rng.randrange(2),
                   "in_priority": 0, "mirror_plain": 0}


def _side_by_side(frames, gap: float, readiness, cycles: int):
    """Run the fan-out and the reference on ``frames`` (gaps between beats with probability
    ``gap``), port i ready with probability ``readiness(cycle, i)``; assert every output and
    ``queue_drop`` equal in every cycle. Returns the drops and the beats sent, per port."""
    config = _config()
    top = Module()
    top.submodules.dut = dut = EgressFanout(config)
    top.submodules.ref = ref = PlainRoomFanout(config)
    drops = [0] * len(PORTS)
    beats_out = [0] * len(PORTS)

    async def source(ctx):
        rng = random.Random(1)
        for d in (dut, ref):
            ctx.set(d.port_trunk, 0b001)
            for i, pvid in enumerate([1, 1, 2]):
                ctx.set(getattr(d, f"port_pvid_{i}"), pvid)
        for frame, desc in frames:
            for data, keep, last in frame_beats(frame, 8):
                while rng.random() < gap:
                    for d in (dut, ref):
                        ctx.set(d.s_axis.tvalid, 0)
                    await ctx.tick()
                for d in (dut, ref):
                    ctx.set(d.s_axis.tdata, data)
                    ctx.set(d.s_axis.tkeep, keep)
                    ctx.set(d.s_axis.tlast, last)
                    ctx.set(d.s_axis.tvalid, 1)
                    ctx.set(d.s_desc, desc)
                await ctx.tick()
        for d in (dut, ref):
            ctx.set(d.s_axis.tvalid, 0)

    async def sinks_and_compare(ctx):
        rng = random.Random(7)
        fields = ("tvalid", "tdata", "tkeep", "tlast")
        for cycle in range(cycles):
            ready = [rng.random() < readiness(cycle, i) for i in range(len(PORTS))]
            for i in range(len(PORTS)):
                for d in (dut, ref):
                    ctx.set(d.outputs[i].tready, ready[i])
            await ctx.tick()
            for i in range(len(PORTS)):
                got = [ctx.get(getattr(dut.outputs[i], f)) for f in fields]
                want = [ctx.get(getattr(ref.outputs[i], f)) for f in fields]
                if not got[0] and not want[0]:
                    got, want = got[:1], want[:1]
                assert got == want, f"cycle {cycle}, port {PORTS[i]}: {got} != reference {want}"
                beats_out[i] += got[0] and ready[i]
            got, want = ctx.get(dut.queue_drop), ctx.get(ref.queue_drop)
            assert got == want, f"cycle {cycle}: queue_drop {got:03b} != reference {want:03b}"
            for i in range(len(PORTS)):
                drops[i] += (got >> i) & 1

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sinks_and_compare)
    sim.run()
    return drops, beats_out


def test_admission_equals_the_plain_room():
    rng = random.Random(13)
    # short frames first (their edits fill the edit queue before the beats fill the queue),
    # one-beat frames among them (two frame starts in a row)
    frames = [_frame(rng, rng.choice([6, 8, 14, 16, 20] if k < 400 else [14, 20, 60, 64, 100, 200]),
                     rng.randrange(1, 8)) for k in range(800)]

    def readiness(cycle, port):
        # phy0 stalls for 300 cycles in every 400 (its queues fill, then drain while frames
        # keep coming), then reads slower than frames come in (its queue stays about full)
        if port:
            return 0.8
        return 0.15 if cycle >= 1200 else 0.8 if cycle % 400 >= 300 else 0
    drops, beats_out = _side_by_side(frames, 0.1, readiness, 12_000)
    # The stalled port's edit queue filled (more short frames than it holds were dropped there)
    # and every port sent frames.
    assert drops[0] > EDIT_QUEUE_DEPTH and min(beats_out) > 1000, (drops, beats_out)


def test_a_full_queue_takes_its_spare_beat_and_no_more():
    """Back to back into a port that does not read: one-beat frames after long ones fill its
    queue; the last one to fit does so only with the word before it still uncounted (the queue's
    spare beat); nothing fits after it."""
    rng = random.Random(5)
    frames = [_frame(rng, 200, 0b001) for _ in range(10)] + [_frame(rng, 8, 0b001) for _ in range(20)]
    drops, beats_out = _side_by_side(frames, 0.0, lambda cycle, port: float(cycle >= 600), 1200)
    assert drops[0] > 0 and beats_out[0] > 250, (drops, beats_out)
