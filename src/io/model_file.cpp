// Model and checkpoint files (see model_file.hpp).
#include "ringtrain/io/model_file.hpp"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>

#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/util/error.hpp"
#include "ringtrain/util/timer.hpp"

namespace ringtrain {

namespace {

// "dense_0/kernel" -> {"dense_0", "kernel"}
std::pair<std::string, std::string> split_name(const std::string& tensor) {
  const auto slash = tensor.find('/');
  return {tensor.substr(0, slash), tensor.substr(slash + 1)};
}

// CRC-32 over a canonical serialization of what a file holds, written as a
// root attribute and verified after every read. HDF5's own checksums cover
// the metadata and every chunk; this one covers the whole decoded content,
// so damage that HDF5 reads back without an error still cannot pass.
class ContentCrc {
 public:
  void bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const Bytef*>(p);
    while (n > 0) {  // zlib takes uInt lengths
      const uInt piece = uInt(std::min<std::size_t>(n, 1u << 30));
      crc_ = crc32(crc_, b, piece);
      b += piece;
      n -= piece;
    }
  }
  void i64(int64_t v) { bytes(&v, sizeof v); }
  void text(const std::string& s) {
    i64(int64_t(s.size()));
    bytes(s.data(), s.size());
  }
  void floats(const std::vector<float>& v) {
    i64(int64_t(v.size()));
    bytes(v.data(), v.size() * sizeof(float));
  }
  void attrs(const Attrs& a, const char* skip = nullptr) {
    for (const auto& [key, value] : a) {  // std::map: sorted by name
      if (skip && key.rfind(skip, 0) == 0) continue;
      text(key);
      i64(int64_t(value.index()));
      if (const auto* i = std::get_if<int64_t>(&value)) i64(*i);
      else if (const auto* d = std::get_if<double>(&value)) bytes(d, sizeof *d);
      else text(std::get<std::string>(value));
    }
    i64(-1);
  }
  int64_t value() const { return int64_t(uint32_t(crc_)); }

 private:
  uLong crc_ = crc32(0L, Z_NULL, 0);
};

// Optimizers keep at most two slots per parameter (Adam's m and v); room
// for more, but not for a crafted list.
constexpr std::size_t kMaxSlots = 8;

constexpr const char* kCrcPrefix = "crc32_";  // root attributes the CRCs themselves live in
constexpr const char* kModelCrc = "crc32_model";
constexpr const char* kStateCrc = "crc32_state";

int64_t model_crc(const SavedModel& m, const Attrs& root) {
  ContentCrc c;
  c.attrs(root, kCrcPrefix);
  c.text(m.spec.architecture());
  c.text(activation_name(m.spec.activation));
  c.text(task_name(m.task));
  c.bytes(&m.spec.dropout, sizeof m.spec.dropout);
  c.floats(m.params);
  c.attrs(m.metrics);
  c.text(m.config);
  return c.value();
}

int64_t state_crc(const SavedCheckpoint& k) {
  ContentCrc c;
  c.text(k.optimizer_name);
  c.attrs(k.optimizer);
  for (const auto& [slot, values] : k.slots) {
    c.text(slot);
    c.floats(values);
  }
  c.attrs(k.trainer);
  c.i64(k.rank_state_rows);
  c.i64(k.rank_state_cols);
  c.bytes(k.rank_state.data(), k.rank_state.size() * sizeof(int64_t));
  c.attrs(k.tracker);
  return c.value();
}

std::string join_names(const std::vector<std::pair<std::string, std::vector<float>>>& slots) {
  std::string out;
  for (const auto& [name, values] : slots) out += (out.empty() ? "" : ",") + name;
  return out;
}

std::vector<std::string> split_names(const std::string& joined) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < joined.size()) {
    const std::size_t comma = std::min(joined.find(',', start), joined.size());
    out.push_back(joined.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

std::vector<hsize_t> dims_of(const TensorSpec& t) { return {t.shape.begin(), t.shape.end()}; }

// Writes the flat buffer `flat` as one dataset per tensor: <root>/<layer>/<param>[/<leaf>].
void write_tensors(hid_t file, const std::string& root, const ParamLayout& layout, const float* flat,
                   const std::string& leaf) {
  H5Handle top = h5_exists(file, root) ? h5_open_group(file, root, root) : h5_create_group(file, root);
  for (const TensorSpec& t : layout.tensors()) {
    const auto [layer, param] = split_name(t.name);
    H5Handle g = h5_exists(top, layer) ? h5_open_group(top, layer, layer) : h5_create_group(top, layer);
    if (leaf.empty()) {
      h5_write_floats(g, param, dims_of(t), flat + t.offset);
    } else {
      H5Handle p = h5_exists(g, param) ? h5_open_group(g, param, param) : h5_create_group(g, param);
      h5_write_floats(p, leaf, dims_of(t), flat + t.offset);
    }
  }
}

void write_model_parts(hid_t file, const SavedModel& m, const char* format) {
  Attrs root{{"format", std::string(format)},
             {"format_version", kFormatVersion},
             {"created", utc_timestamp()},
             {"ringtrain_version", std::string(RINGTRAIN_VERSION)}};
  root[kModelCrc] = model_crc(m, root);
  h5_write_attrs(file, root);
  const ParamLayout layout = mlp_layout(m.spec);
  RT_CHECK(m.params.size() == layout.total(), "model params ", m.params.size(), " vs layout ", layout.total());
  write_tensors(file, "model", layout, m.params.data(), "");
  H5Handle model = h5_open_group(file, "model", "model");
  h5_write_attrs(model, Attrs{{"architecture", m.spec.architecture()},
                              {"activation", std::string(activation_name(m.spec.activation))},
                              {"task", std::string(task_name(m.task))},
                              {"dropout", double(m.spec.dropout)}});
  H5Handle metrics = h5_create_group(file, "metrics");
  h5_write_attrs(metrics, m.metrics);
  h5_write_string_dataset(file, "config", m.config);
}

template <typename Fill>
void write_atomically(const std::string& path, Fill fill) {
  AtomicFile out(path);
  {
    H5Handle file = h5_create_file(out.tmp_path());
    fill(file.get());
    h5_check(H5Fflush(file, H5F_SCOPE_GLOBAL), "flushing " + out.tmp_path());
  }  // closed before the rename
  out.commit();
}

// "dense_0/kernel" + leaf "m" -> the dataset <root>/dense_0/kernel/m.
std::string tensor_path(const std::string& root, const TensorSpec& t, const std::string& leaf) {
  return str_cat("/", root, "/", t.name, leaf.empty() ? "" : "/", leaf);
}

// Opens the float dataset of tensor `t` and checks that it has exactly the
// tensor's shape (h5_dataset_shape also checks it against the bytes the file
// stores); nothing is allocated yet.
H5Handle open_tensor(hid_t top, const std::string& root, const TensorSpec& t, const std::string& leaf,
                     const std::string& path) {
  const auto [layer, param] = split_name(t.name);
  H5Handle g = h5_open_group(top, layer, str_cat(path, ": /", root));
  const std::string where = str_cat(path, ": /", root, "/", layer);
  H5Handle p;
  if (!leaf.empty()) p = h5_open_group(g, param, where);
  const std::string name = leaf.empty() ? param : leaf;
  const std::string context = leaf.empty() ? where : str_cat(where, "/", param);
  H5Handle ds = h5_open_dataset(leaf.empty() ? g.get() : p.get(), name, context);
  const auto dims = h5_dataset_shape(ds);
  if (std::vector<std::size_t>(dims.begin(), dims.end()) != t.shape) {
    std::string got, want;
    for (auto d : dims) got += (got.empty() ? "" : "x") + std::to_string(d);
    for (auto d : t.shape) want += (want.empty() ? "" : "x") + std::to_string(d);
    throw UsageError(str_cat(context, ": '", name, "' has shape [", got, "], the model needs [", want, "]"));
  }
  return ds;
}

// Every tensor of `layout` under <root>/<layer>/<param>[/<leaf>] as one flat
// buffer. All datasets are opened and their shapes checked first, so a
// crafted architecture with missing or undersized tensors is refused before
// its parameter buffer is allocated. Non-finite values are refused: a NaN
// weight would only show up later as a NaN loss.
std::vector<float> read_tensors(hid_t file, const std::string& root, const ParamLayout& layout,
                                const std::string& leaf, const std::string& path) {
  H5Handle top = h5_open_group(file, root, path);
  std::vector<H5Handle> datasets;
  for (const TensorSpec& t : layout.tensors()) datasets.push_back(open_tensor(top, root, t, leaf, path));
  std::vector<float> flat(layout.total(), 0.0f);
  for (std::size_t i = 0; i < datasets.size(); ++i) {
    const TensorSpec& t = layout.tensors()[i];
    const std::string name = tensor_path(root, t, leaf);
    if (!h5_read(datasets[i], H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, flat.data() + t.offset, str_cat(path, ": ", name)))
      throw UsageError(str_cat(path, ": cannot read '", name, "': checksum mismatch or truncated file"));
    const auto begin = flat.begin() + std::ptrdiff_t(t.offset);
    const auto bad = std::find_if(begin, begin + std::ptrdiff_t(t.size()), [](float v) { return !std::isfinite(v); });
    if (bad != begin + std::ptrdiff_t(t.size()))
      throw UsageError(str_cat(path, ": ", name, " holds a non-finite value (", *bad, ") at index ", bad - begin,
                               ": damaged or diverged, not loaded"));
  }
  return flat;
}

// Refuses `floats` values more than the file could hold (compressed at the
// most h5_dataset_shape allows); each dataset is bounded by its own storage
// too, this bounds their sum.
void check_fits_file(std::size_t floats, const std::string& path, const std::string& what) {
  struct stat st {};
  const uint64_t size = ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
  uint64_t limit = 0;
  if (__builtin_mul_overflow(size, uint64_t(kMaxCompression), &limit)) limit = ~uint64_t(0);
  if (floats > limit / sizeof(float))
    throw UsageError(str_cat(path, ": ", what, " would take ", floats, " floats, more than this ", size,
                             "-byte file can hold (crafted or truncated)"));
}

std::string text_attr(const Attrs& a, const std::string& key, const std::string& context) {
  const auto it = a.find(key);
  if (it == a.end() || !std::holds_alternative<std::string>(it->second))
    throw UsageError(str_cat(context, ": missing text attribute '", key, "'"));
  return std::get<std::string>(it->second);
}

void verify_crc(const Attrs& root, const char* key, int64_t computed, const std::string& path, const char* part) {
  const auto it = root.find(key);
  if (it == root.end() || !std::holds_alternative<int64_t>(it->second))
    throw UsageError(str_cat(path, ": no ", part, " checksum (attribute '", key, "'): damaged or not written by ringtrain"));
  if (std::get<int64_t>(it->second) != computed)
    throw UsageError(str_cat(path, ": ", part, " checksum mismatch (damaged file)"));
}

SavedModel read_model_parts(hid_t file, const std::string& path) {
  SavedModel m;
  m.root = h5_read_attrs(file, path);
  const std::string format = text_attr(m.root, "format", path);
  if (format != kModelFormat && format != kCheckpointFormat)
    throw UsageError(str_cat(path, ": not a ringtrain model or checkpoint (format '", format, "')"));
  H5Handle model = h5_open_group(file, "model", path);
  const Attrs attrs = h5_read_attrs(model, path + ": /model");
  m.spec.sizes = parse_architecture(text_attr(attrs, "architecture", path + ": /model"), path + ": /model");
  m.spec.activation = parse_activation(text_attr(attrs, "activation", path + ": /model"));
  m.task = parse_task(text_attr(attrs, "task", path + ": /model"));
  if (const auto it = attrs.find("dropout"); it != attrs.end() && std::holds_alternative<double>(it->second))
    m.spec.dropout = float(std::get<double>(it->second));
  if (!(m.spec.dropout >= 0.0f && m.spec.dropout < 1.0f))
    throw UsageError(str_cat(path, ": /model dropout ", m.spec.dropout, " outside [0, 1)"));
  // The sizes the architecture implies, against the limits and the file's
  // size, before anything is allocated by them.
  const std::size_t params = validate_mlp_spec(m.spec, path + ": /model architecture");
  check_fits_file(params, path, "the parameters of " + m.spec.architecture());
  const ParamLayout layout = mlp_layout(m.spec);
  m.params = read_tensors(file, "model", layout, "", path);
  if (h5_exists(file, "metrics")) {
    H5Handle metrics = h5_open_group(file, "metrics", path);
    m.metrics = h5_read_attrs(metrics, path + ": /metrics");
  }
  if (h5_exists(file, "config")) m.config = h5_read_string_dataset(file, "config", path);
  verify_crc(m.root, kModelCrc, model_crc(m, m.root), path, "model");
  return m;
}

// Slot names as the writer makes them: a few, distinct, no separators (a
// crafted list of a million names would allocate a million parameter copies).
void check_slot_names(const std::vector<std::string>& slots, const std::string& path) {
  if (slots.size() > kMaxSlots)
    throw UsageError(str_cat(path, ": /optimizer lists ", slots.size(), " slots, at most ", kMaxSlots));
  for (std::size_t i = 0; i < slots.size(); ++i) {
    const std::string& s = slots[i];
    if (s.empty() || s.size() > 64 || s.find('/') != std::string::npos || s == "." || s == ".." ||
        std::find(slots.begin(), slots.begin() + std::ptrdiff_t(i), s) != slots.begin() + std::ptrdiff_t(i))
      throw UsageError(str_cat(path, ": /optimizer has a malformed slot name '", s.substr(0, 64), "'"));
  }
}

// An integer attribute, when present, must lie in [lo, kMaxCount]: counters
// of steps and examples are never negative, and bounded so that products of
// them (examples = steps x batch) cannot overflow.
constexpr int64_t kMaxCount = int64_t(1) << 62;
constexpr int64_t kMaxWorld = int64_t(1) << 20;

int64_t check_counter(const Attrs& a, const std::string& key, int64_t lo, const std::string& context,
                      int64_t hi = kMaxCount) {
  const auto it = a.find(key);
  if (it == a.end()) return lo;
  const auto* v = std::get_if<int64_t>(&it->second);
  if (v == nullptr) throw UsageError(str_cat(context, ": attribute '", key, "' is not an integer"));
  if (*v < lo || *v > hi)
    throw UsageError(str_cat(context, ": attribute '", key, "' = ", *v, " outside [", lo, ", ", hi, "]"));
  return *v;
}

void check_trainer_attrs(const Attrs& t, const std::string& path) {
  const std::string ctx = path + ": /trainer";
  for (const char* key : {"sampler_epoch", "step_in_epoch", "examples_seen", "total_examples",
                          "window_examples", "last_eval_examples", "lr_warmup_steps", "global_batch"})
    check_counter(t, key, 0, ctx);
  const int64_t world = check_counter(t, "world_size", 1, ctx, kMaxWorld);
  const int64_t batch = check_counter(t, "batch_per_rank", 1, ctx, int64_t(1) << 31);
  const int64_t total = check_counter(t, "total_steps", 0, ctx);
  const int64_t step = check_counter(t, "step", 0, ctx, t.count("total_steps") ? total : kMaxCount);
  check_counter(t, "last_eval_step", 0, ctx, step);
  int64_t examples = 0;
  if (__builtin_mul_overflow(step, world, &examples) || __builtin_mul_overflow(examples, batch, &examples) ||
      examples > kMaxCount)
    throw UsageError(str_cat(ctx, ": step ", step, " x ", world, " ranks x batch ", batch, " overflows"));
}

// /trainer/rank_state: one row per rank of the world_size that wrote it.
void read_rank_state(hid_t trainer, SavedCheckpoint& c, const std::string& path) {
  if (!h5_exists(trainer, "rank_state")) return;
  const std::string ctx = path + ": /trainer/rank_state";
  H5Handle ds = h5_open_dataset(trainer, "rank_state", path + ": /trainer");
  const auto dims = h5_dataset_shape(ds);
  if (dims.size() != 2) throw UsageError(str_cat(ctx, " must be 2-D"));
  const int64_t world = check_counter(c.trainer, "world_size", 1, path + ": /trainer", kMaxWorld);
  if (!c.trainer.count("world_size") || dims[0] != hsize_t(world) || dims[1] == 0 || dims[1] > 64)
    throw UsageError(str_cat(ctx, " has ", dims[0], " x ", dims[1], " values; the checkpoint's world_size is ",
                             c.trainer.count("world_size") ? std::to_string(world) : "missing",
                             " (one row per rank, 1 to 64 columns)"));
  c.rank_state_rows = int64_t(dims[0]);
  c.rank_state_cols = int64_t(dims[1]);
  c.rank_state.assign(std::size_t(dims[0] * dims[1]), 0);
  if (!h5_read(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, c.rank_state.data(), ctx))
    throw UsageError(str_cat(path, ": cannot read /trainer/rank_state (corrupt file?)"));
}

// Opens a model or checkpoint file. ringtrain writes them in the HDF5 1.10
// format (superblock version 2 or later), whose metadata carries checksums;
// a file in the old format (superblock 0 or 1) has none, so its object
// headers reach libhdf5's decoder unchecked, and HDF5 1.10.8 crashes on some
// malformed ones (a NULL dereference in H5A__close under H5Aiterate2, found
// by fuzz_model). Such a file is not ours: refused before libhdf5 opens it,
// since opening alone decodes the root group's header (a crafted one made
// libhdf5 ask malloc for 4 GiB, also found by fuzz_model). ringtrain writes no
// user block, so its superblock is at offset 0: the signature, then the
// version byte.
H5Handle open_ours(const std::string& path) {
  static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  h5_require_hdf5(path);  // a regular file (no FIFO opened below), and HDF5
  char head[9] = {};
  std::ifstream in(path, std::ios::binary);
  const bool at_start = in.read(head, sizeof head) && std::memcmp(head, kSignature, sizeof kSignature) == 0;
  if (!at_start) {
    throw UsageError(str_cat(path, ": not a ringtrain model or checkpoint file (its HDF5 superblock is not at the ",
                             "start: ringtrain writes no user block)"));
  }
  if (static_cast<unsigned char>(head[8]) < 2)
    throw UsageError(str_cat(path, ": not a ringtrain model or checkpoint file (HDF5 superblock version ",
                             int(static_cast<unsigned char>(head[8])),
                             ", without metadata checksums: ringtrain writes version 2 or later)"));
  H5Handle file = h5_open_read(path);
  H5F_info2_t info{};
  if (H5Fget_info2(file, &info) < 0 || info.super.version < 2)
    throw UsageError(str_cat(path, ": not a ringtrain model or checkpoint file (HDF5 superblock version ",
                             info.super.version, ", without metadata checksums: ringtrain writes version 2 or later)"));
  return file;
}

// HDF5 calls that fail while reading a damaged file surface as RuntimeError
// from the checked helpers; for a reader they mean "bad file": UsageError.
template <typename Fn>
auto reading(const std::string& path, Fn fn) {
  try {
    return fn();
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    throw UsageError(str_cat(path, ": unreadable (", e.what(), ")"));
  }
}

}  // namespace

void write_model_file(const std::string& path, const SavedModel& model) {
  write_atomically(path, [&](hid_t file) { write_model_parts(file, model, kModelFormat); });
}

void write_checkpoint_file(const std::string& path, const SavedCheckpoint& c) {
  write_atomically(path, [&](hid_t file) {
    write_model_parts(file, c.model, kCheckpointFormat);
    const ParamLayout layout = mlp_layout(c.model.spec);
    H5Handle opt = h5_create_group(file, "optimizer");
    Attrs oattrs = c.optimizer;
    oattrs["name"] = c.optimizer_name;
    oattrs["slots"] = join_names(c.slots);
    h5_write_attrs(opt, oattrs);
    for (const auto& [slot, values] : c.slots) {
      RT_CHECK(!slot.empty() && slot.find(',') == std::string::npos && slot.find('/') == std::string::npos,
               "optimizer slot name '", slot, "'");
      RT_CHECK(values.size() == layout.total(), "optimizer slot ", slot, " size ", values.size());
      write_tensors(file, "optimizer", layout, values.data(), slot);
    }
    H5Handle trainer = h5_create_group(file, "trainer");
    h5_write_attrs(trainer, c.trainer);
    if (c.rank_state_rows > 0) {
      RT_CHECK(c.rank_state.size() == std::size_t(c.rank_state_rows * c.rank_state_cols), "rank_state size");
      h5_write_int64s(trainer, "rank_state", {hsize_t(c.rank_state_rows), hsize_t(c.rank_state_cols)},
                      c.rank_state.data());
    }
    h5_write_attrs(file, Attrs{{kStateCrc, state_crc(c)}});
    H5Handle tracker = h5_create_group(file, "tracker");
    h5_write_attrs(tracker, c.tracker);
  });
}

std::string model_file_format(const std::string& path) {
  return reading(path, [&] {
    H5Handle file = open_ours(path);
    const Attrs root = h5_read_attrs(file, path);
    const auto it = root.find("format");
    const std::string format =
        it != root.end() && std::holds_alternative<std::string>(it->second) ? std::get<std::string>(it->second) : "";
    if (format != kModelFormat && format != kCheckpointFormat)
      throw UsageError(str_cat(path, ": not a ringtrain model or checkpoint file"));
    return format;
  });
}

SavedModel read_model_file(const std::string& path) {
  return reading(path, [&] {
    H5Handle file = open_ours(path);
    return read_model_parts(file, path);
  });
}

SavedCheckpoint read_checkpoint_file(const std::string& path) {
  return reading(path, [&] {
    H5Handle file = open_ours(path);
    SavedCheckpoint c;
    c.model = read_model_parts(file, path);
    if (text_attr(c.model.root, "format", path) != kCheckpointFormat)
      throw UsageError(str_cat(path, ": a model file, not a checkpoint (it holds no optimizer or trainer state)"));
    const ParamLayout layout = mlp_layout(c.model.spec);
    H5Handle opt = h5_open_group(file, "optimizer", path);
    c.optimizer = h5_read_attrs(opt, path + ": /optimizer");
    c.optimizer_name = text_attr(c.optimizer, "name", path + ": /optimizer");
    c.optimizer.erase("name");
    const std::vector<std::string> slots = split_names(text_attr(c.optimizer, "slots", path + ": /optimizer"));
    check_slot_names(slots, path);
    check_fits_file(layout.total() * (slots.size() + 1), path, str_cat(slots.size(), " optimizer slots and the weights"));
    for (const std::string& slot : slots) c.slots.emplace_back(slot, read_tensors(file, "optimizer", layout, slot, path));
    c.optimizer.erase("slots");
    check_counter(c.optimizer, "step", 0, path + ": /optimizer");
    H5Handle trainer = h5_open_group(file, "trainer", path);
    c.trainer = h5_read_attrs(trainer, path + ": /trainer");
    check_trainer_attrs(c.trainer, path);
    read_rank_state(trainer, c, path);
    H5Handle tracker = h5_open_group(file, "tracker", path);
    c.tracker = h5_read_attrs(tracker, path + ": /tracker");
    verify_crc(c.model.root, kStateCrc, state_crc(c), path, "optimizer and trainer state");
    return c;
  });
}

uint32_t file_crc32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RuntimeError(str_cat(path, ": cannot open to compute its checksum"));
  std::vector<char> buf(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    const std::streamsize got = in.gcount();
    if (got > 0) crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), uInt(got));
  }
  if (in.bad()) throw RuntimeError(str_cat(path, ": read error while computing its checksum"));
  return uint32_t(crc);
}

}  // namespace ringtrain
