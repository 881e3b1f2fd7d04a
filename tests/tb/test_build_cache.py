"""The simulator build cache is keyed on every gateware source, subfolders included, so a
testbench never runs against a stale build after an edit (docs/testbench.md promises a rebuild)."""

from __future__ import annotations

import sim.build
from sim.build import source_hash


def test_source_hash_covers_gateware_subfolders(tmp_path, monkeypatch):
    (tmp_path / "hdl" / "parser").mkdir(parents=True)
    (tmp_path / "hdl" / "top.py").write_text("top = 1\n")
    deep = tmp_path / "hdl" / "parser" / "pipelined.py"
    deep.write_text("OFFSET = 14\n")
    monkeypatch.setattr(sim.build, "REPO_ROOT", tmp_path)
    before = source_hash()
    assert source_hash() == before                      # stable
    deep.write_text("OFFSET = 15\n")
    assert source_hash() != before                      # an edit in a subfolder rebuilds
    deep.write_text("OFFSET = 14\n")
    assert source_hash() == before
    (tmp_path / "hdl" / "parser" / "extra.py").write_text("")
    assert source_hash() != before                      # so does a new file
