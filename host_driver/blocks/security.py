"""Driver for the security stage (SECURITY, SECPORT and SECMATCH blocks of a build with ``NicConfig.security``).

Through a discovered :class:`~host_driver.driver.Nic`, :class:`Security` programs the ACL
classifier from compiled rules (atomically: the new table is written beside the live one and
committed with one command, :class:`host_driver.rules.program.AclTable`) and the payload matcher's
pattern table from compiled content rules (:class:`host_driver.rules.content.MatcherProgram`: the
shadow bank written with MATCHER_WRITE, swapped in by MATCHER_COMMIT), reads every rule's hit
counter, dumps and clears the flow table, and sets default deny and the flow timeouts. Tables are
reached through the SECURITY block's command interface (:mod:`hdl.security.regs`), the same on the
golden model's register file and on the gateware.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from amaranth.hdl import Shape

from hdl.acl.layouts import TcamGeometry
from hdl.flow.flow_table import DEFAULT_TIMEOUTS
from hdl.flow.flow_table import entry_layout as flow_entry_layout
from hdl.packet.host_tag import HOST_TAG_ETHERTYPE, HOST_TAG_OFFSET, HOST_TAG_VERSION, HostTag
from hdl.packet.layouts import decode, encode
from hdl.security.regs import (
    ARG_WORDS,
    CONTROL_DEFAULT_DENY,
    CONTROL_IPS_DIVERT,
    CONTROL_PUNT_ACL_MULTI,
    CONTROL_PUNT_ALL_PAYLOAD,
    COUNTER_CLEAR_BIT,
    FLOW_WAY_SHIFT,
    RESULT_WORDS,
    ROW_WORDS,
    TIMEOUT_REGISTERS,
    Command,
)
from host_driver.blocks.command import COMMAND_POLLS, CommandPort
from host_driver.driver import DiscoveredBlock, Nic
from host_driver.model.flow import FlowEntry, Timeouts
from host_driver.rules.compile import ClassifierEntry
from host_driver.rules.program import AclTable, Op

__all__ = ["Security", "SecurityError", "RuleHits", "COMMAND_POLLS", "split_host_tag", "reinjection"]

log = logging.getLogger(__name__)

_MASK32 = 0xFFFFFFFF
_STATUS_COMMIT_BUSY = 1 << 1


class SecurityError(RuntimeError):
    """The NIC has no security stage, or a command did not complete."""


def split_host_tag(frame: bytes) -> tuple[dict, bytes]:
    """A frame the NIC diverted to the host port: its host tag's fields (:data:`hdl.packet.host_tag.HostTag`)
    and the frame as the NIC received it (tag removed). ValueError for a frame without a tag of this
    version."""
    end = HOST_TAG_OFFSET + HostTag.BYTES
    if len(frame) < end or int.from_bytes(frame[HOST_TAG_OFFSET:HOST_TAG_OFFSET + 2], "big") != HOST_TAG_ETHERTYPE:
        raise ValueError("not a host-tagged frame (no ethertype "
                         f"{HOST_TAG_ETHERTYPE:#06x} after the source MAC address)")
    tag = decode(HostTag, frame[HOST_TAG_OFFSET:end])
    if tag.version != HOST_TAG_VERSION:
        raise ValueError(f"host tag version {tag.version}, this driver knows {HOST_TAG_VERSION}")
    fields = {name: int(getattr(tag, name)) for name, _ in HostTag.WIRE_FIELDS}
    return fields, bytes(frame[:HOST_TAG_OFFSET] + frame[end:])


def reinjection(diverted: bytes) -> bytes:
    """The frame the host sends back into the host port to pass a diverted frame: the same frame and
    tag, ``reinject`` set (the NIC sends it where the tag says)."""
    fields, frame = split_host_tag(diverted)
    fields["reinject"] = 1
    return frame[:HOST_TAG_OFFSET] + encode(HostTag, fields) + frame[HOST_TAG_OFFSET:]


@dataclass(frozen=True)
class RuleHits:
    """One rule's hit counter: (gid, sid), its counter slot and the count read."""
    gid: int
    sid: int
    slot: int
    hits: int


class Security:
    """The security stage of ``nic`` (discovered first); methods are async.

    ``await Security(nic).program(entries)`` replaces the ACL table by ``entries`` (classifier
    order, :func:`host_driver.rules.compile_rules`); :attr:`table` then maps entries and counter
    slots back to rules.
    """

    def __init__(self, nic: Nic):
        self.nic = nic
        found = nic.find("SECURITY")
        if not found:
            raise SecurityError("this NIC has no security stage (no SECURITY block; built with "
                                "NicConfig.security = None?)")
        self.block: DiscoveredBlock = found[0]
        self.ports: list[DiscoveredBlock] = nic.find("SECPORT")
        # An unchanged ARG word is not written again (a row of a sparse table is mostly zero words).
        self._commands = CommandPort(nic, self.block, arg_words=ARG_WORDS, result_words=RESULT_WORDS,
                                     error=SecurityError, skip_unchanged=True)
        found = nic.find("SECMATCH")
        #: The payload matcher's block (None: the build has no matcher).
        self.matcher_block: DiscoveredBlock | None = found[0] if found else None
        #: The bucket words of the matcher's shadow bank as this driver knows them (bucket -> word;
        #: absent: 0). A new driver takes both banks as empty, as after reset.
        self._matcher_shadow: dict[int, int] = {}
        self._matcher_active: dict[int, int] = {}
        self.table: AclTable | None = None
        #: The entries of the live table, in classifier order (what :attr:`table` indexes).
        self.entries: list[ClassifierEntry] = []
        self._geometry = None

    def __repr__(self):
        return f"Security({self.block.key} at 0x{self.block.base:x})"

    async def geometry(self) -> dict:
        """``acl`` (:class:`~hdl.acl.layouts.TcamGeometry`), flow ``sets``, ``ways``, ``addr_bits``
        (the GEOMETRY and FLOW_GEOMETRY constants)."""
        if self._geometry is None:
            g = await self.nic.read(self.block, "GEOMETRY")
            f = await self.nic.read(self.block, "FLOW_GEOMETRY")
            entries, row_bits = g & 0xFFFF, g >> 16
            # The row word's width tells the cycles per key (groups of 36 bits: TcamGeometry.row_bits).
            r = next((r for r in (2, 4, 8, 16, 32, 64) if TcamGeometry(entries, r).row_bits == row_bits), None)
            if r is None:
                raise SecurityError(f"SECURITY.GEOMETRY 0x{g:08x}: no cycles-per-key gives {row_bits}-bit rows")
            self._geometry = {"acl": TcamGeometry(entries, r), "sets": 1 << (f & 0xFF), "ways": f >> 8 & 0xFF,
                              "addr_bits": f >> 16 & 0xFF}
        return self._geometry

    async def matcher_geometry(self) -> dict | None:
        """The payload matcher's table: ``index_bits``, ``tag_bits``, ``max_hits`` (SECMATCH's
        MATCHER_GEOMETRY), or None when the build has no matcher."""
        if self.matcher_block is None:
            return None
        g = await self.nic.read(self.matcher_block, "MATCHER_GEOMETRY")
        return {"index_bits": g & 0xFF, "tag_bits": g >> 8 & 0xFF, "max_hits": g >> 16 & 0xFF}

    async def command(self, op: Command, *args: int, results: int = 0) -> list[int]:
        """Run one command with ARG words ``args``; its first ``results`` RESULT words."""
        return await self._commands.run(op, *args, results=results)

    # -- the ACL ------------------------------------------------------------------------------------

    async def program(self, entries: Sequence[ClassifierEntry], matcher=None) -> int:
        """Replace the ACL table by ``entries`` atomically (the old table keeps deciding until the
        commit; frames see the whole old or the whole new table); returns the commands written.
        The first call of a driver takes the table to be empty, as after reset: entries another
        driver wrote are not cleared.
        :class:`host_driver.rules.program.TableFullError` (nothing written) when the new table
        does not fit beside the live one.

        ``matcher`` (a :class:`host_driver.rules.content.MatcherProgram`): also replace the payload
        matcher's table (:meth:`program_matcher`), after the ACL.

        CONTROL bit 2 (``punt_acl_multi``) is set exactly when ``entries`` hold ``punt`` entries
        (docs/security.md, "ACL actions punt and mirror": they sit last, so one that matched
        behind a deciding entry shows only as ``multi``)."""
        if matcher is not None:
            await self._check_matcher(matcher)      # before anything is written
        geo = (await self.geometry())["acl"]
        if self.table is None:
            # A new driver takes the table as empty (as after reset) but searched with whatever
            # generation the NIC is at, so that its commit makes the new entries live.
            self.table = AclTable(geo, generation=await self.generation())
        ops = self.table.replace(entries)
        for op in ops:
            await self._apply(op)
        self.entries = list(entries)
        await self._set_control_bit(CONTROL_PUNT_ACL_MULTI, any(e.action == "punt" for e in self.entries))
        log.info("ACL programmed: %d rules, %d entries, %d operations", len(self.table.slots),
                 len(self.table.live), len(ops))
        if matcher is not None:
            return len(ops) + await self.program_matcher(matcher)
        return len(ops)

    async def _check_matcher(self, program) -> dict:
        geo = await self.matcher_geometry()
        if geo is None:
            raise SecurityError("this NIC has no payload matcher (no SECMATCH block; built with "
                                "security.matcher_index_bits = 0?): its content rules cannot be programmed")
        if (program.index_bits, program.tag_bits) != (geo["index_bits"], geo["tag_bits"]):
            raise SecurityError(
                f"the content rules were compiled for a matcher table of 2**{program.index_bits} buckets with "
                f"{program.tag_bits}-bit tags; this NIC's has 2**{geo['index_bits']} buckets with "
                f"{geo['tag_bits']}-bit tags (compile with compile_content(rules, index_bits={geo['index_bits']}))")
        return geo

    async def program_matcher(self, program) -> int:
        """Replace the payload matcher's table by ``program``'s (a
        :class:`~host_driver.rules.content.MatcherProgram` compiled for this NIC's MATCHER_GEOMETRY,
        else :class:`SecurityError` with nothing written): every bucket of the shadow bank that differs
        from the new table (:meth:`MatcherProgram.table_writes`) with MATCHER_WRITE, then
        MATCHER_COMMIT, which swaps the banks between frames; then CONTROL bit 1
        (``punt_all_payload``) set when the program has a host-only rule that no ``punt`` entry of the
        programmed ACL covers (its header did not fit: the hardware cannot pick out its frames),
        cleared otherwise. Returns the commands written."""
        await self._check_matcher(program)
        writes = 0
        new = dict(program.table_writes())
        for bucket, word in new.items():
            if self._matcher_shadow.get(bucket, 0) != word:
                await self.command(Command.MATCHER_WRITE, bucket, word)
                writes += 1
        await self.command(Command.MATCHER_COMMIT)
        # After the swap the shadow bank holds the table that was live.
        self._matcher_shadow, self._matcher_active = self._matcher_active, new
        punted = {(e.gid, e.sid) for e in self.entries if e.action == "punt"}
        uncovered = [r for r in program.host_only() if (r.rule.gid, r.rule.sid) not in punted]
        await self.set_punt_all_payload(bool(uncovered))
        log.info("matcher programmed: %d rules, %d buckets used, %d writes, punt_all_payload %s (%d host-only "
                 "rules without ACL punt entries)", len(program.rules), len(program.table), writes, bool(uncovered),
                 len(uncovered))
        return writes + 1

    async def _apply(self, op: Op) -> None:
        if op.kind == "row":
            words = [op.data >> 32 * i & _MASK32 for i in range(ROW_WORDS)]
            await self.command(Command.ACL_ROW, op.addr, *words)
        elif op.kind == "action":
            await self.command(Command.ACL_ACTION, op.addr, op.data)
        elif op.kind == "clear_counter":
            await self.command(Command.ACL_COUNTER, op.addr | 1 << COUNTER_CLEAR_BIT, results=2)
        elif op.kind == "commit":
            await self.command(Command.ACL_COMMIT)
        elif op.kind == "wait_commit":
            for _ in range(COMMAND_POLLS):
                if not await self.nic.read(self.block, "STATUS") & _STATUS_COMMIT_BUSY:
                    break
            else:
                raise SecurityError(f"ACL commit still busy after {COMMAND_POLLS} polls")
        else:
            raise ValueError(f"unknown ACL operation {op.kind!r}")

    async def counter(self, slot: int, *, clear: bool = False) -> int:
        """Hit counter ``slot`` (64 bits), zeroed after the read with ``clear``."""
        lo, hi = await self.command(Command.ACL_COUNTER, slot | int(clear) << COUNTER_CLEAR_BIT, results=2)
        return hi << 32 | lo

    async def rule_hits(self, *, clear: bool = False) -> list[RuleHits]:
        """Every programmed rule's hit counter (frames the rule decided), in classifier order."""
        if self.table is None:
            return []
        return [RuleHits(gid, sid, slot, await self.counter(slot, clear=clear))
                for (gid, sid), slot in self.table.slots.items()]

    async def generation(self) -> int:
        return await self.nic.read(self.block, "STATUS") & 1

    # -- settings -------------------------------------------------------------------------------------

    async def default_deny(self) -> bool:
        return bool(await self.nic.read(self.block, "CONTROL") >> CONTROL_DEFAULT_DENY & 1)

    async def set_default_deny(self, on: bool) -> None:
        """Default deny (CONTROL bit 0): drop IP frames no entry decides, except established flows
        and traffic to the client."""
        await self._set_control_bit(CONTROL_DEFAULT_DENY, on)

    async def set_ips(self, on: bool) -> None:
        """IPS mode (CONTROL bit 3): a punted frame the NIC would forward is diverted to the host
        port with a host tag (:func:`split_host_tag`) instead of being forwarded; the host re-injects
        it (:func:`reinjection`) or drops it (docs/security.md, "IPS: divert and re-inject")."""
        await self._set_control_bit(CONTROL_IPS_DIVERT, on)

    async def punt_all_payload(self) -> bool:
        return bool(await self.nic.read(self.block, "CONTROL") >> CONTROL_PUNT_ALL_PAYLOAD & 1)

    async def set_punt_all_payload(self, on: bool) -> None:
        """CONTROL bit 1: punt every frame the payload matcher inspects to the host path (the
        program has host-only payload rules, whose frames the matcher cannot pick out)."""
        await self._set_control_bit(CONTROL_PUNT_ALL_PAYLOAD, on)

    async def _set_control_bit(self, bit: int, on: bool) -> None:
        control = await self.nic.read(self.block, "CONTROL")
        await self.nic.write(self.block, "CONTROL", control & ~(1 << bit) | int(bool(on)) << bit)

    async def timeouts(self) -> Timeouts:
        """The flow idle timeouts in ms."""
        return Timeouts(**{name: await self.nic.read(self.block, reg) for name, reg in TIMEOUT_REGISTERS})

    async def set_timeouts(self, **ms: int) -> None:
        """Set flow idle timeouts in ms by name (``tcp_new``, ``tcp_established``, ``tcp_closed``,
        ``other_new``, ``other_established``)."""
        regs = dict(TIMEOUT_REGISTERS)
        for name, value in ms.items():
            if name not in regs:
                raise ValueError(f"no flow timeout {name!r}; there are {', '.join(DEFAULT_TIMEOUTS)}")
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MASK32:
                raise ValueError(f"timeout {name} must be 0..2**32-1 ms, not {value!r}")
            await self.nic.write(self.block, regs[name], value)

    # -- the flow table -------------------------------------------------------------------------------

    async def now(self) -> int:
        """Flow table time in ms (NOW)."""
        return await self.nic.read(self.block, "NOW")

    async def read_flow(self, set_index: int, way: int) -> FlowEntry:
        """The entry at (set, way) as stored, expired or not."""
        geo = await self.geometry()
        n = -(-Shape.cast(flow_entry_layout(geo["addr_bits"])).width // 32)
        words = await self.command(Command.FLOW_READ, set_index | way << FLOW_WAY_SHIFT, results=n)
        return FlowEntry.from_bits(sum(w << 32 * i for i, w in enumerate(words)), geo["addr_bits"])

    async def write_flow(self, set_index: int, way: int, entry: FlowEntry) -> None:
        geo = await self.geometry()
        bits = entry.to_bits(geo["addr_bits"])
        n = -(-Shape.cast(flow_entry_layout(geo["addr_bits"])).width // 32)
        await self.command(Command.FLOW_WRITE, set_index | way << FLOW_WAY_SHIFT,
                           *[bits >> 32 * i & _MASK32 for i in range(n)])

    async def flow_table(self, *, live_only: bool = True) -> list[tuple[int, int, FlowEntry]]:
        """(set, way, entry) of every valid flow by set and way; with ``live_only`` those whose age
        (NOW - stamp, mod 2**32) is under their state's timeout, as the table itself judges."""
        geo = await self.geometry()
        timeouts = await self.timeouts()
        now = await self.now()
        out = []
        for s in range(geo["sets"]):
            for w in range(geo["ways"]):
                e = await self.read_flow(s, w)
                if not e.valid:
                    continue
                if live_only and (now - e.stamp) % (1 << 32) >= timeouts.of(e.proto, e.state):
                    continue
                out.append((s, w, e))
        return out

    async def clear_flows(self) -> None:
        """Empty the flow table."""
        await self.command(Command.FLOW_CLEAR)
