// Bulk mode's simulator: the secnic_bulk harness under a C++ main that Python commands over a pipe.
//
// The traffic moves in bulk_dpi.cpp, once per clock edge, with no Python and no VPI on the
// per-cycle path. Python (sim/bulk/run.py) sends one command per line on stdin and reads one reply
// per line on stdout:
//
//   run N          run up to N cycles, stopping early once the traffic is done
//                  -> "ok <cycles since start> <records> <done 0|1>"
//   cycles N       run exactly N cycles                    -> "ok <cycles since start>"
//   go             start the traffic at the next edge     -> "ok"
//   read ADDR      AXI-Lite read of the CSR bus           -> "ok <data> <resp>"
//   write ADDR V   AXI-Lite write                         -> "ok <resp>"
//   Gated mode (IPS, sim/run/ips.py; bulk_dpi.cpp):
//   offer IDX      release input frame IDX                 -> "ok"
//   step R MAX     run until R frames have a record or were dropped at ingress, at most MAX cycles
//                  -> "ok <cycles since start> <records> <ingress drops>"
//   record K       record K (0-based)                      -> "ok <cycle> <hex, most significant first>"
//   tap PORT       keep PORT's egress frames for take     -> "ok"
//   take MAX       run until a kept frame is there, at most MAX cycles -> "ok <hex>" or "ok -"
//   inject PORT HEX  send a frame into PORT now           -> "ok"
//   close          no more input: the run may end         -> "ok"
//   quit           end the simulation (final blocks write the output files) -> "ok"
//
// Start-up resets as the cocotb testbench does (harness_clock.h) and prints "ready"; cycles
// count from the end of reset. Any error ends the process with a message on stderr and exit status 2.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "Vtop.h"
#include "harness_clock.h"
#include "verilated.h"

bool secnic_bulk_offer(uint64_t idx);
void secnic_bulk_tap(int64_t port);
bool secnic_bulk_take(std::vector<uint8_t>* out);
bool secnic_bulk_inject(uint32_t port, std::vector<uint8_t> data);
const std::vector<uint64_t>* secnic_bulk_record(uint64_t k);
void secnic_bulk_close();
uint64_t secnic_bulk_records();
uint64_t secnic_bulk_drops();

namespace {

std::unique_ptr<VerilatedContext> context;
std::unique_ptr<Vtop> top;
std::unique_ptr<HarnessClock> harness;
constexpr int kBusTimeout = 10000;  // cycles an AXI-Lite access may take before it is an error

void cycle() { harness->cycle(); }

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "secnic bulk: %s\n", what);
    std::exit(2);
}

// One AXI-Lite write: address and data offered together, response taken when it comes.
unsigned bus_write(unsigned addr, unsigned data) {
    top->s_axil_awaddr = addr;
    top->s_axil_awprot = 0;
    top->s_axil_awvalid = 1;
    top->s_axil_wdata = data;
    top->s_axil_wstrb = 0xf;
    top->s_axil_wvalid = 1;
    top->s_axil_bready = 1;
    for (int i = 0; i < kBusTimeout; i++) {
        top->eval();  // ready may follow valid combinationally
        bool aw = top->s_axil_awvalid && top->s_axil_awready;
        bool w = top->s_axil_wvalid && top->s_axil_wready;
        bool b = top->s_axil_bvalid && top->s_axil_bready;
        unsigned resp = top->s_axil_bresp;
        cycle();
        if (aw) top->s_axil_awvalid = 0;
        if (w) top->s_axil_wvalid = 0;
        if (b) {
            top->s_axil_bready = 0;
            return resp;
        }
    }
    fail("AXI-Lite write timed out");
}

void bus_read(unsigned addr, unsigned* data, unsigned* resp) {
    top->s_axil_araddr = addr;
    top->s_axil_arprot = 0;
    top->s_axil_arvalid = 1;
    top->s_axil_rready = 1;
    for (int i = 0; i < kBusTimeout; i++) {
        top->eval();
        bool ar = top->s_axil_arvalid && top->s_axil_arready;
        bool r = top->s_axil_rvalid && top->s_axil_rready;
        *data = top->s_axil_rdata;
        *resp = top->s_axil_rresp;
        cycle();
        if (ar) top->s_axil_arvalid = 0;
        if (r) {
            top->s_axil_rready = 0;
            return;
        }
    }
    fail("AXI-Lite read timed out");
}

}  // namespace

int main(int argc, char** argv) {
    context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    top = std::make_unique<Vtop>(context.get());
    harness = std::make_unique<HarnessClock>(HarnessClock{*context, *top});
    harness->reset();
    std::printf("ready\n");
    std::fflush(stdout);
    static char line[1 << 16];  // an inject line carries a frame in hex
    while (std::fgets(line, sizeof line, stdin)) {
        char cmd[16] = {};
        unsigned long long a = 0, b = 0;
        int n = std::sscanf(line, "%15s %llu %llu", cmd, &a, &b);
        if (n < 1) continue;
        if (!std::strcmp(cmd, "run") && n == 2) {
            for (unsigned long long i = 0; i < a && !top->bulk_done; i++) cycle();
            std::printf("ok %llu %u %d\n", harness->cycles, static_cast<unsigned>(top->bulk_records), top->bulk_done ? 1 : 0);
        } else if (!std::strcmp(cmd, "cycles") && n == 2) {
            for (unsigned long long i = 0; i < a; i++) cycle();
            std::printf("ok %llu\n", harness->cycles);
        } else if (!std::strcmp(cmd, "go")) {
            top->bulk_go = 1;
            std::printf("ok\n");
        } else if (!std::strcmp(cmd, "read") && n == 2) {
            unsigned data = 0, resp = 0;
            bus_read(static_cast<unsigned>(a), &data, &resp);
            std::printf("ok %u %u\n", data, resp);
        } else if (!std::strcmp(cmd, "write") && n == 3) {
            std::printf("ok %u\n", bus_write(static_cast<unsigned>(a), static_cast<unsigned>(b)));
        } else if (!std::strcmp(cmd, "offer") && n == 2) {
            if (!secnic_bulk_offer(a)) fail("offer: no such frame");
            std::printf("ok\n");
        } else if (!std::strcmp(cmd, "step") && n == 3) {
            for (unsigned long long i = 0; i < b && secnic_bulk_records() + secnic_bulk_drops() < a; i++) cycle();
            std::printf("ok %llu %llu %llu\n", harness->cycles, static_cast<unsigned long long>(secnic_bulk_records()),
                        static_cast<unsigned long long>(secnic_bulk_drops()));
        } else if (!std::strcmp(cmd, "record") && n == 2) {
            const std::vector<uint64_t>* r = secnic_bulk_record(a);
            if (!r) fail("record: no such record");
            std::printf("ok %llu ", static_cast<unsigned long long>((*r)[0]));
            for (size_t w = r->size() - 1; w >= 1; w--) std::printf("%016llx", static_cast<unsigned long long>((*r)[w]));
            std::printf("\n");
        } else if (!std::strcmp(cmd, "tap") && n == 2) {
            secnic_bulk_tap(static_cast<int64_t>(a));
            std::printf("ok\n");
        } else if (!std::strcmp(cmd, "take") && n == 2) {
            std::vector<uint8_t> frame;
            bool got = secnic_bulk_take(&frame);
            for (unsigned long long i = 0; i < a && !got; i++) {
                cycle();
                got = secnic_bulk_take(&frame);
            }
            std::printf("ok ");
            if (!got) std::printf("-");
            for (uint8_t byte : frame) std::printf("%02x", byte);
            std::printf("\n");
        } else if (!std::strcmp(cmd, "inject") && n >= 2) {
            static char hex[sizeof line];
            if (std::sscanf(line, "%*s %*u %s", hex) != 1) fail("inject: no frame");
            std::vector<uint8_t> frame;
            for (size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
                unsigned v = 0;
                std::sscanf(hex + i, "%2x", &v);
                frame.push_back(static_cast<uint8_t>(v));
            }
            if (!secnic_bulk_inject(static_cast<unsigned>(a), std::move(frame))) fail("inject: bad port or frame");
            std::printf("ok\n");
        } else if (!std::strcmp(cmd, "close")) {
            secnic_bulk_close();
            std::printf("ok\n");
        } else if (!std::strcmp(cmd, "quit")) {
            top->final();
            std::printf("ok\n");
            std::fflush(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "secnic bulk: unknown command: %s", line);
            return 2;
        }
        std::fflush(stdout);
    }
    top->final();
    return 0;
}
