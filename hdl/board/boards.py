"""Board tops: the NIC with its UART register bridge and line-rate tester, clocked from a PLL.

There are no Ethernet MACs yet, so the packet ports are driven by the built-in line tester
(:mod:`hdl.board.linetest`) and read back through the bridge; the external AXI-Stream ports are tied off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth import Cat, ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib.cdc import ResetSynchronizer

from hdl.config import NicConfig
from hdl.switch.settings import TICK_SHIFT, SwitchPort, SwitchSettings
from hdl.top import NicTop

__all__ = ["Board", "BOARDS", "ULX3S_NIC", "ULX3S_SECURITY", "BoardTop", "ecp5_pll_params", "ice40_pll_params",
           "linetest_switch", "switch_port_names"]

def switch_port_names(ports: int) -> tuple[str, ...]:
    """Port names of a board's switch: the ``switch`` profile's (phy0, vm1.., host, mon) with as
    many VMs as fit; an odd count ends with the monitor port ``mon``, two ports are phy0 and vm1."""
    if not 2 <= ports <= 8:
        raise ValueError(f"a switch has 2..8 ports, not {ports}")
    if ports == 2:
        return ("phy0", "vm1")
    tail = ("host", "mon") if ports % 2 else ("host",)
    return ("phy0", *(f"vm{i}" for i in range(1, ports - len(tail))), *tail)


def linetest_switch(ports: int, clock_mhz: float, **sizes) -> SwitchSettings:
    """The power-on settings of a board's switch: the line tester's peers in VLANs of their own.

    The line tester (hdl.board.linetest) sends from every port to its peer (port ``i ^ 1``, by
    MAC address), and its check needs each checker to see its peer's frames alone. So port 0 is a
    trunk whose native VLAN 1 it shares with port 1, the pair (2k, 2k+1) is VLAN k+1, and with an odd
    port count the last port is the mirror session's monitor port (it receives nothing, mirrors
    nothing until the driver says so). Loop guard and aging as the ``switch`` profile: 16 moves in
    1 ms, 300 s. Every one of these is a register the driver may rewrite; ``sizes`` are the build's
    table and queue sizes (:class:`~hdl.switch.settings.SwitchSettings`).
    """
    tick_hz = clock_mhz * 1e6 / (1 << TICK_SHIFT)
    members = [SwitchPort(trunk=True, pvid=1, vlans=())] + [SwitchPort(pvid=i // 2 + 1) for i in range(1, ports)]
    mirror = {}
    if ports % 2:
        mirror = {"mirror_to": ports - 1}
    return SwitchSettings(ports=tuple(members), aging=int(300 * tick_hz), loop_moves=16,
                          loop_window=max(1, int(1e-3 * tick_hz)), **mirror, **sizes)


@dataclass(frozen=True)
class Board:
    """A supported dev board: its amaranth-boards platform, NIC configuration and core clock."""
    name: str
    platform: str            # "module:Class" in amaranth_boards
    family: str              # "ecp5" or "ice40"
    core_mhz: float
    nic: dict = field(default_factory=dict)
    doc: str = ""
    #: Place-and-route runs a build may make, one seed each, until the core clock meets its
    #: target (see sim.flows.bitstream.build_bitstream).
    pnr_tries: int = 1
    #: The switch the board builds: its port count and sizes (``{"ports": 7, "mac_sets": ...}``,
    #: :func:`linetest_switch`); None: the two-port bump in the wire.
    switch: dict | None = None

    def config(self, overrides: dict | None = None, *, bump: bool = False) -> NicConfig:
        """The board's NicConfig: its own options, then ``overrides`` (a ``[nic]`` table). With a
        switch (unless ``bump``, or ``overrides`` has its own ``switch`` settings) its ports are
        :func:`switch_port_names` and its power-on settings :func:`linetest_switch` at the clock."""
        params = {"clock_mhz": self.core_mhz, "uart_bridge": True, "line_tester": True, **self.nic,
                  **(overrides or {})}
        if self.switch is not None and not bump and "switch" not in params:
            sizes = dict(self.switch)
            n = sizes.pop("ports")
            params.setdefault("ports", switch_port_names(n))
            params["switch"] = linetest_switch(n, params["clock_mhz"], **sizes)
        return NicConfig.from_dict(params, source=f"board {self.name}")

    def make_platform(self):
        import importlib
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)()


#: The ULX3S's security stage (docs/security.md, "Block RAM budget on the ULX3S"): the issues' sizes,
#: 256 ACL entries and a 2048-bucket matcher table (1024 literals), with a flow table of 512 sets x 2
#: ways (1024 flows, IPv4 and IPv6 keys: 20 DP16KD in 512 x 36 mode). With standard frames
#: (``ULX3S_NIC``) the board's NIC takes 171 of the LFE5U-85F's 208 DP16KD (Yosys); the default
#: security build with jumbo frames needs 250.
ULX3S_SECURITY = {"acl_entries": 256, "flow_sets": 512, "flow_ways": 2, "flow_addr_bits": 128,
                  "matcher_index_bits": 11}
#: The ULX3S's NIC options: standard frames (1518 bytes) and a 16 KiB packet buffer, so that the
#: payload stage's beat FIFO (19 DP16KD at 9216 bytes, 5 at 1518) and the buffer (19, 9) leave room
#: for the security stage. A ``--config`` file with these as its ``[nic]`` options builds it:
#: ``max_frame = 1518``, ``buffer_bytes = 16384``, ``security = { flow_sets = 512, flow_ways = 2 }``.
ULX3S_NIC = {"max_frame": 1518, "buffer_bytes": 16384, "security": ULX3S_SECURITY}

BOARDS = {b.name: b for b in [
    # Up to four seeds: the core clock's figure moves by about +-8 MHz with placement alone.
    # Its security profile (ULX3S_NIC) is an option until it places: 2026-12-07 nextpnr found no legal
    # placement for it (docs/performance.md, "Security stage"); `[nic]` options in a --config file build it.
    Board("ulx3s-85f", "ulx3s:ULX3S_85F_Platform", "ecp5", 156.25, {},
          "Radiona ULX3S with LFE5U-85F: the full default NIC at 156.25 MHz (10 Gb/s at W=64).",
          pnr_tries=4),
    # No security stage on the two small parts: its classifier alone (69 DP16KD at 256 entries) is
    # more than the LFE5U-25F's 56 block RAMs, and the iCE40UP5K has 30 EBR and 5,280 cells.
    Board("colorlight-5a-75b", "colorlight_5a75b_r7_0:Colorlight_5A75B_R70Platform", "ecp5", 125.0, {},
          "Colorlight 5A-75B v7.0 with LFE5U-25F and two Gigabit Ethernet PHYs (MACs to come); "
          "125 MHz, the RGMII clock."),
    Board("icebreaker", "icebreaker:ICEBreakerPlatform", "ice40", 24.0,
          {"max_frame": 1518, "buffer_bytes": 4096, "header_window": 128, "counter_width": 32,
           "uart_baud": 115200, "parser": "sequential",
           "compact": True},
          "1BitSquared iCEBreaker with iCE40UP5K: a reduced NIC (standard frames, 4 KiB buffer, 32-bit "
          "counters, sequential parser with its window in block RAM) at 24 MHz."),
]}


def ecp5_pll_params(fin_mhz: float, fout_mhz: float) -> dict:
    """EHXPLLL dividers for ``fout`` from ``fin`` (within 0.5%, else ValueError), as ecppll computes them.

    Limits: PFD 3.125..400 MHz, VCO 400..800 MHz (Lattice TN1263, ECP5 sysCLOCK PLL guide).
    """
    best = None
    for clki in range(1, 129):
        pfd = fin_mhz / clki
        if not 3.125 <= pfd <= 400:
            continue
        for clkfb in range(1, 81):
            fout = pfd * clkfb
            for clkop in range(1, 129):
                vco = fout * clkop
                if not 400 <= vco <= 800:
                    continue
                err = abs(fout - fout_mhz)
                if best is None or err < best[0] - 1e-9:
                    best = (err, clki, clkfb, clkop, fout)
                break
    if best is None or best[0] > 0.005 * fout_mhz:
        closest = "" if best is None else f" (closest: {best[4]:.3f} MHz)"
        raise ValueError(f"no ECP5 PLL setting makes {fout_mhz} MHz from {fin_mhz} MHz{closest}")
    _, clki, clkfb, clkop, fout = best
    return {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
            "CLKOP_CPHASE": clkop // 2 - 1 if clkop > 1 else 0, "fout_mhz": fout}


def ice40_pll_params(fin_mhz: float, fout_mhz: float) -> dict:
    """SB_PLL40 dividers (SIMPLE feedback) for ``fout`` from ``fin``, as icepll computes them.

    Limits: PFD 10..133 MHz, VCO 533..1066 MHz (Lattice iCE40 sysCLOCK PLL design guide).
    """
    best = None
    for divr in range(16):
        pfd = fin_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                fout = vco / (1 << divq)
                err = abs(fout - fout_mhz)
                if best is None or err < best[0] - 1e-9:
                    best = (err, divr, divf, divq, fout, pfd)
    if best is None or best[0] > 0.005 * fout_mhz:
        closest = "" if best is None else f" (closest: {best[4]:.3f} MHz)"
        raise ValueError(f"no iCE40 PLL setting makes {fout_mhz} MHz from {fin_mhz} MHz{closest}")
    _, divr, divf, divq, fout, pfd = best
    filter_range = next(i for i, top in enumerate((17, 26.9, 44.2, 66.9, 101.8, 133), 1) if pfd < top)
    return {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range, "fout_mhz": fout}


class BoardTop(Elaboratable):
    """The NIC on a board: PLL core clock, reset from PLL lock, UART pins to the register bridge."""

    def __init__(self, board: Board, config: NicConfig):
        self.board, self.config = board, config
        self.core_mhz = None   # set at elaboration: the frequency the PLL really makes

    def elaborate(self, platform):
        m = Module()
        # iCE40's PLL must sit on the clock pin itself (SB_PLL40_PAD), so take the raw pad there.
        clk_res = platform.request(platform.default_clk, dir="i" if self.board.family == "ecp5" else "-")
        fin_mhz = platform.default_clk_frequency / 1e6
        m.domains.sync = ClockDomain("sync")
        locked = Signal()
        core_clk = Signal()   # the PLL output; constraints apply to signals, not ClockSignal
        m.d.comb += ClockSignal("sync").eq(core_clk)

        if self.board.family == "ecp5":
            p = ecp5_pll_params(fin_mhz, self.config.clock_mhz)
            m.submodules.pll = Instance(
                "EHXPLLL",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
                p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                p_CLKFB_DIV=p["CLKFB_DIV"],
                i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_res.i, o_CLKOP=core_clk,
                i_CLKFB=core_clk, i_PHASESEL0=Const(0), i_PHASESEL1=Const(0),
                i_PHASEDIR=Const(1), i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1),
                i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0), o_LOCK=locked,
                a_FREQUENCY_PIN_CLKI=f"{fin_mhz:.6f}", a_FREQUENCY_PIN_CLKOP=f"{p['fout_mhz']:.6f}",
            )
        else:
            p = ice40_pll_params(fin_mhz, self.config.clock_mhz)
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
                p_FILTER_RANGE=p["FILTER_RANGE"],
                io_PACKAGEPIN=clk_res.io, o_PLLOUTGLOBAL=core_clk,
                i_RESETB=Const(1), i_BYPASS=Const(0), o_LOCK=locked,
            )
        self.core_mhz = p["fout_mhz"]
        # nextpnr derives the PLL output's constraint from the board oscillator's.
        # Reset: synchronized from PLL lock in its own domain (same clock), then two plain
        # registers (why: the flip-flop driving the NIC's reset net can then sit among its loads).
        m.domains.por = ClockDomain("por")
        m.d.comb += ClockSignal("por").eq(core_clk)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="por")
        reset_pipe = Signal(2, init=0b11)
        m.d.por += reset_pipe.eq(Cat(ResetSignal("por"), reset_pipe[0]))
        m.d.comb += ResetSignal("sync").eq(reset_pipe[1])

        m.submodules.nic = nic = NicTop(self.config)
        uart = platform.request("uart", 0)
        m.d.comb += [nic.uart_rx.eq(uart.rx.i), uart.tx.o.eq(nic.uart_tx)]
        for name in self.config.ports:
            m.d.comb += [getattr(nic, f"s_axis_{name}").tvalid.eq(0), getattr(nic, f"m_axis_{name}").tready.eq(1)]
        return m
