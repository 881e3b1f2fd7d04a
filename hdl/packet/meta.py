"""Per-packet metadata, malformed reasons, verdicts and drop reasons.

These layouts travel between gateware blocks and out of the debug/record ports, and the
simulation decodes them with the same classes (``PacketMeta.from_bits(int(port.value))``).
The golden model produces the same fields from its own parser; docs/parser.md is the spec
both follow.
"""

import enum

from amaranth.lib import data
from amaranth.lib import enum as hdl_enum

__all__ = ["MalformedReason", "DropReason", "COUNTED_DROP_REASONS", "SWITCH_DROP_REASONS", "SECURITY_DROP_REASONS",
           "Verdict", "L3Type",
           "PacketMeta",
           "make_verdict_record", "verdict_record_of", "match_hit_layout", "MATCH_FIELDS", "make_parsed_layout",
           "FRAME_LEN_BITS", "OFFSET_BITS"]

#: Frame length field width: frames up to 16383 bytes; longer ones saturate (and are oversize).
FRAME_LEN_BITS = 14
#: Header offsets are byte positions; a long IPv6 extension header can put L4 past byte 2048.
OFFSET_BITS = 12


class MalformedReason(enum.IntEnum):
    """Bit positions of ``PacketMeta.malformed``; each is counted by the parser block.

    Any malformed bit makes the frame drop with ``DropReason.MALFORMED`` (or ``OVERSIZE``).
    """
    RUNT = 0            #: shorter than 60 bytes on a physical port
    TRUNC_L2 = 1        #: shorter than its Ethernet header plus VLAN tags
    TRUNC_L3 = 2        #: ARP, IPv4 (incl. options) or IPv6 header runs past the frame end
    BAD_IP_VERSION = 3  #: IPv4 ethertype with version != 4, or IPv6 ethertype with version != 6
    BAD_IPV4_IHL = 4    #: IPv4 IHL below 5
    IP_LEN_MISMATCH = 5  #: IP length claims more bytes than the frame holds, or total_length < IHL*4
    TRUNC_L4 = 6        #: TCP/UDP/ICMP header runs past the end of the IP payload
    BAD_TCP_OFFSET = 7  #: TCP data offset below 5 or past the end of the IP payload
    OVERSIZE = 8        #: longer than max_frame (dropped whole)

    @property
    def label(self) -> str:
        return self.name.lower()


class DropReason(hdl_enum.IntEnum, shape=5):
    """Why the NIC dropped a frame; counted per ingress port.

    Five bits since the security stage's reasons (16 values no longer fit in four).
    """
    NONE = 0
    MALFORMED = 1   #: any malformed bit other than oversize
    OVERSIZE = 2    #: longer than max_frame
    RX_ERROR = 3    #: MAC flagged the frame bad (tuser bit 0 on the last beat)
    # The switch fabric's reasons (docs/switch.md, "Behaviour"); counted in the SWPORT blocks.
    TAGGED_ON_ACCESS = 4    #: an 802.1Q-tagged frame on an access port
    NO_NATIVE_VLAN = 5      #: an untagged frame on a trunk without a native VLAN
    VLAN_NOT_MEMBER = 6     #: tagged with a VLAN the port does not carry
    RESERVED = 7            #: to an IEEE 802.1D reserved group address (or Cisco's CDP/VTP)
    SAME_PORT = 8           #: to a unicast address learned on the ingress port
    STORM_BROADCAST = 9     #: over the port's broadcast storm limit
    STORM_MULTICAST = 10    #: over the port's multicast storm limit
    STORM_UNKNOWN = 11      #: unknown unicast over the port's storm limit
    LOOP_BLOCKED = 12       #: the port is blocked by loop guard
    MONITOR_PORT = 13       #: received on a mirror session's monitor port, which only sends
    # The security stage's reasons (docs/security.md); counted in the SECPORT blocks.
    ACL_DROP = 14           #: the first ACL entry it hit is a ``drop`` rule's
    ACL_REJECT = 15         #: the first ACL entry it hit is a ``reject`` rule's (no RST is sent)
    DEFAULT_DENY = 16       #: default deny: an IP frame no entry hit, not of an established flow nor to the client

    @property
    def label(self) -> str:
        return self.name.lower()


#: Drop reasons every build counts per port (in the PORT blocks).
COUNTED_DROP_REASONS = (DropReason.MALFORMED, DropReason.OVERSIZE, DropReason.RX_ERROR)
#: The switch fabric's drop reasons (counted per port in the SWPORT blocks of switch builds).
SWITCH_DROP_REASONS = tuple(r for r in DropReason
                            if DropReason.TAGGED_ON_ACCESS.value <= r.value <= DropReason.MONITOR_PORT.value)
#: The security stage's drop reasons (counted per port in the SECPORT blocks of security builds).
SECURITY_DROP_REASONS = (DropReason.ACL_DROP, DropReason.ACL_REJECT, DropReason.DEFAULT_DENY)


class Verdict(hdl_enum.IntEnum, shape=2):
    FORWARD = 0
    DROP = 1
    PUNT = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class L3Type(hdl_enum.IntEnum, shape=2):
    NONE = 0
    IPV4 = 1
    IPV6 = 2
    ARP = 3


class PacketMeta(data.Struct):
    """What the parser extracts from one frame (see docs/parser.md for every rule).

    Addresses are plain integers (IPv4 in the low 32 bits of ``ip_src``/``ip_dst``). For ARP,
    ``ip_src``/``ip_dst`` are the sender/target protocol addresses and ``ip_proto`` is the low
    byte of the ARP opcode (as Open vSwitch matches ARP). Fields of a layer that is absent
    (``has_*`` low) are zero.
    """
    frame_len: FRAME_LEN_BITS   # bytes, saturating at 2**14-1
    eth_dst: 48
    eth_src: 48
    vlan_count: 2               # 0, 1 or 2 tags parsed (outer first)
    vlan0_tpid_qinq: 1          # outer tag TPID was 0x88a8
    vlan0_pcp: 3
    vlan0_vid: 12
    vlan1_tpid_qinq: 1
    vlan1_pcp: 3
    vlan1_vid: 12
    ethertype: 16               # ethertype after the tags (0 if the frame is too short)
    l3_type: L3Type
    has_l3: 1                   # L3 header complete inside frame and window
    ip_src: 128
    ip_dst: 128
    ip_proto: 8                 # IPv4 protocol / IPv6 upper-layer next header / ARP opcode low byte
    ip_ttl: 8                   # IPv4 TTL / IPv6 hop limit
    ip_fragment: 1              # IPv4 MF or offset != 0; IPv6 fragment header present
    ip_frag_offset: 13          # in 8-byte units
    has_l4: 1                   # L4 header parsed (first fragment, known protocol, complete)
    sport: 16
    dport: 16
    tcp_flags: 9
    icmp_type: 8
    icmp_code: 8
    l3_offset: OFFSET_BITS
    l4_offset: OFFSET_BITS      # valid when has_l4 or the IP header was parsed (see spec)
    has_l4_offset: 1
    payload_offset: OFFSET_BITS
    has_payload_offset: 1
    beyond_window: 1            # headers continued past the parser window or IPv6 ext limit: L4 not parsed
    malformed: len(MalformedReason)


def make_parsed_layout(port_bits: int) -> data.StructLayout:
    """Layout of the parser's per-frame output: metadata plus what travelled in ``tuser``."""
    return data.StructLayout({
        "meta": PacketMeta,
        "in_port": port_bits,
        "rx_error": 1,   # tuser bit 0 on the frame's last beat
    })


#: The payload matcher's record fields (``make_verdict_record(..., matcher=...)``), in record order.
MATCH_FIELDS = ("match_inspected", "match_too_long", "match_overflow", "match_punt", "match_n_hits", "match_hits")


def match_hit_layout(index_bits: int) -> data.StructLayout:
    """One of the record's ``match_hits``: the matcher bucket that hit and whether its hit settles
    its rules (``MatcherProgram.settled``) or needs the host."""
    return data.StructLayout({"bucket": index_bits, "settled": 1})


def make_verdict_record(port_bits: int, n_ports: int, security: bool = False,
                        matcher: tuple[int, int] | None = None) -> data.StructLayout:
    """Layout of the record the forwarding stage emits per frame (sim monitor, flight recorder).

    With ``security`` (builds with ``NicConfig.security`` set) the record also carries the
    security stage's result (docs/security.md, "The record"): the first ACL entry hit
    (``acl_hit``, its ``acl_action``, entry ``acl_index``, counter ``acl_slot``, ``acl_multi``:
    more entries hit too; ``acl_punt``: the ACL hands the frame to the host path) and the flow
    table's answer (``flow_found``, ``flow_established``,
    ``flow_to_server``, ``flow_outcome``: 0 when the frame made no flow request). All zero for a
    frame the stage bypassed.

    With ``matcher`` = ``(index_bits, max_hits)`` (``SecuritySettings.matcher``; needs
    ``security``) the payload matcher's result follows (docs/security.md, "The payload matcher in
    the stage"): ``match_inspected`` (the matcher looked at the frame's payload),
    ``match_too_long`` (its beats did not fit the matcher's FIFO), ``match_overflow`` (more hits
    than slots), ``match_punt`` (the host must inspect the frame), ``match_n_hits`` and
    ``match_hits`` (``max_hits`` x :func:`match_hit_layout`, in payload order; the first
    ``match_n_hits`` are used). All zero for a frame the security stage bypassed.
    """
    if matcher is not None and not security:
        raise ValueError("a record with matcher fields needs the security fields (security=True)")
    fields = {
        "meta": PacketMeta,
        "in_port": port_bits,
        "rx_error": 1,
        "verdict": Verdict,
        "reason": DropReason,
        "egress": n_ports,   # bit i set: the frame leaves through port i
    }
    if security:
        # Imported here: the ACL and flow blocks' layouts are theirs; this module stays a leaf.
        from hdl.acl.layouts import SLOT_BITS, AclAction
        from hdl.flow.flow_table import Outcome
        fields.update({"acl_hit": 1, "acl_action": AclAction, "acl_index": SLOT_BITS, "acl_slot": SLOT_BITS,
                       "acl_multi": 1, "acl_punt": 1, "flow_found": 1, "flow_established": 1, "flow_to_server": 1,
                       # An Outcome value, 0 when the frame made no flow request (not an enum view: 0
                       # is no Outcome).
                       "flow_outcome": Outcome.as_shape()})
    if matcher is not None:
        index_bits, max_hits = matcher
        fields.update({"match_inspected": 1, "match_too_long": 1, "match_overflow": 1, "match_punt": 1,
                       "match_n_hits": range(max_hits + 1),
                       "match_hits": data.ArrayLayout(match_hit_layout(index_bits), max_hits)})
    return data.StructLayout(fields)


def verdict_record_of(config) -> data.StructLayout:
    """The record layout of a build of ``config`` (an :class:`hdl.config.NicConfig`): NicTop's
    ``record`` port, with the security and matcher fields the build has."""
    sec = config.security
    return make_verdict_record(config.port_bits, len(config.ports), security=sec is not None,
                               matcher=sec.matcher if sec is not None else None)
