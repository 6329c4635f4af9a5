// libFuzzer target: the model and checkpoint reader (io/model_file.hpp), as
// `inspect`, `evaluate`, `predict`, train.init_from and --resume use it.
//
// The input is written to a scratch file and read with model_file_format,
// read_model_file and read_checkpoint_file. What was read is then used the
// way the commands use it: the layout and every tensor inspect lists, the
// rank_state table it prints, an Mlp holding the weights with one forward
// pass (evaluate, predict). Oracles:
//   - whatever was read is consistent: parameters and slots as long as the
//     layout, finite; rank_state rows x cols values, one row per rank;
//   - the format and the two readers agree (a checkpoint reads as a model;
//     model_file_format names what read_checkpoint_file accepts);
//   - what was read, written back with write_model_file / write_checkpoint_file,
//     reads back the same.
// ringtrain::Error is the expected outcome of bad input. Anything else (another
// exception, a crash, a sanitizer report, a huge allocation, a hang) is a
// finding.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ringtrain/io/model_file.hpp"
#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/util/error.hpp"
#include "scratch_dir.hpp"

using namespace ringtrain;

namespace {

const std::string& scratch_dir() { return fuzz::scratch_dir("model"); }

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_model: %s\n", what.c_str());
  std::abort();
}

void write_file(const std::string& path, const uint8_t* data, std::size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) finding("cannot write " + path);
}

// Attribute maps equal value by value, doubles bit for bit (NaN included).
bool same_attrs(const Attrs& a, const Attrs& b) {
  if (a.size() != b.size()) return false;
  for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
    if (i->first != j->first || i->second.index() != j->second.index()) return false;
    if (const auto* d = std::get_if<double>(&i->second)) {
      if (std::memcmp(d, &std::get<double>(j->second), sizeof *d) != 0) return false;
    } else if (i->second != j->second) {
      return false;
    }
  }
  return true;
}

bool same_model(const SavedModel& a, const SavedModel& b) {
  return a.spec.architecture() == b.spec.architecture() && a.spec.activation == b.spec.activation &&
         std::memcmp(&a.spec.dropout, &b.spec.dropout, sizeof(float)) == 0 && a.task == b.task &&
         a.params.size() == b.params.size() &&
         std::memcmp(a.params.data(), b.params.data(), a.params.size() * sizeof(float)) == 0 &&
         same_attrs(a.metrics, b.metrics) && a.config == b.config;
}

// What inspect, evaluate and predict do with a model that was read.
void use_model(const SavedModel& m) {
  const ParamLayout layout = mlp_layout(m.spec);
  if (m.params.size() != layout.total()) finding("parameters and layout differ in length");
  for (float v : m.params)
    if (!std::isfinite(v)) finding("a non-finite parameter was loaded");
  std::size_t sum = 0;
  for (std::size_t l = 0; l + 1 < m.spec.sizes.size(); ++l)
    for (const char* p : {"kernel", "bias"}) {
      const TensorSpec& t = layout.find(str_cat("dense_", l, "/", p));
      if (t.offset + t.size() > layout.total()) finding("a tensor past the end of the layout");
      sum += t.size();
    }
  if (sum != layout.total()) finding("tensor sizes do not add up to the layout");
  // evaluate / predict: an Mlp holding the weights, one row through it.
  // (A model that passed the reader fits its file, so this stays small.)
  Mlp mlp(m.spec, 1);
  std::copy(m.params.begin(), m.params.end(), mlp.params());
  const std::vector<float> row(std::size_t(mlp.input_size()), 0.5f);
  const ConstMatMap out = mlp.forward(row.data(), 1, false);
  if (out.cols() != mlp.output_size()) finding("forward gave the wrong width");
}

void use_checkpoint(const SavedCheckpoint& c) {
  const std::size_t n = mlp_layout(c.model.spec).total();
  for (const auto& [name, values] : c.slots) {
    if (values.size() != n) finding("slot " + name + " differs in length from the parameters");
    for (float v : values)
      if (!std::isfinite(v)) finding("a non-finite optimizer value was loaded");
  }
  if (c.rank_state_rows < 0 || c.rank_state_cols < 0 ||
      c.rank_state.size() != std::size_t(c.rank_state_rows) * std::size_t(c.rank_state_cols))
    finding("rank_state size differs from its rows x cols");
  // inspect's table, row by row
  std::size_t seen = 0;
  for (int64_t r = 0; r < c.rank_state_rows; ++r)
    seen += std::vector<int64_t>(c.rank_state.begin() + r * c.rank_state_cols,
                                 c.rank_state.begin() + (r + 1) * c.rank_state_cols).size();
  if (seen != c.rank_state.size()) finding("rank_state rows do not cover the table");
  const auto world = c.trainer.find("world_size");
  if (c.rank_state_rows > 0 &&
      (world == c.trainer.end() || std::get_if<int64_t>(&world->second) == nullptr ||
       std::get<int64_t>(world->second) != c.rank_state_rows))
    finding("rank_state rows differ from world_size");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string in = scratch_dir() + "/in.h5", out = scratch_dir() + "/out.h5";
  write_file(in, data, size);
  std::string format;
  try {
    format = model_file_format(in);
  } catch (const Error&) {
  }
  bool model_ok = false;
  SavedModel m;
  try {
    m = read_model_file(in);
    model_ok = true;
  } catch (const Error&) {
  }
  bool ckpt_ok = false;
  SavedCheckpoint c;
  try {
    c = read_checkpoint_file(in);
    ckpt_ok = true;
  } catch (const Error&) {
  }
  if ((model_ok || ckpt_ok) && format.empty()) finding("a file model_file_format refuses was read");
  if (ckpt_ok && format != kCheckpointFormat) finding("a checkpoint whose format is " + format);
  if (ckpt_ok && !model_ok) finding("a checkpoint that does not read as a model");
  if (ckpt_ok && !same_model(c.model, m)) finding("the checkpoint's model differs from read_model_file's");
  if (model_ok) {
    use_model(m);
    bool written = true;
    try {
      write_model_file(out, m);
    } catch (const Error&) {
      written = false;  // a name HDF5 cannot create again; not the reader's concern
    }
    if (written && !same_model(read_model_file(out), m)) finding("a model read back differently");
  }
  if (ckpt_ok) {
    use_checkpoint(c);
    bool written = true;
    try {
      write_checkpoint_file(out, c);
    } catch (const Error&) {
      written = false;
    }
    if (written) {
      const SavedCheckpoint back = read_checkpoint_file(out);
      if (!same_model(back.model, c.model) || back.optimizer_name != c.optimizer_name ||
          !same_attrs(back.optimizer, c.optimizer) || back.slots != c.slots || !same_attrs(back.trainer, c.trainer) ||
          !same_attrs(back.tracker, c.tracker) || back.rank_state != c.rank_state)
        finding("a checkpoint read back differently");
    }
  }
  std::remove(out.c_str());
  return 0;
}
