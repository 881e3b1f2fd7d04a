"""The host tag: the metadata a diverted frame carries between the NIC and the host (IPS).

In IPS mode (SECURITY CONTROL bit 3, docs/security.md "IPS: divert and re-inject") a frame the NIC
cannot settle is not forwarded but sent to the ``host`` port with this tag inserted after its
source MAC address, where an 802.1Q tag would sit (as switch chips tag frames for their CPU port,
e.g. Marvell's EDSA). The host strips it, inspects the frame, and either drops it or sends it back
into the ``host`` port with the same tag and ``reinject`` set; the NIC then sends the frame, tag
removed, to the ports the tag names, as it would have sent it from ``in_port`` (VLAN ``vlan``),
without learning it on the host port and without inspecting it again.

Why a tag in the frame and not a sideband: a frame and its metadata then cannot be separated on
the host's queues (a DMA ring's descriptor would do the same on a real NIC, but the emulator's
host port is a plain AXI-Stream port whose ``tuser`` carries one bit), pcaps of the host port show
it, and a host written against the tag needs nothing else. The tag carries only what the NIC
needs back (where the frame goes); the host's own inputs (the matcher's hits, the ACL's reason)
are in the frame's record.

The ethertype is IEEE 802's Local Experimental Ethertype 1 (IEEE Std 802-2014, 9.2.4), meant for
exactly such private protocols. Fields in wire order (:func:`hdl.packet.layouts.wire_header`):

========== ==== ====================================================================
field      bits meaning
========== ==== ====================================================================
tpid       16   :data:`HOST_TAG_ETHERTYPE`
version    2    :data:`HOST_TAG_VERSION`
reinject   1    0: NIC to host (diverted); 1: host to NIC (send it on)
acl_punt   1    the record's ``acl_punt`` (why the NIC diverted it)
match_punt 1    the record's ``match_punt``
reserved   11   zero
in_port    4    the port the frame was received on
vlan       12   the VLAN the switch admitted it into
egress     16   the ports the NIC would have sent it to (bit i: port i)
========== ==== ====================================================================
"""

from __future__ import annotations

from hdl.packet.layouts import wire_header

__all__ = ["HostTag", "HOST_TAG_ETHERTYPE", "HOST_TAG_VERSION", "HOST_TAG_OFFSET"]

#: IEEE 802 Local Experimental Ethertype 1.
HOST_TAG_ETHERTYPE = 0x88B5
HOST_TAG_VERSION = 1
#: The tag sits after the destination and source MAC addresses.
HOST_TAG_OFFSET = 12

HostTag = wire_header("HostTag", [("tpid", 16), ("version", 2), ("reinject", 1), ("acl_punt", 1), ("match_punt", 1),
                                  ("reserved", 11), ("in_port", 4), ("vlan", 12), ("egress", 16)],
                      "The host tag of a diverted or re-injected frame (module docstring).")
