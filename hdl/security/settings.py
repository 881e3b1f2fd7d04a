"""Build parameters of the security stage (``NicConfig.security``; docs/security.md).

:class:`SecuritySettings` fixes the table sizes at build time; ``default_deny`` is the power-on
value of the SECURITY block's CONTROL register (the driver may change it at run time), like
the switch's settings are the reset values of its registers.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdl.acl.layouts import SLOT_BITS

__all__ = ["SecuritySettings", "AUTO_BYPASS", "HOST_PORT"]

#: ``bypass_port`` default: the index of the port named :data:`HOST_PORT` when the NIC has one,
#: else None. :class:`hdl.config.NicConfig` resolves it (it knows the port names).
AUTO_BYPASS = "auto"
#: The port through which the host's software path re-injects frames it has inspected.
HOST_PORT = "host"


@dataclass(frozen=True)
class SecuritySettings:
    """The security stage of one build.

    Parameters
    ----------
    acl_entries:
        ACL classifier capacity in ternary entries (1..4096; :class:`hdl.acl.classifier.AclClassifier`).
    flow_sets, flow_ways:
        Flow table geometry (:class:`hdl.flow.flow_table.FlowTable`): sets a power of two >= 2,
        ways 1..16.
    flow_addr_bits:
        128 (IPv4 and IPv6 flows) or 32 (IPv4 only: IPv6 frames get ``unsupported``, no flow).
    default_deny:
        Power-on value of CONTROL bit 0: an IP frame no ACL entry hits is dropped
        (``DEFAULT_DENY``) unless its flow is established or the frame goes to the client.
    bypass_port:
        Frames received on this port index are not inspected (the host path re-injects frames it
        has already inspected); None: every port is inspected. ``"auto"`` (the default): the
        ``host`` port when the NIC has one.
    """
    acl_entries: int = 256
    flow_sets: int = 1024
    flow_ways: int = 4
    flow_addr_bits: int = 128
    default_deny: bool = False
    bypass_port: int | str | None = AUTO_BYPASS

    def __post_init__(self):
        if isinstance(self.acl_entries, bool) or not isinstance(self.acl_entries, int) \
                or not 1 <= self.acl_entries <= 1 << SLOT_BITS:
            raise ValueError(f"acl_entries must be an integer in 1..{1 << SLOT_BITS}, not {self.acl_entries!r}")
        s = self.flow_sets
        if isinstance(s, bool) or not isinstance(s, int) or s < 2 or s & (s - 1) or s > 1 << 20:
            raise ValueError(f"flow_sets must be a power of two in 2..{1 << 20}, not {s!r}")
        if isinstance(self.flow_ways, bool) or not isinstance(self.flow_ways, int) or not 1 <= self.flow_ways <= 16:
            raise ValueError(f"flow_ways must be an integer in 1..16, not {self.flow_ways!r}")
        if self.flow_addr_bits not in (32, 128) or isinstance(self.flow_addr_bits, bool):
            raise ValueError(f"flow_addr_bits must be 32 or 128, not {self.flow_addr_bits!r}")
        if not isinstance(self.default_deny, bool):
            raise ValueError(f"default_deny must be true or false, not {self.default_deny!r}")
        b = self.bypass_port
        if b != AUTO_BYPASS and b is not None and (isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < 16):
            raise ValueError(f"bypass_port must be a port index, none or {AUTO_BYPASS!r}, not {b!r}")

    def resolved(self, ports: tuple[str, ...]) -> SecuritySettings:
        """These settings for a NIC with ``ports``: ``"auto"`` replaced, the index checked."""
        b = self.bypass_port
        if b == AUTO_BYPASS:
            b = ports.index(HOST_PORT) if HOST_PORT in ports else None
        elif b is not None and b >= len(ports):
            raise ValueError(f"bypass_port {b} is not a port index of {ports!r}")
        return SecuritySettings(self.acl_entries, self.flow_sets, self.flow_ways, self.flow_addr_bits,
                                self.default_deny, b)

    def as_dict(self) -> dict:
        return {"acl_entries": self.acl_entries, "flow_sets": self.flow_sets, "flow_ways": self.flow_ways,
                "flow_addr_bits": self.flow_addr_bits, "default_deny": self.default_deny,
                "bypass_port": self.bypass_port}

    @classmethod
    def from_dict(cls, d: dict) -> SecuritySettings:
        known = {"acl_entries", "flow_sets", "flow_ways", "flow_addr_bits", "default_deny", "bypass_port"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown security option(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(known))}")
        return cls(**d)
