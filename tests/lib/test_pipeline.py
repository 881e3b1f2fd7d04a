"""hdl.lib.pipeline.Pipeline: values delayed to the stage where they are used, shared delay
registers, stage checks, kept copies."""

import pytest
from amaranth.hdl import Elaboratable, Fragment, Module, Signal
from amaranth.sim import Simulator

from hdl.lib.pipeline import Pipeline, StageError
from hdl.lib.timing import KEEP_COPY


class _Dut(Elaboratable):
    """item -> a (stage 1) -> b = a + 1 (stage 2) -> out = a ^ b ^ 3 * a (stage 4), a taken from
    stages 3 and 4 and b from stage 3, so each value is delayed where it is used."""

    def __init__(self):
        self.inp = Signal(8)
        self.valid_in = Signal()
        self.m = m = Module()
        self.p = p = Pipeline(m)
        self.a = p.reg(self.inp, 1, "a")
        self.valid = p.reg(self.valid_in, 1, "valid", reset_less=False)
        self.b = p.reg(self.a + 1, 2, "b", 8)
        mixed = p.reg(p.at(self.a, 2) ^ p.at(self.b, 2), 3, "mixed")
        self.out = p.reg(mixed + p.at(self.a, 3) * 3, 4, "out", 8)
        self.valid_out = p.at(self.valid, 4)

    def elaborate(self, platform):
        return self.m


@pytest.fixture
def dut():
    """A pipeline to inspect; elaborated at teardown, so Amaranth does not warn it went unused."""
    built = _Dut()
    yield built
    Fragment.get(built, None)


def _model(x):
    return ((x ^ ((x + 1) & 0xFF)) + 3 * x) & 0xFF


def test_values_arrive_at_their_stage_together():
    dut = _Dut()
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    items = [5, 0, 255, 17, 128, 3, 200, 99]
    seen = []

    async def bench(ctx):
        for cycle in range(len(items) + 6):
            if cycle < len(items):
                ctx.set(dut.inp, items[cycle])
                ctx.set(dut.valid_in, 1)
            else:
                ctx.set(dut.valid_in, 0)
            await ctx.tick()
            if ctx.get(dut.valid_out):
                seen.append((cycle, ctx.get(dut.out)))

    sim.add_testbench(bench)
    sim.run()
    # Registered at stage 4: visible after the 4th clock edge from the item's cycle.
    assert seen == [(k + 3, _model(x)) for k, x in enumerate(items)]


def test_delay_registers_are_shared(dut):
    p = dut.p
    a2, a3 = p.at(dut.a, 2), p.at(dut.a, 3)
    assert p.at(dut.a, 3) is a3 and p.at(dut.a, 1) is dut.a
    assert p.stage_of(a2) == 2 and p.stage_of(a3) == 3
    # The stage-3 copy is the stage-2 copy registered once more, not a second chain.
    assert p._delays[id(dut.a), None][:2] == [a2, a3]
    # A delayed value delays further along its source's chain.
    assert p.at(a2, 3) is a3 and p.at(a3, 4) is p.at(dut.a, 4)
    # Delay registers inherit the source's reset: the valid chain keeps it, data has none.
    assert dut.valid_out.reset_less is False and a3.reset_less is True


def test_wrong_stage_is_an_error(dut):
    p = dut.p
    with pytest.raises(StageError, match=r"register 'late' of stage 4 is loaded from stage 2; "
                                         r"use Pipeline.at\(value, 3\)"):
        p.reg(dut.b, 4, "late")
    with pytest.raises(StageError, match=r"value mixes pipeline stages \[1, 2\]: a@1, b@2"):
        p.reg(dut.a + dut.b, 3, "mixed_bad")
    with pytest.raises(StageError, match=r"is made at stage 2; it cannot be used at stage 1"):
        p.at(dut.b, 1)
    with pytest.raises(StageError, match="holds no pipeline value"):
        p.at(dut.inp, 3)
    with pytest.raises(TypeError, match="needs a name"):
        p.at(dut.a + 1, 3)


def test_expression_is_registered_once_then_delayed(dut):
    p = dut.p
    zero4 = p.at(dut.a == 0, 4, name="a_zero")
    assert p.stage_of(zero4) == 4 and zero4.name == "a_zero_s2_s4"


def test_copy_is_a_separate_kept_chain(dut):
    p = dut.p
    shared = p.at(dut.b, 4)
    far = p.at(dut.b, 4, copy="far")
    assert far is not shared and p.stage_of(far) == 4
    assert far.name == "b_far_s4"
    # Both chains marked, level for level, so Yosys merges neither into the other.
    for level in range(2):
        assert p._delays[id(dut.b), "far"][level].attrs.get(KEEP_COPY) == 1
        assert p._delays[id(dut.b), None][level].attrs.get(KEEP_COPY) == 1
    # A kept register made directly.
    kept = p.reg(dut.a, 2, "a_kept", keep=True)
    assert kept.attrs.get(KEEP_COPY) == 1 and "a_kept" in repr(kept)
