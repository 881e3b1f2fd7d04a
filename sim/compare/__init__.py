"""``secnic compare``: security appliances in software versus offloaded onto the NIC (issue 16).

One scenario (:mod:`.scenario`, a TOML file) describes a host: cores, VMs, their traffic and the
service chain each VM's traffic crosses. The comparison runs that traffic through two paths at a
sweep of offered loads and reports where each falls off and what it costs in host cores:

* the **software path** (:mod:`.des`): the vSwitch and the appliance VMs as a discrete-event
  model in simpy, with per-packet and per-byte costs per hop calibrated on this machine
  (:mod:`.calibration`: Open vSwitch, nftables, Hyperscan) or taken from published figures;
* the **offloaded path** (:mod:`.offload`): the NIC in bulk-mode simulation behind a narrow
  interface (config, rules and frames in; per-frame records, egress, counters and the punt set
  out), with the host's work on the punted frames run through the same DES as CPU cost. The NIC
  is a switch built for the scenario (:mod:`.topology`: the uplink, a port per VM, the host);
  the loop storm runs the same bulk-mode build with a loop closed in its C++ (:mod:`.storm_tb`).

:mod:`.sweep` runs the points (locally or as Dask tasks), finds the knees and answers the
capacity question; :mod:`.report` writes report.md, report.json and the plots. docs/compare.md is
the user's guide.
"""
