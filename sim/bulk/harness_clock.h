// Clocking and reset of the secnic_bulk harness, shared by bulk_main.cpp and ceiling_main.cpp so
// that both start the traffic at the same edge as the cocotb testbench (sim.tb.nic.reset_nic).
#pragma once

#include "Vtop.h"
#include "verilated.h"

struct HarnessClock {
    VerilatedContext& context;
    Vtop& top;
    unsigned long long cycles = 0;  // rising edges since the end of reset

    void edge(int clk) {
        top.clk = clk;
        top.eval();
        context.timeInc(1);
    }

    void cycle() {
        edge(1);
        edge(0);
        cycles++;
    }

    // One edge, reset held for four, two more; the traffic may start after that.
    void reset() {
        top.rst = 0;
        top.bulk_go = 0;
        edge(0);
        cycle();
        top.rst = 1;
        for (int i = 0; i < 4; i++) cycle();
        top.rst = 0;
        for (int i = 0; i < 2; i++) cycle();
        cycles = 0;
    }
};
