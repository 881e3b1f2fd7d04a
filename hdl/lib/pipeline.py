"""A free-running register pipeline in which every value knows its stage.

A value is made at a stage with :meth:`Pipeline.reg` and used at a later stage through
:meth:`Pipeline.at`, which delays it there, inserting the delay registers once and sharing them
between every user. So a stage's logic names the values it needs and never carries copies of
them by hand (``s7_x1 = reg(s6_x1)``), and a value used at the wrong stage is an error at
elaboration rather than a frame parsed one cycle off.
"""

from __future__ import annotations

from amaranth.hdl import Signal, Value

from hdl.lib.timing import KEEP_COPY

__all__ = ["Pipeline", "StageError"]


class StageError(ValueError):
    """A pipeline value used at a stage where it does not exist (too early, or mixed stages)."""


class Pipeline:
    """Registers of a free-running pipeline (no enables), each tagged with its stage.

    Stage ``k`` is the cycle in which the registers of stage ``k`` hold the values of one item;
    a register of stage ``k`` is therefore computed from values of stage ``k - 1``, which
    :meth:`reg` checks for every signal of the pipeline it finds in the expression (signals the
    pipeline does not know, such as the capture logic's, are not checked).

    Parameters
    ----------
    m : :class:`~amaranth.hdl.Module`
        Module the registers are added to.
    domain : str
        Clock domain of every register.
    """

    def __init__(self, m, *, domain: str = "sync"):
        self._m = m
        self._domain = domain
        # Amaranth signals are not hashable: both maps are keyed by id(signal), and _stage keeps
        # the signal itself alive beside its stage so that an id is never reused.
        self._stage: dict[int, tuple[Signal, int]] = {}
        # (id(source signal), copy name or None) -> [delayed signal at source stage + 1, + 2, ...]
        self._delays: dict[tuple[int, str | None], list[Signal]] = {}
        # id(delay register) -> (source signal, copy name), so a delayed value delays further
        # along its source's chain rather than starting a chain of its own.
        self._origin: dict[int, tuple[Signal, str | None]] = {}

    def __repr__(self):
        return f"Pipeline(domain={self._domain!r}, {len(self._stage)} values)"

    def add(self, signal: Signal, stage: int) -> Signal:
        """Declare ``signal``, a register made elsewhere, as holding its item's value at ``stage``."""
        if not isinstance(signal, Signal):
            raise TypeError(f"Pipeline.add takes a Signal, not {signal!r}")
        self._stage[id(signal)] = (signal, stage)
        return signal

    def stage_of(self, value) -> int | None:
        """The stage of ``value``: that of the pipeline signals in it (None if it has none).

        Raises :class:`StageError` if it mixes signals of different stages.
        """
        # _rhs_signals (private in Amaranth 0.5) lists the signals an expression reads.
        known = [self._stage[id(s)] for s in Value.cast(value)._rhs_signals() if id(s) in self._stage]
        stages = {stage for _, stage in known}
        if len(stages) > 1:
            names = sorted(f"{s.name}@{stage}" for s, stage in known)
            raise StageError(f"value mixes pipeline stages {sorted(stages)}: {', '.join(names)}")
        return stages.pop() if stages else None

    def reg(self, value, stage: int, name: str, width: int | None = None, *,
            reset_less: bool = True, keep: bool = False) -> Signal:
        """A register of ``stage`` loaded with ``value`` (made of values of ``stage - 1``).

        ``width`` defaults to the width of ``value``. Registers have no reset unless
        ``reset_less=False`` (a valid chain): a reset net over every pipeline flip-flop is a
        long net for nothing. ``keep=True`` marks a deliberate duplicate that synthesis must not
        merge with an equal register (:data:`hdl.lib.timing.KEEP_COPY`).
        """
        value = Value.cast(value)
        source = self.stage_of(value)
        if source is not None and source != stage - 1:
            raise StageError(f"register {name!r} of stage {stage} is loaded from stage {source}; "
                             f"use Pipeline.at(value, {stage - 1})")
        attrs = {KEEP_COPY: 1} if keep else {}
        sig = Signal(width if width is not None else len(value), name=name, reset_less=reset_less,
                     attrs=attrs)
        self._m.d[self._domain] += sig.eq(value)
        self._stage[id(sig)] = (sig, stage)
        return sig

    def at(self, value, stage: int, *, name: str | None = None, copy: str | None = None) -> Value:
        """``value`` delayed to ``stage``, through delay registers shared by every caller.

        ``value`` is a pipeline signal, or an expression of signals of one stage (then ``name``
        is needed: its first delay register computes it, and expressions are not shared).
        ``copy`` names a separate chain of delay registers, kept apart from the shared one in
        synthesis: for a value whose loads are too far apart for one register to serve them all.
        The delay registers take their reset and initial value from the source register.
        """
        value = Value.cast(value)
        source = self.stage_of(value)
        if source is None:
            raise StageError(f"{value!r} holds no pipeline value: register it with Pipeline.reg first")
        if stage < source:
            raise StageError(f"{value!r} is made at stage {source}; it cannot be used at stage {stage}")
        if stage == source and copy is None:
            return value
        if not isinstance(value, Signal):
            if name is None:
                raise TypeError("Pipeline.at needs a name to delay an expression")
            value = self.reg(value, source + 1, f"{name}_s{source + 1}")
            source += 1
            if stage == source and copy is None:
                return value
        if id(value) in self._origin and (copy is None or self._origin[id(value)][1] == copy):
            value, copy = self._origin[id(value)]
            source = self._stage[id(value)][1]
        chain = self._delays.setdefault((id(value), copy), [])
        prefix = value.name if copy is None else f"{value.name}_{copy}"
        while len(chain) < stage - source:
            prev = chain[-1] if chain else value
            k = source + len(chain) + 1
            sig = Signal(value.shape(), name=f"{prefix}_s{k}", init=value.init, reset_less=value.reset_less)
            if copy is not None or any(c is not None for v, c in self._delays if v == id(value)):
                # Equal registers of two chains: both marked, or Yosys folds one into the other.
                sig.attrs[KEEP_COPY] = 1
                for (v, c), other in self._delays.items():
                    if v == id(value) and c != copy and len(other) > len(chain):
                        other[len(chain)].attrs[KEEP_COPY] = 1
            self._m.d[self._domain] += sig.eq(prev)
            self._stage[id(sig)] = (sig, k)
            self._origin[id(sig)] = (value, copy)
            chain.append(sig)
        return chain[stage - source - 1] if stage > source else value
