"""Driver for the security stage (SECURITY and SECPORT blocks of a build with ``NicConfig.security``).

Through a discovered :class:`~host_driver.driver.Nic`, :class:`Security` programs the ACL
classifier from compiled rules (atomically: the new table is written beside the live one and
committed with one command, :class:`host_driver.rules.program.AclTable`), reads every rule's hit
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
from hdl.security.regs import (
    ARG_WORDS,
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

__all__ = ["Security", "SecurityError", "RuleHits", "COMMAND_POLLS"]

log = logging.getLogger(__name__)

_MASK32 = 0xFFFFFFFF
_STATUS_COMMIT_BUSY = 1 << 1


class SecurityError(RuntimeError):
    """The NIC has no security stage, or a command did not complete."""


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

    async def command(self, op: Command, *args: int, results: int = 0) -> list[int]:
        """Run one command with ARG words ``args``; its first ``results`` RESULT words."""
        return await self._commands.run(op, *args, results=results)

    # -- the ACL ------------------------------------------------------------------------------------

    async def program(self, entries: Sequence[ClassifierEntry]) -> int:
        """Replace the ACL table by ``entries`` atomically (the old table keeps deciding until the
        commit; frames see the whole old or the whole new table); returns the commands written.
        The first call of a driver takes the table to be empty, as after reset: entries another
        driver wrote are not cleared.
        :class:`host_driver.rules.program.TableFullError` (nothing written) when the new table
        does not fit beside the live one."""
        geo = (await self.geometry())["acl"]
        if self.table is None:
            # A new driver takes the table as empty (as after reset) but searched with whatever
            # generation the NIC is at, so that its commit makes the new entries live.
            self.table = AclTable(geo, generation=await self.generation())
        ops = self.table.replace(entries)
        for op in ops:
            await self._apply(op)
        self.entries = list(entries)
        log.info("ACL programmed: %d rules, %d entries, %d operations", len(self.table.slots),
                 len(self.table.live), len(ops))
        return len(ops)

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
        return bool(await self.nic.read(self.block, "CONTROL") & 1)

    async def set_default_deny(self, on: bool) -> None:
        """Default deny (CONTROL bit 0): drop IP frames no entry decides, except established flows
        and traffic to the client."""
        control = await self.nic.read(self.block, "CONTROL")
        await self.nic.write(self.block, "CONTROL", control & ~1 | int(bool(on)))

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
