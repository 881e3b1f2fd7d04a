// The speed ceiling of bulk mode: the same secnic_bulk harness, the same bulk_dpi.cpp traffic,
// under a bare C++ main instead of bulk_main.cpp's command loop (no pipe, no Python).
//
// Built and run by `make bench` only (sim/bulk/run.py, run_ceiling). Same reset and start edge
// as bulk mode, so it writes the same output files; bulk_dpi.cpp times the traffic phase
// (status.json) in both.
#include <memory>

#include "Vtop.h"
#include "harness_clock.h"
#include "verilated.h"

int main(int argc, char** argv) {
    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    auto top = std::make_unique<Vtop>(context.get());
    HarnessClock clock{*context, *top};
    clock.reset();
    top->bulk_go = 1;
    while (!top->bulk_done && !context->gotFinish()) clock.cycle();
    for (int i = 0; i < 8; i++) clock.cycle();
    top->final();
    return 0;
}
