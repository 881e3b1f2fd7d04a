"""secnic host side: bus abstraction, register map, driver, golden model and trace formatter.

Nothing here imports :mod:`sim`; the simulation imports this package, never the reverse.
"""

from host_driver.bus import Bus, BusError
from host_driver.driver import DiscoveredBlock, DiscoveryError, IdentityError, Nic

__all__ = ["Bus", "BusError", "Nic", "DiscoveredBlock", "DiscoveryError", "IdentityError"]
