// bench_allreduce: ringtrain's all-reduce algorithms (RingAllreduce,
// RecursiveDoubling, ShmAllreduce when every rank is on one node,
// HierarchicalAllreduce when they span nodes, and the trainer's
// comm.algorithm=auto) against MPI_Allreduce, side by side in one run, for
// float sum-all-reduce in place from 4 B to 256 MiB.
//
// What it measures, per size:
//   - each call's wall time on every rank, from the exit of an MPI_Barrier to
//     the return of the call; the call's time is the max over ranks (the
//     all-reduce is done when the slowest rank is done);
//   - the median of those times over many calls, after warm-up calls;
//   - the algorithms take turns within each iteration (which goes first
//     rotates, and every other iteration runs the order backwards), so that
//     machine noise (this is a shared 2-core box) and cache state hit all
//     alike.
// Buffers are allocated and touched once, before any timing, and the ring's
// scratch is reserved up front, as the trainer does; MPI_Allreduce keeps
// whatever internal allocation Open MPI does per call (that is its cost).
// Timed buffers hold zeros: values do not change the work, and repeated
// in-place sums of non-zero data would overflow. By default a call starts
// with whatever cache state the previous calls left; --hot has each rank
// write its whole buffer (untimed) before every call, as backward writes the
// gradient right before the trainer's all-reduce.
//
// Each size is verified once before timing: integer-valued floats, each of
// our results == MPI_Allreduce's, element by element, exactly (all equal the
// known sum). A mismatch on any rank makes the program exit with code 1.
//
// Not measured here: overlap with computation, more than one node, or ranks
// that arrive late (the barrier removes that skew on purpose).
#include "ringtrain/comm/hierarchical_allreduce.hpp"
#include "ringtrain/comm/mpi_communicator.hpp"
#include "ringtrain/comm/mpi_helpers.hpp"
#include "ringtrain/comm/recursive_doubling.hpp"
#include "ringtrain/comm/ring_allreduce.hpp"
#include "ringtrain/comm/shm_allreduce.hpp"
#include "ringtrain/util/big_buffer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kModelFloats = 235146;  // default 784-256-128-10 MLP

struct Options {
  std::string json_path;
  std::size_t max_bytes = std::size_t(256) << 20;
  int iters = 0;   // 0: chosen per size (iterations_for)
  int warmup = -1; // -1: chosen per size
  std::size_t ring_segment = ringtrain::RingAllreduce::kDefaultSegment;
  std::string only;  // comma-separated algorithm names; empty: all
  bool hot = false;  // each rank writes its buffer before each call (as backward does)
};

// One all-reduce under test; the last one of the list is MPI_Allreduce.
struct Algo {
  std::string name;
  std::function<void(float*, std::size_t)> run;
  float* buffer = nullptr;  // its own buffer (shm in place), else the common one
};

struct Result {
  std::size_t bytes = 0;
  int iters = 0;
  std::vector<double> med_s, min_s;  // per algorithm: median and min of max-over-ranks call times
  long long mismatches = 0;          // summed over ranks
};

const char* kUsage =
    "usage: mpirun -np P bench_allreduce [--max-bytes N[K|M|G]] [--json FILE]\n"
    "                                    [--iters N] [--warmup N] [--algorithms A,B]\n"
    "                                    [--ring-segment FLOATS] [--hot]\n"
    "  --max-bytes N  largest buffer (default 256M); sizes are 4 B * 4^k plus the\n"
    "                 default model's gradient (235146 floats = 940584 B)\n"
    "  --json FILE    also write the results as JSON (rank 0)\n"
    "  --iters N      timed calls per size (default: 2^31 B / size, in [50, 5000])\n"
    "  --warmup N     untimed calls per size before timing (default: iters/10, >= 3)\n"
    "  --algorithms L only these of ours (comma-separated names), beside mpi\n"
    "  --ring-segment N  floats per pipelined segment of the ring (default 262144)\n"
    "  --hot          each rank writes its whole buffer (untimed) before every call,\n"
    "                 as backward writes the gradient before the trainer's all-reduce\n";

std::size_t parse_bytes(const std::string& text) {
  std::size_t pos = 0;
  const unsigned long long v = std::stoull(text, &pos);
  std::string suffix = text.substr(pos);
  std::size_t shift = 0;
  if (suffix == "K" || suffix == "k" || suffix == "KiB") shift = 10;
  else if (suffix == "M" || suffix == "m" || suffix == "MiB") shift = 20;
  else if (suffix == "G" || suffix == "g" || suffix == "GiB") shift = 30;
  else if (!suffix.empty() && suffix != "B") throw std::invalid_argument("bad size suffix '" + suffix + "'");
  return std::size_t(v) << shift;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--json") o.json_path = value();
    else if (a == "--max-bytes") o.max_bytes = parse_bytes(value());
    else if (a == "--iters") o.iters = std::stoi(value());
    else if (a == "--warmup") o.warmup = std::stoi(value());
    else if (a == "--algorithms") o.only = "," + value() + ",";
    else if (a == "--ring-segment") o.ring_segment = std::stoul(value());
    else if (a == "--hot") o.hot = true;
    else if (a == "-h" || a == "--help") throw std::invalid_argument("");
    else throw std::invalid_argument("unknown option '" + a + "'");
  }
  if (o.max_bytes < 4) throw std::invalid_argument("--max-bytes must be at least 4");
  if (o.iters < 0) throw std::invalid_argument("--iters must be >= 0");
  return o;
}

std::vector<std::size_t> sizes_up_to(std::size_t max_bytes) {
  std::vector<std::size_t> s;
  for (std::size_t b = 4; b <= max_bytes; b *= 4) s.push_back(b);
  if (kModelFloats * 4 <= max_bytes) s.push_back(kModelFloats * 4);
  std::sort(s.begin(), s.end());
  return s;
}

int iterations_for(std::size_t bytes, const Options& o) {
  if (o.iters > 0) return o.iters;
  const std::size_t n = (std::size_t(1) << 31) / bytes;
  return int(std::clamp<std::size_t>(n, 50, 5000));
}

double median(std::vector<double> v) {
  const std::size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  const double hi = v[mid];
  if (v.size() % 2) return hi;
  return 0.5 * (hi + *std::max_element(v.begin(), v.begin() + mid));
}

// Integer-valued and small, so every sum is exact in float for any order.
float test_value(std::size_t i, int rank) { return float(int((i * 7 + std::size_t(rank) * 13) % 2001) - 1000); }

// Every algorithm on the same integer-valued input: each result must equal
// the exact sum (so also MPI_Allreduce's), element by element.
long long verify(const std::vector<Algo>& algos, float* a, std::size_t n, int rank, int p) {
  long long bad = 0;
  for (const Algo& algo : algos) {
    float* d = algo.buffer ? algo.buffer : a;
    for (std::size_t i = 0; i < n; ++i) d[i] = test_value(i, rank);
    algo.run(d, n);
    for (std::size_t i = 0; i < n; ++i) {
      float expect = 0;
      for (int r = 0; r < p; ++r) expect += test_value(i, r);
      if (d[i] != expect && bad++ == 0)
        std::fprintf(stderr, "rank %d: MISMATCH of %s for %zu floats at index %zu: %g, exact %g\n", rank,
                     algo.name.c_str(), n, i, double(d[i]), double(expect));
    }
    std::fill(d, d + n, 0.0f);
  }
  ringtrain::check_mpi(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD),
                       "MPI_Allreduce (mismatch count)");
  std::fill(a, a + n, 0.0f);
  return bad;
}

double timed(const Algo& algo, float* a, std::size_t n, bool hot) {
  float* d = algo.buffer ? algo.buffer : a;
  if (hot) std::fill(d, d + n, 0.0f);  // in this rank's caches, modified, as after backward
  ringtrain::check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  const double t0 = MPI_Wtime();
  algo.run(d, n);
  return MPI_Wtime() - t0;
}

Result bench_size(const std::vector<Algo>& algos, float* a, std::size_t bytes, const Options& o, int rank, int p) {
  Result r;
  r.bytes = bytes;
  const std::size_t n = bytes / sizeof(float), k = algos.size();
  r.mismatches = verify(algos, a, n, rank, p);
  r.iters = iterations_for(bytes, o);
  const int warmup = o.warmup >= 0 ? o.warmup : std::max(3, r.iters / 10);
  std::vector<std::vector<double>> t(k, std::vector<double>(std::size_t(r.iters)));
  for (int i = -warmup; i < r.iters; ++i)
    for (std::size_t j = 0; j < k; ++j) {
      // Rotate which one goes first, and run the order backwards every other
      // iteration: each follows each of the others (whose cache footprint it
      // inherits) as often.
      const std::size_t it = std::size_t(i + warmup), step = (it / 2) % k;
      const std::size_t which = it % 2 == 0 ? (j + step) % k : (k - 1 - j + step) % k;
      const double dt = timed(algos[which], a, n, o.hot);
      if (i >= 0) t[which][std::size_t(i)] = dt;
    }
  for (auto& v : t) {
    ringtrain::check_mpi(MPI_Allreduce(MPI_IN_PLACE, v.data(), r.iters, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
                         "MPI_Allreduce (times)");
    r.med_s.push_back(median(v));
    r.min_s.push_back(*std::min_element(v.begin(), v.end()));
  }
  return r;
}

std::string human(std::size_t bytes) {
  char buf[32];
  if (bytes == kModelFloats * 4) return "940584 (model)";
  if (bytes >= (std::size_t(1) << 20) && bytes % (std::size_t(1) << 20) == 0)
    std::snprintf(buf, sizeof buf, "%zu MiB", bytes >> 20);
  else if (bytes >= 1024 && bytes % 1024 == 0)
    std::snprintf(buf, sizeof buf, "%zu KiB", bytes >> 10);
  else
    std::snprintf(buf, sizeof buf, "%zu B", bytes);
  return buf;
}

double busbw_gbs(std::size_t bytes, double seconds, int p) {
  return double(bytes) / seconds * 2.0 * (p - 1) / p / 1e9;
}

void print_header(const std::vector<Algo>& algos, int p) {
  char lib[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(lib, &len);
  std::string first_line(lib, std::find(lib, lib + len, '\n'));
  std::printf("# bench_allreduce: %d ranks; %s\n", p, first_line.c_str());
  std::printf("# float sum, in place; median over calls of the slowest rank's time (barrier before each call)\n");
  std::printf("# busbw = bytes/time * 2(p-1)/p; mpi/X > 1: X is faster than MPI_Allreduce\n");
  std::printf("%-16s %6s", "size", "iters");
  for (const Algo& a : algos) std::printf(" %11s", (a.name + "_us").c_str());
  for (const Algo& a : algos) std::printf(" %10s", (a.name + "_GB/s").c_str());
  for (std::size_t j = 0; j + 1 < algos.size(); ++j) std::printf(" %9s", ("mpi/" + algos[j].name).c_str());
  std::printf("\n");
}

void print_row(const Result& r, int p) {
  std::printf("%-16s %6d", human(r.bytes).c_str(), r.iters);
  for (double t : r.med_s) std::printf(" %11.2f", t * 1e6);
  for (double t : r.med_s) std::printf(" %10.3f", busbw_gbs(r.bytes, t, p));
  for (std::size_t j = 0; j + 1 < r.med_s.size(); ++j) std::printf(" %9.3f", r.med_s.back() / r.med_s[j]);
  std::printf("%s\n", r.mismatches ? "  MISMATCH" : "");
  std::fflush(stdout);
}

void write_json(const std::string& path, const std::vector<Algo>& algos, const std::vector<Result>& results, int p) {
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const Result& r : results) {
    nlohmann::ordered_json row = {{"bytes", r.bytes}, {"floats", r.bytes / 4}, {"iters", r.iters}};
    for (std::size_t j = 0; j < algos.size(); ++j) {
      const std::string& a = algos[j].name;
      row[a + "_us"] = r.med_s[j] * 1e6;
      row[a + "_min_us"] = r.min_s[j] * 1e6;
      row[a + "_busbw_gbs"] = busbw_gbs(r.bytes, r.med_s[j], p);
      if (j + 1 < algos.size()) row["ratio_mpi_over_" + a] = r.med_s.back() / r.med_s[j];
    }
    row["verified"] = r.mismatches == 0;
    rows.push_back(row);
  }
  nlohmann::ordered_json names = nlohmann::ordered_json::array();
  for (const Algo& a : algos) names.push_back(a.name);
  const nlohmann::ordered_json doc = {{"benchmark", "allreduce"},
                                      {"ranks", p},
                                      {"algorithms", names},
                                      {"dtype", "float32"},
                                      {"op", "sum, in place"},
                                      {"statistic", "median over calls of max over ranks"},
                                      {"busbw", "bytes/time * 2(p-1)/p, GB/s = 1e9 B/s"},
                                      {"results", rows}};
  std::ofstream out(path);
  out << doc.dump(2) << "\n";
  if (!out) throw std::runtime_error("cannot write " + path);
}

int run(const Options& o, int rank, int p) {
  const std::vector<std::size_t> sizes = sizes_up_to(o.max_bytes);
  const std::size_t max_n = sizes.back() / sizeof(float);
  // Huge-page-backed, as the trainer's gradient buffer (util/big_buffer.hpp);
  // value-initialised: every page touched now.
  ringtrain::BigBuffer<float> a(max_n);
  // Scratch and staging reserved up front, as the trainer does.
  ringtrain::RingAllreduce ring(MPI_COMM_WORLD, nullptr, o.ring_segment);
  ring.reserve(max_n);
  std::vector<Algo> algos = {{"ring", [&](float* d, std::size_t n) { ring.run(d, n); }}};
  // Latency-optimal for small buffers; its scratch is as large as the buffer.
  ringtrain::RecursiveDoubling rd(MPI_COMM_WORLD);
  rd.reserve(max_n);
  algos.push_back({"rd", [&](float* d, std::size_t n) { rd.run(d, n); }});
  std::unique_ptr<ringtrain::ShmAllreduce> shm;
  std::unique_ptr<ringtrain::HierarchicalAllreduce> hier;
  const bool one_node = ringtrain::ShmAllreduce::single_node(MPI_COMM_WORLD);
  if (!one_node) {  // across nodes: shared memory inside each, a ring between
    hier = std::make_unique<ringtrain::HierarchicalAllreduce>(MPI_COMM_WORLD);
    hier->reserve(max_n);
    algos.push_back({"hierarchical", [&](float* d, std::size_t n) { hier->run(d, n); }, hier->shared_buffer(max_n)});
  }
  // The trainer's path with comm.algorithm=auto, in place on its shared buffer.
  const std::unique_ptr<ringtrain::Communicator> automatic = ringtrain::make_mpi_communicator("auto");
  automatic->reserve_gradients(max_n);
  algos.push_back({"auto", [&](float* d, std::size_t n) { automatic->allreduce_gradients(d, n); },
                   automatic->shared_gradient_buffer(max_n)});
  if (one_node) {
    // "shm": in place on its shared buffer, as the trainer uses it;
    // "shm_copy": on ordinary memory, through the staging blocks.
    shm = std::make_unique<ringtrain::ShmAllreduce>(MPI_COMM_WORLD);
    shm->reserve(max_n);
    float* shared = shm->shared_buffer(max_n);
    algos.push_back({"shm", [&](float* d, std::size_t n) { shm->run(d, n); }, shared});
    algos.push_back({"shm_copy", [&](float* d, std::size_t n) { shm->run(d, n); }});
  }
  if (!o.only.empty()) {
    std::vector<Algo> picked;
    for (Algo& a : algos)
      if (o.only.find("," + a.name + ",") != std::string::npos) picked.push_back(std::move(a));
    algos = std::move(picked);
  }
  algos.push_back({"mpi", [](float* d, std::size_t n) {
                     ringtrain::check_mpi(
                         MPI_Allreduce(MPI_IN_PLACE, d, int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
                   }});
  if (rank == 0) print_header(algos, p);
  std::vector<Result> results;
  long long bad = 0;
  for (std::size_t bytes : sizes) {
    results.push_back(bench_size(algos, a.data(), bytes, o, rank, p));
    bad += results.back().mismatches;
    if (rank == 0) print_row(results.back(), p);
  }
  if (rank == 0 && !o.json_path.empty()) write_json(o.json_path, algos, results, p);
  if (bad && rank == 0) std::fprintf(stderr, "bench_allreduce: a result differs from the exact sum\n");
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, p = 1, rc = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  Options o;
  try {
    o = parse_options(argc, argv);
  } catch (const std::exception& e) {  // every rank parses the same argv: all leave together
    if (rank == 0) std::fprintf(stderr, "%s%s%s", e.what(), *e.what() ? "\n" : "", kUsage);
    MPI_Finalize();
    return *e.what() ? 2 : 0;
  }
  try {
    rc = run(o, rank, p);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_allreduce (rank %d): %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  MPI_Finalize();
  return rc;
}
