"""The parts a cocotb testbench against the NIC is built from (docs/testbench.md).

::

    from sim.tb import TB, udp_frames

* :class:`TB` (:mod:`sim.tb.nic`): clock, an AXI-Stream source and sink per port, the AXI-Lite
  master, reset; ``send``/``receive`` frames by port name and ``driver()``, the host driver
  (:class:`host_driver.driver.Nic`) over the simulated bus. :class:`Scoreboard` checks against
  the golden model.
* :func:`udp_frames` (:mod:`sim.tb.traffic`): scapy-made Ethernet/IPv4/UDP frames as bytes.
* :func:`run_testbench` (:mod:`sim.tb.testbench`): build the NIC and run a cocotb module file
  against it (what ``secnic testbench FILE.py`` and the ``secnic_sim`` pytest fixture do).

Names are imported on first use, so ``import sim.tb.traffic`` alone does not load cocotb.
"""

import importlib

__all__ = ["TB", "Scoreboard", "AxiLiteBus", "config_from_env", "udp_frames", "run_testbench",
           "TestbenchError"]

_WHERE = {"TB": "nic", "Scoreboard": "nic", "AxiLiteBus": "nic", "config_from_env": "nic",
          "udp_frames": "traffic", "run_testbench": "testbench", "TestbenchError": "testbench"}


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'sim.tb' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sim.tb.{_WHERE[name]}"), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
