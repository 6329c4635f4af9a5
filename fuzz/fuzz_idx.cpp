// libFuzzer target: the IDX reader (io/idx.hpp) and the IDX path of the data
// reader (io/data_reader.hpp), on plain and gzip files.
//
// The input is used twice:
//   1. as one IDX file, plain and gzip-compressed: looks_like_idx,
//      read_idx_header and read_idx_rows with row selections derived from the
//      header (clamped to it), plus one row past the end;
//   2. cut in two at the first "LABELS" marker (else in the middle) into
//      x-images-idx3-ubyte and x-labels-idx1-ubyte beside it, plain and gzip:
//      probe_source + read_source_rows.
// ringtrain::Error is the expected outcome of bad input. Anything else (another
// exception, a crash, a sanitizer report, a huge allocation, a hang) is a
// finding. The plain and gzip variants must also agree with each other.
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ringtrain/io/data_reader.hpp"
#include "ringtrain/io/idx.hpp"
#include "ringtrain/util/error.hpp"
#include "scratch_dir.hpp"

using namespace ringtrain;

namespace {

const std::string& scratch_dir() { return fuzz::scratch_dir("idx"); }

void write_file(const std::string& path, const uint8_t* data, std::size_t size, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb1");
    if (!f) std::abort();
    if (size > 0 && gzwrite(f, data, unsigned(size)) != int(size)) std::abort();
    if (gzclose(f) != Z_OK) std::abort();
  } else {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
    if (std::fclose(f) != 0) std::abort();
  }
}

// What one variant (plain or gzip) gave: the bytes read, or that it failed.
struct Outcome {
  bool failed = false;
  std::vector<uint8_t> bytes;
  bool operator==(const Outcome& o) const { return failed == o.failed && bytes == o.bytes; }
};

template <typename F>
Outcome attempt(F f) {
  Outcome o;
  try {
    o.bytes = f();
  } catch (const Error&) {  // UsageError, RuntimeError: the expected refusal
    o.failed = true;
  }
  return o;
}

void append_i64(std::vector<uint8_t>& out, int64_t v) {
  for (int s = 0; s < 64; s += 8) out.push_back(uint8_t(v >> s));
}

// Row selections from the header: first, last, a few spread out, a strided
// run (at most 64 rows), all rows of small files, and one past the end.
std::vector<std::vector<int64_t>> selections(int64_t n) {
  std::vector<std::vector<int64_t>> sel{{0}, {n - 1}, {0, n / 2, n - 1}, {n}};
  std::vector<int64_t> strided;
  for (int64_t r = n / 3, step = std::max<int64_t>(1, n / 64); r < n && strided.size() < 64; r += step)
    strided.push_back(r);
  sel.push_back(strided);
  if (n <= 4096) {
    std::vector<int64_t> all(n);
    for (int64_t r = 0; r < n; ++r) all[r] = r;
    sel.push_back(all);
  }
  for (auto& s : sel) s.erase(std::unique(s.begin(), s.end()), s.end());
  return sel;
}

Outcome exercise_idx(const std::string& path) {
  Outcome o;
  o.bytes.push_back(looks_like_idx(path));
  const Outcome head = attempt([&] {
    const IdxHeader h = read_idx_header(path);
    if (h.rows() <= 0 || h.row_size() <= 0) std::abort();  // the reader refuses empty files
    std::vector<uint8_t> b;
    for (uint32_t d : h.dims) append_i64(b, d);
    return b;
  });
  o.bytes.insert(o.bytes.end(), head.bytes.begin(), head.bytes.end());
  if (head.failed) return o;
  const IdxHeader h = read_idx_header(path);
  for (const auto& rows : selections(h.rows())) {
    const Outcome r = attempt([&] {
      IdxHeader got;
      std::vector<uint8_t> b = read_idx_rows(path, rows, &got);
      if (got.dims != h.dims) std::abort();
      if (b.size() != rows.size() * std::size_t(h.row_size())) std::abort();
      if (rows.back() >= h.rows()) std::abort();  // a row past the end must be refused
      return b;
    });
    o.bytes.push_back(r.failed);
    o.bytes.insert(o.bytes.end(), r.bytes.begin(), r.bytes.end());
  }
  return o;
}

Outcome exercise_reader(const std::string& images) {
  return attempt([&] {
    const DataSource src{images};
    const SourceInfo info = probe_source(src);
    if (info.rows <= 0 || info.features <= 0 || info.outputs <= 0) std::abort();
    std::vector<int64_t> rows{0, info.rows / 2, info.rows - 1};
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    const Dataset d = read_source_rows(src, info, rows, info.outputs);
    if (d.x.size() != rows.size() * std::size_t(info.features) || d.labels.size() != rows.size())
      std::abort();
    std::vector<uint8_t> b;
    append_i64(b, info.rows);
    append_i64(b, info.features);
    append_i64(b, info.outputs);
    for (float v : d.x) b.push_back(uint8_t(v * 255.0f + 0.5f));
    for (int32_t l : d.labels) append_i64(b, l);
    return b;
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string& dir = scratch_dir();

  // 1. The input as one IDX file. zlib reads a plain file that starts like
  // gzip (1f 8b) as gzip, so only other inputs must agree across variants.
  write_file(dir + "/one", data, size, false);
  write_file(dir + "/one.gz", data, size, true);
  const Outcome plain = exercise_idx(dir + "/one");
  const Outcome gz = exercise_idx(dir + "/one.gz");
  const bool gzip_magic = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  // (The first byte, looks_like_idx, differs: a gzip copy always looks like one.)
  if (!gzip_magic && !std::equal(plain.bytes.begin() + 1, plain.bytes.end(), gz.bytes.begin() + 1,
                                 gz.bytes.end()))
    std::abort();  // plain and gzip copies of the same bytes read differently

  // 2. Images + labels beside them, through the data reader.
  static const char kMarker[] = "LABELS";
  const uint8_t* cut = std::search(data, data + size, kMarker, kMarker + 6);
  const std::size_t n_images = cut != data + size ? std::size_t(cut - data) : size / 2;
  const std::size_t labels_at = cut != data + size ? n_images + 6 : n_images;
  Outcome by_variant[2];
  for (bool gzip : {false, true}) {
    const std::string ext = gzip ? ".gz" : "";
    write_file(dir + "/x-images-idx3-ubyte" + ext, data, n_images, gzip);
    write_file(dir + "/x-labels-idx1-ubyte" + ext, data + labels_at, size - labels_at, gzip);
    by_variant[gzip] = exercise_reader(dir + "/x-images-idx3-ubyte" + ext);
  }
  const bool any_gzip_magic = gzip_magic || (size - labels_at >= 2 && data[labels_at] == 0x1f &&
                                             data[labels_at + 1] == 0x8b);
  // A plain file that is not IDX is tried as HDF5; its gzip copy never is.
  const bool idx_like = n_images >= 2 && data[0] == 0 && data[1] == 0;
  if (!any_gzip_magic && idx_like && !(by_variant[0] == by_variant[1])) std::abort();
  return 0;
}
