"""The flight recorder: a ring of the last frame records in block RAM that freezes on a trigger.

Each frame's record (time, ports, VLAN, MACs, length, drop reason, egress mask) is written as it
leaves the switch stage. A trigger (a loop, a storm drop, or the driver's freeze command) stops
the writing *after* the triggering frame's record, so that frame is the last one kept, as the
golden model's ``FlightRecorder`` does. The driver reads the kept records by index (0 = oldest)
through the SWITCH block's command interface, while traffic runs, and rearms it.
"""

from __future__ import annotations

import enum

from amaranth import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hdl.packet.meta import FRAME_LEN_BITS, DropReason
from hdl.switch.settings import TIME_BITS

__all__ = ["FlightRecorder", "Trigger", "record_layout"]


class Trigger(enum.IntEnum):
    """What froze the recorder (the RECORDER register's bits 3:1)."""
    NONE = 0
    LOOP = 1
    STORM = 2
    COMMAND = 3


def record_layout(port_bits: int, n_ports: int) -> data.StructLayout:
    """One kept record; packed into the RESULT words low bits first."""
    return data.StructLayout({"time": TIME_BITS, "in_port": port_bits, "vlan": 12, "reason": DropReason,
                              "length": FRAME_LEN_BITS, "egress": n_ports, "dst": 48, "src": 48})


class FlightRecorder(wiring.Component):
    """Ring of ``depth`` records (see the module docstring).

    Members
    -------
    write: In(record layout), write_en: In(1)
        A frame's record.
    trigger_loop, trigger_storm: In(1)
        With ``write_en``: this frame triggers (it is still recorded).
    trigger_port: In(port_bits)
    freeze, rearm: In(1)
        The driver's commands (one-cycle strobes).
    read_index: In(range(depth)), read_data: Out(record layout)
        ``read_data`` is the record ``read_index`` places after the oldest kept, one cycle later.
    frozen: Out(1), trigger: Out(3), trigger_at: Out(port_bits), count: Out(16)
    """

    def __init__(self, depth: int, port_bits: int, n_ports: int):
        self.depth = depth
        self.layout = record_layout(port_bits, n_ports)
        super().__init__({
            "write": In(self.layout), "write_en": In(1),
            "trigger_loop": In(1), "trigger_storm": In(1), "trigger_port": In(port_bits),
            "freeze": In(1), "rearm": In(1),
            "read_index": In(range(depth)), "read_data": Out(self.layout),
            "frozen": Out(1), "trigger": Out(3), "trigger_at": Out(port_bits), "count": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.ring = ring = Memory(shape=self.layout, depth=self.depth, init=[])
        wr = ring.write_port()
        rd = ring.read_port()
        w_ptr = Signal(range(self.depth))
        m.d.comb += [wr.addr.eq(w_ptr), wr.data.eq(self.write), wr.en.eq(self.write_en & ~self.frozen),
                     rd.addr.eq((w_ptr - self.count + self.read_index)[:len(w_ptr)]),
                     self.read_data.eq(rd.data)]
        with m.If(self.rearm):
            m.d.sync += [self.frozen.eq(0), self.trigger.eq(Trigger.NONE), self.count.eq(0), w_ptr.eq(0)]
        with m.Else():
            with m.If(self.write_en & ~self.frozen):
                m.d.sync += w_ptr.eq(w_ptr + 1)
                with m.If(self.count != self.depth):
                    m.d.sync += self.count.eq(self.count + 1)
                with m.If(self.trigger_loop | self.trigger_storm):
                    m.d.sync += [self.frozen.eq(1), self.trigger_at.eq(self.trigger_port),
                                 self.trigger.eq(Trigger.LOOP)]
                    with m.If(~self.trigger_loop):
                        m.d.sync += self.trigger.eq(Trigger.STORM)
            with m.If(self.freeze & ~self.frozen):
                m.d.sync += [self.frozen.eq(1), self.trigger.eq(Trigger.COMMAND)]
        return m
