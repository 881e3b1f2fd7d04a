"""Timing techniques in one place: registered copies that synthesis keeps apart.

A register whose loads are spread over the die is duplicated so that each copy can sit next to
its loads (see docs/performance.md for the rounds that found each one). Yosys merges identical
flip-flops, so every deliberate copy is marked with :data:`KEEP_COPY` and every synthesis script
here runs :data:`YOSYS_KEEP_COPIES` right after reading the design.
"""

from amaranth.hdl import Signal

__all__ = ["KEEP_COPY", "YOSYS_KEEP_COPIES", "keep_copy"]

#: Signal attribute marking a register as a deliberate duplicate that synthesis must not merge.
KEEP_COPY = "secnic_keep_copy"
#: Yosys command, run right after reading the design, that puts ``keep`` on the flip-flops driving
#: signals marked with :data:`KEEP_COPY`, so ``opt_merge`` leaves each copy standing. Amaranth puts
#: signal attributes on the wire only, and opt_merge looks at the cell.
YOSYS_KEEP_COPIES = f"setattr -set keep 1 a:{KEEP_COPY} %ci1:+$dff,$adff[Q] c:* %i"


def keep_copy(signal, *, name: str, reset_less: bool = True) -> Signal:
    """A new signal for a registered duplicate of ``signal`` that synthesis keeps apart.

    A register fanning out across the die is copied so each copy can sit next to its loads, but
    identical registers are merged by Yosys unless they are marked (see :data:`YOSYS_KEEP_COPIES`,
    which every synthesis script here runs). The caller assigns it in a sync domain. Copies are
    reset-less unless told otherwise: a copy of a data register needs no reset.

    ``signal`` itself, when it is a Signal (the original register), is marked too: of two
    identical flip-flops of which only one has ``keep``, ``opt_merge`` may keep that one and fold
    the other into it (it did for the resettable copies of the arbiter's grant), which is the
    same single register again.
    """
    if isinstance(signal, Signal):
        signal.attrs[KEEP_COPY] = 1
    return Signal.like(signal, name=name, attrs={KEEP_COPY: 1}, reset_less=reset_less)
