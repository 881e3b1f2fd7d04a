"""Timing techniques in one place: registered copies that synthesis keeps apart, local resets.

A register whose loads are spread over the die is duplicated so that each copy can sit next to
its loads (see docs/performance.md for the rounds that found each one). Yosys merges identical
flip-flops, so every deliberate copy is marked with :data:`KEEP_COPY` and every synthesis script
here runs :data:`YOSYS_KEEP_COPIES` right after reading the design. The same goes for resets:
one reset net from one flip-flop to every register crosses the die, so blocks and register
groups take their reset from a kept copy of their own (:func:`local_reset_domain`,
:class:`LocalResets`).
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Mux, ResetSignal, Signal, Value

__all__ = ["KEEP_COPY", "YOSYS_KEEP_COPIES", "keep_copy", "Fanout", "local_reset_domain", "LocalResets",
           "elapsed_at_least"]

#: Signal attribute marking a register as a deliberate duplicate that synthesis must not merge.
KEEP_COPY = "secnic_keep_copy"
#: Yosys command, run right after reading the design, that puts ``keep`` on the flip-flops driving
#: signals marked with :data:`KEEP_COPY`, so ``opt_merge`` leaves each copy standing. Amaranth puts
#: signal attributes on the wire only, and opt_merge looks at the cell.
YOSYS_KEEP_COPIES = f"setattr -set keep 1 a:{KEEP_COPY} %ci1:+$dff,$adff[Q] c:* %i"


def keep_copy(signal, *, name: str, reset_less: bool = True) -> Signal:
    """A new signal for a registered duplicate of ``signal`` that synthesis keeps apart.

    A register fanning out across the die is copied so each copy can sit next to its loads, but
    identical registers are merged by Yosys unless they are marked (see :data:`YOSYS_KEEP_COPIES`,
    which every synthesis script here runs). The caller assigns it in a sync domain. Copies are
    reset-less unless told otherwise: a copy of a data register needs no reset.

    ``signal`` itself, when it is a Signal (the original register), is marked too: of two
    identical flip-flops of which only one has ``keep``, ``opt_merge`` may keep that one and fold
    the other into it (it did for the resettable copies of the arbiter's grant), which is the
    same single register again.
    """
    if isinstance(signal, Signal):
        signal.attrs[KEEP_COPY] = 1
    return Signal.like(signal, name=name, attrs={KEEP_COPY: 1}, reset_less=reset_less)


class Fanout:
    """One register kept as ``n`` copies, one per group of loads, so each can sit by its loads.

    The block that computes the value makes the fan-out and drives it
    (``m.d.sync += fanout.eq(next_value)``); the blocks that read it take it as a constructor
    argument, so the copies never show in a component's ports. Every copy holds the same value
    in every cycle.
    """

    def __init__(self, n: int, *, name: str, reset_less: bool = False):
        self.copies = tuple(Signal(name=f"{name}_{i}", reset_less=reset_less, attrs={KEEP_COPY: 1})
                            for i in range(n))

    def __repr__(self):
        return f"Fanout({len(self.copies)} copies of {self.copies[0].name[:-2]})"

    def __len__(self):
        return len(self.copies)

    def __getitem__(self, index: int) -> Signal:
        return self.copies[index]

    def eq(self, value) -> list:
        """Assignments of ``value`` to every copy (for a sync domain)."""
        return [copy.eq(value) for copy in self.copies]


def local_reset_domain(m, name: str, elaboratable):
    """``elaboratable`` renamed into a clock domain ``<name>_sync`` of its own, added to ``m``.

    The domain runs on the ``sync`` clock; its reset is a kept copy of the ``sync`` reset one
    cycle late (reset-less, so it is high from power-up to the first clock edge after the core
    reset falls). Verilog simulators and the FPGA see one clock net. Amaranth's own simulator
    races on a domain clocked from another domain's clock signal: leave this out there.
    """
    domain = ClockDomain(f"{name}_sync", local=True)
    m.domains += domain
    rst = keep_copy(Signal(init=1), name=f"{name}_rst")
    m.d.sync += rst.eq(ResetSignal("sync"))
    m.d.comb += [domain.clk.eq(ClockSignal("sync")), domain.rst.eq(rst)]
    return DomainRenamer(domain.name)(elaboratable)


class LocalResets:
    """Reset copies per register group inside one module: ``resets(tag, delay)`` is the module's
    reset delayed ``delay`` cycles through kept copies, made once per tag and shared.

    Registers that reset from one of these are reset-less and written with
    ``with m.If(resets(tag)): ...``; a group's copy sits next to the group.
    """

    def __init__(self, m):
        self._m = m
        self._resets = {}

    def __call__(self, tag: str, delay: int = 1):
        if tag not in self._resets:
            rst = ResetSignal()
            for k in range(delay):
                copy = keep_copy(Signal(init=1), name=f"rst_{tag}" + ("" if k == delay - 1 else f"_d{k}"))
                self._m.d.sync += copy.eq(rst)
                rst = copy
            self._resets[tag] = rst
        return self._resets[tag]


def elapsed_at_least(now, start, neg_limit, limit_zero) -> Value:
    """Whether ``(now - start) mod 2**n >= limit`` (``n`` the width of ``now``), with one carry
    chain in a row instead of two (a subtraction, then a compare).

    ``now - start + (-limit)`` is added as one sum of three operands, folded into two by a row of
    full adders (one LUT level): its bits above ``n`` count the carries of both steps, the
    subtraction's and the compare's. The subtraction's carry (``now >= start``), a compare of
    its own beside the sum, is taken off. The caller gives the limit as ``neg_limit`` (``-limit``
    mod ``2**n``) and ``limit_zero`` (``limit == 0``), usually registered from a setting: they
    change far less often than the operands.
    """
    now, start, neg_limit = Value.cast(now), Value.cast(start), Value.cast(neg_limit)
    n = len(now)
    x, y, z = now, ~start[:n], neg_limit[:n]
    if len(y) < n or len(z) < n:
        raise ValueError(f"start and neg_limit must be at least as wide as now ({n} bits)")
    # x + y + z + 1 = (now - start) - limit + 2 * 2**n (a limit not zero), as sum + 2 * carry
    # + 1. With d = (now - start) mod 2**n, that is d - limit + 2**n, + 2**n more when now >=
    # start: its bits from n up are [now >= start] + [d >= limit].
    total = Cat(x ^ y ^ z, Const(0, 2)) + Cat(Const(1, 1), (x & y) | (x & z) | (y & z), Const(0, 1))
    no_borrow = now >= start[:n]
    return limit_zero | Mux(no_borrow, total[n + 1], total[n])
