// IDX reader: gzip and plain files, row selection, the labels file beside the
// images, and malformed files (bad magic, truncated, wrong type).
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>

#include "idx_writer.hpp"
#include "ringtrain/io/idx.hpp"
#include "ringtrain/util/error.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;
using namespace ringtrain::test;

TEST_CASE("labels path is derived from the images path") {
  CHECK(idx_labels_path("/d/train-images-idx3-ubyte.gz") == "/d/train-labels-idx1-ubyte.gz");
  CHECK(idx_labels_path("t10k-images-idx3-ubyte") == "t10k-labels-idx1-ubyte");
  CHECK_THROWS_AS(idx_labels_path("/images/data.gz"), UsageError);
}

TEST_CASE("IDX rows are read from gzip and plain files alike") {
  for (bool gzip : {true, false}) {
    CAPTURE(gzip);
    TempDir dir;
    write_idx_pair(dir.path(), "train", 10, 2, 3, 4, gzip);
    const std::string images = dir.file(std::string("train-images-idx3-ubyte") + (gzip ? ".gz" : ""));
    CHECK(looks_like_idx(images));
    const IdxHeader h = read_idx_header(images);
    CHECK(h.rows() == 10);
    CHECK(h.row_size() == 6);
    const auto rows = read_idx_rows(images, {1, 4, 9});
    REQUIRE(rows.size() == 18);
    CHECK(rows[0] == 3);        // row 1, col 0
    CHECK(rows[6 + 2] == 14);   // row 4, col 2
    CHECK(rows[12 + 5] == 32);  // row 9, col 5
    const auto labels = read_idx_rows(idx_labels_path(images), {0, 5, 7});
    CHECK(labels == std::vector<uint8_t>{0, 1, 3});
  }
}

TEST_CASE("malformed IDX files are usage errors naming the file") {
  TempDir dir;
  const std::string path = dir.file("bad-images-idx3-ubyte.gz");
  SUBCASE("missing") { CHECK_THROWS_WITH_AS(read_idx_header(path), doctest::Contains("no such file"), UsageError); }
  SUBCASE("bad magic") {
    write_bytes(path, {1, 2, 3, 4, 5, 6, 7, 8}, true);
    CHECK_THROWS_WITH_AS(read_idx_header(path), doctest::Contains("bad magic"), UsageError);
  }
  SUBCASE("unsupported element type") {
    std::vector<uint8_t> b = idx_bytes({1, 1}, {0});
    b[2] = 0x0D;  // float
    write_bytes(path, b, true);
    CHECK_THROWS_WITH_AS(read_idx_header(path), doctest::Contains("not supported"), UsageError);
  }
  SUBCASE("truncated payload") {
    std::vector<uint8_t> b = idx_bytes({5, 4}, std::vector<uint8_t>(20, 7));
    b.resize(b.size() - 3);
    write_bytes(path, b, true);
    CHECK_THROWS_WITH_AS(read_idx_rows(path, {0}), doctest::Contains("truncated"), UsageError);
  }
  SUBCASE("truncated gzip stream") {
    write_bytes(dir.file("full.gz"), idx_bytes({50, 40}, std::vector<uint8_t>(2000, 9)), true);
    const auto size = std::filesystem::file_size(dir.file("full.gz"));
    std::filesystem::copy_file(dir.file("full.gz"), path);
    std::filesystem::resize_file(path, size / 2);
    CHECK_THROWS_AS(read_idx_rows(path, {0, 49}), UsageError);
  }
  SUBCASE("empty") {
    write_bytes(path, idx_bytes({0, 4}, {}), true);
    CHECK_THROWS_WITH_AS(read_idx_header(path), doctest::Contains("no data"), UsageError);
  }
}

// Found by fuzz/fuzz_idx: sizes whose product overflowed int64_t (UB), and a
// row size of 4 GiB that made the reader allocate 256 rows' worth up front.
TEST_CASE("IDX headers with absurd sizes are refused or read as truncated, never allocated") {
  TempDir dir;
  const std::string path = dir.file("huge-images-idx3-ubyte");
  for (bool gzip : {false, true}) {
    CAPTURE(gzip);
    write_bytes(path, idx_bytes({3, 0xF4F4F4F4u, 0xF4F4F4F4u}, {1, 2, 3}), gzip);
    CHECK_THROWS_WITH_AS(read_idx_header(path), doctest::Contains("2^48"), UsageError);
    CHECK_THROWS_WITH_AS(read_idx_rows(path, {0}), doctest::Contains("2^48"), UsageError);
    write_bytes(path, idx_bytes({2, 0xFFFFFFFFu}, {1, 2, 3}), gzip);  // rows of 4 GiB, 3 bytes given
    CHECK(read_idx_header(path).row_size() == 0xFFFFFFFFll);
    CHECK_THROWS_WITH_AS(read_idx_rows(path, {1}), doctest::Contains("truncated"), UsageError);
    CHECK_THROWS_WITH_AS(read_idx_rows(path, {}), doctest::Contains("truncated"), UsageError);
  }
}

TEST_CASE("a FIFO, a directory or a device is refused before it is opened (no hang)") {
  TempDir dir;
  const std::string fifo = dir.file("f-images-idx3-ubyte");
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);  // opening it to read would wait for a writer
  std::filesystem::create_directory(dir.file("d-images-idx3-ubyte"));
  for (const std::string& path : {fifo, dir.file("d-images-idx3-ubyte"), std::string("/dev/zero")}) {
    CAPTURE(path);
    CHECK(looks_like_idx(path));  // routed to the IDX reader, which refuses it
    CHECK_THROWS_WITH_AS(read_idx_header(path), doctest::Contains("not a regular file"), UsageError);
    CHECK_THROWS_WITH_AS(read_idx_rows(path, {0}), doctest::Contains(path.c_str()), UsageError);
  }
}
