"""The PORT register block: cases the mutation run (``make mutants``) found untested.

PORT.FLAGS is a CONST word the gateware decoder, the driver's map and the golden model all take
from :mod:`hdl.datapath.ports`, so comparing them with each other cannot see a field at the wrong
bit: the expected values here come from the documented layout instead.
"""

import asyncio

import pytest

from hdl.config import NicConfig
from hdl.datapath.ports import PORT
from host_driver.driver import Nic
from host_driver.model.nic import ModelBus, NicModel


def _flags_by_port(config: NicConfig) -> dict[str, int]:
    """PORT.FLAGS of every port, read by the host driver over the golden model's bus."""
    async def read():
        nic = Nic(ModelBus(NicModel(config)))
        await nic.discover()
        return {await nic.port_name(b): await nic.read(b, "FLAGS") for b in nic.find("PORT")}
    return asyncio.run(read())


def test_flags_layout_is_documented_as_bit_0():
    assert PORT.register("FLAGS").doc.startswith("Bit 0: attached to a physical PHY")


@pytest.mark.parametrize("physical", [("phy0",), ("vm1",), ("phy0", "vm1"), ()], ids=str)
def test_port_flags_bit_0_is_physical_and_other_bits_zero(physical):
    config = NicConfig(ports=("phy0", "vm1"), physical_ports=physical)
    assert _flags_by_port(config) == {name: int(name in physical) for name in ("phy0", "vm1")}
