"""The chains' firewall rules, per VM: what each firewall VM decides, and the NIC's ACL that decides the same.

A firewall VM guards the VM behind it. Its rules are the chain's rule file read with ``$HOME_NET``
set to that VM's own addresses (:func:`sim.compare.topology.vm_network`: ``10.<k>.0.0/16`` for the
scenario's k-th VM), so ``$EXTERNAL_NET`` is everything else, the host's other VMs included.

* **Software path**: a frame that crosses a firewall hop is classified with its chain's entries
  (:func:`host_driver.model.acl.classify`, the golden model of the classifier, over the rule
  compiler's entries): ``drop`` and ``reject`` end its journey at that hop (:func:`verdicts`).
* **Offloaded path**: one ACL holds every chain's entries, each narrowed to the frames its chain
  sees (:func:`nic_rule_set`). The ACL runs before forwarding, so its key has no egress port or
  destination MAC; the frames a chain sees are those to its VM's addresses, so each entry's
  destination prefix is intersected with the VM's network (entries that cannot meet it go). VLAN
  and in-port cannot say it: east-west frames enter untagged on the sending VM's port. Entries of
  different VMs never match the same frame, so each VM's first match is its own table's.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ChainFirewall", "chain_firewalls", "nic_rule_set", "scope_entries", "verdicts", "POLICY_DROP",
           "ACL_REASON"]

log = logging.getLogger(__name__)

#: Classifier actions that end a frame's journey (Suricata's drop and reject; reject's reply is not modelled).
POLICY_DROP = ("drop", "reject")
#: The report's reason for each policy drop, as the NIC's trace.jsonl names it.
ACL_REASON = {"drop": "acl_drop", "reject": "acl_reject"}


@dataclass(frozen=True)
class ChainFirewall:
    """One VM's firewall: its chain's rule file compiled with ``$HOME_NET`` = the VM's ``network``
    (``compiled``; ``entries`` in first-match order, what the firewall VM evaluates) and those
    entries narrowed to frames addressed to the VM (``scoped``, what the NIC's ACL holds for it)."""
    vm: str
    network: ipaddress.IPv4Network
    rules: Path
    compiled: object
    entries: tuple
    scoped: tuple

    @property
    def header_rules(self) -> int:
        """Header-only rules the firewall evaluates (nftables rules in software)."""
        return sum(r.verdict == "offloaded" for r in self.compiled.rules)


def scope_entries(entries: Sequence, network: ipaddress.IPv4Network) -> list:
    """``entries`` (classifier order) narrowed to packets whose destination lies in ``network``: each
    entry's destination prefix becomes its intersection with ``network``; entries without one go."""
    out = []
    for e in entries:
        if e.dst.version != network.version:
            continue
        if network.subnet_of(e.dst):
            out.append(dataclasses.replace(e, dst=network))
        elif e.dst.subnet_of(network):
            out.append(e)
    return out


def chain_firewalls(scenario) -> dict[str, ChainFirewall]:
    """The firewall of every VM whose chain has a firewall hop, in VM order."""
    from hdl.acl.layouts import SLOT_BITS
    from host_driver.rules import compile_rules, read_rules
    from sim.compare.topology import vm_network
    out = {}
    for k, vm in enumerate(scenario.vms):
        chain = scenario.chains.get(vm.name)
        if chain is None or chain.rules is None or not any(h.kind == "firewall" for h in chain.hops):
            continue
        net = vm_network(k)
        compiled = compile_rules(read_rules(chain.rules, {"HOME_NET": f"[{net}]"}), capacity=1 << SLOT_BITS)
        out[vm.name] = ChainFirewall(vm.name, net, chain.rules, compiled, tuple(compiled.entries),
                                     tuple(scope_entries(compiled.entries, net)))
    return out


def nic_rule_set(firewalls: dict[str, ChainFirewall]):
    """The NIC's rules (a :class:`sim.run.alerts.RuleSet`): every chain's scoped entries in one table,
    chain after chain, each in its own first-match order; None without firewalls. No frame matches
    entries of two chains, so the order between chains does not matter, and a rule that several
    chains share keeps one hit counter (the driver gives each (gid, sid) one slot, wherever its
    entries sit). A chain whose entries do not fit the largest ACL is left out whole (with its
    rules in ``left_out``), never cut in the middle, which would change its first match."""
    from hdl.acl.layouts import SLOT_BITS
    from host_driver.rules.compile import CompiledRules
    from sim.run.alerts import RuleSet
    if not firewalls:
        return None
    entries, left_out, used = [], [], 0
    for fw in firewalls.values():
        need = sum(e.ternary_count() for e in fw.scoped)
        if used + need > 1 << SLOT_BITS:
            left_out += [r for r in dict.fromkeys((e.gid, e.sid) for e in fw.scoped) if r not in left_out]
            log.warning("%s: its firewall's %d ACL entries do not fit beside the other chains' %d: not in the NIC",
                        fw.vm, need, used)
            continue
        entries += fw.scoped
        used += need
    # The rule texts of one compile per file (alerts name them by sid, msg and rev).
    seen, texts = set(), []
    for fw in firewalls.values():
        if fw.rules not in seen:
            seen.add(fw.rules)
            texts += fw.compiled.rules
    compiled = CompiledRules(texts, entries, len(entries), used)
    source = ", ".join(sorted({fw.rules.name for fw in firewalls.values()}))
    return RuleSet(f"{source} scoped per VM ({', '.join(firewalls)})", compiled, entries, None, left_out)


def verdicts(frames: Sequence, firewalls: dict[str, ChainFirewall], config, *, per_flow: bool = False
             ) -> list[str | None]:
    """What each frame's firewall VM does with it: the classifier action of its chain's first match
    (``pass``, ``drop``, ``reject``, ``alert``), None without a match or without a firewall hop.

    Frames of one header classify alike, so each distinct key is classified once. ``per_flow``
    (synthetic traffic, whose frames of one flow differ only in length and payload) also parses one
    frame per flow: parsing every frame was 1.2 s of 1.4 s for the default scenario's 6,000 frames.
    """
    from host_driver.model.acl import acl_key, classify
    from host_driver.model.nic import parse_frame
    by_key: dict = {}
    by_flow: dict = {}
    out: list[str | None] = []
    for f in frames:
        fw = firewalls.get(f.vm)
        if fw is None:
            out.append(None)
            continue
        if per_flow and (f.vm, f.flow) in by_flow:
            out.append(by_flow[(f.vm, f.flow)])
            continue
        meta = parse_frame(f.data, physical=False, header_window=config.header_window, max_frame=config.max_frame)
        key = acl_key(meta)
        memo = (f.vm, tuple(key.values()))
        if memo not in by_key:
            by_key[memo] = classify(fw.entries, key).action
        by_flow[(f.vm, f.flow)] = by_key[memo]
        out.append(by_key[memo])
    log.info("firewall verdicts: %d frames, %d distinct keys classified", len(frames), len(by_key))
    return out
