"""Target profiles: which implementation of each role a build uses, chosen once from the config.

A role with two implementations (the CSR slave, the beat FIFO, the frame generator) has one
class per implementation behind one interface, as Amaranth's FIFOs do; a :class:`Target` names
the class for each role and the few build-wide choices that are not a class (register slices,
the reset tree, small FIFOs in block RAM). Components take the class or the target, never a
mode flag. The parser architecture stays its own setting (``NicConfig.parser``,
:func:`hdl.parser.sequential.make_parser`): it is chosen independently of the target.

:data:`SPEED` is for large FPGAs (ECP5: the ULX3S at 156.25 MHz), :data:`AREA` for small ones
(iCE40: the iCEBreaker at 24 MHz). The user-facing setting is still ``compact`` in
``NicConfig`` and nic.toml (``compact = true`` means AREA): boards and users' files name it, and
:func:`target_for` is the one place that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdl.board.linetest import CompactFrameGenerator, FrameGenerator
from hdl.config import NicConfig
from hdl.lib.ram import BeatFifo, CompactBeatFifo
from hdl.mgmt.csr import CompactCsrSlave, CsrSlave

__all__ = ["Target", "SPEED", "AREA", "target_for"]


@dataclass(frozen=True)
class Target:
    """The implementation choices of one kind of FPGA.

    Attributes
    ----------
    name: str
        ``"speed"`` or ``"area"``.
    csr_class: type
        The CSR slave (:class:`~hdl.mgmt.csr_base.Csr` implementation): :meth:`csr` builds it.
    fifo_class: type
        The packet buffer's beat FIFO: :meth:`fifo` builds it.
    frame_generator_class: type
        The line tester's frame generator: :meth:`frame_generator` builds it.
    register_slices: bool
        Register slices between blocks and on the bridge's bus, and kept (per-consumer) copies of
        registers that feed logic across the die; they only cut long routes on a large die.
    reset_tree: bool
        Each NicTop block takes its reset from a register of its own (see :class:`hdl.top.NicTop`).
    block_ram_fifos: bool
        Small FIFOs (descriptor queue, UART receive FIFO) in block RAM
        (:class:`hdl.lib.ram.RamFifo`) rather than in flip-flops or distributed RAM.
    """

    name: str
    csr_class: type
    fifo_class: type
    frame_generator_class: type
    register_slices: bool
    reset_tree: bool
    block_ram_fifos: bool

    def __repr__(self):
        return f"Target({self.name!r})"

    def csr(self, regmap, **kwargs):
        """The CSR slave of this target for ``regmap``."""
        return self.csr_class(regmap, **kwargs)

    def fifo(self, width: int, depth: int, *, slack: int = 2):
        """A beat FIFO of this target (the :class:`hdl.lib.ram.BeatFifo` interface)."""
        return self.fifo_class(width, depth, slack=slack)

    def frame_generator(self, data_width: int, port: int):
        """A frame generator of this target (the :class:`hdl.board.linetest.FrameGenerator` interface)."""
        return self.frame_generator_class(data_width, port)


#: Large FPGAs (ECP5): pipelined CSR with the register counter store, BeatFifo with its
#: flip-flop output queue, the template shifter, register slices, kept copies and the reset tree.
SPEED = Target("speed", csr_class=CsrSlave, fifo_class=BeatFifo, frame_generator_class=FrameGenerator,
               register_slices=True, reset_tree=True, block_ram_fifos=False)
#: Small FPGAs (iCE40): compact CSR with its block-RAM counter bank, block-RAM FIFOs, the
#: template read through a mux, no slices and no reset tree (about 200 iCE40 cells; 24 MHz needs none).
AREA = Target("area", csr_class=CompactCsrSlave, fifo_class=CompactBeatFifo,
              frame_generator_class=CompactFrameGenerator,
              register_slices=False, reset_tree=False, block_ram_fifos=True)


def target_for(config: NicConfig) -> Target:
    """The target profile of a build: :data:`AREA` when ``config.compact``, else :data:`SPEED`."""
    return AREA if config.compact else SPEED
