"""ACL classifier: first match over ternary entries, a TCAM emulated in block RAM (docs/acl.md).

The search word (:class:`~hdl.acl.layouts.AclKey` plus the generation bit) is cut into chunks of
``k`` bits; each chunk indexes a table whose row holds one bit per entry ("this entry accepts this
chunk value"). A key is given ``R`` = ``cycles_per_key`` cycles (8 at W=64: a 64-byte frame is
8 beats), so one 512 x 36 block RAM per (group, column) serves R chunks one after the other, with
``2**k = 512 / R`` rows each; the AND of every chunk's row, accumulated over the R cycles, is the
match vector, and a pipelined priority encoder picks the first set bit. The geometry is
:class:`~hdl.acl.layouts.TcamGeometry`.

Atomic updates without a second copy of the table: the search word ends with a generation bit
that the classifier latches with each key. The driver writes the next table into free entries
tagged with the other generation, sends ``commit`` (one cycle) and, once ``commit_busy`` has
fallen, frees the old entries. Every key is searched with one generation from its first chunk to
its last, so it sees the whole old table or the whole new one.

Per-rule hit counters live in a block-RAM bank indexed by the entry's ``slot`` (read-modify-write,
one per result); the management port reads (and optionally clears) them between increments.
"""


from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.acl.layouts import (
    COLUMN_ENTRIES,
    IN_PORT_BITS,
    KEY_BITS,
    SLOT_BITS,
    AclAction,
    AclActionWord,
    AclKey,
    TcamGeometry,
)
from hdl.lib.ram import PipelinedRam, WideRam
from hdl.lib.timing import keep_copy

__all__ = ["AclClassifier", "AclResult", "acl_key_from_meta", "COUNTER_BITS"]

#: Hit counters are 64-bit, like every counter of the NIC.
COUNTER_BITS = 64
#: Leaves of the priority encoder tree.
_LEAF_BITS = 8
#: Columns served by one copy of the registered row write.
_WRITE_FANOUT = 4


class AclResult(data.Struct):
    """One classification: ``hit`` with the first matching entry's ``index``, ``action``, ``slot``.

    ``multi`` says at least one more entry matched too: the host path, which evaluates every
    alerting rule (Suricata fires all of them), needs to see the packet only when it is set.
    """
    hit: 1
    multi: 1
    index: SLOT_BITS
    action: AclAction
    slot: SLOT_BITS


def _tree_levels(geometry: TcamGeometry) -> int:
    """Levels of the priority encoder tree over the table's match vector."""
    leaves = -(-geometry.columns * COLUMN_ENTRIES // _LEAF_BITS)
    return (leaves - 1).bit_length()


def _two_or_more(bits) -> Value:
    """At least two of ``bits`` are set, as a tree of small functions (no carry chain)."""
    n = len(bits)
    if n <= 4:
        terms = [bits[i] & bits[j] for i in range(n) for j in range(i + 1, n)]
        return Cat(*terms).any() if terms else Const(0)
    a, b = bits[:n // 2], bits[n // 2:]
    return _two_or_more(a) | _two_or_more(b) | (a.any() & b.any())


def acl_key_from_meta(meta, in_port, flow_established, flow_to_server) -> AclKey:
    """The classifier key of a parsed frame, as an :class:`AclKey` view.

    ``meta`` is a :class:`hdl.packet.meta.PacketMeta` view, ``in_port`` the ingress port (at most
    :data:`~hdl.acl.layouts.IN_PORT_BITS` bits), the flow bits come from the flow table. VLAN is
    the outer tag; ``tcp_flags`` drops the parser's NS bit (bit 8).
    """
    port = Value.cast(in_port)
    if len(port) > IN_PORT_BITS:
        raise ValueError(f"in_port must be at most {IN_PORT_BITS} bits wide, not {len(port)}")
    # Cat runs LSB first, in AclKey's field order.
    bits = Cat(port, Const(0, IN_PORT_BITS - len(port)), meta.vlan_count != 0, meta.vlan0_vid, meta.ethertype,
               meta.ip_src, meta.ip_dst, meta.ip_proto, meta.sport, meta.dport, meta.tcp_flags[:8],
               meta.icmp_type, meta.icmp_code, meta.ip_fragment, meta.ip_ttl, flow_established, flow_to_server)
    assert len(bits) == KEY_BITS
    return AclKey(bits)


class AclClassifier(wiring.Component):
    """First-match ACL lookup over ``entries`` ternary entries, one key every ``cycles_per_key`` cycles.

    Parameters
    ----------
    entries:
        Table capacity in ternary entries (1..4096).
    cycles_per_key:
        R, cycles between two keys (a power of two, 8..64): 8 for W=64 back-to-back 64-byte
        frames. Fewer cycles need more block RAM (docs/acl.md); W=256 (R=2) needs the counter
        bank split in two, see docs/acl.md.

    Members
    -------
    s_key: In(stream.Signature(AclKey))
        Keys. ``ready`` is high at most once every ``cycles_per_key`` cycles.
    m_result: Out(stream.Signature(AclResult, always_ready=True))
        One result per key, :attr:`latency` cycles after the key was taken; in key order.
    row_we, row_addr, row_data: In
        Table write: ``row_data`` (``groups * 36`` bits) into row ``row_addr[:9]`` of column
        ``row_addr[9:]``, registered on the way in. Any time; see the module docstring for the
        order that keeps it atomic.
    act_we, act_index, act_data: In
        Write :class:`AclActionWord` of entry ``act_index``.
    commit: In(1)
        Flip the generation keys are searched with (takes effect for the next key taken).
    generation, commit_busy: Out(1)
        The current generation; high while keys of the previous one are still in the pipeline.
    cnt_en, cnt_slot, cnt_clear: In
        Read (and, with ``cnt_clear``, zero) hit counter ``cnt_slot``; held until ``cnt_ack``.
    cnt_ack: Out(1)
        The request was taken this cycle (counter increments go first).
    cnt_valid, cnt_data: Out
        ``cnt_data`` is the counter's value before any clear, three cycles after ``cnt_ack``.
    """

    def __init__(self, entries: int = 256, cycles_per_key: int = 8):
        # First, so that repr() works on an instance whose checks failed (the garbage
        # collector's UnusedElaboratable warning formats it).
        self.entries, self.cycles_per_key = entries, cycles_per_key
        if cycles_per_key < 8:
            # The TCAM itself takes a key every 2 cycles (TcamGeometry); the counter bank's
            # read-modify-write does not: it needs banks taking alternate keys (docs/acl.md).
            raise ValueError(f"cycles_per_key must be at least 8 with the hit counter bank, not {cycles_per_key!r}")
        self.geometry = geo = TcamGeometry(entries, cycles_per_key)
        self.slots = max(2, 1 << (entries - 1).bit_length())
        col_bits = max(1, (geo.columns - 1).bit_length())
        super().__init__({
            "s_key": In(stream.Signature(AclKey)),
            "m_result": Out(stream.Signature(AclResult, always_ready=True)),
            "row_we": In(1), "row_addr": In(9 + col_bits), "row_data": In(geo.row_bits),
            "act_we": In(1), "act_index": In(SLOT_BITS), "act_data": In(AclActionWord),
            "commit": In(1), "generation": Out(1), "commit_busy": Out(1),
            "cnt_en": In(1), "cnt_slot": In(SLOT_BITS), "cnt_clear": In(1), "cnt_ack": Out(1),
            "cnt_valid": Out(1), "cnt_data": Out(COUNTER_BITS),
        })

    def __repr__(self):
        return f"AclClassifier(entries={self.entries}, cycles_per_key={self.cycles_per_key})"

    @property
    def tree_levels(self) -> int:
        return _tree_levels(self.geometry)

    @property
    def latency(self) -> int:
        """Cycles from a key taken to its result: latch, R reads, RAM, vector, tree, action RAM."""
        return self.latency_of(self.entries, self.cycles_per_key)

    @staticmethod
    def latency_of(entries: int, cycles_per_key: int = 8) -> int:
        """:attr:`latency` of a classifier of these parameters, without building one."""
        return cycles_per_key + _tree_levels(TcamGeometry(entries, cycles_per_key)) + 12

    def elaborate(self, platform):
        m = Module()
        geo = self.geometry
        r, k = self.cycles_per_key, geo.chunk_bits
        cbits = max(1, (r - 1).bit_length())

        # -- key in: latch the search word (key + generation) for R cycles of reads ----------------
        gen = Signal()
        search = Signal(KEY_BITS + 1)
        busy = Signal()
        cyc = Signal(cbits)
        last_read = busy & (cyc == r - 1)
        m.d.comb += self.s_key.ready.eq(~busy | last_read)
        with m.If(busy):
            m.d.sync += cyc.eq(cyc + 1)
            with m.If(last_read):
                m.d.sync += [busy.eq(0), cyc.eq(0)]
        with m.If(self.s_key.valid & self.s_key.ready):
            m.d.sync += [search.eq(Cat(self.s_key.payload.as_value(), gen)), busy.eq(1), cyc.eq(0)]

        # -- chunk tables: one RAM per (group, column) ---------------------------------------------
        # The read address is registered twice: once per group after the chunk multiplexer, then
        # once per RAM, so each copy can sit by its RAM (the RAMs of a group span the die).
        # Row writes are registered once on the way in.
        padded = Cat(search, Const(0, geo.chunks * k - len(search)))
        # Row writes are registered twice: in, then one copy per 4 columns (a row reaches every
        # column of the die; programming is not in a hurry).
        w_addr, w_data = Signal(len(self.row_addr)), Signal(len(self.row_data))
        w_en = Signal()
        m.d.sync += [w_addr.eq(self.row_addr), w_data.eq(self.row_data), w_en.eq(self.row_we)]
        w_copies = []
        for i in range(-(-geo.columns // _WRITE_FANOUT)):
            ca = keep_copy(w_addr, name=f"w_addr_{i}")
            cd = keep_copy(w_data, name=f"w_data_{i}")
            m.d.sync += [ca.eq(w_addr), cd.eq(w_data)]
            w_copies.append((ca, cd))
        # The column decode is registered at the same stage, so a RAM's write enable is a wire.
        we_col = Signal(geo.columns)
        m.d.sync += we_col.eq(Mux(w_en, 1 << w_addr[9:], 0))
        rams = [[None] * geo.columns for _ in range(geo.groups)]
        for g in range(geo.groups):
            # The chunk this group reads at each cycle of a key (zero past the search word).
            chunk_val = Signal(k, name=f"chunk_{g}")
            with m.Switch(cyc):
                for c in range(r):
                    i = geo.chunk_of(g, c)
                    if i is not None:
                        with m.Case(c):
                            m.d.comb += chunk_val.eq(padded[i * k:(i + 1) * k])
            addr_g = Signal(9, name=f"raddr_g{g}")
            m.d.sync += addr_g.eq(Cat(chunk_val, cyc))
            for col in range(geo.columns):
                m.submodules[f"ram_g{g}_c{col}"] = ram = WideRam()
                rams[g][col] = ram
                addr = keep_copy(addr_g, name=f"raddr_g{g}_c{col}")
                m.d.sync += addr.eq(addr_g)
                ca, cd = w_copies[col // _WRITE_FANOUT]
                m.d.comb += [ram.r_addr.eq(addr),
                             ram.w_addr.eq(ca[:9]),
                             ram.w_data.eq(cd[g * COLUMN_ENTRIES:(g + 1) * COLUMN_ENTRIES]),
                             ram.w_en.eq(we_col[col])]

        # -- AND of every chunk's row, accumulated over the key's R cycles -------------------------
        # RAM data arrives two cycles after the read. The RAMs of one column spread over the die,
        # so their AND is a registered tree: each RAM's word is registered by its RAM, ANDed in
        # pairs and registered again, then ANDed into the column's word, then accumulated.
        d_valid = Signal(7)
        d_cyc = [Signal(cbits, name=f"d_cyc_{i}") for i in range(7)]
        m.d.sync += [d_valid.eq(Cat(busy, d_valid[:6])), d_cyc[0].eq(cyc)]
        m.d.sync += [d_cyc[i + 1].eq(d_cyc[i]) for i in range(6)]
        data_cyc, ctl_cyc, ctl_valid = d_cyc[3], d_cyc[5], d_valid[5]
        and_valid, and_cyc = d_valid[6], d_cyc[6]
        width = geo.columns * COLUMN_ENTRIES
        acc = Signal(width)
        vec = Signal(width)
        vec_valid = Signal()
        anded = []
        ones = Const((1 << COLUMN_ENTRIES) - 1, COLUMN_ENTRIES)
        for col in range(geo.columns):
            bits = Signal(COLUMN_ENTRIES, name=f"and_c{col}")
            words = []
            for g in range(geo.groups):
                # Cycles at which this group reads past the search word count as "all accept".
                live = [c for c in range(r) if geo.chunk_of(g, c) is not None]
                if not live:
                    continue
                word = Signal(COLUMN_ENTRIES, name=f"rd_g{g}_c{col}")
                if len(live) == r:
                    m.d.sync += word.eq(rams[g][col].r_data)
                else:
                    m.d.sync += word.eq(rams[g][col].r_data | Mux(data_cyc > live[-1], ones, 0))
                words.append(word)
            pairs = []
            for i in range(0, len(words), 2):
                pair = Signal(COLUMN_ENTRIES, name=f"pair_{i // 2}_c{col}")
                m.d.sync += pair.eq(words[i] & words[i + 1] if i + 1 < len(words) else words[i])
                pairs.append(pair)
            v = pairs[0]
            for t in pairs[1:]:
                v = v & t
            m.d.sync += bits.eq(v)
            anded.append(bits)
        # The accumulate controls reach every entry bit: one copy of them per column.
        for col, bits in enumerate(anded):
            first, last = keep_copy(Signal(), name=f"first_c{col}"), keep_copy(Signal(), name=f"last_c{col}")
            valid = keep_copy(Signal(), name=f"valid_c{col}", reset_less=False)
            m.d.sync += [first.eq(ctl_cyc == 0), last.eq(ctl_cyc == r - 1), valid.eq(ctl_valid)]
            sl = slice(col * COLUMN_ENTRIES, (col + 1) * COLUMN_ENTRIES)
            acc_next = Mux(first, bits, acc[sl] & bits)
            with m.If(valid):
                m.d.sync += acc[sl].eq(acc_next)
                with m.If(last):
                    m.d.sync += vec[sl].eq(acc_next)
        m.d.sync += vec_valid.eq(and_valid & (and_cyc == r - 1))
        # Entries past the capacity never match (their rows are never written, but say so here).
        live_vec = Cat(vec[:self.entries], Const(0, width - self.entries))

        # -- priority encoder: first set bit, and whether there is another ------------------------
        n_leaves = -(-width // _LEAF_BITS)
        level = []
        for i in range(n_leaves):
            v = live_vec[i * _LEAF_BITS:(i + 1) * _LEAF_BITS]
            lo = Signal(len(v), name=f"leaf_{i}")
            m.d.comb += lo.eq(v)
            anyb, multi = Signal(name=f"l0_any_{i}"), Signal(name=f"l0_multi_{i}")
            idx = Signal(3, name=f"l0_idx_{i}")
            first = 0
            for b in reversed(range(len(v))):
                first = Mux(lo[b], b, first)
            m.d.sync += [anyb.eq(lo.any()), multi.eq(_two_or_more(lo)), idx.eq(first)]
            level.append((anyb, multi, idx))
        tvalid = Signal(name="tree_valid_0")
        m.d.sync += tvalid.eq(vec_valid)
        n = 0
        while len(level) > 1:
            n += 1
            nxt = []
            for i in range(0, len(level), 2):
                if i + 1 == len(level):
                    # The odd one out is registered too, so every path has the same stage count.
                    a0, m0, i0 = level[i]
                    a2, mu2 = Signal(name=f"t{n}_any_{i}"), Signal(name=f"t{n}_multi_{i}")
                    ix2 = Signal(len(i0) + 1, name=f"t{n}_idx_{i}")
                    m.d.sync += [a2.eq(a0), mu2.eq(m0), ix2.eq(i0)]
                    nxt.append((a2, mu2, ix2))
                    continue
                (a0, m0, i0), (a1, m1, i1) = level[i], level[i + 1]
                a2, mu2 = Signal(name=f"t{n}_any_{i}"), Signal(name=f"t{n}_multi_{i}")
                ix2 = Signal(len(i0) + 1, name=f"t{n}_idx_{i}")
                m.d.sync += [a2.eq(a0 | a1), mu2.eq(m0 | m1 | (a0 & a1)),
                             ix2.eq(Mux(a0, Cat(i0, Const(0, 1)), Cat(i1, Const(1, 1))))]
                nxt.append((a2, mu2, ix2))
            level = nxt
            v2 = Signal(name=f"tree_valid_{n}")
            m.d.sync += v2.eq(tvalid)
            tvalid = v2
        hit, multi, index = level[0]

        # -- action RAM, then the result ----------------------------------------------------------
        # At least 512 words: PipelinedRam then uses the ECP5 RAM's output register (hdl/lib/ram.py).
        m.submodules.actions = actions = PipelinedRam(len(AclActionWord.const({}).as_value()), max(512, self.slots))
        m.d.comb += [actions.w_addr.eq(self.act_index), actions.w_data.eq(self.act_data.as_value()),
                     actions.w_en.eq(self.act_we), actions.r_addr.eq(index), actions.r_en.eq(tvalid)]
        p_valid, p_hit, p_multi = Signal(2), Signal(2), Signal(2)
        p_index = [Signal(SLOT_BITS, name=f"p_index_{i}") for i in range(2)]
        m.d.sync += [p_valid.eq(Cat(tvalid, p_valid[0])), p_hit.eq(Cat(hit, p_hit[0])),
                     p_multi.eq(Cat(multi, p_multi[0])), p_index[0].eq(index), p_index[1].eq(p_index[0])]
        word = AclActionWord(actions.r_data)
        res = self.m_result.payload
        # The result leaves from registers (the top's logic and the counter bank start from them).
        m.d.sync += [self.m_result.valid.eq(p_valid[1]), res.hit.eq(p_hit[1]), res.multi.eq(p_multi[1]),
                     res.index.eq(Mux(p_hit[1], p_index[1], 0)),
                     res.action.eq(Mux(p_hit[1], word.action, 0)), res.slot.eq(Mux(p_hit[1], word.slot, 0))]

        # -- commit: the generation flips between keys; busy while old keys are in flight --------
        busy_count = Signal(range(self.latency + 2))
        m.d.comb += [self.generation.eq(gen), self.commit_busy.eq(busy_count != 0)]
        with m.If(self.commit):
            m.d.sync += [gen.eq(~gen), busy_count.eq(self.latency + 1)]
        with m.Elif(busy_count != 0):
            m.d.sync += busy_count.eq(busy_count - 1)

        # -- hit counters: read-modify-write per hit; management between increments --------------
        # A hit at t: read request registered (t+1), word at t+3, registered at t+4 (the RAM is far
        # from the adder), the sum registered and written at t+5: the next increment (R >= 8
        # cycles later) reads after the write, so no forwarding is needed. A management clear is
        # written two cycles after it is taken (after its own read); an increment whose read
        # meets that write (same slot, same edge) counts from zero. Every RAM input comes from a
        # register through at most one gate.
        m.submodules.counters = cnt = PipelinedRam(COUNTER_BITS, max(512, self.slots))
        inc = self.m_result.valid & res.hit
        inc_pipe = Signal(4)
        mgmt_pipe = Signal(3)
        slot_pipe = [Signal(SLOT_BITS, name=f"cnt_slot_{i}") for i in range(4)]
        zero_pipe = Signal(4)
        word = Signal(COUNTER_BITS)
        rd_en, rd_addr = Signal(), Signal(SLOT_BITS)
        sum_en, sum_slot, sum_val = Signal(), Signal(SLOT_BITS), Signal(COUNTER_BITS)
        clr_en, clr_slot = Signal(2), [Signal(SLOT_BITS, name=f"clr_slot_{i}") for i in range(2)]
        m.d.comb += self.cnt_ack.eq(self.cnt_en & ~inc & ~inc_pipe.any() & ~clr_en.any())
        m.d.sync += [inc_pipe.eq(Cat(inc, inc_pipe[:3])), mgmt_pipe.eq(Cat(self.cnt_ack, mgmt_pipe[:2])),
                     slot_pipe[0].eq(res.slot)] + [slot_pipe[i + 1].eq(slot_pipe[i]) for i in range(3)]
        m.d.sync += [zero_pipe.eq(Cat(inc & clr_en[0] & (res.slot == clr_slot[0]), zero_pipe[:3])),
                     rd_en.eq(inc | self.cnt_ack), rd_addr.eq(Mux(inc, res.slot, self.cnt_slot)),
                     word.eq(cnt.r_data),
                     sum_en.eq(inc_pipe[3]), sum_slot.eq(slot_pipe[3]),
                     sum_val.eq(Mux(zero_pipe[3], 0, word) + 1),
                     clr_en.eq(Cat(self.cnt_ack & self.cnt_clear, clr_en[0])),
                     clr_slot[0].eq(self.cnt_slot), clr_slot[1].eq(clr_slot[0])]
        m.d.comb += [cnt.r_addr.eq(rd_addr), cnt.r_en.eq(rd_en),
                     cnt.w_en.eq(sum_en | clr_en[1]), cnt.w_addr.eq(Mux(sum_en, sum_slot, clr_slot[1])),
                     cnt.w_data.eq(Mux(sum_en, sum_val, 0))]
        m.d.comb += [self.cnt_valid.eq(mgmt_pipe[2]), self.cnt_data.eq(cnt.r_data)]
        return m
