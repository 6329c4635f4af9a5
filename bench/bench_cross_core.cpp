// bench_cross_core: how fast one core reads data that the other core has just
// written, the traffic every 2-rank all-reduce on one node is made of. No MPI:
// two processes (fork) pinned to two CPUs, sharing an anonymous mapping.
//
// Per size, the median over many rounds of one pass that adds a source buffer
// into a destination of the reader's own (dst[i] += src[i], as a reduction
// does), where the source was written just before by
//   local     the reader itself (it is in the reader's own caches);
//   remote    the other process, on the other core, while the reader waited;
//   exchange  both at once: each process wrote its source, then each reads
//             the other's (both cores pulling across, as in an all-reduce).
// Rates are source bytes / time (GB = 1e9 B).
//
// Why it matters: in a 2-rank all-reduce of n bytes each rank must bring n
// bytes across from the other core (the other half of the inputs to sum it,
// then the other half of the result), so n / (exchange time for n bytes) is
// an upper bound for the bus bandwidth (nccl-tests' busbw = n / t for 2
// ranks) of any implementation, MPI's included. bench/README.md compares it
// with bench_allreduce's figures.
//
// Usage: bench_cross_core [--max-bytes N[K|M|G]] [--json FILE]
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

// One cache line each, so the flags do not share a line with each other.
struct alignas(64) Flag {
  std::atomic<long> value;
};
struct Control {
  Flag done[2];  // the last barrier phase each process reached
  double seconds[2];
};

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    std::perror("sched_setaffinity");
    _exit(2);
  }
}

// The other process (the child for process 0, the parent for 1): if it is
// gone, the survivor exits instead of spinning forever.
pid_t g_peer = 0;

void exit_if_peer_gone(int me) {
  const bool gone = me == 0 ? waitpid(g_peer, nullptr, WNOHANG) != 0 : getppid() != g_peer;
  if (gone) {
    std::fprintf(stderr, "bench_cross_core: the other process ended early\n");
    _exit(1);
  }
}

// Both processes reach the same point (a two-party barrier on the flags).
void sync(Control* c, int me, long& phase) {
  ++phase;
  c->done[me].value.store(phase, std::memory_order_release);
  for (unsigned long spins = 1; c->done[1 - me].value.load(std::memory_order_acquire) < phase; ++spins)
    if (spins % (1ul << 24) == 0) exit_if_peer_gone(me);
}

void write_source(float* src, std::size_t n, long round) {
  for (std::size_t i = 0; i < n; ++i) src[i] = float((i + std::size_t(round)) & 1023);
}

double add_into(float* dst, const float* src, std::size_t n) {
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];  // vectorised at -O3 -march=native
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename T>
T* map_shared(std::size_t count) {
  void* p = mmap(nullptr, count * sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(2);
  }
  std::memset(p, 0, count * sizeof(T));  // touched once, before any timing
  return static_cast<T*>(p);
}

enum class Mode { kLocal, kRemote, kExchange };

// Rounds of one mode. Process `me` (0 or 1) owns src[me] and dst[me];
// process 0 collects the times (in exchange mode the slower of the two).
double run_mode(Mode mode, int me, float* const src[2], float* const dst[2], std::size_t n, int rounds,
                Control* c, long& phase) {
  std::vector<double> times;
  for (int r = 0; r < rounds; ++r) {
    sync(c, me, phase);
    if (mode == Mode::kExchange || (mode == Mode::kRemote && me == 1) || (mode == Mode::kLocal && me == 0))
      write_source(src[me], n, r);
    sync(c, me, phase);
    double t = 0;
    if (mode == Mode::kLocal && me == 0) t = add_into(dst[0], src[0], n);
    if (mode == Mode::kRemote && me == 0) t = add_into(dst[0], src[1], n);
    if (mode == Mode::kExchange) t = add_into(dst[me], src[1 - me], n);
    c->seconds[me] = t;
    sync(c, me, phase);  // process 1's time is written before it is read, and
    if (me == 0) times.push_back(std::max(c->seconds[0], c->seconds[1]));  // rewritten only 2 syncs later
  }
  return me == 0 ? median(times) : 0.0;
}

std::string human(std::size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%zu MiB", bytes >> 20);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t max_bytes = std::size_t(256) << 20;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--max-bytes" && i + 1 < argc) {
      char* end = nullptr;
      max_bytes = std::strtoull(argv[++i], &end, 10);
      const std::string suffix = end;  // N, NK, NM or NG (KiB, MiB, GiB)
      if (suffix == "K") max_bytes <<= 10;
      else if (suffix == "M") max_bytes <<= 20;
      else if (suffix == "G") max_bytes <<= 30;
      else if (!suffix.empty()) max_bytes = 0;  // refused below
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_cross_core [--max-bytes N[K|M|G]] [--json FILE]\n");
      return 2;
    }
  }
  if (max_bytes < (std::size_t(1) << 20)) {
    std::fprintf(stderr, "bench_cross_core: --max-bytes must be a size of at least 1M (1048576)\n");
    return 2;
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  sched_getaffinity(0, sizeof allowed, &allowed);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  if (cpus.size() < 2) {
    std::fprintf(stderr, "bench_cross_core: needs 2 CPUs, this process may use %zu\n", cpus.size());
    return 2;
  }

  const std::size_t max_n = max_bytes / sizeof(float);
  float* src[2] = {map_shared<float>(max_n), map_shared<float>(max_n)};
  float* dst[2] = {map_shared<float>(max_n), map_shared<float>(max_n)};
  auto* c = map_shared<Control>(1);

  std::vector<std::size_t> sizes;
  for (std::size_t b = std::size_t(1) << 20; b <= max_bytes; b *= 4) sizes.push_back(b);

  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child < 0) {
    std::perror("fork");
    return 2;
  }
  const int me = child == 0 ? 1 : 0;
  g_peer = me == 0 ? child : parent;
  pin_to(cpus[std::size_t(me)]);
  long phase = 0;
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  if (me == 0) {
    std::printf("# bench_cross_core: CPUs %d and %d; dst[i] += src[i] over a source written just before by\n",
                cpus[0], cpus[1]);
    std::printf("# local: the reader; remote: the other core; exchange: each core reads the other's at once\n");
    std::printf("# GB/s = source bytes / median time; for 2 ranks, exchange GB/s bounds any all-reduce's busbw\n");
    std::printf("%-10s %7s %10s %10s %11s\n", "size", "rounds", "local_GB/s", "remote_GB/s", "exchange_GB/s");
  }
  for (std::size_t bytes : sizes) {
    const std::size_t n = bytes / sizeof(float);
    const int rounds = int(std::clamp<std::size_t>((std::size_t(512) << 20) / bytes, 8, 200));
    double t[3];
    const Mode modes[3] = {Mode::kLocal, Mode::kRemote, Mode::kExchange};
    for (int m = 0; m < 3; ++m) {
      run_mode(modes[m], me, src, dst, n, 2, c, phase);  // warm-up
      t[m] = run_mode(modes[m], me, src, dst, n, rounds, c, phase);
    }
    if (me == 0) {
      const double gbs[3] = {double(bytes) / t[0] / 1e9, double(bytes) / t[1] / 1e9, double(bytes) / t[2] / 1e9};
      std::printf("%-10s %7d %10.2f %11.2f %13.2f\n", human(bytes).c_str(), rounds, gbs[0], gbs[1], gbs[2]);
      std::fflush(stdout);
      rows.push_back({{"bytes", bytes}, {"rounds", rounds},
                      {"local_us", t[0] * 1e6}, {"remote_us", t[1] * 1e6}, {"exchange_us", t[2] * 1e6},
                      {"local_gbs", gbs[0]}, {"remote_gbs", gbs[1]}, {"exchange_gbs", gbs[2]}});
    }
  }
  if (me == 1) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  if (!json_path.empty()) {
    const nlohmann::ordered_json doc = {{"benchmark", "cross_core"}, {"cpus", cpus}, {"rows", rows}};
    std::ofstream out(json_path);
    out << doc.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "bench_cross_core: cannot write %s\n", json_path.c_str());
      return 1;
    }
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
