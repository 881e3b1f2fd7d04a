"""The Verilog build cache key: any gateware source change must make a new key."""

import sim.build


def test_source_hash_follows_every_gateware_file(tmp_path, monkeypatch):
    (tmp_path / "hdl" / "parser").mkdir(parents=True)
    top, nested = tmp_path / "hdl" / "top.py", tmp_path / "hdl" / "parser" / "pipelined.py"
    top.write_text("A = 1\n")
    nested.write_text("B = 1\n")
    monkeypatch.setattr(sim.build, "REPO_ROOT", tmp_path)
    before = sim.build.source_hash()
    nested.write_text("B = 2\n")    # a block in a subfolder changed: a stale build must not be reused
    after_nested = sim.build.source_hash()
    top.write_text("A = 2\n")
    assert len({before, after_nested, sim.build.source_hash()}) == 3
