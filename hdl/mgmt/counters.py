"""Counter stores of the CSR slaves: where the event counters' values live.

Two stores, one contract (the attributes below), chosen by the CSR implementation:

* :class:`RegisterCounterStore`: one flip-flop register and adder per counter, fixed latency;
  for large FPGAs (ECP5), built by the pipelined :class:`hdl.mgmt.csr.CsrSlave`.
* :class:`BramCounterBank`: one block RAM for all counters, small per-event accumulators and a
  flush engine; a fraction of the logic, for small FPGAs (iCE40). Built by
  :class:`hdl.mgmt.csr_compact.CompactCsrSlave` and, for tests, by ``CsrSlave``.

A store is not a component of its own: its CSR elaborates it into its own module, so the
netlist (and every signal name the timing notes refer to) is the one of a single CSR module.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Mux, Signal

from hdl.mgmt.csr_base import _GROUP, COUNT_LATENCY, _chunks, _one_hot_or, _ram, _sanitize
from hdl.mgmt.regs import RegisterMap

__all__ = ["RegisterCounterStore", "BramCounterBank"]


class RegisterCounterStore:
    """Counters in flip-flops: one ``counter_width``-bit register and adder per event.

    ``count(key)`` is registered twice (by the owner's side and by the counter), then added
    (wrapping), so an amount driven in cycle N is in the counter from cycle N + 3
    (:data:`~hdl.mgmt.csr_base.COUNT_LATENCY`). The CSR's bus logic reads :meth:`value`
    directly; a read's sample cycle is a fixed delay after its AR handshake.

    Parameters
    ----------
    regmap:
        The register map; its ``counter_events()`` are the counters.
    counter_init:
        ``{event key: reset value}`` (tests only).

    Attributes
    ----------
    count: dict
        Event key -> 16-bit increment input.
    count_latency: int
        3: see above.
    flush_period: None
        No flush engine.
    """

    flush_period = None
    count_latency = COUNT_LATENCY

    def __init__(self, regmap: RegisterMap, counter_init: dict):
        self.regmap = regmap
        self.events = regmap.counter_events()
        cw = regmap.counter_width
        self.count = {k: Signal(16, name=f"count_{_sanitize(k)}") for k in self.events}
        # Reset-less: cleared by a reset copy per counter group (see elaborate).
        self._counter = {k: Signal(cw, name=f"cnt_{_sanitize(k)}", init=counter_init.get(k, 0) % 2**cw,
                                   reset_less=True)
                         for k in self.events}

    def __repr__(self):
        return f"RegisterCounterStore({len(self.events)} counters)"

    def value(self, key) -> Signal:
        """The counter register of event ``key``."""
        return self._counter[key]

    def sample_cycle(self, index: int, earliest: int) -> int:
        """The cycle whose value a counter read samples; reads sample at a fixed delay, so this
        is ``earliest`` (the CSR's handshake cycle + its sample delay)."""
        return earliest

    def elaborate(self, m, local_reset):
        """Add the increment registers and counters to ``m``; ``local_reset(tag, delay)`` gives
        the CSR's reset copy for a group of counters."""
        # ---- counters: the increment is registered twice, by the event's owner and by the
        # counter, so neither the owner's logic nor the way across the die shares a cycle
        # with the 64-bit carry chain (one register, placed midway, was an ECP5 critical path).
        for b in self.regmap.blocks:
            for g, chunk in enumerate(_chunks(b.counters, _GROUP)):
                rst = local_reset(f"cnt_{b.type.name.lower()}{b.instance}_g{g}", delay=2)
                for _name, key in chunk:
                    inc_far = Signal(16, name=f"inc_{_sanitize(key)}_far", reset_less=True)
                    inc_r = Signal(16, name=f"inc_{_sanitize(key)}", reset_less=True)
                    m.d.sync += [inc_far.eq(self.count[key]), inc_r.eq(inc_far)]
                    counter = self._counter[key]
                    m.d.sync += counter.eq(Mux(rst, counter.init, counter + inc_r))


class BramCounterBank:
    """Counters in one block RAM, with per-event pending accumulators and a flush engine.

    Why: the register store spends a ``counter_width``-bit register and adder per counter, a
    registered 16-bit increment per counter and a 64-bit counter read mux; on the iCE40UP5K
    (28 counters) that is about half of the CSR's LUTs and flip-flops. How:

    * The counter values live in one RAM (``counter_width`` wide, one read and one write port:
      2 SB_RAM40_4K for 32-bit counters on iCE40). Counter ``k`` is entry ``k`` of
      ``regmap.counter_events()``.
    * Each event has a *pending* accumulator in flip-flops; ``count(key)`` is added to it every
      cycle (not registered first) and is only as wide as the event's largest increment
      (:meth:`hdl.mgmt.regs.RegisterMap.max_increment`: 1 bit for packet/drop/parser/bridge events,
      14 for ``rx_bytes``, ``log2(W/8) + 1`` for ``tx_bytes``).
    * A flush engine walks the counters round-robin with period ``P`` = :attr:`flush_period`
      (the counters plus one idle slot). In the *read cycle* of ``k`` it reads ``bank[k]``,
      copies ``pending[k]`` into a register and restarts ``pending[k]`` from that cycle's
      increment; in the next, the *write cycle*, it writes ``bank[k] + copy``. Counter ``k`` is
      written in the cycles ``c`` with ``c % P == (k + 1) % P``, cycle 0 being the first cycle
      out of reset. No increment is lost; a write in cycle ``c`` holds every amount driven up to
      cycle ``c - 2`` (``count_latency`` = 2); a pending accumulator holds at most ``P`` cycles
      of increments, so it is ``ceil(log2(P * (2**len(count(key)) - 1) + 1))`` bits and never
      overflows.
    * Reset is honoured: the memory keeps a second, never written copy of the reset values
      (``counter_init``), which the first flush sweep after reset reads instead of the bank.
    * A counter read takes the sum written in its counter's write cycle (:meth:`sample_cycle`):
      the CSR's read logic waits for it.

    Parameters
    ----------
    regmap:
        The register map; its ``counter_events()`` are the counters.
    counter_init:
        ``{event key: reset value}`` (tests only).

    Attributes
    ----------
    count: dict
        Event key -> increment input, as wide as the event's largest increment.
    count_latency: int
        2: see above.
    flush_period: int
        Cycles between two flushes of the same counter (number of counters + 1).
    """

    count_latency = 2

    def __init__(self, regmap: RegisterMap, counter_init: dict):
        self.regmap = regmap
        self.events = regmap.counter_events()
        self.counter_width = cw = regmap.counter_width
        self.count = {k: Signal(max(1, regmap.max_increment(k).bit_length()), name=f"count_{_sanitize(k)}")
                      for k in self.events}
        self.counter_init = [counter_init.get(k, 0) % 2**cw for k in self.events]
        self.flush_period = len(self.events) + 1

    def __repr__(self):
        return f"BramCounterBank({len(self.events)} counters, flush_period={self.flush_period})"

    def sample_cycle(self, index: int, earliest: int) -> int:
        """The first write cycle of counter ``index`` at or after cycle ``earliest``."""
        return earliest + (index + 1 - earliest) % self.flush_period

    def elaborate(self, m, platform=None):
        """Add the counter RAM, the pending accumulators and the flush engine to ``m``.

        Returns ``(rp, flush_sum)``: the counter whose old value is read from the bank in this
        cycle (it is written in the next), and the value written to the bank in this cycle.
        """
        events = self.events
        n = len(events)
        cw = self.counter_width
        period = self.flush_period                        # n counters + one idle slot
        abits = (period - 1).bit_length()
        # Rows 0..n-1: the counters (row n: the idle slot's scratch row). Rows 2**abits + k: the
        # reset value of counter k, never written, read by the first sweep after reset.
        # The bank never reads the row it writes (wk != rp), so the SB_RAM40_4K instances of
        # _ram on iCE40 behave as the memory does in simulation.
        init = self.counter_init
        rd, wr = _ram(m, "counter_bank", cw, init + [0] * ((1 << abits) - n) + init, platform)

        # rp walks 0..n (n: the idle slot); wk is rp one cycle later. wk starts at the idle
        # slot, so the write in cycle 0 (whose read happened in reset) goes to the scratch row,
        # and counter k is written in the cycles c with c % period == (k + 1) % period.
        rp = Signal(range(period), name="flush_rp")
        wk = Signal(range(period), name="flush_wk", init=n)
        clearing = Signal(init=1, name="flush_clearing")  # the first sweep after reset
        m.d.sync += [rp.eq(Mux(rp == period - 1, 0, rp + 1)), wk.eq(rp)]
        with m.If(rp == n - 1):
            m.d.sync += clearing.eq(0)                    # the last counter's reset value read
        m.d.comb += rd.addr.eq(Cat(rp, clearing))

        # Pending accumulators. In the read cycle of k (rp == k), pending[k] is copied to
        # flush_pend and restarts from that cycle's count(k); in every other cycle it adds
        # count(k). The next cycle (the write cycle) adds flush_pend to the bank. So when copied
        # in a read cycle c of k, pending[k] holds the amounts of cycles c - period .. c - 1: at
        # most `period` of them (before the first copy after reset: cycles 0 .. k - 1, fewer),
        # each at most the largest value of count(k) (max_increment rounded up to all ones of its
        # width), so it fits in `width` bits: it never overflows, whatever the owner drives.
        # Nothing is lost: every amount is added to pending[k] or restarts it, and every value
        # pending[k] holds in a read cycle goes to the bank. A write in cycle c thus holds the
        # amounts up to cycle c - 2 (count_latency = 2).
        # The copy register keeps the pending mux and the bank's adder in separate cycles: in
        # one cycle (and with the accumulators' adders too) the UP5K reached only 26 MHz.
        sels, pendings = [], []
        for k, key in enumerate(events):
            width = (period * (2 ** len(self.count[key]) - 1)).bit_length()
            pending = Signal(width, name=f"pend_{_sanitize(key)}")
            sel = Signal(name=f"flush_sel_{_sanitize(key)}")
            m.d.comb += sel.eq(rp == k)
            m.d.sync += pending.eq(Mux(sel, self.count[key], pending + self.count[key]))
            sels.append(sel)
            pendings.append(pending)
        widest = max(len(v) for v in pendings)
        flush_pend = Signal(widest, name="flush_pend", reset_less=True)   # 0 after the idle slot
        m.d.sync += flush_pend.eq(_one_hot_or(sels, pendings, widest))
        flush_sum = Signal(cw, name="flush_sum")
        m.d.comb += [flush_sum.eq(rd.data + flush_pend),
                     wr.addr.eq(wk), wr.data.eq(flush_sum), wr.en.eq(1)]
        return rp, flush_sum
