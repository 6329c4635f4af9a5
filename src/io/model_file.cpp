// Model and checkpoint files (see model_file.hpp).
#include "ringtrain/io/model_file.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
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

// Reads a float dataset of exactly `shape` into `out`; UsageError otherwise.
void read_floats(hid_t loc, const std::string& name, const std::vector<std::size_t>& shape, float* out,
                 const std::string& context) {
  H5Handle ds = h5_open_dataset(loc, name, context);
  const auto dims = h5_dataset_shape(ds);
  if (std::vector<std::size_t>(dims.begin(), dims.end()) != shape) {
    std::string got, want;
    for (auto d : dims) got += (got.empty() ? "" : "x") + std::to_string(d);
    for (auto d : shape) want += (want.empty() ? "" : "x") + std::to_string(d);
    throw UsageError(str_cat(context, ": '", name, "' has shape [", got, "], the model needs [", want, "]"));
  }
  if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    throw UsageError(str_cat(context, ": cannot read '", name, "': checksum mismatch or truncated file"));
}

void read_tensors(hid_t file, const std::string& root, const ParamLayout& layout, float* flat,
                  const std::string& leaf, const std::string& path) {
  H5Handle top = h5_open_group(file, root, path);
  for (const TensorSpec& t : layout.tensors()) {
    const auto [layer, param] = split_name(t.name);
    const std::string where = str_cat(path, ": /", root, "/", layer);
    H5Handle g = h5_open_group(top, layer, str_cat(path, ": /", root));
    if (leaf.empty()) {
      read_floats(g, param, t.shape, flat + t.offset, where);
    } else {
      H5Handle p = h5_open_group(g, param, where);
      read_floats(p, leaf, t.shape, flat + t.offset, str_cat(where, "/", param));
    }
  }
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
  const ParamLayout layout = mlp_layout(m.spec);
  m.params.assign(layout.total(), 0.0f);
  read_tensors(file, "model", layout, m.params.data(), "", path);
  if (h5_exists(file, "metrics")) {
    H5Handle metrics = h5_open_group(file, "metrics", path);
    m.metrics = h5_read_attrs(metrics, path + ": /metrics");
  }
  if (h5_exists(file, "config")) m.config = h5_read_string_dataset(file, "config", path);
  verify_crc(m.root, kModelCrc, model_crc(m, m.root), path, "model");
  return m;
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
    H5Handle file = h5_open_read(path);
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
    H5Handle file = h5_open_read(path);
    return read_model_parts(file, path);
  });
}

SavedCheckpoint read_checkpoint_file(const std::string& path) {
  return reading(path, [&] {
    H5Handle file = h5_open_read(path);
    SavedCheckpoint c;
    c.model = read_model_parts(file, path);
    if (text_attr(c.model.root, "format", path) != kCheckpointFormat)
      throw UsageError(str_cat(path, ": a model file, not a checkpoint (it holds no optimizer or trainer state)"));
    const ParamLayout layout = mlp_layout(c.model.spec);
    H5Handle opt = h5_open_group(file, "optimizer", path);
    c.optimizer = h5_read_attrs(opt, path + ": /optimizer");
    c.optimizer_name = text_attr(c.optimizer, "name", path + ": /optimizer");
    c.optimizer.erase("name");
    for (const std::string& slot : split_names(text_attr(c.optimizer, "slots", path + ": /optimizer"))) {
      c.slots.emplace_back(slot, std::vector<float>(layout.total(), 0.0f));
      read_tensors(file, "optimizer", layout, c.slots.back().second.data(), slot, path);
    }
    c.optimizer.erase("slots");
    H5Handle trainer = h5_open_group(file, "trainer", path);
    c.trainer = h5_read_attrs(trainer, path + ": /trainer");
    if (h5_exists(trainer, "rank_state")) {
      H5Handle ds = h5_open_dataset(trainer, "rank_state", path + ": /trainer");
      const auto dims = h5_dataset_shape(ds);
      if (dims.size() != 2) throw UsageError(str_cat(path, ": /trainer/rank_state must be 2-D"));
      c.rank_state_rows = int64_t(dims[0]);
      c.rank_state_cols = int64_t(dims[1]);
      c.rank_state.assign(dims[0] * dims[1], 0);
      if (!c.rank_state.empty() &&
          H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, c.rank_state.data()) < 0)
        throw UsageError(str_cat(path, ": cannot read /trainer/rank_state (corrupt file?)"));
    }
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
