"""Golden-model cases the mutation run (``make mutants``) found untested: counter width.

The register map makes counters 64 bits wide (``counter_width``; 32 on small FPGAs). The
existing wrap test starts at 2**64 - 1, where a counter that wrapped at 2**32 gives the same 0.
"""

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from hdl.config import NicConfig
from hdl.datapath.ports import PortCounter
from hdl.mgmt.regs import Event
from host_driver.model.nic import NicModel

FRAME = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() / UDP() / bytes(30))  # 72 bytes


def test_64_bit_counters_carry_past_2_to_the_32():
    model = NicModel(NicConfig())
    model.counters[Event("PORT", 0, PortCounter.RX_PACKETS)] = 2**32 - 1
    model.counters[Event("PORT", 0, PortCounter.RX_BYTES)] = 2**32 - 10
    model.counters[Event("PORT", 1, PortCounter.TX_BYTES)] = 2**40 + 2**32 - 1
    model.process(FRAME, "phy0")
    assert model.counters[Event("PORT", 0, PortCounter.RX_PACKETS)] == 2**32
    assert model.counters[Event("PORT", 0, PortCounter.RX_BYTES)] == 2**32 - 10 + len(FRAME)
    assert model.counters[Event("PORT", 1, PortCounter.TX_BYTES)] == 2**40 + 2**32 - 1 + len(FRAME)


def test_32_bit_counters_wrap_at_2_to_the_32():
    model = NicModel(NicConfig(counter_width=32))
    model.counters[Event("PORT", 0, PortCounter.RX_PACKETS)] = 2**32 - 1
    model.counters[Event("PORT", 0, PortCounter.RX_BYTES)] = 2**32 - 10
    model.process(FRAME, "phy0")
    assert model.counters[Event("PORT", 0, PortCounter.RX_PACKETS)] == 0
    assert model.counters[Event("PORT", 0, PortCounter.RX_BYTES)] == len(FRAME) - 10
