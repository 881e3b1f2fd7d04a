"""secnic gateware: Amaranth 0.5 description of a security smart-NIC.

Nothing in this package imports ``sim`` or ``host_driver``; it is the single source of truth
for header layouts (:mod:`hdl.packet.layouts`), per-packet metadata (:mod:`hdl.packet.meta`), the NIC
configuration (:mod:`hdl.config`) and the register description (:mod:`hdl.mgmt.regs`).
"""
