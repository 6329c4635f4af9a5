// Data readers: HDF5 and IDX sources, strided and irregular row selections,
// validation of shapes, names, labels and values, and `convert`.
#include <doctest/doctest.h>
#include <hdf5.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "idx_writer.hpp"
#include "ringtrain/io/data_reader.hpp"
#include "ringtrain/io/hdf5.hpp"
#include "ringtrain/util/error.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;
using namespace ringtrain::test;

namespace {

Dataset small_classification(int64_t rows, int64_t features, int classes) {
  Dataset d;
  d.rows = rows;
  d.features = features;
  d.outputs = classes;
  d.source = "test";
  for (int64_t i = 0; i < rows * features; ++i) d.x.push_back(float(i));
  for (int64_t i = 0; i < rows; ++i) d.labels.push_back(int32_t(i % classes));
  return d;
}

// Writes a file with arbitrary datasets for the malformed-input cases.
void write_raw(const std::string& path, const std::vector<hsize_t>& xshape, const std::vector<hsize_t>& yshape,
               bool float_labels) {
  h5_quiet();
  H5Handle f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  hsize_t nx = 1, ny = 1;
  for (auto d : xshape) nx *= d;
  for (auto d : yshape) ny *= d;
  std::vector<float> x(nx, 0.5f), yf(ny, 1.0f);
  std::vector<int32_t> yi(ny, 1);
  h5_write_floats(f, "X", xshape, x.data());
  if (float_labels)
    h5_write_floats(f, "y", yshape, yf.data());
  else
    h5_write_ints(f, "y", yshape, yi.data());
}

}  // namespace

TEST_CASE("HDF5 rows: strided (one hyperslab) and irregular selections") {
  TempDir dir;
  const std::string path = dir.file("d.h5");
  write_hdf5_dataset(path, small_classification(11, 3, 4));
  const DataSource src{path};
  const SourceInfo info = probe_source(src);
  CHECK(info.rows == 11);
  CHECK(info.features == 3);
  CHECK(info.outputs == 4);
  for (const std::vector<int64_t>& rows : {std::vector<int64_t>{1, 4, 7, 10}, std::vector<int64_t>{0, 1, 2, 5, 9},
                                           std::vector<int64_t>{6}}) {
    const Dataset d = read_source_rows(src, info, rows, 4);
    REQUIRE(d.rows == int64_t(rows.size()));
    for (std::size_t i = 0; i < rows.size(); ++i) {
      CHECK(d.labels[i] == rows[i] % 4);
      CHECK(d.x[i * 3 + 2] == float(rows[i] * 3 + 2));
      CHECK(d.global_rows[i] == rows[i]);
    }
  }
}

TEST_CASE("HDF5 regression targets, 1-D and 2-D") {
  TempDir dir;
  Dataset d;
  d.task = Task::kRegression;
  d.rows = 4;
  d.features = 2;
  d.outputs = 2;
  d.x = {1, 2, 3, 4, 5, 6, 7, 8};
  d.y = {0.5f, -1, 1.5f, -2, 2.5f, -3, 3.5f, -4};
  write_hdf5_dataset(dir.file("r.h5"), d);
  DataSource src{dir.file("r.h5")};
  src.task = Task::kRegression;
  const SourceInfo info = probe_source(src);
  CHECK(info.outputs == 2);
  const Dataset got = read_source_rows(src, info, {1, 3}, 2);
  CHECK(got.y == std::vector<float>{1.5f, -2, 3.5f, -4});
}

TEST_CASE("malformed HDF5 data files are usage errors naming the problem") {
  TempDir dir;
  const std::string path = dir.file("bad.h5");
  DataSource src{path};
  SUBCASE("missing file") { CHECK_THROWS_WITH_AS(probe_source(src), doctest::Contains("no such file"), UsageError); }
  SUBCASE("not HDF5, not IDX") {
    std::ofstream(path) << "hello world, not data";
    CHECK_THROWS_WITH_AS(probe_source(src), doctest::Contains("bad magic"), UsageError);
  }
  SUBCASE("wrong dataset name") {
    write_hdf5_dataset(path, small_classification(3, 2, 2));
    src.x_name = "features";
    CHECK_THROWS_WITH_AS(probe_source(src), doctest::Contains("no dataset named 'features'"), UsageError);
  }
  SUBCASE("X is 1-D") {
    write_raw(path, {6}, {6}, false);
    CHECK_THROWS_WITH_AS(probe_source(src), doctest::Contains("dimensions"), UsageError);
  }
  SUBCASE("row counts differ") {
    write_raw(path, {6, 2}, {5}, false);
    CHECK_THROWS_WITH_AS(probe_source(src), doctest::Contains("rows but"), UsageError);
  }
  SUBCASE("float labels for classification") {
    write_raw(path, {6, 2}, {6}, true);
    CHECK_THROWS_WITH_AS(probe_source(src), doctest::Contains("integer labels"), UsageError);
  }
  SUBCASE("negative label") {
    Dataset d = small_classification(5, 2, 3);
    d.labels[3] = -2;
    write_hdf5_dataset(path, d);
    CHECK_THROWS_WITH_AS(probe_source(src), doctest::Contains("label -2"), UsageError);
  }
  SUBCASE("label out of the model's class range") {
    write_hdf5_dataset(path, small_classification(6, 2, 3));
    const SourceInfo info = probe_source(src);
    CHECK_THROWS_WITH_AS(read_source_rows(src, info, {0, 1, 2}, 2), doctest::Contains("out of range"), UsageError);
  }
  SUBCASE("infinite feature") {
    Dataset d = small_classification(5, 2, 3);
    d.x[7] = INFINITY;
    write_hdf5_dataset(path, d);
    const SourceInfo info = probe_source(src);
    CHECK_THROWS_WITH_AS(read_source_rows(src, info, {0, 2, 3, 4}, 3), doctest::Contains("row 3"), UsageError);
  }
  SUBCASE("truncated file") {
    write_hdf5_dataset(path, small_classification(500, 20, 3));
    std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
    CHECK_THROWS_AS(read_source_rows(src, probe_source(src), {0, 499}, 3), UsageError);
  }
}

TEST_CASE("IDX source and `convert` give the same rows") {
  TempDir dir;
  write_idx_pair(dir.path(), "train", 20, 4, 4, 5, true);
  const std::string images = dir.file("train-images-idx3-ubyte.gz");
  const DataSource idx{images};
  const SourceInfo info = probe_source(idx);
  CHECK(info.rows == 20);
  CHECK(info.features == 16);
  CHECK(info.outputs == 5);
  CHECK(convert_idx_to_hdf5(images, dir.file("train.h5")) == 20);
  const DataSource h5{dir.file("train.h5")};
  const std::vector<int64_t> rows{0, 3, 19};
  const Dataset a = read_source_rows(idx, info, rows, 5), b = read_source_rows(h5, probe_source(h5), rows, 5);
  CHECK(a.x == b.x);
  CHECK(a.labels == b.labels);
  CHECK(a.x[16] == doctest::Approx(9.0f / 255.0f));  // row 3, pixel 0 = 9
}

TEST_CASE("IDX images without their labels file, or with a label count mismatch") {
  TempDir dir;
  write_idx_pair(dir.path(), "a", 6, 2, 2, 3, true);
  std::filesystem::remove(dir.file("a-labels-idx1-ubyte.gz"));
  CHECK_THROWS_WITH_AS(probe_source(DataSource{dir.file("a-images-idx3-ubyte.gz")}),
                       doctest::Contains("a-labels-idx1-ubyte.gz"), UsageError);
  write_idx_pair(dir.path(), "b", 6, 2, 2, 3, true);
  write_bytes(dir.file("b-labels-idx1-ubyte.gz"), idx_bytes({5}, {0, 1, 2, 0, 1}), true);
  CHECK_THROWS_WITH_AS(probe_source(DataSource{dir.file("b-images-idx3-ubyte.gz")}), doctest::Contains("5 labels"),
                       UsageError);
}

// Found by fuzz/fuzz_idx: a labels header promising 2^32-1 rows made
// probe_source allocate a 32 GiB row list before reading a single label.
TEST_CASE("IDX images and labels whose headers promise more rows than the files hold") {
  TempDir dir;
  write_bytes(dir.file("h-images-idx3-ubyte"), idx_bytes({0xFFFFFFFFu, 2}, {1, 2, 3, 4}), false);
  write_bytes(dir.file("h-labels-idx1-ubyte"), idx_bytes({0xFFFFFFFFu}, {0, 1}), false);
  CHECK_THROWS_WITH_AS(probe_source(DataSource{dir.file("h-images-idx3-ubyte")}),
                       doctest::Contains("h-labels-idx1-ubyte: truncated"), UsageError);
}

// ---- crafted files ("never trust a file") ----------------------------------

namespace {

// A file with X and y written as given: any file type, any shape, chunked and
// never written when `data` is null.
void write_typed(hid_t file, const char* name, hid_t file_type, hid_t mem_type, const std::vector<hsize_t>& dims,
                 const void* data) {
  H5Handle space(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
  H5Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!data) {
    std::vector<hsize_t> chunk(dims.size(), 1);
    REQUIRE(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()) >= 0);
  }
  H5Handle ds(H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
  REQUIRE(ds.get() >= 0);
  if (data) REQUIRE(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
}

H5Handle create(const std::string& path) {
  h5_quiet();
  H5Handle f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  REQUIRE(f.get() >= 0);
  return f;
}

}  // namespace

TEST_CASE("HDF5 data: crafted sizes, types and values are usage errors naming them") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  const DataSource src{path};
  const std::vector<float> x(40 * 4, 0.5f);
  const std::vector<int32_t> y(40, 1);
  SUBCASE("X declared (2^60+1) x 16, never written") {
    {
      H5Handle f = create(path);
      write_typed(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {(hsize_t(1) << 60) + 1, 16}, nullptr);
      write_typed(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, {40}, y.data());
    }
    CHECK_THROWS_WITH_AS(probe_source(src), doctest::Contains("dataset 'X' declares 1152921504606846977 x 16"),
                         UsageError);
  }
  SUBCASE("2^40 rows declared, data.max_rows=100") {
    {
      H5Handle f = create(path);
      write_typed(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {hsize_t(1) << 40, 4}, nullptr);
      write_typed(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, {hsize_t(1) << 40}, nullptr);
    }
    CHECK_THROWS_WITH_AS(probe_source(src, 100), doctest::Contains("but the file stores 0 bytes"), UsageError);
  }
  SUBCASE("X of strings") {
    {
      H5Handle f = create(path);
      H5Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(type, 4);
      const std::string text(40 * 4 * 4, '1');
      write_typed(f, "X", type, type, {40, 4}, text.data());
      write_typed(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, {40}, y.data());
    }
    CHECK_THROWS_WITH_AS(probe_source(src), doctest::Contains("dataset 'X' holds text, not numbers"), UsageError);
  }
  SUBCASE("a uint64 label of 2^32+1") {
    std::vector<uint64_t> big(40, 1);
    big[7] = (uint64_t(1) << 32) + 1;
    {
      H5Handle f = create(path);
      write_typed(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {40, 4}, x.data());
      write_typed(f, "y", H5T_STD_U64LE, H5T_NATIVE_UINT64, {40}, big.data());
    }
    CHECK_THROWS_WITH_AS(probe_source(src), doctest::Contains("value 4294967297 is beyond the range of int32"),
                         UsageError);
  }
  SUBCASE("a float64 feature of 1e300") {
    std::vector<double> xd(40 * 4, 0.25);
    xd[9 * 4 + 1] = 1e300;
    {
      H5Handle f = create(path);
      write_typed(f, "X", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {40, 4}, xd.data());
      write_typed(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, {40}, y.data());
    }
    const SourceInfo info = probe_source(src);
    CHECK_THROWS_WITH_AS(read_source_rows(src, info, {0, 9, 20}, 2),
                         doctest::Contains("value 1.0000000000000001e+300 is beyond the range of float32"), UsageError);
  }
}

TEST_CASE("probe_source with max_rows reads only the labels of the rows used") {
  TempDir dir;
  const std::string path = dir.file("d.h5");
  Dataset d = small_classification(200, 2, 3);
  d.labels[150] = -1;  // past the rows used
  d.labels[160] = 9;
  write_hdf5_dataset(path, d);
  const SourceInfo info = probe_source(DataSource{path}, 100);
  CHECK(info.rows == 200);
  CHECK(info.outputs == 3);
  CHECK_THROWS_WITH_AS(probe_source(DataSource{path}), doctest::Contains("label -1"), UsageError);
}
