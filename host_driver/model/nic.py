"""Golden behavioural model of the NIC, written from docs/parser.md (not from the gateware).

* :func:`parse_frame` implements the parser spec literally and returns every
  :class:`hdl.packet.meta.PacketMeta` field as a plain ``int``;
* :class:`NicModel` applies section 5 (drop precedence, bump-in-the-wire forwarding), the switch
  (:mod:`host_driver.model.switch`) and the security stage
  (:class:`host_driver.model.security.SecurityModel`) when the build has them, and keeps the
  counters, keyed like :meth:`hdl.mgmt.regs.RegisterMap.counter_events`;
* :class:`ModelBus` exposes those counters through the same register file the gateware has,
  so the :class:`host_driver.driver.Nic` driver runs unchanged on the model.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from amaranth.hdl import Shape
from amaranth.lib import data

from hdl.acl.layouts import SLOT_BITS, AclAction
from hdl.config import MIN_PHYSICAL_FRAME, NicConfig
from hdl.datapath.ports import PORT, PortCounter
from hdl.flow.flow_table import entry_layout as flow_entry_layout
from hdl.matcher import entry_layout as matcher_entry_layout
from hdl.mgmt.regs import BLOCK_STRIDE, Event
from hdl.packet.host_tag import HOST_TAG_ETHERTYPE, HOST_TAG_OFFSET, HOST_TAG_VERSION, HostTag
from hdl.packet.layouts import (
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    ETH_QINQ,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_EXT_FRAGMENT,
    IPV6_EXT_HEADERS,
    VLAN_TPIDS,
    Arp,
    Ethernet,
    Icmp,
    Icmpv6,
    IPv4,
    IPv6,
    IPv6ExtHeader,
    IPv6Fragment,
    Tcp,
    Udp,
    VlanTag,
    decode,
    encode,
)
from hdl.packet.meta import FRAME_LEN_BITS, DropReason, L3Type, MalformedReason, PacketMeta, Verdict
from hdl.parser.counters import PARSER, ParserCounter
from hdl.security.regs import ARG_WORDS as SECURITY_ARG_WORDS
from hdl.security.regs import (
    CONTROL_DEFAULT_DENY,
    CONTROL_IPS_DIVERT,
    CONTROL_PUNT_ACL_MULTI,
    CONTROL_PUNT_ALL_PAYLOAD,
    COUNTER_CLEAR_BIT,
    FLOW_WAY_SHIFT,
    SECMATCH,
    SECPORT,
    SECURITY,
    TIMEOUT_REGISTERS,
    SecportCounter,
    SecurityCounter,
)
from hdl.security.regs import ROW_WORDS as ACL_ROW_WORDS
from hdl.security.regs import Command as SecurityCommand
from hdl.switch.regs import SWITCH, SWPORT, SwitchCounter, SwportLimitCounter
from host_driver.bus import AxiResp, Bus, BusError
from host_driver.model.flow import FlowEntry
from host_driver.model.matcher import Entry as MatcherEntry
from host_driver.model.security import SecurityDrop, SecurityModel, SecurityResult
from host_driver.model.switch import SwitchModel
from host_driver.regmap import Access, build_register_map
from host_driver.rules.program import Op as AclOp

__all__ = ["parse_frame", "NicModel", "ModelResult", "ModelBus", "META_FIELDS", "META_WIDTHS",
           "HI_WITHOUT_LO_READS_LIVE", "COUNTER_BITS"]

log = logging.getLogger(__name__)

#: PacketMeta field names, in layout order, and their widths in bits.
META_WIDTHS: dict[str, int] = {name: Shape.cast(f.shape).width for name, f in data.Layout.cast(PacketMeta)}
META_FIELDS: tuple[str, ...] = tuple(META_WIDTHS)

FRAME_LEN_MAX = (1 << META_WIDTHS["frame_len"]) - 1
#: Counter width of the default build; a build's own width is ``config.counter_width``.
COUNTER_BITS = 64

#: Reading a counter's HI word without a preceding LO read of the same counter returns the
#: live high word (True) or whatever the shared latch holds (False).
HI_WITHOUT_LO_READS_LIVE = True

#: Size of the L4 header the parser needs, per (l3_type, protocol) (docs/parser.md section 4).
_L4_HEADERS = {
    (L3Type.IPV4, IPPROTO_TCP): Tcp.BYTES, (L3Type.IPV6, IPPROTO_TCP): Tcp.BYTES,
    (L3Type.IPV4, IPPROTO_UDP): Udp.BYTES, (L3Type.IPV6, IPPROTO_UDP): Udp.BYTES,
    (L3Type.IPV4, IPPROTO_ICMP): 8, (L3Type.IPV6, IPPROTO_ICMPV6): 8,
}
_ICMP_LAYOUT = {L3Type.IPV4: Icmp, L3Type.IPV6: Icmpv6}
_ARP_CHECK_BYTES = 8   # htype, ptype, hlen, plen, oper
_IPV6_MAX_EXT = 2


#: SECURITY timeout register -> FlowTable timeout name.
_TIMEOUT_NAMES = {reg: name for name, reg in TIMEOUT_REGISTERS}


def _matcher_entry_fields(tag_bits: int, word: int) -> dict[str, int]:
    """A MATCHER_WRITE entry word's fields, by the gateware's own :func:`hdl.matcher.entry_layout`."""
    layout = data.Layout.cast(matcher_entry_layout(tag_bits))
    return {name: word >> f.offset & ((1 << Shape.cast(f.shape).width) - 1) for name, f in layout}


class _Stop(Exception):
    """Internal: a parsing step said "stop"."""


class _Parse:
    def __init__(self, frame: bytes, physical: bool, header_window: int, max_frame: int):
        self.frame = frame
        self.win = bytes(frame[:header_window])    # the parser only looks at the first H bytes
        self.L = len(frame)
        self.H = header_window
        self.m = dict.fromkeys(META_FIELDS, 0)
        self.m["frame_len"] = min(self.L, FRAME_LEN_MAX)
        if self.L > max_frame:
            self.flag(MalformedReason.OVERSIZE)
        if physical and self.L < MIN_PHYSICAL_FRAME:
            self.flag(MalformedReason.RUNT)

    def flag(self, reason: MalformedReason, stop: bool = False):
        self.m["malformed"] |= 1 << reason
        if stop:
            raise _Stop

    def hdr(self, layout, off: int):
        return decode(layout, self.win[off:off + layout.BYTES])

    def run(self) -> dict:
        try:
            self.l2()
        except _Stop:
            pass
        # Offsets are carried in OFFSET_BITS-wide fields; the model reports what the record holds.
        for name, width in META_WIDTHS.items():
            if self.m[name] >> width:
                log.debug("field %s=%d does not fit in %d bits; truncated", name, self.m[name], width)
                self.m[name] &= (1 << width) - 1
            self.m[name] = int(self.m[name])
        return self.m

    # -- section 2 ---------------------------------------------------------------------------
    def l2(self):
        m = self.m
        if self.L < Ethernet.BYTES:
            self.flag(MalformedReason.TRUNC_L2, stop=True)
        eth = self.hdr(Ethernet, 0)
        m["eth_dst"], m["eth_src"] = eth.dst, eth.src
        t = eth.ethertype
        n = 0
        while n < 2 and t in VLAN_TPIDS:
            if self.L < Ethernet.BYTES + VlanTag.BYTES * (n + 1):
                self.flag(MalformedReason.TRUNC_L2, stop=True)
            tag = self.hdr(VlanTag, Ethernet.BYTES + VlanTag.BYTES * n)
            m[f"vlan{n}_tpid_qinq"] = int(t == ETH_QINQ)
            m[f"vlan{n}_pcp"] = tag.pcp
            m[f"vlan{n}_vid"] = tag.vid
            t = tag.ethertype
            n += 1
            m["vlan_count"] = n
        m["ethertype"] = t
        m["l3_offset"] = Ethernet.BYTES + VlanTag.BYTES * n
        if t == ETH_IPV4:
            m["l3_type"] = L3Type.IPV4
            self.ipv4()
        elif t == ETH_IPV6:
            m["l3_type"] = L3Type.IPV6
            self.ipv6()
        elif t == ETH_ARP:
            m["l3_type"] = L3Type.ARP
            self.arp()
        # any other ethertype: l3_type NONE, stop

    # -- section 3 ---------------------------------------------------------------------------
    def ipv4(self):
        m = self.m
        l3 = m["l3_offset"]
        avail = self.L - l3
        if avail < IPv4.BYTES:
            self.flag(MalformedReason.TRUNC_L3, stop=True)
        ip = self.hdr(IPv4, l3)
        if ip.version != 4:
            self.flag(MalformedReason.BAD_IP_VERSION, stop=True)
        if ip.ihl < 5:
            self.flag(MalformedReason.BAD_IPV4_IHL, stop=True)
        if avail < 4 * ip.ihl:
            self.flag(MalformedReason.TRUNC_L3, stop=True)
        m["has_l3"] = 1
        m["ip_src"], m["ip_dst"] = ip.src, ip.dst
        m["ip_proto"], m["ip_ttl"] = ip.protocol, ip.ttl
        m["ip_fragment"] = int(bool(ip.flag_mf) or ip.frag_offset != 0)
        m["ip_frag_offset"] = ip.frag_offset
        if ip.total_length > avail or ip.total_length < 4 * ip.ihl:
            self.flag(MalformedReason.IP_LEN_MISMATCH, stop=True)
        m["l4_offset"] = l3 + 4 * ip.ihl
        m["has_l4_offset"] = 1
        self.l4(ip_end=l3 + ip.total_length)

    def ipv6(self):
        m = self.m
        l3 = m["l3_offset"]
        avail = self.L - l3
        if avail < IPv6.BYTES:
            self.flag(MalformedReason.TRUNC_L3, stop=True)
        ip = self.hdr(IPv6, l3)
        if ip.version != 6:
            self.flag(MalformedReason.BAD_IP_VERSION, stop=True)
        m["has_l3"] = 1
        m["ip_src"], m["ip_dst"], m["ip_ttl"] = ip.src, ip.dst, ip.hop_limit
        if IPv6.BYTES + ip.payload_length > avail:
            self.flag(MalformedReason.IP_LEN_MISMATCH, stop=True)
        ip_end = l3 + IPv6.BYTES + ip.payload_length
        off = l3 + IPv6.BYTES
        nh = ip.next_header
        for _ in range(_IPV6_MAX_EXT):
            if nh not in IPV6_EXT_HEADERS:
                break
            if off + 8 > ip_end:
                self.flag(MalformedReason.TRUNC_L3, stop=True)
            if off + 8 > self.H:
                m["beyond_window"] = 1
                raise _Stop
            if nh == IPV6_EXT_FRAGMENT:
                frag = self.hdr(IPv6Fragment, off)
                m["ip_fragment"] = 1
                m["ip_frag_offset"] = frag.frag_offset
                nh, off = frag.next_header, off + IPv6Fragment.BYTES
            else:
                ext = self.hdr(IPv6ExtHeader, off)
                nh, off = ext.next_header, off + 8 * (ext.hdr_ext_len + 1)
            if off > ip_end:
                self.flag(MalformedReason.TRUNC_L3, stop=True)
        if nh in IPV6_EXT_HEADERS:
            m["beyond_window"] = 1
            raise _Stop
        m["ip_proto"] = nh
        m["l4_offset"] = off
        m["has_l4_offset"] = 1
        self.l4(ip_end=ip_end)

    def arp(self):
        m = self.m
        l3 = m["l3_offset"]
        avail = self.L - l3
        if avail < _ARP_CHECK_BYTES:
            self.flag(MalformedReason.TRUNC_L3, stop=True)
        # Only the first 8 bytes are known to be there; the rest is zero-filled and not used
        # unless the 28-byte check passes.
        arp = decode(Arp, self.win[l3:l3 + Arp.BYTES].ljust(Arp.BYTES, b"\0"))
        if (arp.htype, arp.ptype, arp.hlen, arp.plen) != (1, ETH_IPV4, 6, 4):
            return      # other ARP: has_l3 = 0, no flag
        if avail < Arp.BYTES:
            self.flag(MalformedReason.TRUNC_L3, stop=True)
        m["has_l3"] = 1
        m["ip_src"], m["ip_dst"] = arp.spa, arp.tpa
        m["ip_proto"] = arp.oper & 0xFF

    # -- section 4 ---------------------------------------------------------------------------
    def l4(self, ip_end: int):
        m = self.m
        if m["ip_frag_offset"] != 0:
            return
        l3_type = L3Type(m["l3_type"])
        proto = m["ip_proto"]
        h = _L4_HEADERS.get((l3_type, proto))
        if h is None:
            return
        l4 = m["l4_offset"]
        if ip_end - l4 < h:
            self.flag(MalformedReason.TRUNC_L4, stop=True)
        if l4 + h > self.H:
            m["beyond_window"] = 1
            raise _Stop
        m["has_l4"] = 1
        if proto == IPPROTO_TCP:
            tcp = self.hdr(Tcp, l4)
            m["sport"], m["dport"], m["tcp_flags"] = tcp.sport, tcp.dport, tcp.flags
            if tcp.data_offset < 5 or 4 * tcp.data_offset > ip_end - l4:
                self.flag(MalformedReason.BAD_TCP_OFFSET, stop=True)
            m["payload_offset"] = l4 + 4 * tcp.data_offset
        elif proto == IPPROTO_UDP:
            udp = self.hdr(Udp, l4)
            m["sport"], m["dport"] = udp.sport, udp.dport
            m["payload_offset"] = l4 + Udp.BYTES
        else:
            icmp = self.hdr(_ICMP_LAYOUT[l3_type], l4)
            m["icmp_type"], m["icmp_code"] = icmp.type, icmp.code
            m["payload_offset"] = l4 + h
        m["has_payload_offset"] = 1


def parse_frame(frame: bytes, *, physical: bool, header_window: int, max_frame: int) -> dict:
    """Parse one frame per docs/parser.md; return every PacketMeta field as an ``int``.

    ``malformed`` is a bit mask over :class:`hdl.packet.meta.MalformedReason`; ``l3_type`` the
    :class:`hdl.packet.meta.L3Type` value. Keys are in PacketMeta layout order.
    """
    return _Parse(frame, physical, header_window, max_frame).run()


@dataclass
class ModelResult:
    """What the model did with one frame."""
    meta: dict
    in_port: int
    rx_error: bool
    verdict: Verdict
    reason: DropReason
    egress: list[int] = field(default_factory=list)
    frame: bytes = b""
    #: The bytes each egress port sends (a switch tags them per port), by port number.
    egress_frames: dict[int, bytes] = field(default_factory=dict)
    #: The security stage's result (builds with ``config.security``), else None.
    security: SecurityResult | None = None


class NicModel:
    """Behavioural model of the whole NIC slice: parse, decide (spec section 5), count."""

    def __init__(self, config: NicConfig | None = None):
        self.config = config if config is not None else NicConfig()
        self.regmap = build_register_map(self.config)
        self.counters: dict[Event, int] = dict.fromkeys(self.regmap.counter_events(), 0)
        self._ports = self.regmap.blocks_of(PORT)
        self._parser = self.regmap.block(PARSER)
        #: The switch's model (``config.switch``), or None for the bump in the wire.
        self.switch = None
        if self.config.switch is not None:
            self.switch = SwitchModel.from_settings(self.config.switch, self.config.ports)
            self._swports = self.regmap.blocks_of(SWPORT)
            self._switch_block = self.regmap.block(SWITCH)
            self._table_counts: dict[str, int] = {}
        #: The security stage's model (``config.security``), or None.
        self.security = None
        if self.config.security is not None:
            self.security = SecurityModel.from_settings(self.config.security, data_width=self.config.data_width)
            self._security_block = self.regmap.block(SECURITY)
            self._secports = self.regmap.blocks_of(SECPORT)
            # The payload matcher's counters (a build with a matcher has the SECMATCH block).
            self._secmatch = self.regmap.block(SECMATCH) if self.security.matcher is not None else None
        #: Flow table time (ms) of the last frame: the SECURITY block's NOW.
        self.now_ms = 0

    def reset_counters(self) -> None:
        """Zero every counter."""
        for key in self.counters:
            self.counters[key] = 0

    def count(self, key: Event, amount: int = 1) -> None:
        """Add ``amount`` to one counter (64-bit wrapping); the key must exist in the register map."""
        if key not in self.counters:
            raise KeyError(f"counter {key!r} is not in the register map")
        self.counters[key] = (self.counters[key] + amount) & ((1 << self.config.counter_width) - 1)

    def port_index(self, port: int | str) -> int:
        """Port number of a port given by number or name."""
        if isinstance(port, str):
            return self.config.port_index(port)
        if not 0 <= port < len(self.config.ports):
            raise ValueError(f"port {port} out of range; this NIC has {len(self.config.ports)} ports")
        return port

    def parse(self, frame: bytes, in_port: int | str) -> dict:
        """Parser output for ``frame`` received on ``in_port`` (no counters touched)."""
        return parse_frame(frame, physical=self.config.is_physical(self.port_index(in_port)),
                           header_window=self.config.header_window, max_frame=self.config.max_frame)

    def process(self, frame: bytes, in_port: int | str, rx_error: bool = False, now: int = 0) -> ModelResult:
        """Receive one frame on ``in_port`` at cycle ``now``: parse, decide, count, and say where it
        goes. (``now`` matters to a switch: aging, storm buckets, loop guard.)"""
        port = self.port_index(in_port)
        frame = bytes(frame)
        tag = self._reinjection(frame, port)
        if tag is not None:
            return self._reinject(frame, port, tag)
        meta = self.parse(frame, port)
        self.count(self._ports[port].event(PortCounter.RX_PACKETS))
        self.count(self._ports[port].event(PortCounter.RX_BYTES), meta["frame_len"])
        self.count(self._parser.event(ParserCounter.PACKETS))
        for reason in MalformedReason:
            if meta["malformed"] >> reason & 1:
                self.count(self._parser.event(reason))
        if rx_error:
            reason = DropReason.RX_ERROR
        elif meta["malformed"] >> MalformedReason.OVERSIZE & 1:
            reason = DropReason.OVERSIZE
        elif meta["malformed"] or self._bad_host_tag(frame, port):
            reason = DropReason.MALFORMED
        else:
            reason = DropReason.NONE
        sec = self._inspect(meta, port, bool(rx_error), now, frame)
        if reason is not DropReason.NONE:
            self.count(self._ports[port].event(reason))
            return ModelResult(meta, port, bool(rx_error), Verdict.DROP, reason, security=sec)
        if self.switch is not None:
            return self._switch(meta, port, frame, now, sec)
        if sec is not None and sec.drop is not None:
            return ModelResult(meta, port, False, Verdict.DROP, self._security_drop(port, sec), security=sec)
        egress = [1 - port]     # bump in the wire: the other port
        for out in egress:
            self.count(self._ports[out].event(PortCounter.TX_PACKETS))
            self.count(self._ports[out].event(PortCounter.TX_BYTES), meta["frame_len"])
        return ModelResult(meta, port, bool(rx_error), Verdict.FORWARD, reason, egress, frame, {1 - port: frame},
                           security=sec)

    def cycles_per_ms(self) -> float:
        """Core clock cycles per millisecond of flow table time."""
        return self.config.clock_mhz * 1000

    def _inspect(self, meta: dict, port: int, rx_error: bool, now: int, frame: bytes) -> SecurityResult | None:
        """The security stage (docs/security.md): every frame, in order; counts its SECURITY and
        SECMATCH events and the port's alerts. Its drop is applied by the caller, after the switch
        has decided."""
        if self.security is None:
            return None
        self.now_ms = int(now // self.cycles_per_ms()) % (1 << self.security.flows.time_bits)
        sec = self.security.inspect(meta, port, rx_error=rx_error, now_ms=self.now_ms, frame=frame)
        if sec.bypass:
            return sec
        match = sec.match
        if match is not None:
            for flag, counter in ((match.inspected, SecurityCounter.MATCHER_FRAMES),
                                  (match.punt, SecurityCounter.MATCHER_PUNTS),
                                  (match.overflow, SecurityCounter.MATCHER_OVERFLOWS),
                                  (match.too_long, SecurityCounter.MATCHER_TOO_LONG)):
                if flag:
                    self.count(self._secmatch.event(counter))
        if sec.flow is not None:
            self.count(self._security_block.event(SecurityCounter["FLOW_" + sec.flow.outcome.name]))
        if sec.acl_hit and sec.acl_action.decides:     # punt and mirror hits have no ACL_* counter
            self.count(self._security_block.event(SecurityCounter["ACL_" + sec.acl_action.name]))
        if sec.drop is SecurityDrop.DEFAULT_DENY:
            self.count(self._security_block.event(SecurityCounter.DEFAULT_DENY))
        if sec.alert:
            self.count(self._secports[port].event(SecportCounter.ALERTS))
        if sec.acl_punt:
            self.count(self._secports[port].event(SecportCounter.ACL_PUNTS))
        if sec.acl_hit and sec.acl_action is AclAction.MIRROR:
            self.count(self._secports[port].event(SecportCounter.ACL_MIRRORS))
        return sec

    def _security_drop(self, port: int, sec: SecurityResult) -> DropReason:
        """The security stage drops the frame (nobody dropped it before): count it on its port."""
        reason = DropReason[sec.drop.name]
        self.count(self._secports[port].event(reason))
        return reason

    def _switch(self, meta: dict, port: int, frame: bytes, now: int, sec: SecurityResult | None = None
                ) -> ModelResult:
        names = self.config.ports
        # The switch decides and learns from every frame, also from one the security stage drops.
        res = self.switch.process(names[port], frame, now)
        out = {names.index(q): sent for q, sent in [*res.egress.items(), *res.mirrored]}
        reason = DropReason[res.drop.name] if res.drop is not None else DropReason.NONE
        if reason is DropReason.NONE and sec is not None and sec.drop is not None:
            # A security drop overrides the switch's decision (a frame the switch drops keeps its reason).
            out = {}
            reason = self._security_drop(port, sec)
        if reason is DropReason.NONE and self._diverts(sec):
            # IPS: the frame goes to the host port with its host tag instead (docs/security.md).
            host = self.security.bypass_port
            tag = {"tpid": HOST_TAG_ETHERTYPE, "version": HOST_TAG_VERSION, "acl_punt": int(sec.acl_punt),
                   "match_punt": int(sec.match is not None and sec.match.punt), "in_port": port, "vlan": res.vlan,
                   "egress": sum(1 << q for q in out)}
            if sec.acl_hit and sec.acl_action is AclAction.MIRROR:
                copy = self.switch.monitor_copy(res)
                if copy is not None:
                    tag["egress"] |= 1 << names.index(copy[0])
            out = {host: frame[:HOST_TAG_OFFSET] + encode(HostTag, tag) + frame[HOST_TAG_OFFSET:]}
            self.count(self._secports[port].event(SecportCounter.IPS_DIVERTS))
            for q, sent in out.items():
                self.count(self._ports[q].event(PortCounter.TX_PACKETS))
                self.count(self._ports[q].event(PortCounter.TX_BYTES), len(sent))
            self._switch_counts(port, res, reason)
            return ModelResult(meta, port, False, Verdict.PUNT, reason, [host], frame, out, security=sec)
        if reason is DropReason.NONE and sec is not None and sec.acl_hit and sec.acl_action is AclAction.MIRROR:
            # The ACL mirror: a forwarded frame is also copied to the mirror session's monitor port,
            # as the session's ingress copy (one copy per frame: it replaces the session's own).
            copy = self.switch.monitor_copy(res)
            if copy is not None:
                out[names.index(copy[0])] = copy[1]
        for q, sent in out.items():
            self.count(self._ports[q].event(PortCounter.TX_PACKETS))
            self.count(self._ports[q].event(PortCounter.TX_BYTES), len(sent))
        self._switch_counts(port, res, reason)
        verdict = Verdict.FORWARD if reason is DropReason.NONE else Verdict.DROP
        return ModelResult(meta, port, False, verdict, reason, sorted(out), frame if out else b"", out, security=sec)

    def _switch_counts(self, port: int, res, reason: DropReason) -> None:
        """The switch's own counters of one switched frame (SWPORT drops, SWITCH learning and events)."""
        names = self.config.ports
        if res.drop is not None:
            self.count(self._swports[port].event(reason))
        if reason.name.startswith("STORM"):
            self.count(self._switch_block.event(SwitchCounter.STORM_DROPS))
        for name, counter in (("learned", SwitchCounter.LEARNED), ("moved", SwitchCounter.MOVED),
                              ("table_full", SwitchCounter.TABLE_FULL), ("static_move", SwitchCounter.STATIC_MOVE)):
            total = self.switch.table.counts.get(name, 0)
            if total != self._table_counts.get(name, 0):
                self.count(self._switch_block.event(counter), total - self._table_counts.get(name, 0))
                self._table_counts[name] = total
        limited = self.switch.table.limited.get(names[port], 0)     # per-port learning limit
        if limited != self._table_counts.get(("limited", port), 0):
            self.count(self._swports[port].event(SwportLimitCounter.LEARN_LIMIT),
                       limited - self._table_counts.get(("limited", port), 0))
            self._table_counts[("limited", port)] = limited
        loops = sum(1 for e in self.switch.events if e.kind.startswith("loop"))
        if loops != self._table_counts.get("loops", 0):
            self.count(self._switch_block.event(SwitchCounter.LOOP_EVENTS), loops - self._table_counts.get("loops", 0))
            self._table_counts["loops"] = loops

    # -- IPS: divert to the host and re-inject (docs/security.md, "IPS: divert and re-inject") -----

    def _diverts(self, sec: SecurityResult | None) -> bool:
        """IPS mode diverts this frame (a switch with a host port: the bypass port)."""
        return (sec is not None and self.security.ips_divert and self.security.bypass_port is not None
                and (sec.acl_punt or (sec.match is not None and sec.match.punt)))

    def _reinjection(self, frame: bytes, port: int):
        """The host tag of a frame the host re-injects (received on the host port, tagged, ``reinject``
        set, this version, naming ports of this NIC), else None."""
        if (self.switch is None or self.security is None or port != self.security.bypass_port
                or len(frame) < HOST_TAG_OFFSET + HostTag.BYTES
                or int.from_bytes(frame[HOST_TAG_OFFSET:HOST_TAG_OFFSET + 2], "big") != HOST_TAG_ETHERTYPE):
            return None
        tag = decode(HostTag, frame[HOST_TAG_OFFSET:])
        n = len(self.config.ports)
        if not tag.reinject or tag.version != HOST_TAG_VERSION or tag.in_port >= n or tag.egress >> n:
            return None
        return tag

    def _bad_host_tag(self, frame: bytes, port: int) -> bool:
        """A frame on the host port with the host tag's ethertype that is not a valid re-injection
        (``reinject`` clear, another version, ports this NIC does not have): dropped as malformed, so a
        host bug cannot put a frame on the wire with a tag in it (docs/security.md)."""
        return (self.switch is not None and self.security is not None and port == self.security.bypass_port
                and len(frame) >= HOST_TAG_OFFSET + HostTag.BYTES
                and int.from_bytes(frame[HOST_TAG_OFFSET:HOST_TAG_OFFSET + 2], "big") == HOST_TAG_ETHERTYPE
                and self._reinjection(frame, port) is None)

    def _reinject(self, frame: bytes, port: int, tag) -> ModelResult:
        """A re-injected frame: counted in on the host port, sent, tag removed, to the ports its tag
        names as the switch sends a frame admitted into the tag's VLAN; not parsed, learned or
        inspected (the frame's own record was made when it was diverted)."""
        inner = frame[:HOST_TAG_OFFSET] + frame[HOST_TAG_OFFSET + HostTag.BYTES:]
        self.count(self._ports[port].event(PortCounter.RX_PACKETS))
        self.count(self._ports[port].event(PortCounter.RX_BYTES), min(len(frame), (1 << FRAME_LEN_BITS) - 1))
        self.count(self._secports[port].event(SecportCounter.IPS_REINJECTS))
        names = self.config.ports
        ports = [names[q] for q in range(len(names)) if tag.egress >> q & 1]
        sent = {names.index(p): out_bytes
                for p, out_bytes in self.switch.send_as_admitted(inner, tag.vlan, ports).items()}
        for q, out_bytes in sent.items():
            self.count(self._ports[q].event(PortCounter.TX_PACKETS))
            self.count(self._ports[q].event(PortCounter.TX_BYTES), len(out_bytes))
        meta = self.parse(inner, int(tag.in_port))
        return ModelResult(meta, port, False, Verdict.FORWARD, DropReason.NONE, sorted(sent), inner, sent)


class ModelBus(Bus):
    """The model's register file behind the :class:`Bus` interface.

    Built from :func:`hdl.top.build_register_map` of the model's config: constants, RW
    storage, and 64-bit counters read with the LO/HI latch rule (LO returns bits 31:0 and
    latches bits 63:32 into one shared latch; HI returns the latch). Unmapped reads and writes
    to anything but RW registers raise :class:`BusError` (SLVERR).
    """

    def __init__(self, model: NicModel):
        self.model = model
        rmap = model.regmap
        self._words: dict[int, tuple] = {}
        self._rw: dict[int, int] = {}
        for b in rmap.blocks:
            counters = dict(b.counters)
            for addr, block, name, access, word in rmap.words():
                if block is not b:
                    continue
                if access is Access.COUNTER64:
                    self._words[addr] = (access, counters[name], word)
                elif access is Access.RW:
                    self._words[addr] = (access, name, 0)
                    self._rw[addr] = block.value(name)
                elif access is Access.STATUS:
                    # Live gateware values (e.g. line-tester signatures) the model has no block for.
                    self._words[addr] = (access, (b.type.name, b.instance, name), 0)
                else:
                    self._words[addr] = (access, rmap.const_value(block, name), 0)
        self._latch = 0
        self._latch_owner = None
        #: Values of STATUS registers, keyed (block type name, instance, register name); 0 if absent.
        self.status: dict[tuple, int] = {}
        self._security = rmap.block(SECURITY) if model.security is not None else None

    async def read32(self, addr: int) -> int:
        entry = self._words.get(addr)
        if entry is None:
            raise BusError(addr, AxiResp.SLVERR, "read", "unmapped address")
        access, what, word = entry
        if access is Access.CONST:
            return what
        if access is Access.RW:
            return self._rw[addr]
        if access is Access.STATUS:
            if self._security is not None and what == ("SECURITY", 0, "STATUS"):
                return self.model.security.generation      # commit is never busy: no keys in flight
            if self._security is not None and what == ("SECURITY", 0, "NOW"):
                return self.model.now_ms
            if what[0] == "SWPORT" and what[2] == "PORT_HELD" and self.model.switch is not None:
                # The entries the port holds as its learning limit counts them (docs/switch.md).
                return self.model.switch.table.held.get(self.model.config.ports[what[1]], 0)
            return self.status.get(what, 0)
        value = self.model.counters[what]
        if word == 0:
            self._latch = value >> 32 & 0xFFFFFFFF
            self._latch_owner = what
            return value & 0xFFFFFFFF
        if self._latch_owner != what and HI_WITHOUT_LO_READS_LIVE:
            return value >> 32 & 0xFFFFFFFF
        return self._latch

    async def write32(self, addr: int, value: int) -> None:
        entry = self._words.get(addr)
        if entry is None:
            raise BusError(addr, AxiResp.SLVERR, "write", "unmapped address")
        if entry[0] is not Access.RW:
            raise BusError(addr, AxiResp.SLVERR, "write", f"{entry[0].value} register is read-only")
        self._rw[addr] = value & 0xFFFFFFFF
        if self._security is not None and addr - self._security.base < BLOCK_STRIDE \
                and addr >= self._security.base:
            self._security_write(entry[1], value & 0xFFFFFFFF)

    # -- the SECURITY block: settings and its command interface (hdl/security/regs.py) ----------

    def _security_reg(self, name: str) -> int:
        return self._rw[self._security.addr(name)]

    def _security_write(self, name: str, value: int) -> None:
        sec = self.model.security
        if name == "CONTROL":
            sec.default_deny = bool(value >> CONTROL_DEFAULT_DENY & 1)
            sec.punt_all_payload = bool(value >> CONTROL_PUNT_ALL_PAYLOAD & 1)
            sec.punt_acl_multi = bool(value >> CONTROL_PUNT_ACL_MULTI & 1)
            sec.ips_divert = bool(value >> CONTROL_IPS_DIVERT & 1)
        elif name in _TIMEOUT_NAMES:
            sec.flows.timeouts = dataclasses.replace(sec.flows.timeouts, **{_TIMEOUT_NAMES[name]: value})
        elif name == "CMD":
            results = self._security_command(SecurityCommand(value & 0xF))
            for i, word in enumerate(results):
                self.status[("SECURITY", 0, f"RESULT{i}")] = word
            self.status[("SECURITY", 0, "CMD_DONE")] = value & 0xFF000000

    def _security_command(self, op) -> list[int]:
        sec = self.model.security
        args = [self._security_reg(f"ARG{i}") for i in range(SECURITY_ARG_WORDS)]

        def wide(words) -> int:
            return sum(w << 32 * i for i, w in enumerate(words))

        def split(value: int, n: int) -> list[int]:
            return [value >> 32 * i & 0xFFFFFFFF for i in range(n)]
        flows = sec.flows
        entry_words = -(-Shape.cast(flow_entry_layout(flows.addr_bits)).width // 32)
        if op is SecurityCommand.ACL_ROW:
            sec.apply(AclOp("row", args[0], wide(args[1:1 + ACL_ROW_WORDS])))
        elif op is SecurityCommand.ACL_ACTION:
            sec.apply(AclOp("action", args[0], args[1]))
        elif op is SecurityCommand.ACL_COMMIT:
            sec.apply(AclOp("commit"))
        elif op is SecurityCommand.ACL_COUNTER:
            slot = args[0] & ((1 << SLOT_BITS) - 1)
            kind = "clear_counter" if args[0] >> COUNTER_CLEAR_BIT & 1 else "read_counter"
            return split(sec.apply(AclOp(kind, slot)), 2)
        elif op in (SecurityCommand.FLOW_READ, SecurityCommand.FLOW_WRITE):
            set_, way = args[0] & ((1 << FLOW_WAY_SHIFT) - 1), args[0] >> FLOW_WAY_SHIFT
            if set_ >= flows.sets or way >= flows.ways:
                log.warning("flow table command on set %d way %d: the table has %d x %d", set_, way, flows.sets,
                            flows.ways)
                return []
            if op is SecurityCommand.FLOW_WRITE:
                flows.write(set_, way, FlowEntry.from_bits(wide(args[1:1 + entry_words]), flows.addr_bits))
            return split(flows.read(set_, way).to_bits(flows.addr_bits), entry_words)
        elif op is SecurityCommand.FLOW_CLEAR:
            flows.clear()
        elif op is SecurityCommand.MATCHER_WRITE:
            if sec.matcher is None:
                log.warning("MATCHER_WRITE on a build without a payload matcher: ignored")
                return []
            fields = _matcher_entry_fields(sec.matcher.tag_bits, args[1])
            sec.matcher_write(args[0] & ((1 << sec.matcher.index_bits) - 1),
                              MatcherEntry(bool(fields["valid"]), bool(fields["settled"]), fields["tag"]))
        elif op is SecurityCommand.MATCHER_COMMIT:
            if sec.matcher is None:
                log.warning("MATCHER_COMMIT on a build without a payload matcher: ignored")
                return []
            sec.matcher_commit()
        return []
