"""Build parameters of the security stage (``NicConfig.security``; docs/security.md).

:class:`SecuritySettings` fixes the table sizes at build time; ``default_deny`` is the power-on
value of the SECURITY block's CONTROL register (the driver may change it at run time), like
the switch's settings are the reset values of its registers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from hdl.acl.layouts import SLOT_BITS

__all__ = ["SecuritySettings", "AUTO_BYPASS", "HOST_PORT", "MATCHER_INDEX_BITS", "MATCHER_MAX_HITS"]

#: ``bypass_port`` default: the index of the port named :data:`HOST_PORT` when the NIC has one,
#: else None. :class:`hdl.config.NicConfig` resolves it (it knows the port names).
AUTO_BYPASS = "auto"
#: The port through which the host's software path re-injects frames it has inspected.
HOST_PORT = "host"
#: ``matcher_index_bits``: 0 (no matcher) or this range (:class:`hdl.matcher.Matcher`'s).
MATCHER_INDEX_BITS = range(4, 21)
#: ``matcher_max_hits``: hit slots per frame (the record's ``match_hits``; MATCHER_GEOMETRY has 8 bits).
MATCHER_MAX_HITS = range(1, 17)


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
    matcher_index_bits:
        The payload matcher's table (:class:`hdl.security.payload.PayloadStage`, docs/matcher.md):
        log2 of its buckets (11: 2048 buckets, at most 1024 literals; 4..20), or 0 for no matcher.
        Its tags are whole (``32 - matcher_index_bits`` bits: a hit is exact on 4 bytes).
    matcher_max_hits:
        Hit slots per frame in the matcher's result and the record (1..16).
    """
    acl_entries: int = 256
    flow_sets: int = 1024
    flow_ways: int = 4
    flow_addr_bits: int = 128
    default_deny: bool = False
    bypass_port: int | str | None = AUTO_BYPASS
    matcher_index_bits: int = 11
    matcher_max_hits: int = 4

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
        ib = self.matcher_index_bits
        if isinstance(ib, bool) or not isinstance(ib, int) or (ib != 0 and ib not in MATCHER_INDEX_BITS):
            raise ValueError(f"matcher_index_bits must be 0 (no matcher) or an integer in "
                             f"{MATCHER_INDEX_BITS.start}..{MATCHER_INDEX_BITS.stop - 1}, not {ib!r}")
        mh = self.matcher_max_hits
        if isinstance(mh, bool) or not isinstance(mh, int) or mh not in MATCHER_MAX_HITS:
            raise ValueError(f"matcher_max_hits must be an integer in {MATCHER_MAX_HITS.start}.."
                             f"{MATCHER_MAX_HITS.stop - 1}, not {mh!r}")

    @property
    def matcher(self) -> tuple[int, int] | None:
        """``(index_bits, max_hits)`` of the payload matcher (as ``make_verdict_record`` takes it),
        None when the build has none."""
        return (self.matcher_index_bits, self.matcher_max_hits) if self.matcher_index_bits else None

    @property
    def matcher_tag_bits(self) -> int:
        """Tag bits per bucket of the matcher's table (whole tags), 0 without a matcher."""
        return 32 - self.matcher_index_bits if self.matcher_index_bits else 0

    def resolved(self, ports: tuple[str, ...]) -> SecuritySettings:
        """These settings for a NIC with ``ports``: ``"auto"`` replaced, the index checked."""
        b = self.bypass_port
        if b == AUTO_BYPASS:
            b = ports.index(HOST_PORT) if HOST_PORT in ports else None
        elif b is not None and b >= len(ports):
            raise ValueError(f"bypass_port {b} is not a port index of {ports!r}")
        return replace(self, bypass_port=b)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> SecuritySettings:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown security option(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(known))}")
        return cls(**d)
