"""The ingress build options: ``[switch] ingress`` / ``ingress_fifo_bytes`` and ``NicConfig``'s own."""

from __future__ import annotations

import copy

import pytest

from hdl.config import NicConfig
from host_driver.switch_config import PROFILES, SwitchConfig, SwitchConfigError, nic_config


def switch_table(**extra) -> dict:
    table = copy.deepcopy(PROFILES["switch"])
    table.update(extra)
    return table


def test_default_is_pause_and_leaves_the_config_key_alone():
    cfg = nic_config(SwitchConfig.from_toml(switch_table()))
    assert cfg.ingress == "pause" and not cfg.ingress_fifos
    assert "ingress" not in cfg.as_dict() and "ingress_fifo_bytes" not in cfg.as_dict()


def test_switch_table_sets_drop_mode():
    cfg = nic_config(SwitchConfig.from_toml(switch_table(ingress="drop", ingress_fifo_bytes=2048)),
                     {"data_width": 128})
    assert cfg.ingress_fifos and cfg.ingress_depth == 2048 // 16
    again = NicConfig.from_dict(cfg.as_dict())
    assert again == cfg and again.key() == cfg.key()
    assert again.key() != nic_config(SwitchConfig.from_toml(switch_table()), {"data_width": 128}).key()


@pytest.mark.parametrize("extra, message", [
    ({"ingress": "tail"}, "switch.ingress: must be 'pause' or 'drop', not 'tail'"),
    ({"ingress_fifo_bytes": 1000}, "switch.ingress_fifo_bytes: must be 0 or a power of two in 256..1048576, not 1000"),
    ({"ingress_fifo_bytes": 128}, "switch.ingress_fifo_bytes: must be 0 or a power of two in 256..1048576, not 128"),
    ({"ingress": "drop", "ingress_fifo_bytes": 0}, 'switch.ingress_fifo_bytes: ingress = "drop" needs a FIFO, not 0'),
])
def test_bad_switch_keys_name_the_key(extra, message):
    with pytest.raises(SwitchConfigError) as exc:
        SwitchConfig.from_toml(switch_table(**extra))
    assert str(exc.value) == message


def test_nic_and_switch_tables_must_agree():
    sw = SwitchConfig.from_toml(switch_table(ingress="drop"))
    with pytest.raises(SwitchConfigError,
                       match=r"^nic\.ingress: 'pause' differs from switch\.ingress 'drop'; set it once$"):
        nic_config(sw, {"ingress": "pause"})


def test_a_bump_in_the_wire_has_no_ingress_fifos():
    with pytest.raises(ValueError, match=r'^ingress = "drop" needs the switch fabric \(its SWPORT blocks count the '
                                         r'drops\)$'):
        NicConfig(ingress="drop")
    with pytest.raises(SwitchConfigError, match=r"^switch\.ingress: a bump in the wire does not switch"):
        SwitchConfig.from_toml(copy.deepcopy(PROFILES["bump-in-the-wire"]) | {"ingress": "drop"})
