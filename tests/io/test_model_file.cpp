// Model and checkpoint files (io/model_file.hpp): bit-exact round trips,
// format detection, rejection of foreign, truncated and corrupted files (one
// flipped byte anywhere: an error or, in unused bytes, the same data; never
// silently different data), CRC-32 and atomic writes.
#include <doctest/doctest.h>
#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cfloat>
#include <csignal>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ringtrain/io/data_reader.hpp"
#include "ringtrain/io/hdf5.hpp"
#include "ringtrain/io/model_file.hpp"
#include "ringtrain/util/error.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;
using namespace ringtrain::test;
namespace fs = std::filesystem;

namespace {

// Parameters with a recognisable, non-trivial bit pattern, plus the awkward
// floats a round trip must keep bit for bit.
std::vector<float> pattern(std::size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t s = seed;
  for (std::size_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    v[i] = (float(s >> 8) / float(1u << 24) - 0.5f) * 3.0f;
  }
  if (n >= 6) {
    v[0] = -0.0f;
    v[1] = std::numeric_limits<float>::denorm_min();
    v[2] = FLT_MAX;
    v[3] = -FLT_MIN;
    v[4] = 1.0f / 3.0f;
    v[5] = 1e-30f;
  }
  return v;
}

SavedModel sample_model() {
  SavedModel m;
  m.spec.sizes = {24, 16, 3};
  m.spec.activation = Activation::kTanh;
  m.spec.dropout = 0.25f;
  m.task = Task::kRegression;
  m.params = pattern(mlp_layout(m.spec).total(), 7);
  m.metrics = Attrs{{"val_loss", 0.12345678901234567},
                    {"val_mse", 1e-300},
                    {"val_mae", -0.0},
                    {"step", int64_t(1) << 40},
                    {"examples_seen", int64_t(123456789012)},
                    {"offset", int64_t(-7)},
                    {"epoch", 2.5},
                    {"monitor", std::string("val_loss")},
                    {"mode", std::string("min")}};
  m.config = "[train]\nepochs = 3\nexamples = 2.5x\n# naïve – ünïcode\n\n[optim]\nlr = 0.1\n";
  return m;
}

SavedCheckpoint sample_checkpoint() {
  SavedCheckpoint c;
  c.model = sample_model();
  c.optimizer_name = "adam";
  c.optimizer = Attrs{{"step", int64_t(17)}, {"lr", 1e-3}, {"beta1", 0.9}, {"beta2", 0.999}, {"amsgrad", std::string("no")}};
  const std::size_t n = c.model.params.size();
  c.slots = {{"m", pattern(n, 11)}, {"v", pattern(n, 13)}};
  // About as many attributes as the trainer writes (more than HDF5 keeps in
  // the object header: dense attribute storage).
  c.trainer = Attrs{{"step", int64_t(1234)},         {"epoch", 2.75},
                    {"sampler_epoch", int64_t(2)},   {"step_in_epoch", int64_t(34)},
                    {"examples_seen", int64_t(39488)}, {"world_size", int64_t(3)},
                    {"batch_per_rank", int64_t(32)}, {"global_batch", int64_t(96)},
                    {"seed", int64_t(42)},           {"total_steps", int64_t(5000)},
                    {"total_examples", int64_t(480000)}, {"window_loss_sum", 123.456789},
                    {"window_examples", int64_t(960)}, {"last_eval_step", int64_t(1200)},
                    {"lr", 0.0123},                  {"lr_peak", 0.4},
                    {"lr_warmup_steps", int64_t(100)}, {"lr_decay", std::string("cosine")},
                    {"config_hash", std::string("9f3a5c7e1b2d4f60")},
                    {"rng", std::string("philox4x32-10, counter-based: shuffle keyed by (seed, epoch, rank)")}};
  c.rank_state_rows = 3;
  c.rank_state_cols = 4;
  c.rank_state = {0, 1, -2, int64_t(1) << 50, 4, 5, 6, -(int64_t(1) << 62), 8, 9, 10, 11};
  c.tracker = Attrs{{"monitor", std::string("val_loss")},
                    {"mode", std::string("min")},
                    {"min_delta", std::string("0.001")},
                    {"best_value", 0.30000000000000004},
                    {"best_step", int64_t(1200)},
                    {"early_stop_has_best", int64_t(1)},
                    {"early_stop_best", 0.30000000000000004},
                    {"early_stop_wait", int64_t(2)},
                    {"early_stop_patience", int64_t(5)},
                    {"top_k", std::string("1200:0.30000000000000004,800:0.33333333333333331")},
                    {"keep_best", int64_t(2)}};
  return c;
}

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Attribute maps equal bit for bit (doubles compared by their bytes: -0.0 is
// not 0.0).
bool same_attrs(const Attrs& a, const Attrs& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [key, value] : a) {
    const auto it = b.find(key);
    if (it == b.end() || it->second.index() != value.index()) return false;
    if (const auto* d = std::get_if<double>(&value)) {
      if (std::memcmp(d, &std::get<double>(it->second), sizeof(double)) != 0) return false;
    } else if (value != it->second) {
      return false;
    }
  }
  return true;
}

// Names of the parts that differ; empty when the two are identical.
std::string model_diff(const SavedModel& a, const SavedModel& b) {
  std::string d;
  if (a.spec.sizes != b.spec.sizes || a.spec.activation != b.spec.activation || a.spec.dropout != b.spec.dropout)
    d += " spec";
  if (a.task != b.task) d += " task";
  if (!same_floats(a.params, b.params)) d += " params";
  if (!same_attrs(a.metrics, b.metrics)) d += " metrics";
  if (a.config != b.config) d += " config";
  return d;
}

std::string checkpoint_diff(const SavedCheckpoint& a, const SavedCheckpoint& b) {
  std::string d = model_diff(a.model, b.model);
  if (!same_attrs(a.model.root, b.model.root)) d += " root-attrs";
  if (a.optimizer_name != b.optimizer_name) d += " optimizer-name";
  if (!same_attrs(a.optimizer, b.optimizer)) d += " optimizer-attrs";
  bool slots_same = a.slots.size() == b.slots.size();
  for (std::size_t i = 0; slots_same && i < a.slots.size(); ++i)
    slots_same = a.slots[i].first == b.slots[i].first && same_floats(a.slots[i].second, b.slots[i].second);
  if (!slots_same) d += " slots";
  if (!same_attrs(a.trainer, b.trainer)) d += " trainer-attrs";
  if (!same_attrs(a.tracker, b.tracker)) d += " tracker-attrs";
  if (a.rank_state != b.rank_state || a.rank_state_rows != b.rank_state_rows ||
      a.rank_state_cols != b.rank_state_cols)
    d += " rank_state";
  return d;
}

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<char>& bytes, std::size_t count) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(count));
  REQUIRE(out.good());
}

template <typename Fn>
void check_usage_error_naming(Fn fn, const std::string& path) {
  bool threw = false;
  try {
    fn();
  } catch (const UsageError& e) {
    threw = true;
    CHECK_MESSAGE(std::string(e.what()).find(path) != std::string::npos, e.what());
  } catch (const std::exception& e) {
    FAIL_CHECK("expected UsageError, got another exception: ", e.what());
    return;
  }
  CHECK_MESSAGE(threw, "expected UsageError for ", path);
}

// File address and stored size of the (single) chunk of a 2-D dataset.
std::pair<haddr_t, hsize_t> first_chunk(const std::string& path, const std::string& dataset) {
  h5_quiet();
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  REQUIRE(file.get() >= 0);
  H5Handle ds(H5Dopen2(file, dataset.c_str(), H5P_DEFAULT), H5Dclose);
  REQUIRE(ds.get() >= 0);
  const hsize_t origin[2] = {0, 0};
  unsigned filter_mask = 0;
  haddr_t addr = 0;
  hsize_t size = 0;
  REQUIRE(H5Dget_chunk_info_by_coord(ds, origin, &filter_mask, &addr, &size) >= 0);
  return {addr, size};
}

enum class Flip { kDetected, kHarmless, kSilent, kOther, kCrash, kHang };

struct FlipOutcome {
  Flip result;
  std::string detail;  // what differs, the exception text or the signal
};

// Reads the checkpoint at `path` in a child process, so that a crash inside
// HDF5 on a damaged file is counted as a failure instead of ending the tests.
FlipOutcome read_in_child(const std::string& path, const SavedCheckpoint& clean) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The parent's test framework handlers must not report the child's crash.
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) std::signal(sig, SIG_DFL);
    ::alarm(20);  // a reader that loops forever on a damaged file is killed: kHang
    ::close(fds[0]);
    std::string detail;
    int code = 3;
    try {
      detail = checkpoint_diff(read_checkpoint_file(path), clean);
      code = detail.empty() ? 0 : 2;
    } catch (const UsageError&) {
      code = 1;
    } catch (const std::exception& e) {
      detail = e.what();
    } catch (...) {
      detail = "unknown exception";
    }
    const ssize_t ignored = ::write(fds[1], detail.data(), detail.size());
    (void)ignored;
    ::_exit(code);
  }
  ::close(fds[1]);
  std::string detail;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) detail.append(buf, std::size_t(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) return {Flip::kHang, "still reading after 20 s"};
  if (WIFSIGNALED(status)) return {Flip::kCrash, "killed by signal " + std::to_string(WTERMSIG(status))};
  switch (WEXITSTATUS(status)) {
    case 0: return {Flip::kHarmless, detail};
    case 1: return {Flip::kDetected, detail};
    case 2: return {Flip::kSilent, detail};
    default: return {Flip::kOther, detail};
  }
}

// Writes a copy of `bytes` with the byte at `pos` XOR 0x01 and reads it back.
FlipOutcome flip_and_read(const std::vector<char>& bytes, std::size_t pos, const std::string& copy,
                          const SavedCheckpoint& clean) {
  std::vector<char> flipped = bytes;
  flipped[pos] ^= 0x01;
  write_bytes(copy, flipped, flipped.size());
  return read_in_child(copy, clean);
}

std::string flip_name(Flip f) {
  switch (f) {
    case Flip::kDetected: return "detected";
    case Flip::kHarmless: return "harmless";
    case Flip::kSilent: return "SILENTLY DIFFERENT";
    case Flip::kCrash: return "CRASH";
    case Flip::kHang: return "HANG";
    default: return "other exception";
  }
}

// Address of an object's header.
haddr_t object_header(const std::string& path, const std::string& object) {
  h5_quiet();
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  REQUIRE(file.get() >= 0);
  H5O_info_t info{};
  REQUIRE(H5Oget_info_by_name2(file, object.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) >= 0);
  return info.addr;
}

}  // namespace

TEST_CASE("model file: write/read round trip is bit-exact") {
  TempDir dir;
  const std::string path = dir.file("best.h5");
  const SavedModel m = sample_model();
  write_model_file(path, m);
  const SavedModel r = read_model_file(path);
  CHECK(r.spec.sizes == m.spec.sizes);
  CHECK(r.spec.activation == Activation::kTanh);
  CHECK(r.spec.dropout == 0.25f);
  CHECK(r.task == Task::kRegression);
  REQUIRE(r.params.size() == mlp_layout(m.spec).total());
  CHECK(same_floats(r.params, m.params));
  CHECK(std::signbit(r.params[0]));  // -0.0 stays negative zero
  CHECK(r.params[1] == std::numeric_limits<float>::denorm_min());
  CHECK(same_attrs(r.metrics, m.metrics));
  CHECK(std::get<int64_t>(r.metrics.at("step")) == int64_t(1) << 40);
  CHECK(std::get<int64_t>(r.metrics.at("offset")) == -7);
  CHECK(std::get<double>(r.metrics.at("val_loss")) == 0.12345678901234567);
  CHECK(std::get<std::string>(r.metrics.at("monitor")) == "val_loss");
  CHECK(r.config == m.config);
  CHECK(model_diff(r, m).empty());
  // Root attributes.
  CHECK(std::get<std::string>(r.root.at("format")) == kModelFormat);
  CHECK(std::get<int64_t>(r.root.at("format_version")) == kFormatVersion);
  CHECK(std::get<std::string>(r.root.at("ringtrain_version")) == RINGTRAIN_VERSION);
  CHECK(std::get<std::string>(r.root.at("created")).size() == std::string("2024-01-01T00:00:00Z").size());

  // A classification ReLU model with no metrics and an empty config.
  SavedModel c;
  c.spec.sizes = {3, 2};
  c.task = Task::kClassification;
  c.params = pattern(mlp_layout(c.spec).total(), 3);
  write_model_file(path, c);  // replaces the first file
  const SavedModel rc = read_model_file(path);
  CHECK(model_diff(rc, c).empty());
  CHECK(rc.spec.activation == Activation::kRelu);
  CHECK(rc.metrics.empty());
  CHECK(rc.config.empty());
}

TEST_CASE("model file: checkpoint round trip with optimizer, trainer and tracker state") {
  TempDir dir;
  const std::string path = dir.file("ckpt-1234.h5");
  const SavedCheckpoint c = sample_checkpoint();
  write_checkpoint_file(path, c);
  const SavedCheckpoint r = read_checkpoint_file(path);
  CHECK(r.optimizer_name == "adam");
  CHECK(same_attrs(r.optimizer, c.optimizer));  // "name" is not among the attributes
  REQUIRE(r.slots.size() == 2);
  CHECK(r.slots[0].first == "m");
  CHECK(r.slots[1].first == "v");
  CHECK(same_floats(r.slots[0].second, c.slots[0].second));
  CHECK(same_floats(r.slots[1].second, c.slots[1].second));
  CHECK_FALSE(same_floats(r.slots[0].second, r.slots[1].second));
  CHECK(same_attrs(r.trainer, c.trainer));
  CHECK(same_attrs(r.tracker, c.tracker));
  CHECK(r.rank_state_rows == 3);
  CHECK(r.rank_state_cols == 4);
  CHECK(r.rank_state == c.rank_state);
  CHECK(std::get<std::string>(r.model.root.at("format")) == kCheckpointFormat);
  CHECK(model_diff(r.model, c.model).empty());
  CHECK(checkpoint_diff(r, read_checkpoint_file(path)).empty());  // reads are repeatable

  // The model part of a checkpoint reads as a model.
  CHECK(model_diff(read_model_file(path), c.model).empty());

  // Slots come back by name whatever order they were given in; no rank state.
  SavedCheckpoint s = c;
  s.slots = {{"velocity", pattern(c.model.params.size(), 5)}, {"momentum", pattern(c.model.params.size(), 6)}};
  s.rank_state.clear();
  s.rank_state_rows = s.rank_state_cols = 0;
  write_checkpoint_file(path, s);
  const SavedCheckpoint rs = read_checkpoint_file(path);
  REQUIRE(rs.slots.size() == 2);
  for (const auto& [name, values] : rs.slots) {
    const auto it = std::find_if(s.slots.begin(), s.slots.end(), [&](const auto& p) { return p.first == name; });
    REQUIRE(it != s.slots.end());
    CHECK(same_floats(values, it->second));
  }
  CHECK(rs.rank_state.empty());
  CHECK(rs.rank_state_rows == 0);
}

TEST_CASE("model file: model_file_format and foreign files") {
  TempDir dir;
  const std::string model = dir.file("m.h5"), ckpt = dir.file("c.h5");
  write_model_file(model, sample_model());
  write_checkpoint_file(ckpt, sample_checkpoint());
  CHECK(model_file_format(model) == "ringtrain-model");
  CHECK(model_file_format(ckpt) == "ringtrain-checkpoint");

  const std::string text = dir.file("notes.h5");
  std::ofstream(text) << "this is not an HDF5 file\n";
  const std::string empty = dir.file("empty.h5");
  std::ofstream{empty};
  const std::string missing = dir.file("missing.h5");
  const std::string data = dir.file("data.h5");
  Dataset d;
  d.rows = 4;
  d.features = 2;
  d.outputs = 3;
  d.x = {1, 2, 3, 4, 5, 6, 7, 8};
  d.labels = {0, 1, 2, 0};
  write_hdf5_dataset(data, d);
  REQUIRE(H5Fis_hdf5(data.c_str()) > 0);

  for (const std::string& bad : {text, empty, missing, data}) {
    CAPTURE(bad);
    check_usage_error_naming([&] { model_file_format(bad); }, bad);
    check_usage_error_naming([&] { read_model_file(bad); }, bad);
    check_usage_error_naming([&] { read_checkpoint_file(bad); }, bad);
  }
  // A model file is not a checkpoint.
  check_usage_error_naming([&] { read_checkpoint_file(model); }, model);
}

TEST_CASE("model file: truncated files are a UsageError") {
  TempDir dir;
  const std::string ckpt = dir.file("c.h5"), model = dir.file("m.h5");
  write_checkpoint_file(ckpt, sample_checkpoint());
  write_model_file(model, sample_model());
  for (const std::string& src : {ckpt, model}) {
    const std::vector<char> bytes = read_bytes(src);
    REQUIRE(bytes.size() > 1000);
    for (double frac : {0.0, 0.1, 0.5, 0.9, 0.99}) {
      const std::size_t keep = frac == 0.99 ? bytes.size() - 1 : std::size_t(double(bytes.size()) * frac);
      CAPTURE(src);
      CAPTURE(keep);
      const std::string cut = dir.file("cut.h5");
      write_bytes(cut, bytes, keep);
      check_usage_error_naming([&] { read_model_file(cut); }, cut);
      check_usage_error_naming([&] { read_checkpoint_file(cut); }, cut);
      check_usage_error_naming([&] { model_file_format(cut); }, cut);
    }
  }
}

TEST_CASE("model file: a flipped byte in the parameter data is a checksum error") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  const SavedCheckpoint c = sample_checkpoint();
  write_checkpoint_file(path, c);
  const auto [addr, size] = first_chunk(path, "/model/dense_0/kernel");
  const ParamLayout layout = mlp_layout(c.model.spec);
  const TensorSpec& kernel = layout.find("dense_0/kernel");
  REQUIRE(size == kernel.size() * sizeof(float) + 4);  // the data and its Fletcher32 checksum
  std::vector<char> bytes = read_bytes(path);
  REQUIRE(addr + size <= bytes.size());
  // The chunk holds exactly the kernel we wrote.
  REQUIRE(std::memcmp(bytes.data() + addr, c.model.params.data() + kernel.offset, kernel.size() * sizeof(float)) == 0);

  for (hsize_t at : {hsize_t(0), size / 2, size - 5, size - 1}) {  // data bytes and checksum bytes
    CAPTURE(at);
    std::vector<char> flipped = bytes;
    flipped[addr + at] ^= 0x01;
    const std::string bad = dir.file("flipped.h5");
    write_bytes(bad, flipped, flipped.size());
    check_usage_error_naming([&] { read_checkpoint_file(bad); }, bad);
    check_usage_error_naming([&] { read_model_file(bad); }, bad);
  }
  // The same search by value: the bytes of the first slot's dense_0 kernel.
  const std::vector<float>& m = c.slots[0].second;
  const char* needle = reinterpret_cast<const char*>(m.data() + kernel.offset);
  const auto hit = std::search(bytes.begin(), bytes.end(), needle, needle + 64);
  REQUIRE(hit != bytes.end());
  std::vector<char> flipped = bytes;
  flipped[std::size_t(hit - bytes.begin()) + 40] ^= 0x01;
  const std::string bad = dir.file("flipped-slot.h5");
  write_bytes(bad, flipped, flipped.size());
  check_usage_error_naming([&] { read_checkpoint_file(bad); }, bad);
  CHECK_NOTHROW(read_model_file(bad));  // the model part is intact
}

TEST_CASE("model file: one flipped byte anywhere is an error or harmless, never silent") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  write_checkpoint_file(path, sample_checkpoint());
  const SavedCheckpoint clean = read_checkpoint_file(path);
  REQUIRE(checkpoint_diff(clean, sample_checkpoint()).find("params") == std::string::npos);
  const std::vector<char> bytes = read_bytes(path);
  // About 400 positions; RINGTRAIN_FLIP_EVERY_BYTE=1 flips every byte (minutes).
  const bool every = std::getenv("RINGTRAIN_FLIP_EVERY_BYTE") != nullptr;
  const std::size_t stride = every ? 1 : std::max<std::size_t>(1, bytes.size() / 400);
  std::map<Flip, int> count;
  std::map<std::string, std::vector<std::size_t>> bad;  // what went wrong -> positions
  for (std::size_t pos = 0; pos < bytes.size(); pos += stride) {
    const FlipOutcome o = flip_and_read(bytes, pos, dir.file("flipped.h5"), clean);
    ++count[o.result];
    if (o.result != Flip::kDetected && o.result != Flip::kHarmless)
      bad[flip_name(o.result) + ":" + o.detail].push_back(pos);
  }
  MESSAGE("checkpoint of ", bytes.size(), " bytes, one byte flipped every ", stride, " bytes: ",
          count[Flip::kDetected], " detected (UsageError), ", count[Flip::kHarmless], " harmless (identical data), ",
          count[Flip::kSilent], " silently different, ", count[Flip::kCrash], " crashed, ", count[Flip::kHang],
          " hung, ", count[Flip::kOther], " other exceptions");
  for (const auto& [what, positions] : bad) {
    std::string at;
    for (std::size_t i = 0; i < positions.size() && i < 8; ++i) at += " " + std::to_string(positions[i]);
    FAIL_CHECK(what, " at ", positions.size(), " position(s):", at);
  }
  int total = 0;
  for (const auto& [result, n] : count) total += n;
  CHECK(total >= 300);
  CHECK(count[Flip::kDetected] > total / 4);  // flips must actually have been noticed
}

// The places the scan above can miss by its stride: small datasets, text
// values, the chunk index and the optimizer groups.
TEST_CASE("model file: a flipped byte in /trainer/rank_state is detected") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  write_checkpoint_file(path, sample_checkpoint());
  const SavedCheckpoint clean = read_checkpoint_file(path);
  const std::vector<char> bytes = read_bytes(path);
  // Wherever the values sit (contiguous data, or a chunk): search their bytes.
  const char* needle = reinterpret_cast<const char*>(clean.rank_state.data());
  const auto hit = std::search(bytes.begin(), bytes.end(), needle, needle + 8 * clean.rank_state.size());
  REQUIRE(hit != bytes.end());
  const std::size_t at = std::size_t(hit - bytes.begin());
  for (std::size_t k : {std::size_t(0), std::size_t(8 * 5)}) {
    const FlipOutcome o = flip_and_read(bytes, at + k, dir.file("flipped.h5"), clean);
    CHECK_MESSAGE(o.result == Flip::kDetected, "flip at ", at + k, ": ", flip_name(o.result), " ", o.detail);
  }
}

TEST_CASE("model file: a flipped byte in the /config text or its heap reference is detected") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  write_checkpoint_file(path, sample_checkpoint());
  const SavedCheckpoint clean = read_checkpoint_file(path);
  const std::vector<char> bytes = read_bytes(path);
  const std::string text = "examples = 2.5x";
  const auto hit = std::search(bytes.begin(), bytes.end(), text.begin(), text.end());
  REQUIRE(hit != bytes.end());
  const std::size_t in_text = std::size_t(hit - bytes.begin()) + 11;  // the '2'
  FlipOutcome o = flip_and_read(bytes, in_text, dir.file("flipped.h5"), clean);
  CHECK_MESSAGE(o.result == Flip::kDetected, "flip in the config text at ", in_text, ": ", flip_name(o.result), " ",
                o.detail);
  // The text is stored in /config's own (checksummed) object header: compact
  // layout, fixed length, nothing in the global heap.
  h5_quiet();
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  REQUIRE(file.get() >= 0);
  H5Handle ds(H5Dopen2(file, "/config", H5P_DEFAULT), H5Dclose);
  REQUIRE(ds.get() >= 0);
  H5Handle dcpl(H5Dget_create_plist(ds), H5Pclose);
  CHECK(H5Pget_layout(dcpl) == H5D_COMPACT);
  H5Handle type(H5Dget_type(ds), H5Tclose);
  CHECK(H5Tis_variable_str(type) == 0);
}

TEST_CASE("model file: a flipped byte in a text attribute value is detected") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  write_checkpoint_file(path, sample_checkpoint());
  const SavedCheckpoint clean = read_checkpoint_file(path);
  const std::vector<char> bytes = read_bytes(path);
  // /tracker top_k (a digit of a value) and /trainer lr_decay.
  for (const std::string& text : {std::string("800:0.33333333333333331"), std::string("cosine")}) {
    const auto hit = std::search(bytes.begin(), bytes.end(), text.begin(), text.end());
    REQUIRE_MESSAGE(hit != bytes.end(), text);
    const std::size_t at = std::size_t(hit - bytes.begin()) + text.size() / 2;
    const FlipOutcome o = flip_and_read(bytes, at, dir.file("flipped.h5"), clean);
    CHECK_MESSAGE(o.result == Flip::kDetected, "flip in '", text, "' at ", at, ": ", flip_name(o.result), " ",
                  o.detail);
  }
}

TEST_CASE("model file: a flipped byte in the chunk index of a parameter is detected") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  write_checkpoint_file(path, sample_checkpoint());
  const SavedCheckpoint clean = read_checkpoint_file(path);
  const std::vector<char> bytes = read_bytes(path);
  const haddr_t chunk = first_chunk(path, "/model/dense_0/kernel").first;
  // HDF5 1.8-format files index chunks with version-1 B-tree nodes ("TREE",
  // node type 1): 24 header bytes, then per entry a key (chunk size 4, filter
  // mask 4, one 8-byte offset per dimension plus one) and the chunk address.
  // For a 2-D dataset the first child address sits at +56.
  std::size_t node = std::string::npos;
  for (std::size_t i = 0; i + 64 <= bytes.size(); ++i) {
    if (std::memcmp(bytes.data() + i, "TREE", 4) != 0 || bytes[i + 4] != 1) continue;
    uint64_t child = 0;
    std::memcpy(&child, bytes.data() + i + 56, 8);
    if (child == chunk) node = i;
  }
  if (node == std::string::npos) {
    MESSAGE("no version-1 B-tree chunk index in this file (a checksummed chunk index): nothing to flip");
    return;
  }
  // Bytes of the key's chunk coordinates (the low byte of each is left alone:
  // it may be a harmless flip). Without a checksum on the index the chunk is
  // not found and HDF5 returns fill values (zeros) without an error.
  for (std::size_t k : {std::size_t(33), std::size_t(41), std::size_t(6)}) {
    const FlipOutcome o = flip_and_read(bytes, node + k, dir.file("flipped.h5"), clean);
    CHECK_MESSAGE((o.result == Flip::kDetected || o.result == Flip::kHarmless), "flip in the chunk index at ",
                  node + k, " (node +", k, "): ", flip_name(o.result), " ", o.detail);
  }
}

TEST_CASE("model file: a damaged optimizer group is an error, not a checkpoint without slots") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  const SavedCheckpoint c = sample_checkpoint();
  write_checkpoint_file(path, c);
  const SavedCheckpoint clean = read_checkpoint_file(path);
  REQUIRE(clean.slots.size() == 2);
  const std::vector<char> bytes = read_bytes(path);
  // Every layer's optimizer group and every parameter's slot group.
  const ParamLayout layout = mlp_layout(c.model.spec);
  std::set<std::string> groups;
  for (const TensorSpec& t : layout.tensors()) {
    groups.insert("/optimizer/" + t.name.substr(0, t.name.find('/')));
    groups.insert("/optimizer/" + t.name);
  }
  REQUIRE(groups.size() == 6);
  for (const std::string& group : groups) {
    const haddr_t header = object_header(path, group);
    const FlipOutcome o = flip_and_read(bytes, std::size_t(header + 40), dir.file("flipped.h5"), clean);
    CHECK_MESSAGE(o.result == Flip::kDetected, group, " header byte ", header + 40, ": ", flip_name(o.result), " ",
                  o.detail);
  }
}

TEST_CASE("model file: file_crc32 is zlib's CRC-32 of the bytes") {
  TempDir dir;
  const std::string check = dir.file("check.txt");
  std::ofstream(check, std::ios::binary) << "123456789";
  CHECK(file_crc32(check) == 0xCBF43926u);  // the standard CRC-32 check value
  const std::string empty = dir.file("empty");
  std::ofstream{empty};
  CHECK(file_crc32(empty) == 0u);

  const std::string path = dir.file("c.h5");
  write_checkpoint_file(path, sample_checkpoint());
  const std::vector<char> bytes = read_bytes(path);
  const uLong expected = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size()));
  CHECK(file_crc32(path) == uint32_t(expected));
  // A larger file read in several pieces.
  std::vector<char> big(3u << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = char((i * 2654435761u) >> 13);
  const std::string large = dir.file("large.bin");
  write_bytes(large, big, big.size());
  const uLong big_crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(big.data()), uInt(big.size()));
  CHECK(file_crc32(large) == uint32_t(big_crc));
  CHECK_THROWS_AS(file_crc32(dir.file("missing")), Error);
}

TEST_CASE("model file: writes are atomic and leave no temporary behind") {
  TempDir dir;
  const std::string path = dir.file("best.h5");
  write_model_file(path, sample_model());
  const std::vector<char> first = read_bytes(path);
  SavedModel other = sample_model();
  other.params[10] += 1.0f;
  write_model_file(path, other);  // replaces
  write_checkpoint_file(dir.file("ckpt-1.h5"), sample_checkpoint());
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.insert(e.path().filename().string());
  CHECK(names == std::set<std::string>{"best.h5", "ckpt-1.h5"});
  CHECK_FALSE(fs::exists(path + ".tmp"));
  CHECK(read_model_file(path).params[10] == other.params[10]);
  CHECK(read_bytes(path) != first);

  // A failed write (params that do not match the spec) leaves the old file
  // intact and no temporary.
  SavedModel broken = sample_model();
  broken.params.pop_back();
  CHECK_THROWS(write_model_file(path, broken));
  CHECK_FALSE(fs::exists(path + ".tmp"));
  CHECK(read_model_file(path).params[10] == other.params[10]);
  // Text with a NUL byte would be stored cut short: refused, nothing written.
  SavedModel nul = sample_model();
  nul.config = std::string("[a]\nx = 1\0tail", 15);
  CHECK_THROWS_AS(write_model_file(dir.file("nul.h5"), nul), Error);
  CHECK_FALSE(fs::exists(dir.file("nul.h5")));
  CHECK_FALSE(fs::exists(dir.file("nul.h5.tmp")));
}

// ---- crafted files ("never trust a file") ----------------------------------
// Files written by write_checkpoint_file carry valid CRCs, so each crafted
// value below reaches the checks behind the checksum.

namespace {

// Replaces (or adds) a scalar attribute of `object` in an existing file.
void set_attr(const std::string& path, const std::string& object, const std::string& name, const AttrValue& value) {
  h5_quiet();
  H5Handle f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
  REQUIRE(f.get() >= 0);
  H5Handle o(H5Oopen(f, object.c_str(), H5P_DEFAULT), H5Oclose);
  REQUIRE(o.get() >= 0);
  if (H5Aexists(o, name.c_str()) > 0) REQUIRE(H5Adelete(o, name.c_str()) >= 0);
  h5_write_attrs(o, Attrs{{name, value}});
}

// Replaces dataset `name` by a chunked one declared `dims` of `type`, never
// written: HDF5 reads it as fill values.
void declare_unwritten(const std::string& path, const std::string& name, const std::vector<hsize_t>& dims,
                       hid_t type) {
  h5_quiet();
  H5Handle f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
  REQUIRE(f.get() >= 0);
  if (H5Lexists(f, name.c_str(), H5P_DEFAULT) > 0) REQUIRE(H5Ldelete(f, name.c_str(), H5P_DEFAULT) >= 0);
  std::vector<hsize_t> max(dims.size(), H5S_UNLIMITED), chunk(dims.size(), 1);
  H5Handle space(H5Screate_simple(int(dims.size()), dims.data(), max.data()), H5Sclose);
  H5Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  REQUIRE(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()) >= 0);
  H5Handle ds(H5Dcreate2(f, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
  REQUIRE(ds.get() >= 0);
}

// Replaces dataset `name` by fixed-length strings of `size` bytes, of shape `dims`.
void replace_with_text(const std::string& path, const std::string& name, const std::vector<hsize_t>& dims,
                       std::size_t size) {
  h5_quiet();
  H5Handle f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
  REQUIRE(H5Ldelete(f, name.c_str(), H5P_DEFAULT) >= 0);
  H5Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  REQUIRE(H5Tset_size(type, size) >= 0);
  H5Handle space(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
  hsize_t n = 1;
  for (hsize_t d : dims) n *= d;
  const std::string text(size * n, '1');
  H5Handle ds(H5Dcreate2(f, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  REQUIRE(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()) >= 0);
}

}  // namespace

TEST_CASE("model file: crafted checkpoint values are refused with a message, before use") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  struct Case {
    const char* name;
    void (*change)(SavedCheckpoint&);
    const char* message;
  };
  const Case cases[] = {
      {"negative step", [](SavedCheckpoint& c) { c.trainer["step"] = int64_t(-1); }, "'step' = -1"},
      {"step past total_steps", [](SavedCheckpoint& c) { c.trainer["step"] = int64_t(6000); }, "'step' = 6000"},
      {"negative examples_seen", [](SavedCheckpoint& c) { c.trainer["examples_seen"] = int64_t(-5); }, "examples_seen"},
      {"world_size 0", [](SavedCheckpoint& c) { c.trainer["world_size"] = int64_t(0); }, "world_size"},
      {"world_size not an integer", [](SavedCheckpoint& c) { c.trainer["world_size"] = 3.0; }, "not an integer"},
      {"negative optimizer step", [](SavedCheckpoint& c) { c.optimizer["step"] = int64_t(-3); }, "/optimizer"},
      {"steps x batch overflow",
       [](SavedCheckpoint& c) {
         c.trainer["total_steps"] = int64_t(1) << 61;
         c.trainer["step"] = int64_t(1) << 60;
       },
       "overflows"},
      {"rank_state rows differ from world_size",
       [](SavedCheckpoint& c) {
         c.rank_state_rows = 2;
         c.rank_state.resize(8);
       },
       "world_size is 3"},
      {"NaN weight", [](SavedCheckpoint& c) { c.model.params[5] = NAN; }, "non-finite value (nan) at index"},
      {"infinite slot value", [](SavedCheckpoint& c) { c.slots[1].second[2] = -INFINITY; }, "/v holds a non-finite"},
      {"nine slots",
       [](SavedCheckpoint& c) {
         for (int i = 0; i < 7; ++i) c.slots.emplace_back("s" + std::to_string(i), c.slots[0].second);
       },
       "9 slots, at most 8"},
      {"dropout 1", [](SavedCheckpoint& c) { c.model.spec.dropout = 1.0f; }, "dropout 1 outside"},
  };
  for (const Case& k : cases) {
    CAPTURE(k.name);
    SavedCheckpoint c = sample_checkpoint();
    k.change(c);
    write_checkpoint_file(path, c);  // valid CRCs: the crafted value is what is checked
    CHECK_THROWS_WITH_AS(read_checkpoint_file(path), doctest::Contains(k.message), UsageError);
  }
  // The model part alone is refused for a non-finite weight too.
  SavedModel m = sample_model();
  m.params[0] = INFINITY;
  write_model_file(path, m);
  CHECK_THROWS_WITH_AS(read_model_file(path), doctest::Contains("/model/dense_1/kernel holds a non-finite value (inf)"),
                       UsageError);
}

TEST_CASE("model file: sizes a crafted file declares are checked before allocating") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  write_checkpoint_file(path, sample_checkpoint());
  SUBCASE("rank_state declared 2^62 x 4") {
    declare_unwritten(path, "trainer/rank_state", {hsize_t(1) << 62, 4}, H5T_STD_I64LE);
    CHECK_THROWS_WITH_AS(read_checkpoint_file(path), doctest::Contains("more than 2^62 bytes"), UsageError);
  }
  SUBCASE("rank_state declared 3 x 2^40, never written") {
    declare_unwritten(path, "trainer/rank_state", {3, hsize_t(1) << 40}, H5T_STD_I64LE);
    CHECK_THROWS_WITH_AS(read_checkpoint_file(path), doctest::Contains("but the file stores 0 bytes"), UsageError);
  }
  SUBCASE("a kernel declared larger than its storage") {
    set_attr(path, "/model", "architecture", std::string("24-4000000-3"));
    declare_unwritten(path, "model/dense_0/kernel", {24, 4000000}, H5T_IEEE_F32LE);
    CHECK_THROWS_WITH_AS(read_model_file(path), doctest::Contains("can hold"), UsageError);
  }
  SUBCASE("an architecture whose tensors are missing") {
    set_attr(path, "/model", "architecture", std::string("24-4000000-100-3"));
    CHECK_THROWS_WITH_AS(read_model_file(path), doctest::Contains("24-4000000-100-3 would take 500000403 floats"),
                         UsageError);
  }
  SUBCASE("an architecture of 2^48 parameters") {
    set_attr(path, "/model", "architecture", std::string("24-16777216-16777216-3"));
    CHECK_THROWS_WITH_AS(read_model_file(path), doctest::Contains("more than 4294967296 parameters"), UsageError);
  }
  SUBCASE("an architecture of 300 hidden layers") {
    std::string arch = "24";
    for (int i = 0; i < 300; ++i) arch += "-4";
    set_attr(path, "/model", "architecture", arch + "-3");
    CHECK_THROWS_WITH_AS(read_model_file(path), doctest::Contains("more than 256 hidden layers"), UsageError);
  }
  SUBCASE("rank_state of 3 dimensions") {
    declare_unwritten(path, "trainer/rank_state", {3, 4, 0}, H5T_STD_I64LE);  // no values: nothing to store
    CHECK_THROWS_WITH_AS(read_checkpoint_file(path), doctest::Contains("must be 2-D"), UsageError);
  }
  SUBCASE("/config as an array of strings") {
    replace_with_text(path, "config", {1000}, 8);
    CHECK_THROWS_WITH_AS(read_model_file(path), doctest::Contains("'config' is not a single text value"), UsageError);
  }
  SUBCASE("a kernel of text") {
    replace_with_text(path, "model/dense_0/kernel", {24, 16}, 4);
    CHECK_THROWS_WITH_AS(read_model_file(path), doctest::Contains("holds text, not numbers"), UsageError);
  }
}
