// HDF5 and IDX data readers (see data_reader.hpp).
#include "ringtrain/io/data_reader.hpp"

#include <algorithm>
#include <numeric>

#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/io/hdf5.hpp"
#include "ringtrain/io/idx.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace {

bool is_hdf5(const std::string& path) {
  h5_quiet();
  return !looks_like_idx(path) && H5Fis_hdf5(path.c_str()) > 0;
}

// ---- IDX -------------------------------------------------------------------

SourceInfo probe_idx(const DataSource& src, int64_t max_rows) {
  if (src.task != Task::kClassification)
    throw UsageError(str_cat(src.path, ": IDX files hold class labels; task=regression needs HDF5"));
  const IdxHeader images = read_idx_header(src.path);
  const std::string labels_path = idx_labels_path(src.path);
  const IdxHeader lh = read_idx_header(labels_path);
  if (lh.dims.size() != 1 || lh.rows() != images.rows())
    throw UsageError(str_cat(labels_path, ": holds ", lh.rows(), " labels (", lh.dims.size(),
                             "-D) for ", images.rows(), " images in ", src.path));
  // Check the labels file holds all the rows its header promises before
  // allocating a row list of that length.
  read_idx_rows(labels_path, {});
  if (images.rows() == 0) throw UsageError(str_cat(src.path, ": holds no images"));
  std::vector<int64_t> first(max_rows > 0 ? std::min(images.rows(), max_rows) : images.rows());
  std::iota(first.begin(), first.end(), int64_t{0});
  const std::vector<uint8_t> labels = read_idx_rows(labels_path, first);
  return {images.rows(), images.row_size(), *std::max_element(labels.begin(), labels.end()) + 1};
}

Dataset read_idx(const DataSource& src, const std::vector<int64_t>& rows, Dataset d) {
  const std::vector<uint8_t> pixels = read_idx_rows(src.path, rows);
  const std::vector<uint8_t> labels = read_idx_rows(idx_labels_path(src.path), rows);
  d.x.resize(pixels.size());
  for (std::size_t i = 0; i < pixels.size(); ++i) d.x[i] = pixels[i] * (1.0f / 255.0f);
  d.labels.assign(labels.begin(), labels.end());
  return d;
}

// ---- HDF5 ------------------------------------------------------------------

std::vector<hsize_t> checked_shape(hid_t ds, const DataSource& src, const std::string& name,
                                   std::size_t min_rank, std::size_t max_rank) {
  const auto shape = h5_dataset_shape(ds);
  if (shape.size() < min_rank || shape.size() > max_rank)
    throw UsageError(str_cat(src.path, ": dataset '", name, "' has ", shape.size(),
                             " dimensions, expected ", min_rank == max_rank ? "" : "1 or ", max_rank));
  return shape;
}

SourceInfo probe_hdf5(const DataSource& src, int64_t max_rows) {
  H5Handle file = h5_open_read(src.path);
  H5Handle x = h5_open_dataset(file, src.x_name, src.path);
  H5Handle y = h5_open_dataset(file, src.y_name, src.path);
  const auto xs = checked_shape(x, src, src.x_name, 2, 2);
  const auto ys = checked_shape(y, src, src.y_name, 1, 2);
  // Both checked against the bytes the file stores (h5_dataset_shape), so
  // every dimension is below 2^62 unless another one is 0.
  if (xs[0] == 0 || xs[1] == 0) throw UsageError(str_cat(src.path, ": dataset '", src.x_name, "' is empty"));
  SourceInfo info{int64_t(xs[0]), int64_t(xs[1]), 0};
  if (ys[0] != xs[0])
    throw UsageError(str_cat(src.path, ": '", src.y_name, "' has ", ys[0], " rows but '",
                             src.x_name, "' has ", info.rows));
  if (ys.size() == 2 && ys[1] == 0) throw UsageError(str_cat(src.path, ": dataset '", src.y_name, "' is empty"));
  if (src.task == Task::kClassification) {
    if (ys.size() != 1 || !h5_is_integer(y))
      throw UsageError(str_cat(src.path, ": classification needs integer labels '", src.y_name,
                               "' of shape [N]"));
    // Only the rows the run uses: a file may hold far more than max_rows.
    const int64_t n = max_rows > 0 ? std::min(info.rows, max_rows) : info.rows;
    std::vector<int32_t> labels(std::size_t(n), 0);
    H5Handle fspace = h5_check(H5Dget_space(y), H5Sclose, str_cat(src.path, ": dataspace of '", src.y_name, "'"));
    const hsize_t start = 0, count = hsize_t(n);
    h5_check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, nullptr, &count, nullptr),
             str_cat(src.path, ": selecting labels of '", src.y_name, "'"));
    H5Handle mspace = h5_check(H5Screate_simple(1, &count, nullptr), H5Sclose, "H5Screate_simple");
    if (!h5_read(y, H5T_NATIVE_INT32, mspace, fspace, labels.data(), str_cat(src.path, ": a label of '", src.y_name, "'")))
      throw UsageError(str_cat(src.path, ": cannot read '", src.y_name, "' (checksum mismatch or corrupt file)"));
    const auto [lo, hi] = std::minmax_element(labels.begin(), labels.end());
    if (*lo < 0)
      throw UsageError(str_cat(src.path, ": label ", *lo, " out of range (labels must be >= 0) in row ",
                               lo - labels.begin()));
    info.outputs = int64_t(*hi) + 1;
  } else {
    info.outputs = ys.size() == 2 ? int64_t(ys[1]) : 1;
  }
  return info;
}

// Reads `rows` of a 1-D or 2-D dataset into out (row-major, row_size per row).
template <typename T>
void read_hdf5_rows(hid_t ds, hid_t mem_type, const std::vector<int64_t>& rows, int64_t row_size,
                    T* out, const std::string& context) {
  const auto shape = h5_dataset_shape(ds);
  H5Handle fspace = h5_check(H5Dget_space(ds), H5Sclose, "H5Dget_space");
  const std::size_t rank = shape.size();
  auto read = [&](hsize_t start, hsize_t stride, hsize_t count, T* dst) {
    hsize_t off[2] = {start, 0}, str[2] = {stride, 1}, cnt[2] = {count, rank == 2 ? shape[1] : 1};
    h5_check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, str, cnt, nullptr), context);
    H5Handle mspace = h5_check(H5Screate_simple(int(rank), cnt, nullptr), H5Sclose, context);
    // A failed read of a file that opened is bad input (a checksum
    // mismatch, a corrupt chunk), not a failure of ringtrain: exit code 2.
    if (!h5_read(ds, mem_type, mspace, fspace, dst, context))
      throw UsageError(context + ": read failed (checksum mismatch or corrupt file)");
  };
  // Cut the (ascending) row list into arithmetic runs and read each run with
  // one strided hyperslab: a rank's shard {r, r+p, ...} is a single run; with
  // a validation split held out, runs break only where a held-out row falls.
  for (std::size_t i = 0; i < rows.size();) {
    const int64_t stride = i + 1 < rows.size() ? rows[i + 1] - rows[i] : 1;
    std::size_t j = i + 1;
    while (j < rows.size() && rows[j] - rows[j - 1] == stride) ++j;
    read(hsize_t(rows[i]), hsize_t(stride), j - i, out + i * std::size_t(row_size));
    i = j;
  }
}

Dataset read_hdf5(const DataSource& src, const SourceInfo& info, const std::vector<int64_t>& rows,
                  Dataset d) {
  H5Handle file = h5_open_read(src.path);
  H5Handle x = h5_open_dataset(file, src.x_name, src.path);
  H5Handle y = h5_open_dataset(file, src.y_name, src.path);
  d.x.resize(rows.size() * std::size_t(info.features));
  read_hdf5_rows(x, H5T_NATIVE_FLOAT, rows, info.features, d.x.data(),
                 str_cat(src.path, ": reading rows of '", src.x_name, "'"));
  const std::string ctx = str_cat(src.path, ": reading rows of '", src.y_name, "'");
  if (src.task == Task::kClassification) {
    d.labels.resize(rows.size());
    read_hdf5_rows(y, H5T_NATIVE_INT32, rows, 1, d.labels.data(), ctx);
  } else {
    d.y.resize(rows.size() * std::size_t(info.outputs));
    read_hdf5_rows(y, H5T_NATIVE_FLOAT, rows, info.outputs, d.y.data(), ctx);
  }
  return d;
}

}  // namespace

SourceInfo probe_source(const DataSource& src, int64_t max_rows) {
  return is_hdf5(src.path) ? probe_hdf5(src, max_rows) : probe_idx(src, max_rows);
}

Dataset read_source_rows(const DataSource& src, const SourceInfo& info,
                         const std::vector<int64_t>& rows, int64_t outputs) {
  Dataset d;
  d.task = src.task;
  d.rows = int64_t(rows.size());
  d.features = info.features;
  d.outputs = outputs;
  d.source = src.path;
  d.global_rows = rows;
  d = is_hdf5(src.path) ? read_hdf5(src, info, rows, std::move(d)) : read_idx(src, rows, std::move(d));
  validate_dataset(d);
  return d;
}

void write_hdf5_dataset(const std::string& path, const Dataset& d) {
  h5_quiet();
  AtomicFile out(path);
  {
    H5Handle file = h5_check(H5Fcreate(out.tmp_path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                             H5Fclose, str_cat(out.tmp_path(), ": cannot create file"));
    h5_write_floats(file, "X", {hsize_t(d.rows), hsize_t(d.features)}, d.x.data());
    if (d.task == Task::kClassification)
      h5_write_ints(file, "y", {hsize_t(d.rows)}, d.labels.data());
    else
      h5_write_floats(file, "y", {hsize_t(d.rows), hsize_t(d.outputs)}, d.y.data());
    h5_write_string_attr(file, "source", d.source);
    h5_check(H5Fflush(file, H5F_SCOPE_GLOBAL), "H5Fflush");
  }
  out.commit();
}

int64_t convert_idx_to_hdf5(const std::string& images_path, const std::string& out_path) {
  DataSource src{images_path};
  const SourceInfo info = probe_idx(src, 0);
  std::vector<int64_t> all(info.rows);
  std::iota(all.begin(), all.end(), int64_t{0});
  const Dataset d = read_source_rows(src, info, all, info.outputs);
  write_hdf5_dataset(out_path, d);
  return d.rows;
}

}  // namespace ringtrain
