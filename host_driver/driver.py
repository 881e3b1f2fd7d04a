"""The NIC driver: discovers register blocks and reads identity and counters over any :class:`Bus`.

Everything is derived from the discovered blocks and the block types of :mod:`hdl.mgmt.regs`, so a
new counter in the register description shows up in :meth:`Nic.counters` without changes here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from host_driver import regmap
from host_driver.bus import Bus
from host_driver.regmap import BLOCK_TYPES, IDENTITY, MAGIC, PORT, Access, BlockType

__all__ = ["Nic", "DiscoveredBlock", "DiscoveryError", "IdentityError", "received_drops"]

log = logging.getLogger(__name__)


def received_drops(port: dict) -> int:
    """Frames a port received and dropped, every reason, from its entry of :meth:`Nic.counters`:
    the PORT block's ``drop_*``, on a switch the SWPORT block's (``port["switch"]``; its
    ``tx_queue_drop`` counts frames for the port, not from it), and with a security stage the
    SECPORT block's (``port["security"]``). Received = forwarded + this."""
    return (sum(v for k, v in port.items() if k.startswith("drop_"))
            + sum(v for k, v in port.get("switch", {}).items() if k.startswith("drop_"))
            + sum(v for k, v in port.get("security", {}).items() if k.startswith("drop_")))


class DiscoveryError(RuntimeError):
    """The block chain could not be walked (loop, too many blocks, misaligned pointer)."""


class IdentityError(RuntimeError):
    """The IDENTITY block is missing or does not carry the secnic magic number."""


@dataclass(frozen=True)
class DiscoveredBlock:
    """A register block found on the bus: its type (from :data:`hdl.mgmt.regs.BLOCK_TYPES`) and place."""
    type: BlockType
    version: int
    base: int
    instance: int
    size: int

    def addr(self, reg_name: str) -> int:
        """Byte address of register ``reg_name`` (first word for 64-bit counters)."""
        if reg_name in regmap.HEADER_WORDS:
            return self.base + regmap.header_offset(reg_name)
        return self.base + self.type.register(reg_name).offset

    @property
    def key(self) -> str:
        """Short label, e.g. ``PORT1``."""
        return f"{self.type.name}{self.instance}"


class Nic:
    """Driver for one secnic NIC reached through ``bus``.

    Call :meth:`discover` first; the other methods use the blocks it found.
    """

    def __init__(self, bus: Bus):
        self.bus = bus
        self.blocks: list[DiscoveredBlock] = []
        self._security = None

    # -- discovery ---------------------------------------------------------------------------

    async def discover(self) -> list[DiscoveredBlock]:
        """Walk the block chain from address 0 following NEXT; unknown block types are skipped."""
        blocks = []
        seen = set()
        addr = 0
        while True:
            if addr in seen:
                raise DiscoveryError(f"block chain loops back to 0x{addr:x}")
            if len(seen) >= regmap.MAX_BLOCKS:
                raise DiscoveryError(f"more than {regmap.MAX_BLOCKS} blocks in the chain; giving up")
            if addr % 4:
                raise DiscoveryError(f"NEXT pointer 0x{addr:x} is not word aligned")
            seen.add(addr)
            words = {w: await self.bus.read32(addr + regmap.header_offset(w)) for w in regmap.HEADER_WORDS}
            type_id, version = regmap.split_id(words["ID"])
            btype = BLOCK_TYPES.get(type_id)
            if btype is None:
                log.warning("skipping unknown block type 0x%04x (version %d) at 0x%x", type_id, version, addr)
            else:
                if version != btype.version:
                    log.warning("block %s at 0x%x has version %d, driver knows version %d",
                                btype.name, addr, version, btype.version)
                block = DiscoveredBlock(btype, version, addr, words["INSTANCE"], words["SIZE"])
                log.debug("found %s at 0x%x", block.key, addr)
                blocks.append(block)
            addr = words["NEXT"]
            if addr == 0:
                break
        self.blocks = blocks
        log.info("discovered %d blocks: %s", len(blocks), ", ".join(b.key for b in blocks))
        return blocks

    def find(self, type_name: str, instance: int | None = None) -> list[DiscoveredBlock]:
        """Discovered blocks of one type (optionally one instance), in chain order."""
        return [b for b in self.blocks
                if b.type.name == type_name and (instance is None or b.instance == instance)]

    def block(self, type_name: str, instance: int = 0) -> DiscoveredBlock:
        """The one discovered block of ``type_name`` with ``instance``; KeyError if absent."""
        found = self.find(type_name, instance)
        if not found:
            raise KeyError(f"no {type_name} block with instance {instance} was discovered")
        return found[0]

    # -- registers -----------------------------------------------------------------------------

    async def read(self, block: DiscoveredBlock, name: str) -> int:
        """Read a 32-bit register of ``block`` by name."""
        return await self.bus.read32(block.addr(name))

    async def write(self, block: DiscoveredBlock, name: str, value: int) -> None:
        """Write a 32-bit register of ``block`` by name."""
        await self.bus.write32(block.addr(name), value)

    async def read_counter64(self, block: DiscoveredBlock, name: str) -> int:
        """Coherent 64-bit counter read: LO (latches the high word) then HI."""
        reg = block.type.register(name)
        if reg.access is not Access.COUNTER64:
            raise ValueError(f"{block.type.name}.{name} is not a 64-bit counter")
        addr = block.base + reg.offset
        lo = await self.bus.read32(addr)
        hi = await self.bus.read32(addr + 4)
        return hi << 32 | lo

    # -- identity and counters ---------------------------------------------------------------

    async def identity(self) -> dict:
        """Build constants from the IDENTITY block; the magic number is checked."""
        found = self.find(IDENTITY.name)
        if not found:
            raise IdentityError("no IDENTITY block found (did discover() run? is this a secnic NIC?)")
        block = found[0]
        out = {}
        for reg in regmap.const_registers(block.type):
            value = await self.read(block, reg.name)
            if reg.name == "MAGIC":
                if value != MAGIC:
                    raise IdentityError(f"IDENTITY.MAGIC at 0x{block.addr('MAGIC'):x} reads 0x{value:08x}, "
                                        f"expected 0x{MAGIC:08x}: not a secnic NIC or bus miswired")
                continue
            out[reg.name.lower()] = regmap.format_version(value) if reg.name == "HW_VERSION" else value
        return out

    async def mac_table(self):
        """The switch's whole MAC table (:meth:`host_driver.blocks.switch.Switch.mac_table`)."""
        from host_driver.blocks.switch import Switch
        return await Switch(self).mac_table()

    @property
    def security(self):
        """The security stage's driver (:class:`host_driver.blocks.security.Security`; discover
        first). :class:`~host_driver.blocks.security.SecurityError` when the NIC has none."""
        if self._security is None:
            from host_driver.blocks.security import Security
            self._security = Security(self)
        return self._security

    async def port_name(self, block: DiscoveredBlock) -> str:
        """Port name stored in a PORT block (NAME_LO/NAME_HI)."""
        return regmap.decode_name(await self.read(block, "NAME_LO"), await self.read(block, "NAME_HI"))

    async def _block_counters(self, block: DiscoveredBlock) -> dict:
        out: dict = {}
        for reg in regmap.counter_registers(block.type):
            path = regmap.counter_path(block.type, reg.name)
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = await self.read_counter64(block, reg.name)
        return out

    async def counters(self) -> dict:
        """Every counter, JSON-ready, in a stable order (chain order, then address order).

        ``{"ports": {name: {...}}, "parser": {"packets": n, "malformed": {reason: n}}}`` (a switch
        port's SWPORT counters under ``ports[name]["switch"]``, its SECPORT counters under
        ``ports[name]["security"]``); other
        block types with counters get an entry named after the type (plus instance if not 0).
        """
        out: dict = {"ports": {}}
        names = {b.instance: await self.port_name(b) for b in self.find(PORT.name)}
        for block in self.blocks:
            if not regmap.counter_registers(block.type):
                continue
            values = await self._block_counters(block)
            if block.type is PORT or block.type.type_id == PORT.type_id:
                out["ports"].setdefault(names[block.instance], {}).update(values)
            elif block.type.name == "SWPORT":
                # A switch port's own counters go with the port's, under "switch".
                out["ports"].setdefault(names[block.instance], {})["switch"] = values
            elif block.type.name == "SECPORT":
                # ... and the security stage's, under "security".
                out["ports"].setdefault(names[block.instance], {})["security"] = values
            else:
                key = block.type.name.lower() + (str(block.instance) if block.instance else "")
                out[key] = values
        return out
