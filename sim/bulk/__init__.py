"""Bulk mode: the NIC in Verilator with its traffic replayed and captured in C++ (docs/bulk.md).

:mod:`sim.bulk.harness` (the Verilog harness and the file formats), ``bulk_dpi.cpp`` (sources,
sinks and record capture, called once per clock edge), :mod:`sim.bulk.cocotb_bulk` (the cocotb
test that starts, sleeps in chunks and reads the counters), :mod:`sim.bulk.run` (run frames and
read the results back, in one process or as parallel segments), ``ceiling_main.cpp`` (the same
harness under a bare C++ main: the speed ceiling ``make bench`` compares with).
"""
