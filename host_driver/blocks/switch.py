"""Driver for the switch fabric (SWITCH and SWPORT blocks of a build with ``NicConfig.switch``).

Through a discovered :class:`~host_driver.driver.Nic`, :class:`Switch` dumps the MAC table, writes
static entries and VLAN table rows, programs port VLANs, storm limits, learning limits, aging,
loop guard and the mirror session, clears loop-guard blocks and reads the flight recorder, all while traffic runs:
the tables are reached through the SWITCH block's command interface (:mod:`hdl.switch.regs`),
whose MAC-table accesses alternate with packets in the gateware.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hdl.packet.meta import DropReason
from hdl.switch.mac_table import entry_layout
from hdl.switch.recorder import Trigger, record_layout
from hdl.switch.regs import ARG_WORDS, ENTRY_WORDS, RECORD_WORDS, RESULT_WORDS, STORM_REGISTERS, Command
from hdl.switch.settings import TIME_BITS, StormClass
from host_driver.blocks.command import CommandPort
from host_driver.driver import DiscoveredBlock, Nic
from host_driver.trace import field_decoder

__all__ = ["Switch", "SwitchError", "MacEntryView", "RecorderState", "frozen_recorder"]

log = logging.getLogger(__name__)

_MASK32 = 0xFFFFFFFF


class SwitchError(RuntimeError):
    """The NIC has no switch, or a command did not complete."""


@dataclass(frozen=True)
class MacEntryView:
    """One MAC table entry as the driver reads it."""
    set: int
    way: int
    port: str
    vlan: int
    mac: str
    static: bool
    stamp: int


@dataclass(frozen=True)
class RecorderState:
    """The flight recorder's status: frozen or not, by what, on which port, records kept."""
    frozen: bool
    trigger: str
    port: str | None
    count: int


class Switch:
    """The switch of ``nic`` (discovered first). ``Switch(nic).mac_table()`` and so on; async."""

    def __init__(self, nic: Nic):
        self.nic = nic
        found = nic.find("SWITCH")
        if not found:
            raise SwitchError("this NIC has no switch (no SWITCH block; built with NicConfig.switch = None?)")
        self.block: DiscoveredBlock = found[0]
        self.ports: list[DiscoveredBlock] = nic.find("SWPORT")
        self._commands = CommandPort(nic, self.block, arg_words=ARG_WORDS, result_words=RESULT_WORDS,
                                     error=SwitchError)
        self._geometry = None

    async def _port_names(self) -> list[str]:
        return [await self.nic.port_name(b) for b in self.nic.find("PORT")]

    async def geometry(self) -> dict:
        """MAC table sets and ways, recorder depth, output queue bytes (the GEOMETRY constant)."""
        if self._geometry is None:
            g = await self.nic.read(self.block, "GEOMETRY")
            self._geometry = {"sets": 1 << (g & 0xFF), "ways": g >> 8 & 0xF, "recorder_depth": 1 << (g >> 12 & 0xFF),
                              "egress_queue_bytes": (g >> 20) * 1024}
        return self._geometry

    async def command(self, op: Command, *args: int, results: int = 0) -> list[int]:
        """Run one command with ARG words ``args``; its first ``results`` RESULT words."""
        return await self._commands.run(op, *args, results=results)

    # -- MAC table --------------------------------------------------------------------------------

    def _entry_layout(self):
        return entry_layout(max(1, (len(self.ports) - 1).bit_length()), TIME_BITS)

    async def read_entry(self, set_index: int, way: int) -> dict:
        words = await self.command(Command.MAC_READ, set_index | way << 16, results=ENTRY_WORDS)
        return field_decoder(self._entry_layout())(sum(w << 32 * i for i, w in enumerate(words)))

    async def mac_table(self) -> list[MacEntryView]:
        """Every valid entry by (set, way): the whole table, which a software switch under a MAC
        flood cannot give. (Aged-out entries still valid in RAM are listed with their stamp: compare
        it with :meth:`tick` and the AGING register.)"""
        geo = await self.geometry()
        names = await self._port_names()
        aging = await self.nic.read(self.block, "AGING")
        now = await self.tick()
        out = []
        for s in range(geo["sets"]):
            for w in range(geo["ways"]):
                e = await self.read_entry(s, w)
                if not e["valid"]:
                    continue
                if not e["static"] and (now - e["stamp"]) % (1 << TIME_BITS) >= aging:
                    continue
                mac = ":".join(f"{b:02x}" for b in e["mac"].to_bytes(6, "big"))
                out.append(MacEntryView(s, w, names[e["port"]], e["vlan"], mac, bool(e["static"]), e["stamp"]))
        return out

    async def add_static(self, set_index: int, way: int, vlan: int, mac: bytes, port: int) -> None:
        """Write a static entry at (set, way) (the caller picks the way: the set is
        ``mac_hash(vlan, mac)``)."""
        layout = self._entry_layout()
        bits = (1 << layout["valid"].offset | 1 << layout["static"].offset | vlan << layout["vlan"].offset
                | int.from_bytes(mac, "big") << layout["mac"].offset | port << layout["port"].offset)
        words = [bits >> 32 * i & _MASK32 for i in range(4)]
        await self.command(Command.MAC_WRITE, set_index | way << 16, *words)

    # -- configuration ----------------------------------------------------------------------------

    async def tick(self) -> int:
        return await self.nic.read(self.block, "TICK")

    async def set_port_vlan(self, port: int, *, trunk: bool, pvid: int) -> None:
        await self.nic.write(self.ports[port], "VLAN", int(trunk) | pvid << 16)

    async def set_vlan_members(self, vid: int, ports_mask: int) -> None:
        """Row ``vid`` of the VLAN table: the ports that carry VLAN ``vid``."""
        await self.command(Command.VLAN_WRITE, vid, ports_mask)

    async def set_port_limit(self, port: int, limit: int) -> None:
        """Port ``port``'s learning limit: the dynamic MAC table entries it may hold (0: none).
        Lowering it below what the port holds forgets nothing: the port learns again once
        enough of its entries moved, were deleted or were released after aging out."""
        if not 0 <= limit <= _MASK32:
            raise ValueError(f"a port limit must be 0..2**32-1, not {limit!r}")
        await self.nic.write(self.ports[port], "PORT_LIMIT", limit)

    async def port_limit(self, port: int) -> int:
        """Port ``port``'s learning limit (0: none)."""
        return await self.nic.read(self.ports[port], "PORT_LIMIT")

    async def port_held(self, port: int) -> int:
        """The dynamic MAC table entries port ``port`` holds now, as its limit counts them (an
        aged-out entry until its release: docs/switch.md, "Port limit and the scrubber")."""
        return await self.nic.read(self.ports[port], "PORT_HELD")

    async def set_storm_limit(self, port: int, cls: StormClass, rate: int, burst: int) -> None:
        _, rate_reg, burst_reg = STORM_REGISTERS[cls]
        await self.nic.write(self.ports[port], rate_reg, rate)
        await self.nic.write(self.ports[port], burst_reg, burst)

    async def blocked(self) -> list[str]:
        mask = await self.nic.read(self.block, "BLOCKED")
        names = await self._port_names()
        return [n for i, n in enumerate(names) if mask >> i & 1]

    async def scrub_overrun(self) -> bool:
        """The MAC table's scrubber missed an epoch since reset (PORT_HELD counts may lag aging)."""
        return bool(await self.nic.read(self.block, "TABLE_STATUS") & 1)

    async def unblock(self, mask: int) -> None:
        await self.command(Command.UNBLOCK, mask)

    # -- flight recorder --------------------------------------------------------------------------

    async def recorder_state(self) -> RecorderState:
        v = await self.nic.read(self.block, "RECORDER")
        names = await self._port_names()
        trigger = Trigger(v >> 1 & 7)
        return RecorderState(bool(v & 1), trigger.name.lower(),
                             names[v >> 4 & 0xF] if trigger in (Trigger.LOOP, Trigger.STORM) else None, v >> 16)

    async def recorder(self) -> list[dict]:
        """The kept records, oldest first (the triggering frame's last when frozen by a trigger)."""
        state = await self.recorder_state()
        names = await self._port_names()
        decode = field_decoder(record_layout(max(1, (len(self.ports) - 1).bit_length()), len(self.ports)))
        out = []
        for i in range(state.count):
            words = await self.command(Command.RECORDER_READ, i, results=RECORD_WORDS)
            r = decode(sum(w << 32 * k for k, w in enumerate(words)))
            out.append({"tick": r["time"], "in_port": names[r["in_port"]], "vlan": r["vlan"], "length": r["length"],
                        "dst": ":".join(f"{b:02x}" for b in r["dst"].to_bytes(6, "big")),
                        "src": ":".join(f"{b:02x}" for b in r["src"].to_bytes(6, "big")),
                        "drop": DropReason(r["reason"]).label if r["reason"] else None,
                        "egress": [n for q, n in enumerate(names) if r["egress"] >> q & 1]})
        return out

    async def freeze_recorder(self) -> None:
        await self.command(Command.RECORDER_FREEZE)

    async def rearm_recorder(self) -> None:
        await self.command(Command.RECORDER_REARM)


async def frozen_recorder(nic: Nic) -> dict | None:
    """What ``secnic run`` writes to recorder.jsonl: the flight recorder's state and records if
    the NIC has a switch whose recorder froze, else None."""
    if not nic.find("SWITCH"):
        return None
    sw = Switch(nic)
    state = await sw.recorder_state()
    if not state.frozen:
        return None
    return {"trigger": state.trigger, "port": state.port, "records": await sw.recorder()}
