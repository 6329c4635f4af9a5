// IDX reader over zlib's gz* API, which reads gzip and plain files alike.
#include "ringtrain/io/idx.hpp"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <memory>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace {

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzPtr = std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser>;

// Only a regular file is opened: opening a FIFO would wait for a writer
// that may never come, and a directory or a device is no data set.
GzPtr open_gz(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw UsageError(str_cat(path, ": not a regular file (a directory, device or FIFO is not IDX data)"));
  std::ifstream probe(path);
  if (!probe) throw UsageError(str_cat(path, ": no such file or not readable"));
  GzPtr f(gzopen(path.c_str(), "rb"));
  if (!f) throw UsageError(str_cat(path, ": cannot open"));
  gzbuffer(f.get(), 1 << 17);
  return f;
}

void read_exact(gzFile f, void* dst, std::size_t bytes, const std::string& path) {
  auto* p = static_cast<uint8_t*>(dst);
  while (bytes > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(bytes, 1u << 30));
    const int got = gzread(f, p, chunk);
    if (got <= 0) {
      int err = Z_OK;
      const char* msg = gzerror(f, &err);
      throw UsageError(str_cat(path, ": truncated or corrupt IDX file",
                               (err != Z_OK && err != Z_BUF_ERROR) ? str_cat(" (", msg, ")") : ""));
    }
    p += got;
    bytes -= static_cast<std::size_t>(got);
  }
}

// Skips `bytes` bytes through a small buffer, whatever the header says the
// row size is.
void skip_exact(gzFile f, std::size_t bytes, const std::string& path) {
  uint8_t buf[1 << 16];
  while (bytes > 0) {
    const std::size_t n = std::min(bytes, sizeof buf);
    read_exact(f, buf, n, path);
    bytes -= n;
  }
}

// Appends `bytes` bytes to out, growing it as they arrive: a header that
// promises more than the file holds ends in "truncated", not in allocating
// what it promised.
void append_exact(gzFile f, std::vector<uint8_t>& out, std::size_t bytes, const std::string& path) {
  while (bytes > 0) {
    const std::size_t n = std::min<std::size_t>(bytes, 1 << 20), at = out.size();
    out.resize(at + n);
    read_exact(f, out.data() + at, n, path);
    bytes -= n;
  }
}

IdxHeader parse_header(gzFile f, const std::string& path) {
  uint8_t magic[4];
  read_exact(f, magic, 4, path);
  if (magic[0] != 0 || magic[1] != 0 || magic[3] == 0 || magic[3] > 8)
    throw UsageError(str_cat(path, ": not an IDX file (bad magic number)"));
  if (magic[2] != 0x08)
    throw UsageError(str_cat(path, ": IDX element type 0x", std::hex, int(magic[2]),
                             " is not supported (only unsigned bytes, 0x08)"));
  IdxHeader h;
  h.dims.resize(magic[3]);
  for (auto& d : h.dims) {
    uint8_t b[4];
    read_exact(f, b, 4, path);
    d = (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
  }
  // Every size at least 1 and the payload at most 2^48 bytes: row counts,
  // row sizes and offsets can then never overflow.
  int64_t total = 1;
  for (uint32_t d : h.dims) {
    if (d == 0) throw UsageError(str_cat(path, ": IDX file holds no data"));
    if (total > (int64_t{1} << 48) / d)
      throw UsageError(str_cat(path, ": IDX dimensions multiply to more than 2^48 bytes (corrupt header?)"));
    total *= d;
  }
  return h;
}

}  // namespace

int64_t IdxHeader::row_size() const {
  int64_t n = 1;
  for (std::size_t i = 1; i < dims.size(); ++i) n *= dims[i];
  return n;
}

std::string idx_labels_path(const std::string& images_path) {
  const auto slash = images_path.find_last_of('/');
  const auto pos = images_path.find("images", slash == std::string::npos ? 0 : slash);
  if (pos == std::string::npos)
    throw UsageError(str_cat(images_path, ": IDX images file name has no 'images' part, so its "
                             "labels file cannot be found beside it"));
  std::string labels = images_path;
  labels.replace(pos, 6, "labels");
  const auto idx3 = labels.find("idx3", pos);
  if (idx3 != std::string::npos) labels.replace(idx3, 4, "idx1");
  return labels;
}

IdxHeader read_idx_header(const std::string& path) {
  GzPtr f = open_gz(path);
  return parse_header(f.get(), path);
}

std::vector<uint8_t> read_idx_rows(const std::string& path, const std::vector<int64_t>& rows,
                                   IdxHeader* header_out) {
  GzPtr f = open_gz(path);
  const IdxHeader h = parse_header(f.get(), path);
  if (header_out) *header_out = h;
  const int64_t row_size = h.row_size();
  std::vector<uint8_t> out;
  out.reserve(std::min<std::size_t>(rows.size() * std::size_t(row_size), std::size_t{1} << 26));
  int64_t pos = 0;  // next row in the stream
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const int64_t want = rows[i];
    RT_CHECK(want >= pos, "IDX rows must be requested in ascending order");
    if (want >= h.rows())
      throw UsageError(str_cat(path, ": has ", h.rows(), " rows, row ", want, " was asked for"));
    skip_exact(f.get(), std::size_t((want - pos) * row_size), path);  // unwanted rows
    append_exact(f.get(), out, std::size_t(row_size), path);
    pos = want + 1;
  }
  // The file must really hold all the rows its header promises.
  skip_exact(f.get(), std::size_t((h.rows() - pos) * row_size), path);
  return out;
}

bool looks_like_idx(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) return true;  // for open_gz to refuse, unopened
  std::ifstream in(path, std::ios::binary);
  unsigned char b[4] = {0xff, 0xff, 0xff, 0xff};
  in.read(reinterpret_cast<char*>(b), 4);
  if (in.gcount() < 2) return false;
  return (b[0] == 0x1f && b[1] == 0x8b) || (b[0] == 0 && b[1] == 0);
}

}  // namespace ringtrain
