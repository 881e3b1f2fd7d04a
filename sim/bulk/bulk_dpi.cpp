// Bulk mode's traffic source, egress capture and record capture for the secnic_bulk harness.
//
// Called once per rising edge by the harness (sim/bulk/harness.py documents the file formats and
// the cycle semantics). Inputs: SECNIC_BULK_IN (frames.bin) and SECNIC_BULK_OUT (a directory) in
// the environment. The sources and sinks behave as cocotbext-axi's AxiStreamSource/AxiStreamSink
// without pauses, so a bulk run and a cocotb run of the same frames agree cycle for cycle.
//
// Gated mode (frames.bin header flag bit 0; IPS, sim/run/ips.py): an input frame starts only once
// Python released it (secnic_bulk_offer), the host port's egress frames are kept for Python
// (secnic_bulk_take), Python's re-injections enter the host port (secnic_bulk_inject), records are
// kept for Python (secnic_bulk_record), and the run is done only after secnic_bulk_close.
//
// Optionally (SECNIC_BULK_LOOP names a loop file, sim/bulk/harness.py) some ports are closed into a
// loop through one external flooding switch, cycle by cycle: a group-addressed frame that leaves one
// of them comes back into each of the others a fixed delay later (the loop storm of docs/compare.md).
#include <svdpi.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <fstream>
#include <sstream>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct __attribute__((packed)) Header {
    char magic[8];
    uint32_t n_ports, bytes_per_beat, record_bits, egress_offset, egress_width, flags;
    uint64_t n_frames, timeout_cycles;
};
struct __attribute__((packed)) FrameHeader {
    uint32_t len;
    uint8_t port, flags;
    uint16_t reserved;
    uint64_t start;
};
struct __attribute__((packed)) EgressHeader {
    uint32_t len;
    uint8_t port, flags;
    uint16_t reserved;
    uint64_t start, end;
};
static_assert(sizeof(Header) == 48 && sizeof(FrameHeader) == 16 && sizeof(EgressHeader) == 24,
              "file structs must match sim/bulk/harness.py");

constexpr uint64_t kNever = ~0ULL;
constexpr uint8_t kEgressTuser = 1, kEgressUnpacked = 2;

// A frame the external switch sends back into a looped port, due at a cycle.
struct LoopFrame {
    uint64_t due;
    std::vector<uint8_t> data;
    bool injected = false;  // gated mode: Python's re-injection, not the loop's
};
constexpr uint32_t kGated = 1;

struct Source {
    std::vector<uint64_t> frames;  // input indices, in order
    size_t head = 0;
    std::deque<LoopFrame> looped;  // frames the loop sends into this port, in due order
    const uint8_t* cur = nullptr;  // the frame being sent: its bytes, length, flags
    uint32_t cur_len = 0;
    uint8_t cur_flags = 0;
    bool cur_looped = false;
    std::vector<uint8_t> cur_loop_data;  // holds a looped frame's bytes while it is sent
    uint64_t cur_index = 0;
    uint32_t offset = 0;
    bool tvalid = false, tlast = false, tuser = false;
    std::vector<uint8_t> tdata;  // driven beat, bytes_per_beat bytes
    uint64_t tkeep = 0;
};

struct Sink {
    std::vector<uint8_t> data;
    bool active = false;
    uint64_t start = 0;
    uint8_t flags = 0;
    uint64_t received = 0, expected = 0;
};

struct Bulk {
    bool loaded = false, started = false, done = false, timed_out = false, finished = false;
    Header h{};
    const uint8_t* map = nullptr;
    size_t map_len = 0;
    std::vector<const FrameHeader*> frames;
    std::vector<uint64_t> ingress;  // first, last beat cycle per frame
    std::vector<Source> src;
    std::vector<Sink> snk;
    std::string out_dir;
    FILE* records_file = nullptr;
    FILE* egress_file = nullptr;
    FILE* drops_file = nullptr;
    std::vector<uint32_t> ingress_ends;  // per port: frames whose last beat entered its ingress FIFO
    uint64_t ingress_drops = 0, ingress_stalls = 0;
    uint64_t cycle = 0, records = 0, done_cycle = 0;
    uint32_t record_words = 0;
    std::vector<uint64_t> record_buf;
    std::chrono::steady_clock::time_point wall0, wall_done;
    // The loop (SECNIC_BULK_LOOP): looped ports, delay, the external switch's queue towards each
    // port, the cycle from which frames leaving are no longer looped.
    std::vector<bool> in_loop;
    uint64_t loop_delay = 0, loop_queue = 0, loop_until = 0, loop_lost = 0, loop_sent = 0;
    std::vector<uint64_t> loop_waiting;  // per port: frames queued towards it in the external switch
    // Gated mode (header flag kGated).
    bool gated = false, closed = false;
    std::vector<bool> released;
    uint64_t injected = 0;
    int64_t tap_port = -1;
    std::deque<std::vector<uint8_t>> tap;
    std::vector<std::vector<uint64_t>> record_log;
};

Bulk g;

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "secnic bulk: %s\n", what.c_str());
    std::fflush(stderr);
    std::exit(2);
}

FILE* open_out(const char* name) {
    std::string path = g.out_dir + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) fail("cannot write " + path);
    static std::vector<std::vector<char>> buffers;
    buffers.emplace_back(1 << 20);
    std::setvbuf(f, buffers.back().data(), _IOFBF, buffers.back().size());
    return f;
}

// The loop file: lines "delay CYCLES", "queue FRAMES", "until CYCLE", "ports P ..." (port indices).
void load_loop(const char* path) {
    std::ifstream in(path);
    if (!in) fail(std::string("cannot read ") + path);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string key;
        if (!(words >> key)) continue;
        if (key == "delay") words >> g.loop_delay;
        else if (key == "queue") words >> g.loop_queue;
        else if (key == "until") words >> g.loop_until;
        else if (key == "ports") {
            uint32_t p;
            while (words >> p) {
                if (p >= g.h.n_ports) fail(std::string(path) + ": port out of range");
                g.in_loop[p] = true;
            }
        } else {
            fail(std::string(path) + ": unknown key " + key);
        }
        if (words.fail() && !words.eof()) fail(std::string(path) + ": bad value in: " + line);
    }
}

void load() {
    g.loaded = true;
    const char* in = std::getenv("SECNIC_BULK_IN");
    const char* out = std::getenv("SECNIC_BULK_OUT");
    if (!in || !out) fail("SECNIC_BULK_IN and SECNIC_BULK_OUT must name the frames file and the output directory");
    g.out_dir = out;
    int fd = open(in, O_RDONLY);
    if (fd < 0) fail(std::string("cannot read ") + in);
    struct stat st {};
    fstat(fd, &st);
    g.map_len = static_cast<size_t>(st.st_size);
    if (g.map_len < sizeof(Header)) fail(std::string(in) + ": too short for its header");
    void* m = mmap(nullptr, g.map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) fail(std::string("cannot map ") + in);
    madvise(m, g.map_len, MADV_SEQUENTIAL);
    g.map = static_cast<const uint8_t*>(m);
    std::memcpy(&g.h, g.map, sizeof(Header));
    if (std::memcmp(g.h.magic, "SNBULK01", 8) != 0) fail(std::string(in) + ": not a bulk frames file");
    if (g.h.bytes_per_beat > 64 || g.h.n_ports == 0 || g.h.n_ports > 32)
        fail(std::string(in) + ": layout out of range");
    g.src.resize(g.h.n_ports);
    g.snk.resize(g.h.n_ports);
    for (auto& s : g.src) s.tdata.assign(g.h.bytes_per_beat, 0);
    g.frames.reserve(g.h.n_frames);
    size_t pos = sizeof(Header);
    for (uint64_t i = 0; i < g.h.n_frames; i++) {
        if (pos + sizeof(FrameHeader) > g.map_len) fail(std::string(in) + ": truncated");
        auto* f = reinterpret_cast<const FrameHeader*>(g.map + pos);
        if (f->port >= g.h.n_ports || f->len == 0) fail(std::string(in) + ": bad frame header");
        g.frames.push_back(f);
        g.src[f->port].frames.push_back(i);
        pos += sizeof(FrameHeader) + ((f->len + 7u) & ~7u);
    }
    if (pos > g.map_len) fail(std::string(in) + ": truncated");
    g.ingress.assign(2 * g.h.n_frames, kNever);
    g.record_words = (g.h.record_bits + 63) / 64;
    g.record_buf.assign(1 + g.record_words, 0);
    g.records_file = open_out("records.bin");
    g.egress_file = open_out("egress.bin");
    g.drops_file = open_out("ingress_drops.bin");
    g.ingress_ends.assign(g.h.n_ports, 0);
    g.in_loop.assign(g.h.n_ports, false);
    g.loop_waiting.assign(g.h.n_ports, 0);
    if (const char* loop = std::getenv("SECNIC_BULK_LOOP")) load_loop(loop);
    g.gated = g.h.flags & kGated;
    g.released.assign(g.h.n_frames, !g.gated);
}

inline bool bit(const svBitVecVal* v, uint32_t i) { return (v[i >> 5] >> (i & 31)) & 1u; }
inline void set_bit(svBitVecVal* v, uint32_t i) { v[i >> 5] |= 1u << (i & 31); }

// One source at a rising edge: cocotbext-axi AxiStreamSource._run with no pause.
void step_source(Source& s, bool tready) {
    if (!((tready && s.tvalid) || !s.tvalid)) return;  // beat not taken: hold it
    if (!s.cur) {
        // The next input frame or looped frame that is due; the earlier one first, input on a tie.
        const FrameHeader* f = s.head < s.frames.size() ? g.frames[s.frames[s.head]] : nullptr;
        bool input_due = f && f->start <= g.cycle && g.released[s.frames[s.head]];
        bool loop_due = !s.looped.empty() && s.looped.front().due <= g.cycle;
        if (input_due && (!loop_due || f->start <= s.looped.front().due)) {
            uint64_t idx = s.frames[s.head];
            s.cur = reinterpret_cast<const uint8_t*>(f) + sizeof(FrameHeader);
            s.cur_len = f->len;
            s.cur_flags = f->flags;
            s.cur_looped = false;
            s.cur_index = idx;
            s.offset = 0;
            s.head++;
            g.ingress[2 * idx] = g.cycle;
        } else if (loop_due) {
            s.cur_loop_data = std::move(s.looped.front().data);
            if (!s.looped.front().injected) g.loop_waiting[&s - g.src.data()]--;
            s.looped.pop_front();
            s.cur = s.cur_loop_data.data();
            s.cur_len = static_cast<uint32_t>(s.cur_loop_data.size());
            s.cur_flags = 0;
            s.cur_looped = true;
            s.offset = 0;
        }
    }
    if (s.cur) {
        const uint8_t* data = s.cur;
        uint32_t bpb = g.h.bytes_per_beat;
        uint32_t n = s.cur_len - s.offset < bpb ? s.cur_len - s.offset : bpb;
        std::memset(s.tdata.data(), 0, bpb);
        std::memcpy(s.tdata.data(), data + s.offset, n);
        s.tkeep = n == 64 ? ~0ULL : ((1ULL << n) - 1);
        s.offset += n;
        s.tvalid = true;
        s.tlast = s.offset >= s.cur_len;
        // tuser of a beat is that of its last byte: rx_error marks the frame's last byte.
        s.tuser = s.tlast && (s.cur_flags & 1);
        if (s.tlast) {
            if (!s.cur_looped) g.ingress[2 * s.cur_index + 1] = g.cycle;
            s.cur = nullptr;
        }
    } else {
        s.tvalid = false;
        s.tlast = false;
    }
}

// A frame left looped port ``port``: the external switch floods a group-addressed one (broadcast,
// multicast) into every other looped port after the delay, unless its queue towards that port is
// full (lost there). Unicast frames reach their host and stay out of the loop. Frames leaving at or
// after loop_until are not looped (nor counted lost).
void loop_back(uint32_t port, const std::vector<uint8_t>& data) {
    if (data.empty() || !(data[0] & 1) || g.cycle >= g.loop_until) return;
    for (uint32_t q = 0; q < g.h.n_ports; q++) {
        if (q == port || !g.in_loop[q]) continue;
        if (g.loop_waiting[q] >= g.loop_queue) {
            g.loop_lost++;
            continue;
        }
        g.loop_waiting[q]++;
        g.loop_sent++;
        g.src[q].looped.push_back(LoopFrame{g.cycle + g.loop_delay, data});
    }
}

void write_egress(uint32_t port, Sink& k, uint64_t end) {
    EgressHeader e{static_cast<uint32_t>(k.data.size()), static_cast<uint8_t>(port), k.flags, 0, k.start, end};
    std::fwrite(&e, sizeof e, 1, g.egress_file);
    std::fwrite(k.data.data(), 1, k.data.size(), g.egress_file);
    static const uint8_t pad[8] = {};
    std::fwrite(pad, 1, (8 - k.data.size() % 8) % 8, g.egress_file);
}

// One sink at a rising edge (tready is high from reset on): cocotbext-axi AxiStreamSink._run.
void step_sink(uint32_t port, Sink& k, const uint8_t* tdata, uint64_t tkeep, bool tlast, bool tuser) {
    uint32_t bpb = g.h.bytes_per_beat;
    if (!k.active) {
        k.active = true;
        k.start = g.cycle;
        k.flags = 0;
        k.data.clear();
    }
    uint64_t full = bpb == 64 ? ~0ULL : ((1ULL << bpb) - 1);
    uint32_t kept = static_cast<uint32_t>(__builtin_popcountll(tkeep));
    bool packed = tlast ? (kept > 0 && tkeep == ((kept == 64) ? ~0ULL : ((1ULL << kept) - 1))) : tkeep == full;
    if (!packed) k.flags |= kEgressUnpacked;
    if (tuser) k.flags |= kEgressTuser;
    for (uint32_t j = 0; j < bpb; j++)
        if ((tkeep >> j) & 1) k.data.push_back(tdata[j]);
    if (tlast) {
        write_egress(port, k, g.cycle);
        if (g.in_loop[port]) loop_back(port, k.data);
        if (static_cast<int64_t>(port) == g.tap_port) g.tap.push_back(k.data);
        k.active = false;
        k.received++;
    }
}

void step_record(const svBitVecVal* payload) {
    uint32_t bits = g.h.record_bits;
    std::fill(g.record_buf.begin(), g.record_buf.end(), 0);
    g.record_buf[0] = g.cycle;
    std::memcpy(&g.record_buf[1], payload, (bits + 7) / 8);
    if (bits % 64) g.record_buf[g.record_words] &= (1ULL << (bits % 64)) - 1;
    std::fwrite(g.record_buf.data(), 8, g.record_buf.size(), g.records_file);
    if (g.gated) g.record_log.push_back(g.record_buf);
    g.records++;
    for (uint32_t q = 0; q < g.h.egress_width && q < g.h.n_ports; q++)
        if (bit(payload, g.h.egress_offset + q)) g.snk[q].expected++;
}

// A frame's fate at an ingress FIFO (drop-mode builds; all zero otherwise): port p's k-th frame
// end is its k-th frame.
void step_ingress(const svBitVecVal* ends, const svBitVecVal* drops) {
    for (uint32_t p = 0; p < g.h.n_ports; p++) {
        if (!bit(ends, p)) continue;
        if (bit(drops, p)) {
            uint32_t row[2] = {p, g.ingress_ends[p]};
            std::fwrite(row, 4, 2, g.drops_file);
            g.ingress_drops++;
        }
        g.ingress_ends[p]++;
    }
}

bool all_done() {
    if (g.gated && !g.closed) return false;
    if (g.records + g.ingress_drops < g.h.n_frames + g.injected) return false;
    for (auto& k : g.snk)
        if (k.active || k.received < k.expected) return false;
    for (auto& s : g.src)
        if (s.cur || s.head < s.frames.size() || !s.looped.empty()) return false;
    return true;
}

}  // namespace

// Gated mode's commands (bulk_main.cpp): release input frame ``idx``; keep port ``port``'s egress
// frames for take; the next kept frame (false: none yet); a re-injection into ``port`` now; record
// ``k`` (cycle, then its words); no more input (the run may end).
bool secnic_bulk_offer(uint64_t idx) {
    if (!g.loaded || idx >= g.released.size()) return false;
    g.released[idx] = true;
    return true;
}
void secnic_bulk_tap(int64_t port) { g.tap_port = port; }
bool secnic_bulk_take(std::vector<uint8_t>* out) {
    if (g.tap.empty()) return false;
    *out = std::move(g.tap.front());
    g.tap.pop_front();
    return true;
}
bool secnic_bulk_inject(uint32_t port, std::vector<uint8_t> data) {
    if (!g.loaded || port >= g.h.n_ports || data.empty()) return false;
    g.src[port].looped.push_back(LoopFrame{g.cycle, std::move(data), true});
    g.injected++;
    return true;
}
const std::vector<uint64_t>* secnic_bulk_record(uint64_t k) {
    return k < g.record_log.size() ? &g.record_log[k] : nullptr;
}
void secnic_bulk_close() { g.closed = true; }
uint64_t secnic_bulk_records() { return g.records; }
uint64_t secnic_bulk_drops() { return g.ingress_drops; }

extern "C" void secnic_bulk_cycle(svBit go, const svBitVecVal* s_tready, const svBitVecVal* m_tvalid,
                                  const svBitVecVal* m_tlast, const svBitVecVal* m_tuser,
                                  const svBitVecVal* m_tdata, const svBitVecVal* m_tkeep, svBit rec_valid,
                                  const svBitVecVal* rec_payload, const svBitVecVal* ing_end,
                                  const svBitVecVal* ing_drop, svBitVecVal* o_tvalid, svBitVecVal* o_tlast,
                                  svBitVecVal* o_tuser, svBitVecVal* o_tdata, svBitVecVal* o_tkeep,
                                  svBit* o_done, int* o_records) {
    if (!g.loaded) load();
    const uint32_t n = g.h.n_ports, bpb = g.h.bytes_per_beat;
    const uint32_t data_words = (n * bpb * 8 + 31) / 32, keep_words = (n * bpb + 31) / 32, port_words = (n + 31) / 32;
    if (!g.started) {
        if (!go) {
            std::memset(o_tvalid, 0, 4 * port_words);
            std::memset(o_tlast, 0, 4 * port_words);
            std::memset(o_tuser, 0, 4 * port_words);
            std::memset(o_tdata, 0, 4 * data_words);
            std::memset(o_tkeep, 0, 4 * keep_words);
            *o_done = 0;
            *o_records = 0;
            return;
        }
        g.started = true;
        g.wall0 = std::chrono::steady_clock::now();
    }
    g.cycle++;
    const uint8_t* egress_bytes = reinterpret_cast<const uint8_t*>(m_tdata);
    for (uint32_t p = 0; p < n; p++) {
        if (bit(m_tvalid, p)) {
            uint64_t keep = 0;
            for (uint32_t j = 0; j < bpb; j++) keep |= static_cast<uint64_t>(bit(m_tkeep, p * bpb + j)) << j;
            step_sink(p, g.snk[p], egress_bytes + p * bpb, keep, bit(m_tlast, p), bit(m_tuser, p));
        }
    }
    if (rec_valid) step_record(rec_payload);
    step_ingress(ing_end, ing_drop);
    std::memset(o_tvalid, 0, 4 * port_words);
    std::memset(o_tlast, 0, 4 * port_words);
    std::memset(o_tuser, 0, 4 * port_words);
    std::memset(o_tkeep, 0, 4 * keep_words);
    uint8_t* out_bytes = reinterpret_cast<uint8_t*>(o_tdata);
    std::memset(out_bytes, 0, 4 * data_words);
    for (uint32_t p = 0; p < n; p++) {
        Source& s = g.src[p];
        if (s.tvalid && !bit(s_tready, p)) g.ingress_stalls++;
        step_source(s, bit(s_tready, p));
        if (s.tvalid) set_bit(o_tvalid, p);
        if (s.tlast) set_bit(o_tlast, p);
        if (s.tuser) set_bit(o_tuser, p);
        // tdata and tkeep hold their last value while tvalid is low, as cocotbext-axi leaves them.
        std::memcpy(out_bytes + p * bpb, s.tdata.data(), bpb);
        for (uint32_t j = 0; j < bpb; j++)
            if ((s.tkeep >> j) & 1) set_bit(o_tkeep, p * bpb + j);
    }
    if (!g.done) {
        if (all_done()) {
            g.done = true;
        } else if (g.cycle > g.h.timeout_cycles) {
            g.done = g.timed_out = true;
        }
        if (g.done) {
            g.done_cycle = g.cycle;
            g.wall_done = std::chrono::steady_clock::now();
        }
    }
    *o_done = g.done;
    *o_records = static_cast<int>(g.records + g.ingress_drops);
}

extern "C" void secnic_bulk_final() {
    if (!g.loaded || g.finished) return;
    g.finished = true;
    std::fclose(g.records_file);
    std::fclose(g.egress_file);
    std::fclose(g.drops_file);
    std::string path = g.out_dir + "/ingress.bin";
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) fail("cannot write " + path);
    std::fwrite(g.ingress.data(), 8, g.ingress.size(), f);
    std::fclose(f);
    double wall = g.done ? std::chrono::duration<double>(g.wall_done - g.wall0).count() : 0.0;
    path = g.out_dir + "/status.json";
    f = std::fopen(path.c_str(), "w");
    if (!f) fail("cannot write " + path);
    std::fprintf(f, "{\"cycles\": %llu, \"done_cycle\": %llu, \"wall_s\": %.6f, \"records\": %llu, "
                    "\"ingress_drops\": %llu, \"ingress_stalls\": %llu, \"loop_sent\": %llu, \"loop_lost\": %llu, "
                    "\"timed_out\": %s, \"done\": %s, "
                    "\"egress\": [",
                 static_cast<unsigned long long>(g.cycle), static_cast<unsigned long long>(g.done_cycle), wall,
                 static_cast<unsigned long long>(g.records), static_cast<unsigned long long>(g.ingress_drops),
                 static_cast<unsigned long long>(g.ingress_stalls), static_cast<unsigned long long>(g.loop_sent),
                 static_cast<unsigned long long>(g.loop_lost), g.timed_out ? "true" : "false",
                 g.done ? "true" : "false");
    for (uint32_t p = 0; p < g.h.n_ports; p++)
        std::fprintf(f, "%s%llu", p ? ", " : "", static_cast<unsigned long long>(g.snk[p].received));
    std::fprintf(f, "]}\n");
    std::fclose(f);
}
