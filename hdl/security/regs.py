"""The security stage's register blocks: SECURITY (one) and SECPORT (one per port) — the register
contract the gateware, the golden model's register file and the host driver share (docs/security.md).

Settings are RW registers whose reset values come from the build's
:class:`~hdl.security.settings.SecuritySettings` and Suricata's default flow timeouts. Tables (ACL
rows and actions, hit counters, the flow table) are reached through one command interface, as in
the SWITCH block (:mod:`hdl.switch.regs`): the driver writes the arguments, then ``CMD`` with the
operation and a new sequence number; the stage carries it out and copies the sequence number into
``CMD_DONE``, with any answer in ``RESULT0..``. A command never runs twice.

Argument and result words (bit 0 of a multi-word value in bit 0 of the first word):

========================  =====================================================  ======================
op                        ARG words                                              RESULT words
========================  =====================================================  ======================
ACL_ROW                   ARG0 = column << 9 | row; ARG1.. the row word          --
                          (``TcamGeometry.row_bits`` bits, :data:`ROW_WORDS`)
ACL_ACTION                ARG0 = entry index; ARG1 = ``AclActionWord``           --
ACL_COMMIT                --  (done once ``commit_busy`` has fallen)              --
ACL_COUNTER               ARG0 = slot | clear << 31                              RESULT0..1 = the count
                                                                                 before any clear
FLOW_READ                 ARG0 = set | way << 24                                 RESULT0.. the entry
FLOW_WRITE                ARG0 = set | way << 24; ARG1.. the entry               RESULT0.. the entry
FLOW_CLEAR                --                                                     --
MATCHER_WRITE             ARG0 = bucket; ARG1 = the entry word                   --
                          (:func:`hdl.matcher.entry_layout`: valid, settled, tag)
MATCHER_COMMIT            --  (done once ``commit_pending`` has fallen)           --
========================  =====================================================  ======================

MATCHER_WRITE writes one bucket of the payload matcher's shadow bank (``PayloadStage.table_w``,
:mod:`hdl.security.payload`); MATCHER_COMMIT swaps the banks between frames (docs/matcher.md).

Flow entries are :func:`hdl.flow.flow_table.entry_layout` of the build's ``flow_addr_bits``
(:data:`ENTRY_WORDS` words at 128 bits); the ACL row word and action word are
:mod:`hdl.acl.layouts`' (``TcamGeometry(acl_entries, FRAME_CYCLES).rows``, ``AclActionWord``).
Flow time is in milliseconds (:data:`hdl.flow.flow_table.TIME_UNIT_S`); ``NOW`` shows it so the
driver can tell live entries of a dump from expired ones.
"""

from __future__ import annotations

import enum

from amaranth.hdl import Shape

from hdl.acl.layouts import TcamGeometry
from hdl.config import NicConfig
from hdl.flow.flow_table import DEFAULT_TIMEOUTS, entry_layout
from hdl.mgmt.regs import Access, BlockType, Register, counters
from hdl.packet.meta import SECURITY_DROP_REASONS

__all__ = ["SECURITY", "SECPORT", "Command", "SecurityCounter", "SecportCounter", "security_values",
           "secport_values", "CYCLES_PER_KEY", "ROW_WORDS", "ENTRY_WORDS", "ARG_WORDS", "RESULT_WORDS",
           "TIMEOUT_REGISTERS", "FLOW_WAY_SHIFT", "COUNTER_CLEAR_BIT", "SECPORT_DROP_REGISTERS", "MATCHER_COUNTERS",
           "SECMATCH", "secmatch_values", "CONTROL_DEFAULT_DENY", "CONTROL_PUNT_ALL_PAYLOAD",
           "CONTROL_PUNT_ACL_MULTI", "CONTROL_IPS_DIVERT"]

#: The classifier takes a key every 8 cycles (hdl.switch.stage.FRAME_CYCLES: one minimum frame at W=64).
CYCLES_PER_KEY = 8
#: ARG words of one ACL row (the row word's width does not depend on the entry count).
ROW_WORDS = -(-TcamGeometry(1, CYCLES_PER_KEY).row_bits // 32)
#: Words of one flow entry at 128-bit addresses (fewer are used at 32).
ENTRY_WORDS = -(-Shape.cast(entry_layout(128)).width // 32)
ARG_WORDS = 1 + max(ROW_WORDS, ENTRY_WORDS)
RESULT_WORDS = ENTRY_WORDS
#: CONTROL bits.
CONTROL_DEFAULT_DENY = 0
CONTROL_PUNT_ALL_PAYLOAD = 1
CONTROL_PUNT_ACL_MULTI = 2
#: IPS: frames the ACL or the matcher punts are diverted to the host port, not copied (docs/security.md,
#: "IPS: divert and re-inject"; the golden model carries it out, the gateware does not yet).
CONTROL_IPS_DIVERT = 3
#: FLOW_READ / FLOW_WRITE: ARG0 = set | way << FLOW_WAY_SHIFT.
FLOW_WAY_SHIFT = 24
#: ACL_COUNTER: ARG0 bit that clears the counter after reading it.
COUNTER_CLEAR_BIT = 31
#: (FlowTable input, register name) of each flow timeout, in FlowTable's order.
TIMEOUT_REGISTERS = tuple((name, name.upper()) for name in DEFAULT_TIMEOUTS)


class Command(enum.IntEnum):
    """Operations of the ``CMD`` register (bits 3:0; bits 31:24 a sequence number)."""
    NONE = 0
    ACL_ROW = 1       #: ARG0 = column << 9 | row, ARG1.. = row word
    ACL_ACTION = 2    #: ARG0 = entry index, ARG1 = AclActionWord (action | slot << 3)
    ACL_COMMIT = 3    #: flip the search generation; done when commit_busy has fallen
    ACL_COUNTER = 4   #: ARG0 = slot | clear << 31; RESULT0..1 = the 64-bit count
    FLOW_READ = 5     #: ARG0 = set | way << 24; RESULT0.. = the entry
    FLOW_WRITE = 6    #: ARG0 = set | way << 24, ARG1.. = the entry; RESULT0.. = the entry written
    FLOW_CLEAR = 7    #: empty the flow table
    MATCHER_WRITE = 8   #: ARG0 = bucket, ARG1 = the matcher entry word (shadow bank)
    MATCHER_COMMIT = 9  #: the matcher's shadow bank becomes active; done when commit_pending has fallen


class SecurityCounter(enum.Enum):
    """Flow table outcomes and ACL verdicts of the whole stage (one per inspected frame)."""
    FLOW_NEW = "flow_new"
    FLOW_EXISTING = "flow_existing"
    FLOW_TABLE_FULL = "flow_table_full"
    FLOW_UNSUPPORTED = "flow_unsupported"
    ACL_PASS = "acl_pass"
    ACL_ALERT = "acl_alert"
    ACL_DROP = "acl_drop"
    ACL_REJECT = "acl_reject"
    DEFAULT_DENY = "default_deny"
    MATCHER_FRAMES = "matcher_frames"
    MATCHER_PUNTS = "matcher_punts"
    MATCHER_OVERFLOWS = "matcher_overflows"
    MATCHER_TOO_LONG = "matcher_too_long"


#: The payload matcher's counters (hdl.security.payload.PayloadStage.events), in the SECMATCH block.
MATCHER_COUNTERS = (SecurityCounter.MATCHER_FRAMES, SecurityCounter.MATCHER_PUNTS,
                    SecurityCounter.MATCHER_OVERFLOWS, SecurityCounter.MATCHER_TOO_LONG)


class SecportCounter(enum.Enum):
    """Per-port security events other than drops (none of them is a drop: received = forwarded +
    dropped per port is untouched)."""
    ALERTS = "alerts"
    ACL_PUNTS = "acl_punts"
    ACL_MIRRORS = "acl_mirrors"
    IPS_DIVERTS = "ips_diverts"
    IPS_REINJECTS = "ips_reinjects"


#: SECPORT drop counters by reason (``drop_*`` in counters.json: part of a port's received drops).
SECPORT_DROP_REGISTERS = {"ACL_DROP": "DROP_ACL", "ACL_REJECT": "DROP_REJECT", "DEFAULT_DENY": "DROP_DEFAULT_DENY"}

_CMD_BASE = 0x34
_DONE = _CMD_BASE + 4 * (1 + ARG_WORDS)
_NOW = _DONE + 4 * (1 + RESULT_WORDS)

SECURITY = BlockType(0x0060, 1, "SECURITY", "Security stage: flow table + ACL classifier (docs/security.md): "
                     "default deny, flow timeouts, commands (ACL rows, actions, commit, rule counters; flow "
                     "table read, write, clear), verdict and flow counters.", (
    Register("CONTROL", 0x10, Access.RW, "Bit 0: default deny (an IP frame no ACL entry hits is dropped unless "
             "its flow is established or it goes to the client). Bit 1: punt all payload (every frame the "
             "payload matcher inspects is punted to the host path: the program has host-only payload rules "
             "that no ACL punt entry covers). Bit 2: punt ACL multi (a drop, reject or alert first hit with "
             "more entries hit is punted too: the table holds punt entries). Bit 3: IPS divert (a punted frame "
             "the NIC would forward goes to the host port with a host tag instead, and the host re-injects "
             "or drops it; the switch NIC only: a bump in the wire has no host port)."),
    *(Register(reg, 0x14 + 4 * i, Access.RW, f"Flow idle timeout, {name.replace('_', ' ')}, in ms "
               f"(reset: Suricata's default, {DEFAULT_TIMEOUTS[name] // 1000} s).", reset=DEFAULT_TIMEOUTS[name])
      for i, (name, reg) in enumerate(TIMEOUT_REGISTERS)),
    Register("GEOMETRY", 0x28, Access.CONST, "ACL: bits 15:0 entries, bits 31:16 bits of a row word."),
    Register("FLOW_GEOMETRY", 0x2C, Access.CONST, "Flow table: bits 7:0 log2 sets, bits 15:8 ways, bits 23:16 "
             "address bits (32 or 128)."),
    Register("STATUS", 0x30, Access.STATUS, "Bit 0: ACL generation searched; bit 1: commit busy (keys of the "
             "previous generation still in flight)."),
    Register("CMD", _CMD_BASE, Access.RW, "Command: bits 3:0 operation (docs/security.md), bits 31:24 sequence "
             "number; a new number starts it."),
    *(Register(f"ARG{i}", _CMD_BASE + 4 + 4 * i, Access.RW, f"Command argument {i}.") for i in range(ARG_WORDS)),
    Register("CMD_DONE", _DONE, Access.STATUS, "Bits 31:24: sequence number of the last command finished."),
    *(Register(f"RESULT{i}", _DONE + 4 + 4 * i, Access.STATUS, f"Command result word {i}.")
      for i in range(RESULT_WORDS)),
    Register("NOW", _NOW, Access.STATUS, "Flow table time in ms since reset (wraps at 2**32)."),
) + counters(_NOW + 8, [        # 64-bit counters are 8-byte aligned
    (SecurityCounter.FLOW_NEW, "FLOW_NEW", "Frames that created a flow."),
    (SecurityCounter.FLOW_EXISTING, "FLOW_EXISTING", "Frames of a live flow."),
    (SecurityCounter.FLOW_TABLE_FULL, "FLOW_TABLE_FULL", "IP frames of no live flow whose set was full: no flow."),
    (SecurityCounter.FLOW_UNSUPPORTED, "FLOW_UNSUPPORTED", "IPv6 frames in a table built for IPv4 only: no flow."),
    (SecurityCounter.ACL_PASS, "ACL_PASS", "Frames whose first ACL hit is a pass rule's."),
    (SecurityCounter.ACL_ALERT, "ACL_ALERT", "Frames whose first ACL hit is an alert rule's."),
    (SecurityCounter.ACL_DROP, "ACL_DROP", "Frames whose first ACL hit is a drop rule's."),
    (SecurityCounter.ACL_REJECT, "ACL_REJECT", "Frames whose first ACL hit is a reject rule's."),
    (SecurityCounter.DEFAULT_DENY, "DEFAULT_DENY", "Frames default deny dropped."),
]))

# The matcher's counters do not fit at the end of SECURITY (228 bytes + 4 x 8 > BLOCK_STRIDE): a block of
# their own, after the SECPORT blocks, in builds with a matcher only (its absence tells the driver so).
SECMATCH = BlockType(0x0062, 1, "SECMATCH", "Payload matcher of the security stage (docs/matcher.md, \"In the "
                     "NIC\"; docs/security.md): its table's shape and frame counters, counted from the final "
                     "records (frames the stage bypassed count nowhere). Its pattern table is written through "
                     "the SECURITY block's MATCHER_WRITE and MATCHER_COMMIT commands.", (
    Register("MATCHER_GEOMETRY", 0x10, Access.CONST, "Bits 7:0 index bits (log2 buckets), bits 15:8 tag bits, "
             "bits 23:16 hit slots per frame (max hits)."),
) + counters(0x18, [     # 64-bit counters are 8-byte aligned
    (SecurityCounter.MATCHER_FRAMES, "MATCHER_FRAMES", "Frames with a payload the matcher inspected "
     "(match_inspected)."),
    (SecurityCounter.MATCHER_PUNTS, "MATCHER_PUNTS", "Frames punted to the host path (match_punt: an unsettled "
     "hit, more hits than slots, too long for the matcher's FIFO, or CONTROL.punt_all_payload)."),
    (SecurityCounter.MATCHER_OVERFLOWS, "MATCHER_OVERFLOWS", "Frames with more matcher hits than its slots "
     "(match_overflow)."),
    (SecurityCounter.MATCHER_TOO_LONG, "MATCHER_TOO_LONG", "Frames that did not fit in the matcher's beat FIFO "
     "(match_too_long; punted unless they have no payload)."),
]))

SECPORT = BlockType(0x0061, 1, "SECPORT", "One per port of a security build: frames received on the port that "
                    "the security stage dropped (by reason) or alerted on.", counters(0x10, [
    *((r, SECPORT_DROP_REGISTERS[r.name], f"Frames received on this port and dropped: {r.label.replace('_', ' ')}.")
      for r in SECURITY_DROP_REASONS),
    (SecportCounter.ALERTS, "ALERTS", "Frames received on this port that raised an alert (alert, drop and reject "
     "hits)."),
    (SecportCounter.ACL_PUNTS, "ACL_PUNTS", "Frames received on this port that the ACL handed to the host path "
     "(acl_punt: a punt first hit, or a deciding hit with more entries hit while CONTROL.punt_acl_multi is set)."),
    (SecportCounter.ACL_MIRRORS, "ACL_MIRRORS", "Frames received on this port whose first ACL hit is a mirror "
     "entry (a switch copies each one it forwards to its monitor port)."),
    (SecportCounter.IPS_DIVERTS, "IPS_DIVERTS", "Frames received on this port that IPS mode diverted to the host "
     "port (CONTROL.ips_divert)."),
    (SecportCounter.IPS_REINJECTS, "IPS_REINJECTS", "Host-tagged frames the host re-injected through this port "
     "(CONTROL.ips_divert)."),
]))


def security_values(config: NicConfig) -> dict[str, int]:
    """Reset and constant values of the SECURITY block for ``config``."""
    s = config.security
    geo = TcamGeometry(s.acl_entries, CYCLES_PER_KEY)
    values = {"CONTROL": int(s.default_deny) << CONTROL_DEFAULT_DENY,
              "GEOMETRY": s.acl_entries | geo.row_bits << 16,
              "FLOW_GEOMETRY": (s.flow_sets.bit_length() - 1) | s.flow_ways << 8 | s.flow_addr_bits << 16}
    values.update({reg: DEFAULT_TIMEOUTS[name] for name, reg in TIMEOUT_REGISTERS})
    return values


def secmatch_values(config: NicConfig) -> dict[str, int]:
    """The SECMATCH block's constants for ``config`` (a build whose security stage has a matcher)."""
    s = config.security
    return {"MATCHER_GEOMETRY": s.matcher_index_bits | s.matcher_tag_bits << 8 | s.matcher_max_hits << 16}


def secport_values(config: NicConfig, index: int) -> dict[str, int]:
    """Values of port ``index``'s SECPORT block (it has only counters)."""
    return {}
