"""The target profiles (hdl/profile.py): the config picks one, and the NIC builds its classes."""

import gc
import warnings

import pytest
from amaranth.hdl import Fragment, UnusedElaboratable

from hdl.board.boards import BOARDS
from hdl.board.linetest import CompactFrameGenerator, FrameGenerator
from hdl.config import NicConfig
from hdl.datapath.buffer import PacketBuffer
from hdl.lib.ram import BeatFifo, CompactBeatFifo
from hdl.mgmt.csr import CompactCsrSlave, CsrSlave
from hdl.profile import AREA, SPEED, target_for
from hdl.top import NicTop, build_register_map


def test_config_picks_the_target():
    assert target_for(NicConfig()) is SPEED
    assert target_for(NicConfig(compact=True)) is AREA
    assert target_for(BOARDS["icebreaker"].config()) is AREA
    assert target_for(BOARDS["ulx3s-85f"].config()) is SPEED
    assert (repr(SPEED), repr(AREA)) == ("Target('speed')", "Target('area')")


@pytest.mark.parametrize("target, csr, fifo, gen", [(SPEED, CsrSlave, BeatFifo, FrameGenerator),
                                                    (AREA, CompactCsrSlave, CompactBeatFifo, CompactFrameGenerator)],
                         ids=["speed", "area"])
def test_target_builds_its_classes(target, csr, fifo, gen):
    with warnings.catch_warnings():                  # built to look at, never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        assert type(target.csr(build_register_map(NicConfig()))) is csr
        f = target.fifo(16, 8, slack=3)
        assert (type(f), f.width, f.depth, f.slack) == (fifo, 16, 8, 3)
        g = target.frame_generator(64, 1)
        assert (type(g), g.data_width, g.port) == (gen, 64, 1)
        del f, g
        gc.collect()
    assert (target.register_slices, target.reset_tree, target.block_ram_fifos) == \
        ((True, True, False) if target is SPEED else (False, False, True))


@pytest.mark.parametrize("compact", [False, True], ids=["speed", "area"])
def test_nic_top_builds_the_configs_target(compact):
    """NicTop takes every implementation from its config's target."""
    config = NicConfig(compact=compact, line_tester=True, uart_bridge=True)
    top = NicTop(config, reset_tree=False)
    fragment = Fragment.get(top, None)
    subs = {name: sub.origins[0] for sub, name, _ in fragment.subfragments}
    target = AREA if compact else SPEED
    assert top.target is target and top.reset_tree is False
    with warnings.catch_warnings():                  # built to look at, never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        assert NicTop(config).reset_tree is target.reset_tree
        gc.collect()
    assert type(subs["csr"]) is target.csr_class
    assert type(subs["generator_phy0"]) is target.frame_generator_class
    assert ("ingress_phy0" in subs, "bridge_slice" in subs) == (not compact, not compact)
    buffer = subs["buffer"]
    assert isinstance(buffer, PacketBuffer) and buffer.target is target
    beats = {name: sub.origins[0] for sub, name, _ in Fragment.get(buffer, None).subfragments}["beats"]
    assert type(beats) is target.fifo_class
