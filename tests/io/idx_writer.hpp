// Writes small IDX files (gzip or plain) for reader tests.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace ringtrain::test {

inline std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& values) {
  std::vector<uint8_t> out{0, 0, 0x08, uint8_t(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(d >> s));
  out.insert(out.end(), values.begin(), values.end());
  return out;
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, bytes.data(), unsigned(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                std::streamsize(bytes.size()));
  }
}

// images: rows x (h*w) bytes with value (row*3 + col) % 256; labels: row % classes.
inline void write_idx_pair(const std::string& dir, const std::string& prefix, uint32_t rows, uint32_t h,
                           uint32_t w, int classes, bool gzip) {
  std::vector<uint8_t> px(std::size_t(rows) * h * w), labels(rows);
  for (uint32_t r = 0; r < rows; ++r) {
    labels[r] = uint8_t(r % classes);
    for (uint32_t c = 0; c < h * w; ++c) px[std::size_t(r) * h * w + c] = uint8_t((r * 3 + c) % 256);
  }
  const std::string ext = gzip ? ".gz" : "";
  write_bytes(dir + "/" + prefix + "-images-idx3-ubyte" + ext, idx_bytes({rows, h, w}, px), gzip);
  write_bytes(dir + "/" + prefix + "-labels-idx1-ubyte" + ext, idx_bytes({rows}, labels), gzip);
}

}  // namespace ringtrain::test
