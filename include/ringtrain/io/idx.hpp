// IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or plain.
//
// An IDX file is a 4-byte magic (0, 0, type, ndims), ndims big-endian uint32
// sizes, then the values. ringtrain reads unsigned-byte images (ndims >= 2,
// features = product of all but the first size, scaled to [0, 1] by /255) and
// unsigned-byte labels (ndims == 1). gzip streams are read with zlib, so a
// rank decompresses the whole stream but keeps only its own rows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ringtrain {

struct IdxHeader {
  std::vector<uint32_t> dims;
  int64_t rows() const { return dims.empty() ? 0 : dims[0]; }
  int64_t row_size() const;
};

// The labels file that belongs to an images file: "...-images-idx3-ubyte.gz"
// -> "...-labels-idx1-ubyte.gz". UsageError if the name has no "images".
std::string idx_labels_path(const std::string& images_path);

IdxHeader read_idx_header(const std::string& path);

// Reads the rows whose indices are listed (ascending) and returns them
// concatenated, as raw bytes. UsageError naming the path if the file is
// missing, not a regular file (a FIFO, a device, a directory: refused
// before it is opened), has a bad magic, is not unsigned-byte, or is
// truncated.
std::vector<uint8_t> read_idx_rows(const std::string& path, const std::vector<int64_t>& rows,
                                   IdxHeader* header_out = nullptr);

// True when the file starts like an IDX file (plain or gzip), and for
// anything that is not a regular file, so that the IDX reader refuses it
// with a message instead of a reader opening it (a FIFO blocks the open).
bool looks_like_idx(const std::string& path);

}  // namespace ringtrain
