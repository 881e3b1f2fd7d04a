"""MAC learning table: hashed, set-associative, keyed by (VLAN, MAC), one block RAM per way.

The behaviour is the golden model's ``MacTable`` (host_driver/model/switch.py, docs/switch.md
"Behaviour" item 3 and "Gateware plan"); the tests hold this block to it request by request.

MACs are 48-bit integers with the first wire byte most significant, as in
:data:`hdl.packet.layouts.Ethernet` (so the group bit, bit 0 of the first byte, is bit 40).

Refs: IEEE 802.1Q-2018 8.8 (filtering database), ISO 3309 / IEEE 802.3 CRC-32 (via ``zlib.crc32``).
"""

from __future__ import annotations

import zlib

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.lib.ram import PipelinedRam
from hdl.lib.timing import keep_copy

__all__ = ["LearnOutcome", "MacTable", "crc32_key_columns", "set_index", "entry_layout", "KEY_BYTES",
           "PACKET_CYCLES", "MGMT_CYCLES"]

#: The hash key: VLAN as two big-endian bytes, then the six MAC bytes.
KEY_BYTES = 8
#: Cycles between two packet requests the table accepts back to back (see :class:`MacTable`).
PACKET_CYCLES = 6
#: Cycles a management read holds the table (a write: one).
MGMT_CYCLES = 2
_GROUP_BIT = 40
#: The compare's first stage takes (VLAN, MAC) in chunks of this many bits: one LUT4 each.
_CHUNK_BITS = 2
#: ... and the stamp against ``oldest`` and ``now`` in chunks of this many bits (greater, less).
_TIME_CHUNK_BITS = 2


class LearnOutcome(enum.Enum, shape=3):
    """What learning the source did; the lower-case names are the strings ``MacTable.learn`` of
    the golden model returns. ``NONE``: nothing was asked (``learn`` = 0) or the source is a
    group address. ``LEARN_LIMIT``: a new source on a port that holds its limit (not learned)."""
    NONE = 0
    LEARNED = 1
    REFRESHED = 2
    MOVED = 3
    STATIC = 4
    STATIC_MOVE = 5
    TABLE_FULL = 6
    LEARN_LIMIT = 7


def entry_layout(port_bits: int, time_bits: int) -> data.StructLayout:
    """One table entry as stored in a way's RAM and as the management port reads and writes it."""
    return data.StructLayout({"valid": 1, "static": 1, "vlan": 12, "mac": 48,
                              "port": port_bits, "stamp": time_bits})


def crc32_key_columns() -> tuple[int, list[int]]:
    """CRC-32 of the all-zero key and, for each key bit ``i`` (bit ``i`` of the key read as a
    big-endian 64-bit integer), the bits that bit flips in the CRC.

    CRC-32 (with its initial and final XOR) is affine over GF(2) for a fixed length:
    ``crc(a ^ b) = crc(a) ^ crc(b) ^ crc(0)``, so ``crc(key)`` is ``crc(0)`` XOR the columns of
    the key's set bits, a fixed XOR network.
    """
    zero = zlib.crc32(bytes(KEY_BYTES))
    return zero, [zlib.crc32((1 << i).to_bytes(KEY_BYTES, "big")) ^ zero for i in range(8 * KEY_BYTES)]


def set_index(vlan, mac, bits: int) -> Value:
    """The low ``bits`` bits of CRC-32(VLAN as 2 big-endian bytes + MAC) as a fixed XOR network:
    equal to the golden model's ``mac_hash(vlan, mac, bits)`` for every key."""
    if not 0 <= bits <= 32:
        raise ValueError(f"set index width must be 0..32 bits, not {bits!r}")
    zero, columns = crc32_key_columns()
    key = Cat(Value.cast(mac)[:48], Value.cast(vlan)[:12])    # bit i here is bit i of the key integer
    out = []
    for j in range(bits):
        terms = [key[i] for i in range(len(key)) if columns[i] >> j & 1]
        out.append(Cat(*terms).xor() ^ (zero >> j & 1))
    return Cat(*out)


def _or_each(select, words):
    """The OR of ``words[w]`` for every ``w`` set in ``select``."""
    out = 0
    for w, word in enumerate(words):
        out = out | Mux(select[w], word, 0)
    return out


class MacTable(wiring.Component):
    """MAC learning table: ``sets`` x ``ways`` entries keyed by (VLAN, MAC), one block RAM per way.

    Per packet request it learns the source (VLAN, ``src``) on ``in_port`` and looks up the
    destination (VLAN, ``dst``), with the golden model's ``MacTable`` semantics:

    * an entry is *live* when it is valid and static, or valid and ``now - stamp < aging``
      (modulo ``2**time_bits``); a destination hits only a live entry;
    * learning (``learn`` = 1, source not a group address) finds the source's live entry: a
      static one is left alone (``static``, or ``static_move`` when seen on another port); a
      dynamic one takes ``in_port`` and ``now`` (``refreshed``, or ``moved``). Without one, the
      entry goes into the **lowest-numbered way that is free or expired** (``learned``), unless
      ``in_port`` holds its ``limit`` (``learn_limit``: nothing written); with none, nothing is
      evicted (``table_full``);
    * learning comes before the lookup, as in the golden model's ``SwitchModel.process`` and in
      Open vSwitch: a frame sent to its own source address finds the entry it just learned.

    **Per-port learning limit.** Each port's ``held_<p>`` counts the dynamic entries it holds: +1
    on ``learned`` (and on a move onto it, -1 for the port it left), -1 when the driver
    overwrites a live entry; an aged-out entry is held until its **release**, which is decided
    by the requests' times alone, so the golden model's ``MacTable`` gives the same counts
    request by request (docs/switch.md, "Port limit and the scrubber"): time is cut into epochs
    of ``2**epoch_bits`` units; at the first request (or idle cycle) of a new epoch the table
    *steps*: pending releases take effect, and the stamp epochs up to the new epoch -
    ``ceil(aging / 2**epoch_bits) - 1`` (aged out by then) are handed to the **scrubber**. The
    scrubber reads every set once during the epoch, only in read slots that no request uses
    (the three cycles after a packet's two reads, a management read's second cycle, idle
    cycles), so it never delays a request, and adds each dynamic entry of that window to its
    port's pending releases. A learn or a management write over an aged-out entry pends it
    unless the scrubber already did or it was released. A sweep needs ``sets`` read slots, at
    worst one per two cycles; ``scrub_overrun`` is set (sticky) if an epoch ended first (the
    counts may then lag the model's). The scrubber only counts: it writes nothing.

    Timing (ECP5, 156.25 MHz). A packet request is taken every :data:`PACKET_CYCLES` (6)
    cycles at most, never in the first cycle it is valid (the table works from its payload of
    the cycle before), and its response is valid 8 cycles after it was taken. A management read
    holds the table :data:`MGMT_CYCLES` (2) cycles (answer valid 4 cycles after it was taken),
    a write one cycle (answer 2 cycles after). Management requests are taken only between
    packet requests; when both kinds wait they alternate, so while the driver dumps the table
    as fast as it can a packet request still goes through every 8 cycles: one minimum-size
    frame (60 bytes, 8 beats at W=64) per 8 cycles. Wider data paths give fewer cycles per
    frame and need the pipelined table of docs/switch.md. A management **write** goes through
    the packet cycles (it reads its set to give back the count of the entry it replaces): it
    holds the table :data:`PACKET_CYCLES` cycles and answers 7 cycles after it was taken.

    The cycles of a packet request taken in cycle t:

    * t-1 (and every cycle): the set indices of the payload (the XOR network,
      :func:`set_index`) go into registers;
    * t: they go on into the request's registers, the source's also into the RAMs'
      read-address registers;
    * t+1, t+2: the source's set is read, then the destination's (read latency two: the second
      register is the block RAM's output register on ECP5, :class:`~hdl.lib.ram.PipelinedRam`);
    * t+3..t+5: the compare of each set, in three register stages (2-bit chunks of key and
      stamp; the chunks combined; live / hit / free), the destination's one cycle behind;
    * t+5: the learning write is chosen (its enables, address and data into registers), the
      port's limit checked (a registered compare of its count, made at t+4);
    * t+6: the write; the outcome, the destination's result and the counts are decided, and
      the next request can be taken;
    * t+7: the response goes into ``resp`` (or as soon as ``resp`` is free).

    The RAMs are read in every cycle (the read enable stays off the arbitration's path); a read
    in the cycle of a write may collide with it, but its data is never used.

    Not done: an entry untouched for ``2**time_bits`` time units looks fresh again (stamps
    wrap; the scrubber does not invalidate aged-out entries). A longer ``aging`` set while
    entries are aged out but not yet live again can leave counts low (docs/switch.md).

    A reset does not clear the RAMs (they start zero, all invalid, at power-up); the driver
    clears entries through the management port.

    Parameters
    ----------
    sets : int
        Sets, a power of two of at least 2 (the RAM depth).
    ways : int
        Entries per set, one RAM each.
    port_bits : int
        Width of a port number.
    ports : int
        Ports with a learning limit and a count (default ``2**port_bits``).
    epoch_bits : int
        The scrubber's epoch is ``2**epoch_bits`` time units; it must hold a sweep (``sets`` read
        slots, at worst one per two cycles), or ``scrub_overrun`` is set.
    time_bits : int
        Width of ``now``, ``aging`` and the stamps. The unit is the caller's: 32 bits of
        156.25 MHz cycles wrap in 27.5 s, less than Open vSwitch's default aging of 300 s, so the
        fabric should count a coarse time (for example ``cycles >> 20``, 6.7 ms).

    Members
    -------
    req : In(stream.Signature(request_layout))
        ``vlan`` (12 bits), ``dst``, ``src`` (48-bit MACs), ``in_port``, ``learn`` (1: learn the
        source).
    resp : Out(stream.Signature(response_layout))
        ``dst_hit``, ``dst_port`` (0 on a miss), ``outcome`` (:class:`LearnOutcome`), one per
        request in order.
    mgmt_req : In(stream.Signature(mgmt_request_layout))
        ``write``, ``set``, ``way``, ``entry`` (:func:`entry_layout`). A read answers with the
        entry at (set, way) as stored (expired entries included: the driver filters them with
        ``now`` and ``aging``); a write stores ``entry`` there and answers with it. A way number
        of ``ways`` or more reads as an empty entry, and a write to it stores nothing.
    mgmt_resp : Out(stream.Signature(entry_layout))
        One entry per management request, in order.
    limit_<p> : In(count_bits)
        Port ``p``'s learning limit (0: none); sampled when its request is decided.
    held_<p> : Out(count_bits)
        The dynamic entries port ``p`` holds (see above).
    scrub_overrun : Out(1)
        Sticky: an epoch ended before the scrubber's sweep did.
    now, aging : In(time_bits)
        The time, and the age at which a dynamic entry expires; both sampled when a packet
        request is taken.
    """

    def __init__(self, sets: int = 1024, ways: int = 4, port_bits: int = 3, time_bits: int = 32, *,
                 ports: int | None = None, epoch_bits: int = 4):
        self.sets, self.ways, self.port_bits, self.time_bits = sets, ways, port_bits, time_bits  # for repr
        self.ports, self.epoch_bits = ports, epoch_bits
        if not isinstance(sets, int) or sets < 2 or sets & (sets - 1):
            raise ValueError(f"sets must be a power of two of at least 2, not {sets!r}")
        if not isinstance(ways, int) or ways < 1:
            raise ValueError(f"ways must be a positive integer, not {ways!r}")
        if not isinstance(port_bits, int) or port_bits < 1:
            raise ValueError(f"port_bits must be a positive integer, not {port_bits!r}")
        if not isinstance(time_bits, int) or time_bits < 1:
            raise ValueError(f"time_bits must be a positive integer, not {time_bits!r}")
        self.ports = ports = 1 << port_bits if ports is None else ports
        if not isinstance(ports, int) or not 1 <= ports <= 1 << port_bits:
            raise ValueError(f"ports must be 1..2**port_bits, not {ports!r}")
        if not isinstance(epoch_bits, int) or not 0 <= epoch_bits <= time_bits - 2:
            raise ValueError(f"epoch_bits must be 0..time_bits - 2, not {epoch_bits!r}")
        self.ports, self.epoch_bits = ports, epoch_bits
        #: Width of a port's count of held entries and of its limit (holds sets * ways).
        self.count_bits = (sets * ways).bit_length()
        self.set_bits = sets.bit_length() - 1
        self.way_bits = max(1, (ways - 1).bit_length())
        self.entry_layout = entry_layout(port_bits, time_bits)
        self.request_layout = data.StructLayout({"vlan": 12, "dst": 48, "src": 48, "in_port": port_bits,
                                                 "learn": 1})
        self.response_layout = data.StructLayout({"dst_hit": 1, "dst_port": port_bits, "outcome": LearnOutcome})
        self.mgmt_request_layout = data.StructLayout({"write": 1, "set": self.set_bits, "way": self.way_bits,
                                                      "entry": self.entry_layout})
        # One signal per port, not an array: Yosys' ABC9 pass fails on wires named `held[0]`
        # next to the bits of a wire `held` (YosysHQ/yosys#4349).
        super().__init__({
            "req": In(stream.Signature(self.request_layout)),
            "resp": Out(stream.Signature(self.response_layout)),
            "mgmt_req": In(stream.Signature(self.mgmt_request_layout)),
            "mgmt_resp": Out(stream.Signature(self.entry_layout)),
            "now": In(time_bits),
            "aging": In(time_bits),
            **{f"limit_{p}": In(self.count_bits) for p in range(ports)},
            **{f"held_{p}": Out(self.count_bits) for p in range(ports)},
            "scrub_overrun": Out(1),
        })

    @property
    def limit(self) -> list:
        """``limit_<p>`` of every port, in port order."""
        return [getattr(self, f"limit_{p}") for p in range(self.ports)]

    @property
    def held(self) -> list:
        """``held_<p>`` of every port, in port order."""
        return [getattr(self, f"held_{p}") for p in range(self.ports)]

    def __repr__(self):
        return (f"MacTable(sets={self.sets}, ways={self.ways}, port_bits={self.port_bits}, "
                f"time_bits={self.time_bits}, ports={self.ports}, epoch_bits={self.epoch_bits})")

    def elaborate(self, platform):
        m = Module()
        ways = range(self.ways)
        ports = range(self.ports)

        # One RAM per way, read latency two: a read issued in cycle c is in `stored[w]` in c + 2.
        # The second stage is the block RAM's own output register on ECP5, where read data
        # straight from the RAM arrives 5.8 ns into the 6.4 ns cycle (a plain Memory and a
        # flip-flop after it reached 115.8 MHz); elsewhere PipelinedRam is a Memory + register.
        # Read and write addresses, data and enables are registers, loaded the cycle before,
        # addresses and enables one copy per way (the ways' block RAMs are spread over the die):
        # nothing but routing between a register and the RAMs. `next_*` say what to load.
        next_read_addr = Signal(self.set_bits)
        next_write_addr, next_write_en = Signal(self.set_bits), Signal(self.ways)
        write_data = Signal(self.entry_layout)
        stored = []
        for w in ways:
            ram = PipelinedRam(self.entry_layout.size, self.sets)
            m.submodules[f"way_{w}"] = ram
            stored.append(self.entry_layout(ram.r_data))
            read_addr = keep_copy(next_read_addr, name=f"read_addr_{w}")
            write_addr = keep_copy(next_write_addr, name=f"write_addr_{w}")
            write_en = keep_copy(next_write_en[w], name=f"write_en_{w}", reset_less=False)
            m.d.sync += [read_addr.eq(next_read_addr),
                         write_addr.eq(next_write_addr), write_en.eq(next_write_en[w])]
            # Reading in every cycle keeps the enable off the arbitration's path: `stored` always
            # holds the set addressed two cycles before, whoever uses it.
            m.d.comb += [ram.r_addr.eq(read_addr), ram.r_en.eq(1),
                         ram.w_addr.eq(write_addr), ram.w_data.eq(write_data), ram.w_en.eq(write_en)]

        # The request being served: a packet, or a management write (`op`), which goes through
        # the same cycles so that it can give back the count of the entry it overwrites.
        req = Signal(self.request_layout)
        op = Signal()
        req_new_epoch = Signal()  # the request's time is in another epoch than the table's
        eb = self.time_bits - self.epoch_bits
        epoch, sweep_lo, sweep_hi = Signal(eb), Signal(eb), Signal(eb)     # see "Per-port learning limit"
        src_set, dst_set = Signal(self.set_bits), Signal(self.set_bits)
        now, aging = Signal(self.time_bits), Signal(self.time_bits)
        same_key = Signal()       # dst == src: the lookup must see what learning did
        learn_src = Signal()      # learn asked and the source is not a group address

        # `now - stamp < aging` (mod 2**time_bits) as the window `oldest < stamp <= now`, which
        # wraps when aging > now: comparisons side by side instead of a subtraction per way
        # followed by a comparison (two carry chains in series reached 115.8 MHz).
        oldest, wraps = Signal(self.time_bits), Signal()
        # The key the comparators check `stored` against: the source, then the destination.
        cmp_mac = Signal(48)

        # Management request being served.
        m_set, m_way = Signal(self.set_bits), Signal(self.way_bits)
        m_way_bit = Signal(self.ways)    # one-hot; none for a way >= ways (it writes nothing)
        m_entry = Signal(self.entry_layout)
        m_resp_load = Signal()     # the entry read is in `stored` now: into `mgmt_resp`

        # Arbitration: only in a cycle that can take a request; alternate when both wait. A
        # management request also needs its response slot free, and none in flight.
        accepting = Signal()
        resp_pending = Signal()      # outcome and dst_* are ready for `resp`
        in_rd_src = Signal()
        m_in_flight = Signal()
        # One-hot copies of the FSM states that take requests or hold a management request, kept
        # beside the FSM: the arbitration reads a flip-flop instead of decoding the state.
        is_idle = Signal(init=1)
        is_learn, is_m_read, is_m_wait = Signal(), Signal(), Signal()
        m.d.sync += [is_idle.eq(0), is_learn.eq(0), is_m_read.eq(0), is_m_wait.eq(0)]
        prefer_mgmt = Signal()
        mgmt_ok = Signal()
        take_pkt, take_mgmt = Signal(), Signal()
        # A packet request is taken only once it has waited a cycle (`pkt_ok`): its payload is
        # then the one of the cycle before (a stream holds it while valid and not ready), so
        # what the table makes of it (set indices, an XOR network over 60 bits each; src == dst)
        # comes from registers loaded in every cycle (why: the source's network from the
        # requester's registers, the read-address select, then across the die to the ways'
        # address registers, did not fit a cycle in the switch stage). A request that waits
        # anyway (the table busy) is taken as soon as before; one that finds the table idle, a
        # cycle later.
        req_waited = Signal()
        pkt_ok = Signal()
        p = self.req.payload
        req_src_set, req_dst_set = Signal(self.set_bits), Signal(self.set_bits)
        req_same_key = Signal()
        m.d.sync += [req_waited.eq(self.req.valid & ~self.req.ready),
                     req_src_set.eq(set_index(p.vlan, p.src, self.set_bits)),
                     req_dst_set.eq(set_index(p.vlan, p.dst, self.set_bits)),
                     req_same_key.eq(p.src == p.dst)]
        m.d.comb += [
            pkt_ok.eq(self.req.valid & req_waited),
            accepting.eq(is_idle | is_m_wait | (is_learn & ~resp_pending)),
            m_in_flight.eq(is_m_read | is_m_wait | op),
            mgmt_ok.eq(self.mgmt_req.valid & ~self.mgmt_resp.valid & ~m_in_flight & ~m_resp_load),
            take_pkt.eq(accepting & pkt_ok & ~(mgmt_ok & prefer_mgmt)),
            take_mgmt.eq(accepting & mgmt_ok & ~(pkt_ok & ~prefer_mgmt)),
            self.req.ready.eq(take_pkt),
            self.mgmt_req.ready.eq(take_mgmt),
        ]
        # The request registers load in every cycle that could take a request, taken or not (a
        # request not taken leaves the FSM idle, and nothing reads them then): their enable is
        # then a function of the state alone, not of the arbitration.
        with m.If(accepting):
            m.d.sync += [
                req.eq(p), now.eq(self.now), aging.eq(self.aging), cmp_mac.eq(p.src),
                src_set.eq(req_src_set), dst_set.eq(req_dst_set), same_key.eq(req_same_key),
                learn_src.eq(p.learn & ~p.src[_GROUP_BIT]),
                req_new_epoch.eq(self.now[self.epoch_bits:] != epoch),
            ]
        # The management registers likewise, but not while a management request is in flight.
        with m.If(accepting & ~m_in_flight & ~m_resp_load):
            p = self.mgmt_req.payload
            m.d.sync += [m_set.eq(p.set), m_way.eq(p.way), m_way_bit.eq(1 << p.way), m_entry.eq(p.entry)]

        # --- Per-port learning limit: counts, epochs and the scrubber ---------------------------
        # A port *holds* a dynamic entry from its learning (or its move onto the port) until it
        # moves away, the driver overwrites it while live, or, once aged out, its release; each
        # port's `held` is checked against its `limit` (docs/switch.md, "Port limit and the
        # scrubber"). Releases of aged-out entries are deterministic in the request's time:
        # time is cut into epochs of 2**epoch_bits; at the first request (or idle cycle) of a new
        # epoch the table *steps*: what is `pending` is released, and the window of stamp epochs
        # `(sweep_lo, sweep_hi]` (up to the new epoch - D, D = ceil(aging / 2**epoch_bits) + 1,
        # so all aged out) is handed to the scrubber, which reads every set once during the
        # epoch in read slots no request uses and adds each dynamic entry of that window to
        # `pending`. A learn or a management write over an aged-out entry adds it to `pending`
        # unless the scrubber already did (its window and set already swept) or it was released.
        held = [Signal(self.count_bits, name=f"held_{p}") for p in ports]
        pending = [Signal(self.count_bits, name=f"pending_{p}") for p in ports]
        at_limit = Signal(self.ports)
        for p in ports:
            m.d.comb += self.held[p].eq(held[p])
            m.d.sync += at_limit[p].eq((self.limit[p] != 0) & (held[p] >= self.limit[p]))
        first_step = Signal(init=1)
        lo_wraps_hi, lo_wraps_epoch = Signal(), Signal()     # the windows wrap around 2**eb
        m.d.sync += [lo_wraps_hi.eq(sweep_lo > sweep_hi), lo_wraps_epoch.eq(sweep_lo > epoch)]
        # D (`delay`) follows `aging` at once when it shrinks, by one per step when it grows: so
        # the window's end `epoch - D` never moves back (no compare of it in the step).
        now_q = Signal(self.time_bits, name="now_q")
        delay, delay_target = Signal(eb, name="delay"), Signal(eb, name="delay_target")
        delay_grows = Signal()     # registered (why: compare and increment in a row did not fit)
        m.d.sync += [now_q.eq(self.now),
                     delay_target.eq(((self.aging + (1 << self.epoch_bits) - 1) >> self.epoch_bits) + 1),
                     delay_grows.eq(delay_target > delay)]
        scrub_ptr = Signal(range(self.sets + 1), init=self.sets)     # nothing to sweep before a step
        sweep_done = scrub_ptr[self.set_bits]
        scrub_slot, scrub_read = Signal(), Signal()
        scrub_flight = Signal(6)       # a scrub read 1..6 cycles ago; bit 5: its finds are counted
        m.d.sync += scrub_flight.eq(Cat(scrub_read, scrub_flight[:5]))
        # The step, in two cycles (why: the state's mux and two subtractions in a row did not
        # fit): first the epoch, in RD_SRC with the request's time or in an idle cycle (no
        # request waiting) with the time of a cycle ago; then (`step_2`) the window up to
        # `epoch - D`, the scrubber's restart and the releases. Steps are at least two cycles
        # apart.
        step_req, step_idle, step_2 = Signal(), Signal(), Signal()
        idle_new_epoch = Signal()
        m.d.sync += idle_new_epoch.eq(now_q[self.epoch_bits:] != epoch)
        m.d.comb += [step_req.eq(in_rd_src & req_new_epoch),
                     step_idle.eq(is_idle & ~self.req.valid & ~self.mgmt_req.valid & idle_new_epoch & ~step_2)]
        step = step_req | step_idle
        m.d.sync += step_2.eq(step)
        with m.If(step):
            m.d.sync += epoch.eq(Mux(in_rd_src, now[self.epoch_bits:], now_q[self.epoch_bits:]))
        window_end, delay_now = Signal(eb), Signal(eb)
        # D of the next step, registered (first_step and D change only in a step's second half,
        # two cycles or more before the next one).
        m.d.sync += delay_now.eq(Mux(first_step, delay_target, delay))
        m.d.comb += window_end.eq(epoch - delay_now)
        with m.If(step_2):
            m.d.sync += [first_step.eq(0), scrub_ptr.eq(0), sweep_lo.eq(Mux(first_step, window_end, sweep_hi)),
                         sweep_hi.eq(window_end),
                         delay.eq(Mux(first_step | ~delay_grows, delay_target, delay + 1))]
            with m.If(~sweep_done | scrub_flight.any()):
                m.d.sync += self.scrub_overrun.eq(1)
        with m.Elif(scrub_read):
            m.d.sync += scrub_ptr.eq(scrub_ptr + 1)
        # (No scrub read starts in a step's cycles: the sweep is done by then, or it overran and
        # `scrub_overrun` says so.)
        m.d.comb += scrub_read.eq(scrub_slot & ~sweep_done)

        # The next read: the destination's set after the source's; else the scrubber's set in a
        # cycle no request reads in; else the set of whichever request would win the
        # arbitration (read in vain when none is taken).
        with m.If(in_rd_src):
            m.d.comb += next_read_addr.eq(dst_set)
        with m.Elif(scrub_read):
            m.d.comb += next_read_addr.eq(scrub_ptr[:self.set_bits])
        with m.Elif(mgmt_ok & ~(pkt_ok & ~prefer_mgmt)):
            m.d.comb += next_read_addr.eq(self.mgmt_req.payload.set)
        with m.Else():
            m.d.comb += next_read_addr.eq(req_src_set)

        # The compare of a set with the key, in three register stages so that each has at most a
        # few LUT levels (block RAM data crosses the die to reach the first). One bank of each,
        # the source's set one cycle ahead of the destination's:
        # 1. (t+3 source, t+4 destination) per way, the key in 2-bit chunks (equal) and the stamp
        #    against `oldest` and `now` in 2-bit chunks (greater, less): one LUT level each;
        # 2. (t+4, t+5) the chunks combined: key equal, stamp > oldest, stamp <= now;
        # 3. (t+5, t+6) live, hit (live and key equal), free (not live).
        key_chunks = range(0, 60, _CHUNK_BITS)
        time_chunks = range(0, self.time_bits, _TIME_CHUNK_BITS)
        chunk_eq = [Signal(len(key_chunks), name=f"chunk_eq_{w}") for w in ways]
        gt_oldest = [Signal(len(time_chunks), name=f"gt_oldest_{w}") for w in ways]
        lt_oldest = [Signal(len(time_chunks), name=f"lt_oldest_{w}") for w in ways]
        gt_now = [Signal(len(time_chunks), name=f"gt_now_{w}") for w in ways]
        lt_now = [Signal(len(time_chunks), name=f"lt_now_{w}") for w in ways]
        valid_1, static_1, same_port_1 = Signal(self.ways), Signal(self.ways), Signal(self.ways)
        port_1 = [Signal(self.port_bits, name=f"port_1_{w}") for w in ways]
        key_eq, after_oldest, not_future = Signal(self.ways), Signal(self.ways), Signal(self.ways)
        valid_2, static_2, same_port_2 = Signal(self.ways), Signal(self.ways), Signal(self.ways)
        port_2 = [Signal(self.port_bits, name=f"port_2_{w}") for w in ways]

        # Stage 2 of `stamp > x`: the most significant chunk that differs decides, which is
        # `gt > lt` read as numbers (chunk i a bit of each): one short carry chain. (Combining
        # the chunks as LUT logic took five LUT levels for 16 chunks.)
        # Stage 1 loads in every cycle (no enable on the path from the block RAM), stage 2 only
        # in CMP_2 (the source's set) and CMP_3 (the destination's).
        key = Cat(cmp_mac, req.vlan)
        for w in ways:
            e = stored[w]
            stored_key = Cat(e.mac, e.vlan)
            m.d.sync += chunk_eq[w].eq(Cat(*(stored_key[c:c + _CHUNK_BITS] == key[c:c + _CHUNK_BITS]
                                             for c in key_chunks)))
            for i, c in enumerate(time_chunks):
                stamp = e.stamp[c:c + _TIME_CHUNK_BITS]
                o, n = oldest[c:c + _TIME_CHUNK_BITS], now[c:c + _TIME_CHUNK_BITS]
                m.d.sync += [gt_oldest[w][i].eq(stamp > o), lt_oldest[w][i].eq(stamp < o),
                             gt_now[w][i].eq(stamp > n), lt_now[w][i].eq(stamp < n)]
            m.d.sync += [valid_1[w].eq(e.valid), static_1[w].eq(e.static),
                         same_port_1[w].eq(e.port == req.in_port), port_1[w].eq(e.port)]

        # The epoch compare, a bank of its own that loads in every cycle (the scrubber's sets
        # and the request's source set pass through it): the stamp's epoch against `sweep_lo`,
        # `sweep_hi` and `epoch` in 2-bit chunks (stage 1), then per way (stage 2, t+5 for the
        # source, c+5 for a scrub read in c) `swept_window`: a dynamic entry of the scrubber's
        # window; `release_window`: a dynamic entry aged out since the window's start.
        epoch_chunks = range(0, eb, _TIME_CHUNK_BITS)

        def chunk_cmp(name, value, ref):
            gt = Signal(len(epoch_chunks), name=f"gt_{name}")
            lt = Signal(len(epoch_chunks), name=f"lt_{name}")
            for i, c in enumerate(epoch_chunks):
                a, b = value[c:c + _TIME_CHUNK_BITS], ref[c:c + _TIME_CHUNK_BITS]
                m.d.sync += [gt[i].eq(a > b), lt[i].eq(a < b)]
            return gt, lt

        swept_window, release_window = Signal(self.ways), Signal(self.ways)
        window_port = [Signal(self.port_bits, name=f"window_port_{w}") for w in ways]
        for w in ways:
            stamp_epoch = stored[w].stamp[self.epoch_bits:]
            gt_lo, lt_lo = chunk_cmp(f"lo_{w}", stamp_epoch, sweep_lo)
            gt_hi, lt_hi = chunk_cmp(f"hi_{w}", stamp_epoch, sweep_hi)
            gt_ep, lt_ep = chunk_cmp(f"epoch_{w}", stamp_epoch, epoch)
            after_lo, upto_hi, upto_epoch = gt_lo > lt_lo, gt_hi <= lt_hi, gt_ep <= lt_ep
            dynamic = valid_1[w] & ~static_1[w]
            m.d.sync += [
                swept_window[w].eq(dynamic & Mux(lo_wraps_hi, after_lo | upto_hi, after_lo & upto_hi)),
                release_window[w].eq(dynamic & Mux(lo_wraps_epoch, after_lo | upto_epoch, after_lo & upto_epoch)),
                window_port[w].eq(port_1[w]),
            ]

        # The scrubber's finds, five cycles after its read, counted per port (into `pending` a
        # cycle later).
        scrub_add = [Signal(range(self.ways + 1), name=f"scrub_add_{p}") for p in ports]
        for p in ports:
            m.d.sync += scrub_add[p].eq(Mux(scrub_flight[4], sum(swept_window[w] & (window_port[w] == p)
                                                                 for w in ways), 0))

        def stage_2():
            for w in ways:
                m.d.sync += [key_eq[w].eq(chunk_eq[w].all()),
                             after_oldest[w].eq(gt_oldest[w] > lt_oldest[w]),
                             not_future[w].eq(gt_now[w] <= lt_now[w]),
                             valid_2[w].eq(valid_1[w]), static_2[w].eq(static_1[w]),
                             same_port_2[w].eq(same_port_1[w]), port_2[w].eq(port_1[w])]

        in_window = Mux(wraps, after_oldest | not_future, after_oldest & not_future)
        live = valid_2 & (static_2 | in_window)
        hit = live & key_eq          # stage 3: a live entry of the key compared
        free = ~live                 # stage 3: invalid or expired, a new entry may go there

        # Stage 3 of the source's set (t+5), for the decision (t+6).
        src_hit, src_free = Signal(self.ways), Signal(self.ways)
        src_static, src_same_port = Signal(self.ways), Signal(self.ways)
        src_live, src_dynamic, src_release = Signal(self.ways), Signal(self.ways), Signal(self.ways)
        src_at_limit = Signal()
        # Stage 3 of the destination's set (t+6), for the response (t+7).
        dst_hit = Signal(self.ways)
        dst_port = [Signal(self.port_bits, name=f"dst_port_{w}") for w in ways]

        def lowest(bits):
            """One-hot of the lowest set bit (priority to way 0)."""
            return Cat(*(bits[w] & ~bits[:w].any() if w else bits[0] for w in ways))

        def port_of(one_hot, port_list):
            out = Const(0, self.port_bits)
            for w in ways:
                out = out | Mux(one_hot[w], port_list[w], 0)
            return out

        outcome = Signal(LearnOutcome)
        # The destination is the source just learned or refreshed there: it answers with in_port.
        # Kept apart from `req`, which the next request overwrites before the response leaves.
        own_hit, own_port = Signal(), Signal(self.port_bits)

        # What the request does to the counts: one port gains an entry, one loses one, one entry
        # is added to `pending`. Worked out in the first LEARN cycle (t+6) from the source's
        # stage 3, whether the response waits or not (the outcome does, the counts need not),
        # and applied in the next (t+7, from registers): never in the cycle of a step's second
        # half (a step is in RD_SRC or idle, a request at least one cycle after t+6).
        learn_first = Signal()        # t+6
        hit_way_q, free_way_q = Signal(self.ways), Signal(self.ways)
        moves, learns = Signal(), Signal()
        # Ports one-hot (each way's from CMP_3), so that the counts' enables are two LUT levels
        # from registers (why: port muxes, then a compare per port, did not fit).
        src_port_bit = [Signal(self.ports, name=f"src_port_bit_{w}") for w in ways]
        plus = Signal(self.ports, name="plus")
        minus = Signal(self.ports, name="minus")
        pend = Signal(self.ports, name="pend")
        m.d.sync += learn_first.eq(0)
        with m.If(learn_first & op):
            # A management write answers with the entry written, without waiting for the
            # packet response slot (why: the state and `resp_pending` in front of the answer's
            # 70 flip-flops did not fit).
            m.d.sync += [self.mgmt_resp.valid.eq(1), self.mgmt_resp.payload.eq(m_entry)]
        # The ways whose entry stops counting at once (`lose`) or at the next step (`release`):
        # for a management write the way it overwrites (dynamic, live or aged out), for a packet
        # the entry that moves away or the aged-out entry a learn replaces.
        lose_ways, release_ways, gain_bit = Signal(self.ways), Signal(self.ways), Signal(self.ports)
        with m.If(learn_first & op):
            m.d.comb += [lose_ways.eq(m_way_bit & src_dynamic & src_live),
                         release_ways.eq(m_way_bit & src_dynamic & ~src_live & src_release),
                         gain_bit.eq(Mux(m_way_bit.any() & m_entry.valid & ~m_entry.static,
                                         Const(1, self.ports) << m_entry.port, 0))]
        with m.Elif(learn_first):
            m.d.comb += [lose_ways.eq(Mux(moves, hit_way_q, 0)),
                         release_ways.eq(Mux(learns, free_way_q & src_dynamic & src_release, 0)),
                         gain_bit.eq(Mux(moves | learns, Const(1, self.ports) << req.in_port, 0))]
        m.d.sync += [plus.eq(gain_bit),
                     minus.eq(_or_each(lose_ways, src_port_bit)),
                     pend.eq(_or_each(release_ways, src_port_bit))]
        for p in ports:
            with m.If(step_2):
                m.d.sync += [held[p].eq(Mux(held[p] > pending[p], held[p] - pending[p], 0)),
                             pending[p].eq(scrub_add[p])]
            with m.Else():
                m.d.sync += [held[p].eq(Mux(minus[p] & (held[p] == 0), held[p], held[p] + plus[p] - minus[p])),
                             pending[p].eq(pending[p] + scrub_add[p] + pend[p])]

        def accept(fsm_m):
            m.d.sync += op.eq(take_mgmt & self.mgmt_req.payload.write)
            with fsm_m.If(take_pkt | (take_mgmt & self.mgmt_req.payload.write)):
                fsm_m.next = "RD_SRC"
            with fsm_m.Elif(take_mgmt):
                fsm_m.next = "M_READ"
                m.d.sync += is_m_read.eq(1)
            with fsm_m.Else():
                fsm_m.next = "IDLE"
                m.d.sync += is_idle.eq(1)

        with m.If(self.resp.valid & self.resp.ready):
            m.d.sync += self.resp.valid.eq(0)
        with m.If(self.mgmt_resp.valid & self.mgmt_resp.ready):
            m.d.sync += self.mgmt_resp.valid.eq(0)

        # The response, the cycle after the decision or as soon as the slot is free.
        with m.If(resp_pending & ~self.resp.valid):
            m.d.sync += [resp_pending.eq(0), self.resp.valid.eq(1),
                         self.resp.payload.dst_hit.eq(dst_hit.any() | own_hit),
                         self.resp.payload.dst_port.eq(Mux(own_hit, own_port, port_of(lowest(dst_hit), dst_port))),
                         self.resp.payload.outcome.eq(outcome)]

        # A management read's entry, two cycles after the read (the next request may be in flight).
        with m.If(m_resp_load):
            m.d.sync += [m_resp_load.eq(0), self.mgmt_resp.valid.eq(1),
                         self.mgmt_resp.payload.eq(0)]    # a way number >= ways reads as empty
            for w in ways:
                with m.If(m_way == w):
                    m.d.sync += self.mgmt_resp.payload.eq(stored[w])


        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += scrub_slot.eq(~self.req.valid & ~self.mgmt_req.valid)
                accept(m)
            with m.State("RD_SRC"):
                m.d.sync += prefer_mgmt.eq(~op)    # by state: off the arbitration's path
                m.d.comb += in_rd_src.eq(1)
                m.d.sync += [oldest.eq(now - aging), wraps.eq(aging > now)]
                m.next = "RD_DST"
            with m.State("RD_DST"):
                m.d.comb += scrub_slot.eq(1)
                m.next = "CMP_1"
            with m.State("CMP_1"):
                # `stored` holds the source's set.
                m.d.comb += scrub_slot.eq(1)
                m.d.sync += cmp_mac.eq(req.dst)
                m.next = "CMP_2"
            with m.State("CMP_2"):
                # `stored` holds the destination's set.
                m.d.comb += scrub_slot.eq(1)
                stage_2()
                m.d.sync += src_at_limit.eq((at_limit >> req.in_port)[0])
                m.next = "CMP_3"
            with m.State("CMP_3"):
                stage_2()
                # The write, from stage 2 (the decision itself waits for stage 3): a management
                # write's entry; else the lowest live entry of the source unless static, else the
                # lowest free way unless the port holds its limit. No scrub read is issued here
                # (it would read in the cycle of the write), so the scrubber's position now says
                # whether it read this set before the write.
                target = Mux(op, m_set, src_set)
                swept = target < scrub_ptr
                learn_way = Mux(hit.any(), lowest(hit) & ~static_2, Mux(src_at_limit, 0, lowest(free)))
                m.d.comb += [next_write_addr.eq(target),
                             next_write_en.eq(Mux(op, m_way_bit, Mux(learn_src, learn_way, 0)))]
                with m.If(op):
                    m.d.sync += write_data.eq(m_entry)
                with m.Else():
                    m.d.sync += [write_data.valid.eq(1), write_data.static.eq(0), write_data.vlan.eq(req.vlan),
                                 write_data.mac.eq(req.src), write_data.port.eq(req.in_port),
                                 write_data.stamp.eq(now)]
                m.d.sync += [src_hit.eq(hit), src_free.eq(free), src_static.eq(static_2),
                             src_same_port.eq(same_port_2), src_live.eq(live), src_dynamic.eq(valid_2 & ~static_2),
                             src_release.eq(release_window & ~(swept_window & Mux(swept, ~0, 0)))]
                m.d.sync += [src_port_bit[w].eq(Const(1, self.ports) << port_2[w]) for w in ways]
                packet_learns = learn_src & ~op
                m.d.sync += [learn_first.eq(1), hit_way_q.eq(lowest(hit)), free_way_q.eq(lowest(free)),
                             moves.eq(packet_learns & (lowest(hit) & ~static_2 & ~same_port_2).any()),
                             learns.eq(packet_learns & ~hit.any() & ~src_at_limit & free.any())]
                m.next = "LEARN"
                m.d.sync += is_learn.eq(1)
            with m.State("LEARN"):
                # The write happens in the first cycle here (enabled from CMP_3). The decision and
                # the destination's result wait for the previous response to have left them
                # (`resp_pending`), so the next request can be taken now.
                with m.If(~resp_pending):
                    with m.If(~op):     # (a management write answered already: learn_first)
                        m.d.sync += dst_hit.eq(hit)
                        m.d.sync += [dst_port[w].eq(port_2[w]) for w in ways]
                        hit_way = lowest(src_hit)
                        hit_static = (hit_way & src_static).any()
                        hit_same_port = (hit_way & src_same_port).any()
                        m.d.sync += [own_hit.eq(0), own_port.eq(req.in_port), resp_pending.eq(1)]
                        with m.If(~learn_src):
                            m.d.sync += outcome.eq(LearnOutcome.NONE)
                        with m.Elif(src_hit.any()):
                            with m.If(hit_static):
                                m.d.sync += outcome.eq(Mux(hit_same_port, LearnOutcome.STATIC,
                                                           LearnOutcome.STATIC_MOVE))
                            with m.Else():
                                m.d.sync += [outcome.eq(Mux(hit_same_port, LearnOutcome.REFRESHED,
                                                            LearnOutcome.MOVED)),
                                             own_hit.eq(same_key)]
                        with m.Elif(src_at_limit):
                            m.d.sync += outcome.eq(LearnOutcome.LEARN_LIMIT)
                        with m.Elif(src_free.any()):
                            m.d.sync += [outcome.eq(LearnOutcome.LEARNED), own_hit.eq(same_key)]
                        with m.Else():
                            m.d.sync += outcome.eq(LearnOutcome.TABLE_FULL)
                    accept(m)
                with m.Else():
                    m.d.sync += is_learn.eq(1)
            with m.State("M_READ"):
                m.d.comb += scrub_slot.eq(1)
                m.d.sync += [prefer_mgmt.eq(0), is_m_wait.eq(1)]
                m.next = "M_WAIT"
            with m.State("M_WAIT"):
                # The entry reaches `stored` next cycle; a packet request taken now reads after.
                m.d.comb += scrub_slot.eq(~self.req.valid & ~self.mgmt_req.valid)
                m.d.sync += m_resp_load.eq(1)
                accept(m)
        return m
