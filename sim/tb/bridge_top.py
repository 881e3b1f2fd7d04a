"""Test-only top for the UART bridge: :class:`hdl.board.bridge.UartBridge` driving the real
:class:`hdl.mgmt.csr.CsrSlave` of a NIC build, with small counters of the bridge's event pulses.

Used by ``tests/test_bridge_cocotb.py`` beside ``hdl.top.NicTop`` with ``uart_bridge=True``: same
port names (``uart_rx``/``uart_tx``), so ``bridge_cocotb`` runs against either, and the pulse
counters let the tests check event counts exactly (reading NicTop's BRIDGE block goes through the
bridge and moves FRAMES_OK).
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.board.bridge import UartBridge
from hdl.config import NicConfig
from hdl.mgmt.csr import CsrSlave
from hdl.top import build_register_map

__all__ = ["BridgeTop", "bridge_top", "sim_config", "EVENTS", "SIM_BAUD_DIVISOR"]

#: Clock cycles per bit in simulation: the fastest ``NicConfig.uart_baud`` allows (clock/8).
SIM_BAUD_DIVISOR = 8
EVENTS = ("ok", "bad_checksum", "bad_command", "truncated")


def sim_config(**kwargs) -> NicConfig:
    """A NicConfig whose ``uart_baud`` is clock/:data:`SIM_BAUD_DIVISOR` (``kwargs`` as for NicConfig)."""
    clock_mhz = kwargs.get("clock_mhz", NicConfig().clock_mhz)
    return NicConfig(uart_baud=round(clock_mhz * 1e6) // SIM_BAUD_DIVISOR, **kwargs)


class BridgeTop(wiring.Component):
    """UartBridge (at ``config.uart_baud``) + CsrSlave(build_register_map(config)).

    Members
    -------
    uart_rx: In(1)
        Host-to-NIC line.
    uart_tx: Out(1)
        NIC-to-host line.
    cnt_ok, cnt_bad_checksum, cnt_bad_command, cnt_truncated: Out(16)
        How many pulses of each bridge event so far (stand-in for the lead's BRIDGE counter block).
    """

    def __init__(self, config: NicConfig):
        self.config = config
        self.regmap = build_register_map(config)
        members = {"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1)}
        members.update({f"cnt_{e}": Out(16) for e in EVENTS})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        clk_hz = round(self.config.clock_mhz * 1e6)
        m.submodules.bridge = bridge = UartBridge(clk_hz=clk_hz, baud=self.config.uart_baud,
                                                  addr_width=self.regmap.address_width)
        m.submodules.csr = csr = CsrSlave(self.regmap)
        wiring.connect(m, bridge.m_axil, csr.s_axil)
        m.d.comb += [bridge.rx.eq(self.uart_rx), self.uart_tx.eq(bridge.tx)]
        for e in EVENTS:
            cnt = getattr(self, f"cnt_{e}")
            with m.If(getattr(bridge, e)):
                m.d.sync += cnt.eq(cnt + 1)
        return m


def bridge_top(config: NicConfig) -> BridgeTop:
    """Top factory for :func:`sim.runner.build` (its module source is part of the cache key)."""
    return BridgeTop(config)
