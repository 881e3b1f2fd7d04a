"""The switch's register blocks: SWITCH (one) and SWPORT (one per port), and its driver commands.

Settings are RW registers whose reset values are the build's :class:`~hdl.switch.settings.SwitchSettings`
(so a NIC switches as configured from power-on, and the driver may reprogram it). Tables (MAC
table, VLAN table, flight recorder) are reached through one command interface: the driver writes
the arguments, then ``CMD`` with the operation and a new sequence number; the switch carries it out
and copies the sequence number into ``CMD_DONE``, with any answer in ``RESULT0..5``. No write
strobe is needed, and a command never runs twice.
"""

from __future__ import annotations

import enum

from hdl.config import NicConfig
from hdl.mgmt.regs import Access, BlockType, Register, counters
from hdl.packet.meta import SWITCH_DROP_REASONS
from hdl.switch.settings import StormClass

__all__ = ["SWITCH", "SWPORT", "SwitchCounter", "SwportCounter", "SwportLimitCounter", "Command", "switch_values",
           "swport_values",
           "RECORD_WORDS", "ENTRY_WORDS", "RESULT_WORDS", "ARG_WORDS", "STORM_REGISTERS"]

ARG_WORDS = 5
RESULT_WORDS = 6
#: A MAC table entry (valid, static, VLAN, MAC, port, stamp) in the ARG / RESULT words.
ENTRY_WORDS = 4
#: A flight recorder record in the RESULT words.
RECORD_WORDS = 6


class Command(enum.IntEnum):
    """Operations of the ``CMD`` register (bits 3:0; bits 31:24 a sequence number)."""
    NONE = 0
    MAC_READ = 1         #: ARG0 = set | way << 16; RESULT0..3 = the entry
    MAC_WRITE = 2        #: ARG0 = set | way << 16, ARG1..4 = the entry; RESULT0..3 = the entry written
    VLAN_WRITE = 3       #: ARG0 = VID, ARG1 = member port mask
    UNBLOCK = 4          #: ARG0 = mask of ports loop guard blocked, to clear
    RECORDER_READ = 5    #: ARG0 = record index (0 = oldest kept); RESULT0..5 = the record
    RECORDER_FREEZE = 6  #: freeze the flight recorder now
    RECORDER_REARM = 7   #: forget the records, unfreeze


class SwitchCounter(enum.Enum):
    """Learning and event counts of the whole switch."""
    LEARNED = "learned"
    MOVED = "moved"
    TABLE_FULL = "table_full"
    STATIC_MOVE = "static_move"
    LOOP_EVENTS = "loop_events"
    STORM_DROPS = "storm_drops"


class SwportCounter(enum.Enum):
    """Per-port events outside the switch stage: output queue and ingress FIFO drops."""
    TX_QUEUE_DROP = "tx_queue_drop"
    INGRESS_FULL = "ingress_full"
    INGRESS_TOO_LONG = "ingress_too_long"


class SwportLimitCounter(enum.Enum):
    """Per-port learning limit (port security) event."""
    LEARN_LIMIT = "learn_limit"


#: (class, rate register, burst register) per storm class.
STORM_REGISTERS = tuple((c, f"STORM_RATE_{c.name}", f"STORM_BURST_{c.name}") for c in StormClass)

SWITCH = BlockType(0x0050, 1, "SWITCH", "Switch fabric: MAC table aging, loop guard, mirror session, commands "
                   "(MAC table, VLAN table, flight recorder), learning counters.", (
    Register("AGING", 0x10, Access.RW, "MAC aging in ticks of 1024 cycles."),
    Register("LOOP_MOVES", 0x14, Access.RW, "Loop guard: MAC moves onto one port within the window that "
             "make a loop (0: off)."),
    Register("LOOP_WINDOW", 0x18, Access.RW, "Loop guard window in ticks (1..2**24-1)."),
    Register("CONTROL", 0x1C, Access.RW, "Bit 0: loop guard blocks the port it detects a loop on."),
    Register("MIRROR", 0x20, Access.RW, "Mirror session: bit 0 enable, bits 7:4 monitor port, bits 15:8 "
             "ingress port mask, bits 23:16 egress port mask."),
    Register("TICK", 0x24, Access.STATUS, "Current time in ticks of 1024 cycles."),
    Register("BLOCKED", 0x28, Access.STATUS, "Port mask loop guard blocked (cleared by the UNBLOCK command)."),
    Register("CMD", 0x2C, Access.RW, "Command: bits 3:0 operation (docs/switch.md), bits 31:24 sequence "
             "number; a new number starts it."),
    *(Register(f"ARG{i}", 0x30 + 4 * i, Access.RW, f"Command argument {i}.") for i in range(ARG_WORDS)),
    Register("CMD_DONE", 0x44, Access.STATUS, "Bits 31:24: sequence number of the last command finished."),
    *(Register(f"RESULT{i}", 0x48 + 4 * i, Access.STATUS, f"Command result word {i}.") for i in range(RESULT_WORDS)),
    Register("RECORDER", 0x60, Access.STATUS, "Flight recorder: bit 0 frozen, bits 3:1 trigger (1 loop, 2 "
             "storm, 3 command), bits 7:4 trigger port, bits 31:16 records kept."),
    Register("GEOMETRY", 0x64, Access.CONST, "Bits 7:0 log2 MAC table sets, 11:8 ways, 19:12 log2 recorder "
             "depth, 31:20 egress queue KiB."),
) + counters(0x68, [
    (SwitchCounter.LEARNED, "LEARNED", "Source addresses learned into a free way."),
    (SwitchCounter.MOVED, "MOVED", "Learned addresses that moved to another port."),
    (SwitchCounter.TABLE_FULL, "TABLE_FULL", "Source addresses not learned: their set was full."),
    (SwitchCounter.STATIC_MOVE, "STATIC_MOVE", "Frames from a static address on another port than its own."),
    (SwitchCounter.LOOP_EVENTS, "LOOP_EVENTS", "Loops loop guard detected."),
    (SwitchCounter.STORM_DROPS, "STORM_DROPS", "Frames storm control dropped (all ports and classes)."),
]) + (Register("TABLE_STATUS", 0x98, Access.STATUS, "MAC table health. Bit 0: scrub overrun (sticky until "
               "reset): an epoch ended before the scrubber had read every set, so PORT_HELD counts may lag "
               "aging (docs/switch.md, \"Port limit and the scrubber\")."),))

SWPORT = BlockType(0x0051, 1, "SWPORT", "One per port of a switch: VLAN membership, storm limits, switch "
                   "drops by reason and output queue drops.", (
    Register("VLAN", 0x10, Access.RW, "Bit 0: trunk (else access); bits 27:16: port VLAN (access VLAN or "
             "native VLAN; 0: a trunk without one)."),
    *(Register(name, 0x14 + 8 * c + 4 * k, Access.RW,
               (f"Storm limit, {c.label.replace('_', ' ')}: bytes per 1024 cycles (0 with burst 0: not policed)."
                if k == 0 else f"Storm limit, {c.label.replace('_', ' ')}: burst in bytes."))
      for c, rate, burst in STORM_REGISTERS for k, name in enumerate((rate, burst))),
) + counters(0x30, [(r, f"DROP_{r.name}", f"Frames received on this port and dropped: {r.label}.")
                    for r in SWITCH_DROP_REASONS]
             + [(SwportCounter.TX_QUEUE_DROP, "TX_QUEUE_DROP", "Frames for this port dropped: its output queue "
                 "was full."),
                (SwportCounter.INGRESS_FULL, "INGRESS_FULL", "Frames received on this port and dropped whole "
                 "before the pipeline: its ingress FIFO was full (ingress = \"drop\"; not in RX_PACKETS)."),
                (SwportCounter.INGRESS_TOO_LONG, "INGRESS_TOO_LONG", "Frames received on this port and dropped "
                 "whole before the pipeline: longer than its ingress FIFO (ingress = \"drop\"; not in "
                 "RX_PACKETS).")])
    # The per-port learning limit (docs/switch.md, "Port limit and the scrubber"), at the block's end.
    + (Register("PORT_LIMIT", 0xE0, Access.RW, "Learning limit: dynamic MAC table entries this port may hold "
                "(0: no limit). A new source beyond it is not learned (the frame is still forwarded)."),
       Register("PORT_HELD", 0xE4, Access.STATUS, "Dynamic MAC table entries this port holds now (what the limit "
                "is checked against; an aged-out entry until its release)."))
    + counters(0xE8, [(SwportLimitCounter.LEARN_LIMIT, "LEARN_LIMIT", "New source addresses received on this port "
                       "and not learned: the port held its learning limit.")]))


def switch_values(config: NicConfig) -> dict[str, int]:
    """Reset values of the SWITCH block for ``config``."""
    s = config.switch
    mirror = 0
    if s.mirror_to is not None:
        mirror = 1 | s.mirror_to << 4 | s.mirror_ingress << 8 | s.mirror_egress << 16
    return {"AGING": s.aging, "LOOP_MOVES": s.loop_moves, "LOOP_WINDOW": s.loop_window,
            "CONTROL": int(s.loop_block), "MIRROR": mirror,
            "GEOMETRY": ((s.mac_sets.bit_length() - 1) | s.mac_ways << 8 | (s.recorder_depth.bit_length() - 1) << 12
                         | (s.egress_queue_bytes // 1024) << 20)}


def swport_values(config: NicConfig, index: int) -> dict[str, int]:
    """Reset values of port ``index``'s SWPORT block."""
    s = config.switch
    p = s.ports[index]
    values = {"VLAN": int(p.trunk) | p.pvid << 16, "PORT_LIMIT": s.port_limit(index)}
    for c, rate_name, burst_name in STORM_REGISTERS:
        values[rate_name], values[burst_name] = s.storm_limit(index, c)
    return values
