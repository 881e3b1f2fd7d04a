// The speed ceiling of bulk mode: the same secnic_bulk harness, the same bulk_dpi.cpp traffic,
// under a bare C++ main instead of cocotb (no VPI, no Python, no public signals).
//
// Built and run by `make bench` only (sim/bulk/run.py, build_ceiling). Same reset sequence and
// start edge as sim/bulk/cocotb_bulk.py, so it writes the same output files; bulk_dpi.cpp times
// the traffic phase (status.json) in both.
#include <cstdio>
#include <memory>

#include "Vtop.h"
#include "verilated.h"

int main(int argc, char** argv) {
    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    auto top = std::make_unique<Vtop>(context.get());
    auto edge = [&](int clk) {
        top->clk = clk;
        top->eval();
        context->timeInc(1);
    };
    auto cycle = [&]() {
        edge(1);
        edge(0);
    };
    // sim.tb.nic.reset_nic: one edge, reset for four, two more; start after that edge.
    top->rst = 0;
    top->bulk_go = 0;
    edge(0);
    cycle();
    top->rst = 1;
    for (int i = 0; i < 4; i++) cycle();
    top->rst = 0;
    for (int i = 0; i < 2; i++) cycle();
    top->bulk_go = 1;
    while (!top->bulk_done && !context->gotFinish()) cycle();
    for (int i = 0; i < 8; i++) cycle();
    top->final();
    return 0;
}
