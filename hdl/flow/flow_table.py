"""Flow table: connection state per 5-tuple, hashed, set-associative, one block RAM per way.

The behaviour is the golden model's ``FlowTable`` (host_driver/model/flow.py, docs/flow.md); the
tests hold this block to it packet by packet. The entry encoding (:func:`entry_layout`,
:class:`FlowState`) is defined here once; the model and the driver's dump decode entries with it.

Refs: Suricata user guide, "Flow Keywords" (``flow:established``, ``to_server``) and its default
suricata.yaml ``flow-timeouts``; RFC 9293 3.5 (TCP connection establishment); ISO 3309 CRC-32
(via ``zlib.crc32``) for the set index.
"""

from __future__ import annotations

import zlib

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.lib.ram import PipelinedRam, WideRam
from hdl.lib.timing import keep_copy

__all__ = ["FlowState", "Outcome", "MgmtOp", "FlowTable", "entry_layout", "request_layout", "set_index",
           "set_index_terms",
           "DEFAULT_TIMEOUTS", "TIME_UNIT_S", "PACKET_CYCLES", "MGMT_CYCLES", "TCP", "LATENCY", "MGMT_READ_LATENCY"]

#: IP protocol number of TCP: the only protocol with a handshake.
TCP = 6
#: Cycles between two packet requests taken back to back (see :class:`FlowTable`).
PACKET_CYCLES = 8
#: Cycles of packet time a management write takes (a read takes none: it uses the read port
#: while a packet is in flight).
MGMT_CYCLES = 2
#: Cycles from a packet request taken to its response valid (with ``resp.ready`` high).
LATENCY = 9
#: Cycles from a management read taken to its answer valid.
MGMT_READ_LATENCY = 6
#: The unit of ``now``, the stamps and the timeouts, in seconds: the top counts milliseconds
#: (156,250 cycles at 156.25 MHz). 32-bit stamps wrap after 49.7 days.
TIME_UNIT_S = 0.001
#: Suricata's default ``flow-timeouts`` (suricata.yaml: tcp new 60 s, established 600 s,
#: closed 60 s; default/udp/icmp new 30 s, established 300 s) in units of :data:`TIME_UNIT_S`.
DEFAULT_TIMEOUTS = {"tcp_new": 60_000, "tcp_established": 600_000, "tcp_closed": 60_000,
                    "other_new": 30_000, "other_established": 300_000}

_TCP_FIN, _TCP_SYN, _TCP_RST, _TCP_ACK = 0, 1, 2, 4     # bit numbers in the TCP flags byte
#: The key compare's first stage takes the key in chunks of this many bits: one LUT4 each.
_CHUNK_BITS = 2
#: ... its second stage ANDs this many chunk results (a two-level LUT4 tree), leaving the third
#: stage 10 groups (at ``addr_bits=128``) to AND beside the liveness.
_GROUP = 16
#: Columns of a RAM slice in tables deeper than 1024 sets (nine DP16KD at 4096 x 4 bits).
_SLICE_BITS = 36


class FlowState(enum.Enum, shape=3):
    """A flow's state as stored in its entry (docs/flow.md, "Semantics")."""
    NEW = 0            # not TCP: seen one way only
    ESTABLISHED = 1    # TCP: handshake done; other protocols: seen both ways
    TCP_MIDSTREAM = 2  # TCP picked up without a SYN: never established (Suricata, midstream off)
    SYN_SENT = 3
    SYN_RECV = 4
    FIN_CLIENT = 5     # the client sent a FIN: still established, like Suricata's FIN_WAIT states
    FIN_SERVER = 6
    CLOSED = 7         # a RST, or a FIN from each side


#: States in which a TCP packet is ``established`` (the state before the packet).
ESTABLISHED_STATES = (FlowState.ESTABLISHED, FlowState.FIN_CLIENT, FlowState.FIN_SERVER)


class Outcome(enum.Enum, shape=3):
    """What a packet did to the table; lower-case names are the golden model's ``counts`` keys."""
    NEW = 1            # a flow was created (or a dead TCP flow restarted by a SYN)
    EXISTING = 2       # the packet belongs to a live flow
    TABLE_FULL = 3     # no live flow and no free way in its set: no flow, nothing evicted
    UNSUPPORTED = 4    # IPv6 in a table built with ``addr_bits=32``


class MgmtOp(enum.Enum, shape=2):
    """Management requests: read or write the entry at (set, way), or empty the whole table."""
    READ = 0
    WRITE = 1
    CLEAR = 2


def entry_layout(addr_bits: int = 128, time_bits: int = 32) -> data.StructLayout:
    """One table entry as stored in a way's RAM and as the management port reads and writes it.

    The key is canonical: ``lo`` is the endpoint with the smaller (address, port), address most
    significant; ``client_hi`` says which endpoint opened the flow.
    """
    return data.StructLayout({"valid": 1, "state": FlowState, "client_hi": 1, "ipv6": 1, "proto": 8,
                              "lo_addr": addr_bits, "hi_addr": addr_bits, "lo_port": 16, "hi_port": 16,
                              "stamp": time_bits})


def request_layout() -> data.StructLayout:
    """A packet request: IPv4 addresses in the low 32 bits with ``ipv6`` 0; ``flags`` is the
    TCP flags byte (FIN bit 0, SYN 1, RST 2, ACK 4), ignored for other protocols."""
    return data.StructLayout({"proto": 8, "ipv6": 1, "src_addr": 128, "dst_addr": 128,
                              "src_port": 16, "dst_port": 16, "flags": 8})


def _crc_columns(nbytes: int) -> tuple[int, list[int]]:
    """CRC-32 of ``nbytes`` zero bytes, and the CRC bits flipped by each bit ``i`` of the
    message read as a big-endian integer (CRC-32 is affine over GF(2) for a fixed length)."""
    zero = zlib.crc32(bytes(nbytes))
    return zero, [zlib.crc32((1 << i).to_bytes(nbytes, "big")) ^ zero for i in range(8 * nbytes)]


def set_index_terms(proto, ipv6, src_addr, src_port, dst_addr, dst_port, bits: int,
                    addr_bits: int = 128) -> tuple[list[list[Value]], int]:
    """The XOR network of :func:`set_index` unassembled: for each index bit the list of one-bit
    terms it XORs, and the constant (an integer, one bit per index bit) XORed after them. For a
    requester that pipelines the network (partial XORs into registers, then their XOR)."""
    if not 0 <= bits <= 32:
        raise ValueError(f"set index width must be 0..32 bits, not {bits!r}")
    ep_zero, ep_cols = _crc_columns(addr_bits // 8 + 2)
    pi_zero, pi_cols = _crc_columns(2)
    src = Cat(Value.cast(src_port)[:16], Value.cast(src_addr)[:addr_bits])   # bit i = bit i of the message
    dst = Cat(Value.cast(dst_port)[:16], Value.cast(dst_addr)[:addr_bits])
    pi = Cat(Value.cast(ipv6)[:1], Const(0, 7), Value.cast(proto)[:8])
    terms = []
    for j in range(bits):
        t = [src[i] ^ dst[i] for i in range(len(src)) if ep_cols[i] >> j & 1]
        t += [pi[i] for i in range(16) if pi_cols[i] >> j & 1]
        terms.append(t)
    return terms, pi_zero & ((1 << bits) - 1)


def set_index(proto, ipv6, src_addr, src_port, dst_addr, dst_port, bits: int, addr_bits: int = 128) -> Value:
    """The golden model's ``flow_hash`` as a fixed XOR network: the low ``bits`` bits of
    ``crc32(src endpoint) ^ crc32(dst endpoint) ^ crc32(proto, ipv6)``. The two endpoints' CRC
    constants cancel; the columns of a bit are the same for source and destination, so the index
    is the same in both directions."""
    terms, const = set_index_terms(proto, ipv6, src_addr, src_port, dst_addr, dst_port, bits, addr_bits)
    return Cat(*(Cat(*t).xor() ^ (const >> j & 1) for j, t in enumerate(terms)))


class FlowTable(wiring.Component):
    """Flow table: ``sets`` x ``ways`` flows keyed by the 5-tuple, one block RAM per way.

    Per packet request it finds the packet's flow, updates its state and stamp, or creates it,
    with the golden model's ``FlowTable`` semantics (docs/flow.md):

    * the key is canonical (the endpoint with the smaller (address, port) first), so both
      directions of a connection find one entry; the full key is stored and compared, so there
      are no false matches; the sender of the packet that created the flow is the client;
    * an entry is *live* while ``(now - stamp) mod 2**time_bits`` is below the timeout of its
      state; a packet of no live flow takes the **lowest-numbered way that is empty or expired**;
      with none, nothing is evicted and the answer is ``table_full`` (``found`` 0: no flow, not
      established), counted on ``event_table_full``;
    * TCP flows are established after the three-way handshake, other protocols once seen both
      ways; ``established`` is Suricata's per-packet flag (for TCP the state before the packet).

    Timing (ECP5, 156.25 MHz). A packet request is taken every :data:`PACKET_CYCLES` (8) cycles
    at most: one minimum frame (60 bytes + FCS, 8 beats at W=64) per 8 cycles, 19.5 Mpps. Its
    response is valid :data:`LATENCY` (9) cycles after it was taken. A management read uses the
    RAMs' read port while a packet is in flight, so dumping the table as fast as the port answers
    (one entry per 7 cycles, :data:`MGMT_READ_LATENCY` 6) costs packets nothing; a write holds the
    table two cycles (packets and writes alternate when both wait); ``CLEAR`` holds it ``sets``
    cycles.

    The cycles of a packet request taken in cycle t:

    * t: the set index (XOR network) into the RAMs' read-address registers; the two endpoints
      compared in 2-bit chunks (greater, less);
    * t+1, t+2: the chunks combined in groups, then the groups (``swap``: the source is the
      larger endpoint); the set is read (two cycles, the second the block RAM's output register);
      the packet's TCP transitions into a table by (state, direction);
    * t+3: the canonical key (a 2:1 mux by ``swap``) into a copy per way; the set's entries into
      a register beside each way's block RAMs;
    * t+4..t+6: the compare of each way, three register stages: key in 2-bit chunks and the age
      ``now - stamp``; chunks in groups of 16 and the age against every timeout; live / hit /
      free and each way's transition looked up;
    * t+7: the decision: write enable, data and the response into registers;
    * t+8: the write; the next request can be taken (its read comes after the write).

    A reset does not clear the RAMs (they start zero, all invalid, at power-up); ``CLEAR`` does.
    Block RAM on ECP5: a way of 1024 sets is one :class:`~hdl.lib.ram.PipelinedRam` (1024 x 18
    DP16KDs); deeper ways are 36-bit slices; ways of 512 sets or fewer are
    :class:`~hdl.lib.ram.WideRam` slices (512 x 36: half the DP16KDs).

    Parameters
    ----------
    sets : int
        Sets, a power of two of at least 2 (the RAM depth).
    ways : int
        Entries per set, one RAM each.
    addr_bits : int
        128 (IPv4 and IPv6) or 32 (IPv4 only: IPv6 packets answer ``unsupported``, and an entry
        takes 144 bits instead of 336, for large tables).
    time_bits : int
        Width of ``now``, the stamps and the timeouts (unit: :data:`TIME_UNIT_S`).
    set_given : bool
        The request's set index comes on ``req_set`` (:func:`set_index` of the request, computed
        by the requester, e.g. a cycle ahead into a register) instead of from the XOR network
        here. Why: from a requester's registers through the network into the ways' read-address
        copies across the die was one cycle too long in the NIC (116.6 MHz).

    Members
    -------
    req : In(stream.Signature(request_layout()))
        ``proto``, ``ipv6``, ``src_addr``, ``dst_addr`` (128 bits, IPv4 in the low 32),
        ``src_port``, ``dst_port`` (for ICMP: what the top uses as ports, e.g. 0), ``flags``.
    resp : Out(stream.Signature(response_layout))
        ``found`` (the packet has a flow), ``established``, ``to_server`` (meaningful with
        ``found``: to_client is ``found & ~to_server``), ``outcome`` (:class:`Outcome`),
        ``state`` (the flow's state after the packet). One per request, in order.
    mgmt_req : In(stream.Signature(mgmt_request_layout))
        ``op`` (:class:`MgmtOp`), ``set``, ``way``, ``entry``. READ answers the entry at
        (set, way) as stored, expired ones included (the driver filters them with ``now`` and the
        timeouts); WRITE stores ``entry`` and answers with it; CLEAR empties every way of every
        set and answers an empty entry. A way number of ``ways`` or more reads as empty and
        writes nothing.
    mgmt_resp : Out(stream.Signature(entry_layout))
    req_set : In(set bits), only with ``set_given``
        ``set_index`` of ``req.payload``, valid with it.
    now : In(time_bits)
        The time, sampled when a packet request is taken.
    tcp_new, tcp_established, tcp_closed, other_new, other_established : In(time_bits)
        Idle timeouts per state (CSR registers in the top; Suricata's defaults as their initial
        values, :data:`DEFAULT_TIMEOUTS`), sampled when a packet request is taken.
    event_new, event_existing, event_table_full, event_unsupported : Out(1)
        One-cycle strobes, one per packet, for the CSR counter bank.
    """

    def __init__(self, sets: int = 1024, ways: int = 4, addr_bits: int = 128, time_bits: int = 32,
                 set_given: bool = False):
        self.sets, self.ways, self.addr_bits, self.time_bits = sets, ways, addr_bits, time_bits  # for repr
        self.set_given = set_given
        if not isinstance(sets, int) or sets < 2 or sets & (sets - 1):
            raise ValueError(f"sets must be a power of two of at least 2, not {sets!r}")
        if not isinstance(ways, int) or ways < 1:
            raise ValueError(f"ways must be a positive integer, not {ways!r}")
        if addr_bits not in (32, 128):
            raise ValueError(f"addr_bits must be 32 or 128, not {addr_bits!r}")
        if not isinstance(time_bits, int) or time_bits < 1:
            raise ValueError(f"time_bits must be a positive integer, not {time_bits!r}")
        self.set_bits = sets.bit_length() - 1
        self.way_bits = max(1, (ways - 1).bit_length())
        self.entry_layout = entry_layout(addr_bits, time_bits)
        self.request_layout = request_layout()
        self.response_layout = data.StructLayout({"found": 1, "established": 1, "to_server": 1,
                                                  "outcome": Outcome, "state": FlowState})
        self.mgmt_request_layout = data.StructLayout({"op": MgmtOp, "set": self.set_bits, "way": self.way_bits,
                                                      "entry": self.entry_layout})
        members = {
            "req": In(stream.Signature(self.request_layout)),
            "resp": Out(stream.Signature(self.response_layout)),
            "mgmt_req": In(stream.Signature(self.mgmt_request_layout)),
            "mgmt_resp": Out(stream.Signature(self.entry_layout)),
            "now": In(time_bits),
        }
        if set_given:
            members["req_set"] = In(self.set_bits)
        members.update({name: In(time_bits, init=min(v, (1 << time_bits) - 1))
                        for name, v in DEFAULT_TIMEOUTS.items()})
        members.update({f"event_{o.name.lower()}": Out(1) for o in Outcome})
        super().__init__(members)

    def __repr__(self):
        return (f"FlowTable(sets={self.sets}, ways={self.ways}, addr_bits={self.addr_bits}, "
                f"time_bits={self.time_bits})")

    def elaborate(self, platform):
        m = Module()
        ways = range(self.ways)
        A, T = self.addr_bits, self.time_bits

        # One RAM per way, read latency two (PipelinedRam: the second register is the block
        # RAM's own output register on ECP5). Read and write addresses, data and enables are
        # registers loaded the cycle before, addresses and enables one copy per way.
        next_read_addr = Signal(self.set_bits)
        next_write_addr, next_write_en = Signal(self.set_bits), Signal(self.ways)
        # The write data is made per way, beside each way's copy of the key (see the decision).
        next_write_data = [Signal(self.entry_layout, name=f"next_write_data_{w}") for w in ways]
        stored = []
        # Deep tables (more than 1024 sets) spread a way's RAMs over the die: the way is built
        # as slices of at most _SLICE_BITS columns, each with its own copies of the addresses
        # and the enable, so that each copy can sit by its slice (one copy per way reached its
        # farthest RAM through 6.9 ns of route: 131.8 MHz at 16384 flows).
        width = self.entry_layout.size
        # Tables of at most 512 sets use the DP16KD's 512 x 36 mode (`WideRam`, sliced like the deep
        # tables): half the block RAMs of 1024 x 18, which is what a way of fewer sets takes too
        # (a 334-bit way at 512 sets: 10 DP16KD instead of 19; docs/security.md, the ULX3S budget).
        wide = self.sets <= WideRam.DEPTH
        slice_bits = WideRam.WIDTH if wide else width if self.sets <= 1024 else _SLICE_BITS
        for w in ways:
            # A third read stage, a register between the block RAMs (spread over the die: 76 of
            # them at 4096 flows) and any logic: straight from the RAM, the data's route alone
            # took 5-6 ns of the 6.4 ns cycle (108 MHz at 4096 flows, 98 at 16384).
            stored_r = Signal(self.entry_layout, name=f"stored_r_{w}")
            stored.append(stored_r)
            write_data = Signal(self.entry_layout, name=f"write_data_{w}")
            m.d.sync += write_data.eq(next_write_data[w])
            for k, lo in enumerate(range(0, width, slice_bits)):
                hi = min(lo + slice_bits, width)
                ram = WideRam() if wide else PipelinedRam(hi - lo, self.sets)
                m.submodules[f"way_{w}" if slice_bits == width else f"way_{w}_{k}"] = ram
                m.d.sync += stored_r.as_value()[lo:hi].eq(ram.r_data[:hi - lo])
                suffix = f"{w}" if slice_bits == width else f"{w}_{k}"
                read_addr = keep_copy(next_read_addr, name=f"read_addr_{suffix}")
                write_addr = keep_copy(next_write_addr, name=f"write_addr_{suffix}")
                write_en = keep_copy(next_write_en[w], name=f"write_en_{suffix}", reset_less=False)
                m.d.sync += [read_addr.eq(next_read_addr), write_addr.eq(next_write_addr),
                             write_en.eq(next_write_en[w])]
                if not wide:   # a WideRam reads in every cycle
                    m.d.comb += ram.r_en.eq(1)
                m.d.comb += [ram.r_addr.eq(read_addr), ram.w_addr.eq(write_addr),
                             ram.w_data.eq(write_data.as_value()[lo:hi]), ram.w_en.eq(write_en)]

        # --- Arbitration -------------------------------------------------------------------
        # Packet requests are taken only in IDLE; a packet keeps the table busy 7 more cycles
        # (P1..P7). A management read only needs the read port, free in P1..P6 (in P7 its read
        # would meet the packet's write): reads cost packets nothing; with no packet in flight a
        # read goes through M_READ. Writes and CLEAR are taken in IDLE only; CLEAR holds the
        # table `sets` cycles. A packet needs a free place for its answer (`pending` or `resp`).
        # One management request at a time.
        # One-hot copies of the FSM states the datapath looks at, kept beside the FSM: the
        # arbitration and the write port read a flip-flop instead of decoding the state (decoded,
        # the state's path through the arbitration into the write enables, by the RAMs across
        # the die, was the critical path: 119.8 MHz at 16384 flows).
        is_idle = Signal(init=1)
        read_free = Signal()                     # P1..P6, M_READ: the read port is the management's
        is_decide, is_m_write, is_clear, clear_done = Signal(), Signal(), Signal(), Signal()
        pending = Signal()                       # a decided answer waits for `resp`
        m_rd = Signal(5)                         # a management read 1..5 cycles ago
        m_busy = Signal()                        # a management request taken, not yet answered
        m_active = Signal()
        prefer_mgmt = Signal()
        mgmt_ok, take_pkt, take_mgmt = Signal(), Signal(), Signal()
        m.d.comb += [
            m_busy.eq(m_active),
            mgmt_ok.eq(self.mgmt_req.valid & ~m_busy),
            take_pkt.eq(is_idle & self.req.valid & (~pending | ~self.resp.valid) & ~(mgmt_ok & prefer_mgmt)),
            take_mgmt.eq((is_idle & mgmt_ok & ~take_pkt & (self.mgmt_req.payload.op != MgmtOp.READ))
                         | (read_free & mgmt_ok & (self.mgmt_req.payload.op == MgmtOp.READ))),
            self.req.ready.eq(take_pkt),
            self.mgmt_req.ready.eq(take_mgmt),
        ]
        # One flip-flop says a management request is in flight (taken, its answer not yet taken):
        # derived from the read pipeline, CLEAR's flag and the answer's valid, it put six LUT
        # levels in front of the arbitration's enables (128.2 MHz at 4096 flows).
        with m.If(self.mgmt_resp.valid & self.mgmt_resp.ready):
            m.d.sync += m_active.eq(0)
        with m.If(take_mgmt):
            m.d.sync += m_active.eq(1)
        with m.If(take_pkt):
            m.d.sync += prefer_mgmt.eq(1)
        with m.Elif(take_mgmt):
            m.d.sync += prefer_mgmt.eq(0)

        # --- t: the request ----------------------------------------------------------------
        p = self.req.payload
        req = Signal(self.request_layout)
        now = Signal(T)
        tmo = {name: Signal(T, name=f"tmo_{name}") for name in DEFAULT_TIMEOUTS}
        ep_bits = A + 16
        ep_chunks = range(0, ep_bits, _CHUNK_BITS)
        ord_gt, ord_lt = Signal(len(ep_chunks)), Signal(len(ep_chunks))
        # The request registers load in every IDLE cycle, taken or not: their enable is then a
        # function of the state alone, not of the arbitration.
        with m.If(is_idle):
            src_ep, dst_ep = Cat(p.src_port, p.src_addr[:A]), Cat(p.dst_port, p.dst_addr[:A])
            m.d.sync += [req.eq(p), now.eq(self.now)]
            m.d.sync += [tmo[name].eq(getattr(self, name)) for name in DEFAULT_TIMEOUTS]
            for i, c in enumerate(ep_chunks):
                a, b = src_ep[c:c + _CHUNK_BITS], dst_ep[c:c + _CHUNK_BITS]
                m.d.sync += [ord_gt[i].eq(a > b), ord_lt[i].eq(a < b)]
        if self.set_given:
            pkt_set = self.req_set
        else:
            pkt_set = set_index(p.proto, p.ipv6, p.src_addr, p.src_port, p.dst_addr, p.dst_port,
                                self.set_bits, A)
        # Reads are taken only where `read_free` (a flip-flop) says the port is the management's:
        # chosen by the arbitration, the read address was the end of a four-level path into the
        # far address copies (144.6 MHz at 4096 flows). With no packet in flight, a read goes
        # through M_READ, one cycle of its own.
        m.d.comb += next_read_addr.eq(Mux(read_free, self.mgmt_req.payload.set, pkt_set))

        # --- t+1, t+2: the order of the endpoints; t+3: the canonical key, a copy per way -------
        # `swap`: the source is the larger endpoint. The most significant differing chunk
        # decides, which is `gt > lt` read as numbers: in groups of 8 chunks (t+1), then the
        # groups (t+2). As one 72-chunk carry chain, split by the placer into segments with
        # routes between, it took 6.9 ns (145.8 MHz at 4096 flows).
        groups = range(0, len(ep_chunks), 8)
        grp_gt, grp_lt = Signal(len(groups)), Signal(len(groups))
        m.d.sync += [grp_gt.eq(Cat(*(ord_gt[g:g + 8] > ord_lt[g:g + 8] for g in groups))),
                     grp_lt.eq(Cat(*(ord_lt[g:g + 8] > ord_gt[g:g + 8] for g in groups)))]
        swap = Signal()
        m.d.sync += swap.eq(grp_gt > grp_lt)
        key_layout = data.StructLayout({"ipv6": 1, "proto": 8, "lo_addr": A, "hi_addr": A,
                                        "lo_port": 16, "hi_port": 16})
        is_tcp, unsupported = Signal(), Signal()
        fl = Signal(8)
        m.d.sync += [is_tcp.eq(req.proto == TCP), unsupported.eq(req.ipv6 & Const(int(A < 128), 1)),
                     fl.eq(req.flags)]

        # --- t+4..t+6: the compare of each way (free-running register stages) -----------------
        def stored_key(e):
            return Cat(e.ipv6, e.proto, e.lo_addr, e.hi_addr, e.lo_port, e.hi_port)

        # Each way's compare sits by its block RAMs: it gets copies of the canonical key and of `now`.
        key_w, now_w = [], []
        for w in ways:
            key_w.append(keep_copy(Signal(key_layout), name=f"key_{w}"))
            now_w.append(keep_copy(now, name=f"now_{w}"))
            kv = key_w[w]
            m.d.sync += [
                kv.ipv6.eq(req.ipv6), kv.proto.eq(req.proto),
                kv.lo_addr.eq(Mux(swap, req.dst_addr[:A], req.src_addr[:A])),
                kv.hi_addr.eq(Mux(swap, req.src_addr[:A], req.dst_addr[:A])),
                kv.lo_port.eq(Mux(swap, req.dst_port, req.src_port)),
                kv.hi_port.eq(Mux(swap, req.src_port, req.dst_port)),
            ]
            with m.If(is_idle):
                m.d.sync += now_w[w].eq(self.now)
        key_len = key_layout.size
        key_chunks = range(0, key_len, _CHUNK_BITS)
        n_groups = -(-len(key_chunks) // _GROUP)
        chunk_eq = [Signal(len(key_chunks), name=f"chunk_eq_{w}") for w in ways]
        group_eq = [Signal(n_groups, name=f"group_eq_{w}") for w in ways]
        age_1 = [Signal(T, name=f"age_1_{w}") for w in ways]
        # Stage 2 compares the age with all five timeouts at once (five short carry chains side
        # by side) and stage 3 picks the entry's by its class: with the timeout chosen first and
        # compared after, the compare's carry chain, a die crossing and the hit logic made one
        # cycle (119.0 MHz at 4096 flows).
        young_2 = [Signal(len(DEFAULT_TIMEOUTS), name=f"young_2_{w}") for w in ways]
        cls_2 = [Signal(len(DEFAULT_TIMEOUTS), name=f"cls_2_{w}") for w in ways]
        # Timeout class of the stored entry, one-hot: tcp new/established/closed, other new/established.
        cls_1 = [Signal(5, name=f"cls_1_{w}") for w in ways]
        valid_1, valid_2 = Signal(self.ways), Signal(self.ways)
        chi_1, chi_2, to_server_2 = Signal(self.ways), Signal(self.ways), Signal(self.ways)
        state_1 = [Signal(FlowState, name=f"state_1_{w}") for w in ways]
        state_2 = [Signal(FlowState, name=f"state_2_{w}") for w in ways]
        for w in ways:
            e = stored[w]
            sk = stored_key(e)
            m.d.sync += chunk_eq[w].eq(Cat(*(sk[c:c + _CHUNK_BITS] == key_w[w].as_value()[c:c + _CHUNK_BITS]
                                             for c in key_chunks)))
            tcp_e = e.proto == TCP
            est_e = (e.state == FlowState.ESTABLISHED) | (e.state == FlowState.FIN_CLIENT) | \
                (e.state == FlowState.FIN_SERVER)
            closed_e = e.state == FlowState.CLOSED
            new_e = ~est_e & ~closed_e
            m.d.sync += [
                age_1[w].eq(now_w[w] - e.stamp),
                cls_1[w].eq(Cat(tcp_e & new_e, tcp_e & est_e, tcp_e & closed_e, ~tcp_e & new_e, ~tcp_e & est_e)),
                valid_1[w].eq(e.valid), chi_1[w].eq(e.client_hi), state_1[w].eq(e.state),
            ]
            # Stage 2: chunks in groups; the age against every timeout (a non-TCP CLOSED entry has
            # no class: dead).
            m.d.sync += group_eq[w].eq(Cat(*(chunk_eq[w][g * _GROUP:(g + 1) * _GROUP].all()
                                             for g in range(n_groups))))
            m.d.sync += young_2[w].eq(Cat(*(age_1[w] < tmo[name] for name in DEFAULT_TIMEOUTS)))
            m.d.sync += [cls_2[w].eq(cls_1[w]), valid_2[w].eq(valid_1[w]), to_server_2[w].eq(swap == chi_1[w]),
                         chi_2[w].eq(chi_1[w]), state_2[w].eq(state_1[w])]

        # The packet's transitions, as a table by (stored state, direction): its flags are known
        # from t+3, so the table is ready long before stage 3, which only looks it up (a 16:1
        # mux). Decided in stage 3 from the flags, the transition took six LUT levels (127.3 MHz
        # at 4096 flows).
        fin, syn, rst, ack = fl[_TCP_FIN], fl[_TCP_SYN], fl[_TCP_RST], fl[_TCP_ACK]
        trans_layout = data.StructLayout({"next": FlowState, "restart": 1, "established": 1})
        trans = [Signal(trans_layout, name=f"trans_{st.name.lower()}_{int(d)}") for st in FlowState for d in (0, 1)]
        for i, (st, to_server) in enumerate((st, d) for st in FlowState for d in (False, True)):
            nxt = Signal(FlowState, name=f"trans_next_{i}")
            restart = is_tcp & syn & ~ack & ~rst & (st in (FlowState.TCP_MIDSTREAM, FlowState.CLOSED))
            m.d.comb += nxt.eq(st)
            with m.If(is_tcp):
                with m.If(rst):
                    m.d.comb += nxt.eq(FlowState.CLOSED)
                with m.Elif(syn):
                    with m.If(restart):
                        m.d.comb += nxt.eq(FlowState.SYN_SENT)
                    with m.Elif(ack & (st == FlowState.SYN_SENT) & (not to_server)):
                        m.d.comb += nxt.eq(FlowState.SYN_RECV)
                with m.Elif(ack & (st == FlowState.SYN_RECV) & to_server):
                    m.d.comb += nxt.eq(FlowState.ESTABLISHED)
                with m.Elif(fin):
                    if st == FlowState.ESTABLISHED:
                        m.d.comb += nxt.eq(FlowState.FIN_CLIENT if to_server else FlowState.FIN_SERVER)
                    elif (st == FlowState.FIN_CLIENT and not to_server) or (st == FlowState.FIN_SERVER and to_server):
                        m.d.comb += nxt.eq(FlowState.CLOSED)
            with m.Elif(Const(int(st == FlowState.NEW and not to_server))):
                m.d.comb += nxt.eq(FlowState.ESTABLISHED)
            was_est = Const(int(st in ESTABLISHED_STATES))
            m.d.sync += [trans[i].next.eq(nxt), trans[i].restart.eq(restart),
                         trans[i].established.eq(Mux(is_tcp, was_est & ~restart, nxt == FlowState.ESTABLISHED))]
        trans_table = Array(trans)

        # Stage 3: live, hit, free; each way's transition as if it were the packet's flow.
        live_3, hit_3 = Signal(self.ways), Signal(self.ways)
        next_state_3 = [Signal(FlowState, name=f"next_state_3_{w}") for w in ways]
        est_3, to_server_3, restart_3 = Signal(self.ways), Signal(self.ways), Signal(self.ways)
        write_chi_3 = Signal(self.ways)          # client_hi to write if this way is the hit
        for w in ways:
            live = valid_2[w] & (young_2[w] & cls_2[w]).any()
            m.d.sync += [live_3[w].eq(live), hit_3[w].eq(live & group_eq[w].all())]
            t = trans_table[Cat(to_server_2[w], state_2[w].as_value())]
            m.d.sync += [
                next_state_3[w].eq(t.next),
                est_3[w].eq(t.established),
                to_server_3[w].eq(to_server_2[w] | t.restart),
                restart_3[w].eq(t.restart),
                write_chi_3[w].eq(Mux(t.restart, swap, chi_2[w])),
            ]

        # The state a new flow starts in.
        first_state = Signal(FlowState)
        m.d.sync += first_state.eq(Mux(is_tcp, Mux(rst, FlowState.CLOSED,
                                                   Mux(syn & ~ack, FlowState.SYN_SENT, FlowState.TCP_MIDSTREAM)),
                                       FlowState.NEW))
        swap_3 = Signal()
        m.d.sync += swap_3.eq(swap)

        def lowest(bits):
            """One-hot of the lowest set bit (priority to way 0)."""
            return Cat(*(bits[w] & ~bits[:w].any() if w else bits[0] for w in ways))

        # --- t+7: the decision -------------------------------------------------------------
        answer = Signal(self.response_layout)
        events = Signal(len(Outcome))    # one-hot by Outcome value - 1, for one cycle
        m.d.sync += events.eq(0)
        for o in Outcome:
            m.d.comb += getattr(self, f"event_{o.name.lower()}").eq(events[o.value - 1])

        def decide():
            hit_way, free_way = lowest(hit_3), lowest(~live_3)
            any_hit = hit_3.any()
            m.d.comb += next_write_addr.eq(pkt_set_2)
            # Each way's write data from that way's copies of the key and `now` and its own
            # stage-3 results: only `any_hit` crosses between the ways (one mux level), since
            # only the enabled way's data is written. (Chosen centrally by the hit way and copied
            # to the ways, the data's logic and a die crossing missed the cycle: 126.2 MHz.)
            for w in ways:
                kv, wd = key_w[w], next_write_data[w]
                m.d.comb += [
                    wd.valid.eq(1), wd.ipv6.eq(kv.ipv6), wd.proto.eq(kv.proto), wd.lo_addr.eq(kv.lo_addr),
                    wd.hi_addr.eq(kv.hi_addr), wd.lo_port.eq(kv.lo_port), wd.hi_port.eq(kv.hi_port),
                    wd.stamp.eq(now_w[w]),
                    wd.state.eq(Mux(any_hit, next_state_3[w].as_value(), first_state.as_value())),
                    wd.client_hi.eq(Mux(any_hit, write_chi_3[w], swap_3)),
                ]
            m.d.sync += pending.eq(1)
            with m.If(unsupported):
                m.d.sync += [answer.eq(0), answer.outcome.eq(Outcome.UNSUPPORTED),
                             events.eq(1 << (Outcome.UNSUPPORTED.value - 1))]
            with m.Elif(hit_3.any()):
                hit_state = Const(0, 3)
                hit_restart = Const(0)
                for w in ways:
                    hit_state = hit_state | Mux(hit_way[w], next_state_3[w].as_value(), 0)
                    hit_restart = hit_restart | (hit_way[w] & restart_3[w])
                m.d.comb += next_write_en.eq(hit_way)
                m.d.sync += [answer.found.eq(1), answer.established.eq((hit_way & est_3).any()),
                             answer.to_server.eq((hit_way & to_server_3).any()),
                             answer.outcome.eq(Mux(hit_restart, Outcome.NEW, Outcome.EXISTING)),
                             answer.state.eq(hit_state),
                             events.eq(Mux(hit_restart, 1 << (Outcome.NEW.value - 1),
                                           1 << (Outcome.EXISTING.value - 1)))]
            with m.Elif((~live_3).any()):
                m.d.comb += next_write_en.eq(free_way)
                m.d.sync += [answer.found.eq(1), answer.established.eq(0), answer.to_server.eq(1),
                             answer.outcome.eq(Outcome.NEW), answer.state.eq(first_state),
                             events.eq(1 << (Outcome.NEW.value - 1))]
            with m.Else():
                m.d.sync += [answer.eq(0), answer.outcome.eq(Outcome.TABLE_FULL),
                             events.eq(1 << (Outcome.TABLE_FULL.value - 1))]

        # The set index travels with the request to the write.
        pkt_set_0, pkt_set_1, pkt_set_2 = Signal(self.set_bits), Signal(self.set_bits), Signal(self.set_bits)
        with m.If(is_idle):
            m.d.sync += pkt_set_0.eq(pkt_set)
        m.d.sync += [pkt_set_1.eq(pkt_set_0), pkt_set_2.eq(pkt_set_1)]

        # The answer into `resp` as soon as the slot is free.
        with m.If(self.resp.valid & self.resp.ready):
            m.d.sync += self.resp.valid.eq(0)
        with m.If(pending & (~self.resp.valid | self.resp.ready)):
            m.d.sync += [self.resp.valid.eq(1), self.resp.payload.eq(answer), pending.eq(0)]

        # --- Management ----------------------------------------------------------------------
        mp = self.mgmt_req.payload
        m_way = Signal(self.way_bits)
        with m.If(self.mgmt_resp.valid & self.mgmt_resp.ready):
            m.d.sync += self.mgmt_resp.valid.eq(0)
        m.d.sync += m_rd.eq(Cat(take_mgmt & (mp.op == MgmtOp.READ), m_rd[:4]))
        # A write is held in registers, done and answered the next cycle (M_WRITE), away from the
        # arbitration. The registers load whenever no management request is in flight, taken or
        # not, so that their enable is not the arbitration's (the write's answer, loaded on
        # `take_mgmt`, put the arbitration in front of a 334-bit load across the die: 130.1 MHz).
        m_set, m_write_entry = Signal(self.set_bits), Signal(self.entry_layout)
        with m.If(~m_busy & ~is_m_write):
            m.d.sync += [m_way.eq(mp.way), m_set.eq(mp.set), m_write_entry.eq(mp.entry)]
        # A read's entry is in `stored` four cycles after it was taken; the way is chosen into a
        # register of its own (`m_entry`), then loaded into the answer.
        m_entry = Signal(self.entry_layout)
        with m.If(m_rd[3]):
            m.d.sync += m_entry.eq(0)
            for w in ways:
                with m.If(m_way == w):
                    m.d.sync += m_entry.eq(stored[w])
        with m.If(m_rd[4]):
            m.d.sync += [self.mgmt_resp.valid.eq(1), self.mgmt_resp.payload.eq(m_entry)]
        clear_addr = Signal(self.set_bits)
        # CLEAR answers the cycle after its sweep, from a flag: decoded from the FSM and the
        # sweep's address, the answer's load enable crossed the die twice (120.8 MHz).
        with m.If(clear_done):
            m.d.sync += [clear_done.eq(0), self.mgmt_resp.valid.eq(1), self.mgmt_resp.payload.eq(0)]

        # The write port: a packet's decision, a management write, or CLEAR's sweep.
        with m.If(is_decide):
            decide()
        with m.Elif(is_m_write):
            m.d.comb += [next_write_addr.eq(m_set), next_write_en.eq(1 << m_way)]  # a way >= ways: none
            m.d.comb += [wd.eq(m_write_entry) for wd in next_write_data]
            m.d.sync += [self.mgmt_resp.valid.eq(1), self.mgmt_resp.payload.eq(m_write_entry)]
        with m.Elif(is_clear):
            m.d.comb += [next_write_addr.eq(clear_addr), next_write_en.eq((1 << self.ways) - 1)]
            m.d.comb += [wd.eq(0) for wd in next_write_data]
            m.d.sync += clear_addr.eq(clear_addr + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(take_pkt):
                    m.d.sync += [is_idle.eq(0), read_free.eq(1)]
                    m.next = "P1"
                with m.Elif(take_mgmt & (mp.op == MgmtOp.WRITE)):
                    m.d.sync += [is_idle.eq(0), is_m_write.eq(1)]
                    m.next = "M_WRITE"
                with m.Elif(mgmt_ok & (mp.op == MgmtOp.READ)):
                    m.d.sync += [is_idle.eq(0), read_free.eq(1)]
                    m.next = "M_READ"
                with m.Elif(take_mgmt & (mp.op == MgmtOp.CLEAR)):
                    m.d.sync += [is_idle.eq(0), is_clear.eq(1), clear_addr.eq(0)]
                    m.next = "CLEAR"
            for i in range(1, 7):
                with m.State(f"P{i}"):
                    if i == 6:
                        m.d.sync += [read_free.eq(0), is_decide.eq(1)]
                    m.next = f"P{i + 1}"
            with m.State("P7"):
                m.d.sync += [is_decide.eq(0), is_idle.eq(1)]
                m.next = "IDLE"
            with m.State("M_READ"):
                m.d.sync += [read_free.eq(0), is_idle.eq(1)]
                m.next = "IDLE"
            with m.State("M_WRITE"):
                m.d.sync += [is_m_write.eq(0), is_idle.eq(1)]
                m.next = "IDLE"
            with m.State("CLEAR"):
                with m.If(clear_addr == self.sets - 1):
                    m.d.sync += [is_clear.eq(0), is_idle.eq(1), clear_done.eq(1)]
                    m.next = "IDLE"
        return m
