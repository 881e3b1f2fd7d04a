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

The IDS hops' content rules run in the NIC's payload matcher beside that ACL (:func:`chain_ids`,
:func:`nic_rule_set`): each chain's rule file read with the same ``$HOME_NET``, every content rule's
destination narrowed to its VM's network (:func:`scope_rule`) as the ACL's entries are, all chains'
rules compiled into one matcher table. The matcher itself looks at payloads only (its punts do not
depend on the VM); the narrowed headers decide which VM's rules the host path verifies and alerts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ChainFirewall", "ChainIds", "chain_firewalls", "chain_ids", "nic_rule_set", "scope_entries",
           "scope_rule", "verdicts", "POLICY_DROP", "ACL_REASON"]

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


@dataclass(frozen=True)
class ChainIds:
    """One VM's IDS: its chain's rule file compiled with ``$HOME_NET`` = the VM's ``network``;
    ``content`` its payload (content) rules, each narrowed to frames to the VM (:func:`scope_rule`:
    what the NIC's matcher and host path hold for it), ``host_rules`` the rules neither the ACL nor
    the matcher can run (``host path``: pcre, ...), which the offloaded path does not run."""
    vm: str
    network: ipaddress.IPv4Network
    rules: Path
    compiled: object
    content: tuple
    host_rules: tuple


def scope_rule(rule, network: ipaddress.IPv4Network):
    """``rule`` with its destination addresses narrowed to ``network`` (None when it cannot send to
    it). A bidirectional rule is kept whole: narrowing one side would change what its other
    direction matches (none of the shipped rules is bidirectional)."""
    from host_driver.rules.expr import AddressSet, IntervalSet
    if rule.bidirectional:
        return rule
    net = IntervalSet(rule.dst.v4.top, [(int(network.network_address), int(network.broadcast_address))])
    v4 = rule.dst.v4 & net
    if not v4:
        return None
    return dataclasses.replace(rule, dst=AddressSet(v4, IntervalSet(rule.dst.v6.top)))


def _chains_with(scenario, kind: str):
    """(VM name, its network, its chain's rules compiled with $HOME_NET = that network) of every VM
    whose chain has a ``kind`` hop and a rule file, in VM order."""
    from hdl.acl.layouts import SLOT_BITS
    from host_driver.rules import compile_rules, read_rules
    from sim.compare.topology import vm_network
    for k, vm in enumerate(scenario.vms):
        chain = scenario.chains.get(vm.name)
        if chain is None or chain.rules is None or not any(h.kind == kind for h in chain.hops):
            continue
        net = vm_network(k)
        yield vm.name, net, chain.rules, compile_rules(read_rules(chain.rules, {"HOME_NET": f"[{net}]"}),
                                                       capacity=1 << SLOT_BITS)


def chain_firewalls(scenario) -> dict[str, ChainFirewall]:
    """The firewall of every VM whose chain has a firewall hop, in VM order."""
    return {vm: ChainFirewall(vm, net, path, compiled, tuple(compiled.entries),
                              tuple(scope_entries(compiled.entries, net)))
            for vm, net, path, compiled in _chains_with(scenario, "firewall")}


def chain_ids(scenario) -> dict[str, ChainIds]:
    """The IDS of every VM whose chain has an IDS hop, in VM order."""
    out = {}
    for vm, net, path, compiled in _chains_with(scenario, "ids"):
        content = [scope_rule(r, net) for r in compiled.rules if r.verdict == "payload"]
        out[vm] = ChainIds(vm, net, path, compiled, tuple(r for r in content if r is not None),
                           tuple(r for r in compiled.rules if r.verdict == "host path"))
    return out


def nic_rule_set(firewalls: dict[str, ChainFirewall], ids: dict[str, ChainIds] | None = None,
                 matcher_index_bits: int | None = None):
    """The NIC's rules (a :class:`sim.run.alerts.RuleSet`): every firewall chain's scoped entries in
    one ACL table, and every IDS chain's scoped content rules (``ids``) in one payload matcher program
    of ``2**matcher_index_bits`` buckets (default: the security stage's default); None without either.

    The ACL holds the chains one after the other, each in its own first-match order. No frame matches
    entries of two chains, so the order between chains does not matter, and a rule that several
    chains share keeps one hit counter (the driver gives each (gid, sid) one slot, wherever its
    entries sit). A chain whose entries do not fit the largest ACL is left out whole (with its
    rules in ``left_out``), never cut in the middle, which would change its first match."""
    from hdl.acl.layouts import SLOT_BITS
    from hdl.security.settings import SecuritySettings
    from host_driver.rules.compile import CompiledRules
    from host_driver.rules.content import compile_content
    from sim.run.alerts import RuleSet
    ids = ids or {}
    if not firewalls and not ids:
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
    for chain in [*firewalls.values(), *ids.values()]:
        if chain.rules not in seen:
            seen.add(chain.rules)
            texts += chain.compiled.rules
    content = [r for chain in ids.values() for r in chain.content]
    matcher = None
    if content:
        bits = SecuritySettings().matcher_index_bits if matcher_index_bits is None else matcher_index_bits
        matcher = compile_content(content, bits)
    compiled = CompiledRules(texts, entries, len(entries), used, matcher=matcher)
    source = ", ".join(sorted({c.rules.name for c in [*firewalls.values(), *ids.values()]}))
    vms = ", ".join(dict.fromkeys([*firewalls, *ids]))
    return RuleSet(f"{source} scoped per VM ({vms})", compiled, entries, None, left_out, matcher)


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
