// bench_allreduce: ringtrain's RingAllreduce against MPI_Allreduce, side by
// side in one run, for float sum-all-reduce in place from 4 B to 64 MiB.
//
// What it measures, per size:
//   - each call's wall time on every rank, from the exit of an MPI_Barrier to
//     the return of the call; the call's time is the max over ranks (the
//     all-reduce is done when the slowest rank is done);
//   - the median of those times over many calls, after warm-up calls;
//   - ring and MPI calls alternate within each iteration, so that machine
//     noise (this is a shared 2-core box) hits both alike.
// Buffers are allocated and touched once, before any timing, and the ring's
// scratch is reserved up front, as the trainer does; MPI_Allreduce keeps
// whatever internal allocation Open MPI does per call (that is its cost).
// Timed buffers hold zeros: values do not change the work, and repeated
// in-place sums of non-zero data would overflow.
//
// Each size is verified once before timing: integer-valued floats, ring result
// == MPI_Allreduce result, element by element, exactly (both also equal the
// known sum). A mismatch on any rank makes the program exit with code 1.
//
// Not measured here: overlap with computation, more than one node, or ranks
// that arrive late (the barrier removes that skew on purpose).
#include "ringtrain/comm/ring_allreduce.hpp"
#include "ringtrain/util/big_buffer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kModelFloats = 235146;  // default 784-256-128-10 MLP

struct Options {
  std::string json_path;
  std::size_t max_bytes = std::size_t(64) << 20;
  int iters = 0;   // 0: chosen per size (iterations_for)
  int warmup = -1; // -1: chosen per size
};

struct Result {
  std::size_t bytes = 0;
  int iters = 0;
  double ring_s = 0, mpi_s = 0;   // median of max-over-ranks call times
  double ring_min_s = 0, mpi_min_s = 0;
  long long mismatches = 0;       // summed over ranks
};

const char* kUsage =
    "usage: mpirun -np P bench_allreduce [--max-bytes N[K|M|G]] [--json FILE]\n"
    "                                    [--iters N] [--warmup N]\n"
    "  --max-bytes N  largest buffer (default 64M); sizes are 4 B * 4^k plus the\n"
    "                 default model's gradient (235146 floats = 940584 B)\n"
    "  --json FILE    also write the results as JSON (rank 0)\n"
    "  --iters N      timed calls per size (default: 2^31 B / size, in [50, 5000])\n"
    "  --warmup N     untimed calls per size before timing (default: iters/10, >= 3)\n";

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

long long verify(ringtrain::RingAllreduce& ring, float* a, float* b, std::size_t n, int rank, int p) {
  for (std::size_t i = 0; i < n; ++i) a[i] = b[i] = test_value(i, rank);
  ring.run(a, n);
  ringtrain::check_mpi(MPI_Allreduce(MPI_IN_PLACE, b, int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                       "MPI_Allreduce");
  long long bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    float expect = 0;
    for (int r = 0; r < p; ++r) expect += test_value(i, r);
    if (a[i] != b[i] || b[i] != expect) {
      if (bad++ == 0)
        std::fprintf(stderr, "rank %d: MISMATCH for %zu floats at index %zu: ring %g, MPI_Allreduce %g, exact %g\n",
                     rank, n, i, double(a[i]), double(b[i]), double(expect));
    }
  }
  ringtrain::check_mpi(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD),
                       "MPI_Allreduce (mismatch count)");
  std::fill(a, a + n, 0.0f);
  std::fill(b, b + n, 0.0f);
  return bad;
}

double timed_ring(ringtrain::RingAllreduce& ring, float* a, std::size_t n) {
  ringtrain::check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  const double t0 = MPI_Wtime();
  ring.run(a, n);
  return MPI_Wtime() - t0;
}

double timed_mpi(float* b, std::size_t n) {
  ringtrain::check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  const double t0 = MPI_Wtime();
  ringtrain::check_mpi(MPI_Allreduce(MPI_IN_PLACE, b, int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                       "MPI_Allreduce");
  return MPI_Wtime() - t0;
}

Result bench_size(ringtrain::RingAllreduce& ring, float* a, float* b, std::size_t bytes, const Options& o,
                  int rank, int p) {
  Result r;
  r.bytes = bytes;
  const std::size_t n = bytes / sizeof(float);
  r.mismatches = verify(ring, a, b, n, rank, p);
  r.iters = iterations_for(bytes, o);
  const int warmup = o.warmup >= 0 ? o.warmup : std::max(3, r.iters / 10);
  std::vector<double> tr(r.iters), tm(r.iters);
  for (int i = -warmup; i < r.iters; ++i) {
    // Alternate which one goes first, so neither always follows the other.
    double t_ring, t_mpi;
    if (i % 2 == 0) {
      t_ring = timed_ring(ring, a, n);
      t_mpi = timed_mpi(b, n);
    } else {
      t_mpi = timed_mpi(b, n);
      t_ring = timed_ring(ring, a, n);
    }
    if (i >= 0) tr[i] = t_ring, tm[i] = t_mpi;
  }
  for (auto* v : {&tr, &tm})
    ringtrain::check_mpi(MPI_Allreduce(MPI_IN_PLACE, v->data(), r.iters, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
                         "MPI_Allreduce (times)");
  r.ring_s = median(tr);
  r.mpi_s = median(tm);
  r.ring_min_s = *std::min_element(tr.begin(), tr.end());
  r.mpi_min_s = *std::min_element(tm.begin(), tm.end());
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

void print_header(int p) {
  char lib[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(lib, &len);
  std::string first_line(lib, std::find(lib, lib + len, '\n'));
  std::printf("# bench_allreduce: %d ranks; %s\n", p, first_line.c_str());
  std::printf("# float sum, in place; median over calls of the slowest rank's time (barrier before each call)\n");
  std::printf("# busbw = bytes/time * 2(p-1)/p; mpi/ring > 1: the ring is faster\n");
  std::printf("%-16s %6s %11s %11s %11s %11s %9s\n", "size", "iters", "ring_us", "mpi_us", "ring_GB/s",
              "mpi_GB/s", "mpi/ring");
}

void print_row(const Result& r, int p) {
  std::printf("%-16s %6d %11.2f %11.2f %11.3f %11.3f %9.3f%s\n", human(r.bytes).c_str(), r.iters, r.ring_s * 1e6,
              r.mpi_s * 1e6, busbw_gbs(r.bytes, r.ring_s, p), busbw_gbs(r.bytes, r.mpi_s, p), r.mpi_s / r.ring_s,
              r.mismatches ? "  MISMATCH" : "");
  std::fflush(stdout);
}

void write_json(const std::string& path, const std::vector<Result>& results, int p) {
  nlohmann::json rows = nlohmann::json::array();
  for (const Result& r : results)
    rows.push_back({{"bytes", r.bytes},
                    {"floats", r.bytes / 4},
                    {"iters", r.iters},
                    {"ring_us", r.ring_s * 1e6},
                    {"mpi_us", r.mpi_s * 1e6},
                    {"ring_min_us", r.ring_min_s * 1e6},
                    {"mpi_min_us", r.mpi_min_s * 1e6},
                    {"ring_busbw_gbs", busbw_gbs(r.bytes, r.ring_s, p)},
                    {"mpi_busbw_gbs", busbw_gbs(r.bytes, r.mpi_s, p)},
                    {"ratio_mpi_over_ring", r.mpi_s / r.ring_s},
                    {"verified", r.mismatches == 0}});
  const nlohmann::json doc = {{"benchmark", "allreduce"},
                              {"ranks", p},
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
  ringtrain::BigBuffer<float> a(max_n), b(max_n);
  ringtrain::RingAllreduce ring(MPI_COMM_WORLD);
  ring.reserve(max_n);
  if (rank == 0) print_header(p);
  std::vector<Result> results;
  long long bad = 0;
  for (std::size_t bytes : sizes) {
    results.push_back(bench_size(ring, a.data(), b.data(), bytes, o, rank, p));
    bad += results.back().mismatches;
    if (rank == 0) print_row(results.back(), p);
  }
  if (rank == 0 && !o.json_path.empty()) write_json(o.json_path, results, p);
  if (bad && rank == 0) std::fprintf(stderr, "bench_allreduce: ring result differs from MPI_Allreduce\n");
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
