"""EgressFanout (hdl/switch/egress.py): queue admission against amaranth's own FIFO.

The fan-out decides whether a port takes a frame from a registered copy of its edit queue's room
(issue 13's timing rounds). The reference is the same fan-out deciding from the room that
``amaranth.lib.fifo.SyncFIFO`` itself reports (``w_rdy``). Both run side by side on the same
frames (1 to 25 beats, short ones first, every egress mask, random gaps) into three ports with random backpressure,
one port stalled for long stretches so that its queues fill, drain and fill again: every output
beat and every ``queue_drop`` pulse must be equal, cycle for cycle.
"""

from __future__ import annotations

import random

from amaranth import Module
from amaranth.sim import Simulator
from conftest import frame_beats

from hdl.config import NicConfig
from hdl.switch.egress import EDIT_QUEUE_DEPTH, EgressFanout
from host_driver.switch_config import SwitchConfig

PORTS = ("phy0", "vm1", "vm2")


class FifoRoomFanout(EgressFanout):
    """The reference: admission from the edit FIFO's own ``w_rdy``."""

    def _edit_room(self, m, edits, port):
        return edits.w_rdy


def _config() -> NicConfig:
    cfg = SwitchConfig.from_toml({"ports": {"phy0": {"mode": "trunk", "native": 1}, "vm1": {"vlan": 1},
                                            "vm2": {"vlan": 2}}})
    # A 2 KiB queue (256 beats) holds more short frames than the edit queue does.
    return NicConfig(data_width=64, ports=PORTS, physical_ports=("phy0",), max_frame=200,
                     switch=cfg.settings(list(PORTS), 156.25, mac_sets=64, mac_ways=4,
                                         egress_queue_bytes=2048))


def test_admission_equals_the_fifo_room():
    config = _config()
    top = Module()
    top.submodules.dut = dut = EgressFanout(config)
    top.submodules.ref = ref = FifoRoomFanout(config)
    rng = random.Random(13)
    frames = []
    for k in range(600):
        # short frames first (their edits fill the edit queue before the beats fill the queue),
        # one-beat frames among them (two frame starts in a row)
        lengths = [6, 8, 14, 16, 20] if k < 400 else [14, 20, 60, 64, 100, 200]
        frame = bytes(rng.randrange(256) for _ in range(rng.choice(lengths)))
        desc = {"egress": rng.randrange(1, 8), "beats": len(frame_beats(frame, 8)), "vlan": rng.choice([1, 2]),
                "qinq": rng.randrange(2), "pcp_dei": rng.randrange(16), "in_tagged": rng.randrange(2),
                "in_priority": 0, "mirror_plain": 0}
        frames.append((frame, desc))
    drops = {p: 0 for p in range(len(PORTS))}
    beats_out = [0]

    def both(name):
        return getattr(dut, name), getattr(ref, name)

    async def setup_and_source(ctx):
        for a, b in [both("port_trunk")]:
            ctx.set(a, 0b001)
            ctx.set(b, 0b001)
        for i, pvid in enumerate([1, 1, 2]):
            for sig in both(f"port_pvid_{i}"):
                ctx.set(sig, pvid)
        for frame, desc in frames:
            for data, keep, last in frame_beats(frame, 8):
                while rng.random() < 0.1:
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
        sink_rng = random.Random(7)
        fields = ("tvalid", "tdata", "tkeep", "tlast")
        for cycle in range(12_000):
            # phy0 stalls for 300 cycles in every 400: its queues fill, then drain while frames
            # keep coming
            stalled = cycle % 400 < 300
            for i in range(len(PORTS)):
                ready = not (i == 0 and stalled) and sink_rng.random() < 0.8
                for d in (dut, ref):
                    ctx.set(d.outputs[i].tready, ready)
            await ctx.tick()
            for i in range(len(PORTS)):
                got = [ctx.get(getattr(dut.outputs[i], f)) for f in fields]
                want = [ctx.get(getattr(ref.outputs[i], f)) for f in fields]
                if not got[0] and not want[0]:
                    got, want = got[:1], want[:1]
                assert got == want, f"cycle {cycle}, port {PORTS[i]}: {got} != reference {want}"
                beats_out[0] += got[0]
            got, want = ctx.get(dut.queue_drop), ctx.get(ref.queue_drop)
            assert got == want, f"cycle {cycle}: queue_drop {got:03b} != reference {want:03b}"
            for i in range(len(PORTS)):
                drops[i] += (got >> i) & 1

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(setup_and_source, background=True)
    sim.add_testbench(sinks_and_compare)
    sim.run()
    # The run must have filled the stalled port's edit queue (more short frames than it holds
    # were dropped there) and sent frames everywhere.
    assert drops[0] > EDIT_QUEUE_DEPTH and beats_out[0] > 1000, (drops, beats_out)
