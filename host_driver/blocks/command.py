"""The command interface of register blocks with tables behind them (SWITCH, SECURITY).

The driver writes the argument words ``ARG0..``, then ``CMD`` with the operation in bits 3:0 and a
new sequence number in bits 31:24; the block carries the command out and copies the number into
``CMD_DONE`` bits 31:24, with any answer in ``RESULT0..`` (hdl/switch/regs.py, hdl/security/regs.py).
No write strobe is needed and a command never runs twice.
"""

from __future__ import annotations

import enum

from host_driver.driver import DiscoveredBlock, Nic

__all__ = ["CommandPort", "COMMAND_POLLS"]

_MASK32 = 0xFFFFFFFF
#: CMD_DONE reads before a command counts as stuck (each read is a bus access: on a simulator the
#: accesses are what lets simulated time pass).
COMMAND_POLLS = 10_000


class CommandPort:
    """Runs commands on ``block`` of ``nic``; ``error`` is raised for a command that never finishes.

    With ``skip_unchanged`` an ARG word equal to the one this port last wrote is not written again
    (a sparse table's row is mostly zero words; over a UART bridge every write costs a
    millisecond). That holds while one driver at a time commands the block: the gateware never
    changes ARG registers.
    """

    def __init__(self, nic: Nic, block: DiscoveredBlock, *, arg_words: int, result_words: int,
                 error: type[Exception], skip_unchanged: bool = False):
        self.nic, self.block = nic, block
        self.arg_words, self.result_words = arg_words, result_words
        self.error, self.skip_unchanged = error, skip_unchanged
        self._seq: int | None = None
        self._args: dict[int, int] = {}

    async def run(self, op: enum.IntEnum, *args: int, results: int = 0) -> list[int]:
        """Run ``op`` with ARG words ``args``; its first ``results`` RESULT words."""
        if len(args) > self.arg_words:
            raise ValueError(f"a command takes at most {self.arg_words} arguments")
        if self._seq is None:
            self._seq = await self.nic.read(self.block, "CMD_DONE") >> 24
        for i, a in enumerate(args):
            word = a & _MASK32
            if not self.skip_unchanged or self._args.get(i) != word:
                await self.nic.write(self.block, f"ARG{i}", word)
                self._args[i] = word
        self._seq = (self._seq + 1) & 0xFF
        await self.nic.write(self.block, "CMD", int(op) | self._seq << 24)
        for _ in range(COMMAND_POLLS):
            if await self.nic.read(self.block, "CMD_DONE") >> 24 == self._seq:
                break
        else:
            raise self.error(f"{self.block.type.name.lower()} command {op.name} did not complete after "
                             f"{COMMAND_POLLS} polls")
        return [await self.nic.read(self.block, f"RESULT{i}") for i in range(min(results, self.result_words))]
