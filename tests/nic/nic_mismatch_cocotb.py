"""cocotb module: the NIC scoreboard (``sim.run.nic_cocotb.scoreboard``) against a golden model
that is deliberately wrong, so the gateware and the model really disagree.

Run by ``tests/nic/test_sim_nic.py::test_scoreboard_mismatch_fails``. ``SECNIC_PERTURB`` picks
what the model gets wrong (the gateware is untouched):

* ``none``: nothing (the scoreboard must pass: the harness itself works);
* ``meta``: the parsed ``ip_ttl`` of the second frame the model processes is one higher;
* ``counter``: the model counts one parser packet too many (every record still agrees).

The perturbed model replaces :class:`host_driver.model.nic.NicModel` for this simulation process
only; the scoreboard test is the real one, imported unchanged.
"""

import os

import host_driver.model.nic as model_nic
from hdl.parser.counters import PARSER, ParserCounter

PERTURB_ENV = "SECNIC_PERTURB"
PERTURBATIONS = ("none", "meta", "counter")


class PerturbedModel(model_nic.NicModel):
    """:class:`~host_driver.model.nic.NicModel` with one deliberate error (``SECNIC_PERTURB``)."""

    def __init__(self, config=None):
        super().__init__(config)
        self.perturb = os.environ.get(PERTURB_ENV, "none")
        if self.perturb not in PERTURBATIONS:
            raise ValueError(f"{PERTURB_ENV} must be one of {', '.join(PERTURBATIONS)}, not {self.perturb!r}")
        self.processed = 0

    def process(self, frame, in_port, rx_error=False):
        result = super().process(frame, in_port, rx_error)
        self.processed += 1
        if self.perturb == "meta" and self.processed == 2:
            result.meta["ip_ttl"] = (result.meta["ip_ttl"] + 1) & 0xFF
        if self.perturb == "counter" and self.processed == 1:
            self.count(self.regmap.block(PARSER).event(ParserCounter.PACKETS))
        return result


# The Scoreboard looks NicModel up in this module when it is created (sim.tb.nic.Scoreboard).
model_nic.NicModel = PerturbedModel

from sim.run.nic_cocotb import scoreboard  # noqa: E402, F401  (the cocotb test this module runs)
