// Data readers: load selected rows of an HDF5 or IDX data file into a Dataset.
//
// HDF5 files hold X float [N, D] and y: int [N] class labels, or float [N] /
// [N, K] regression targets (dataset names configurable). IDX image files are
// paired with the labels file beside them. A rank asks for its own rows only:
// an evenly strided row list is read from HDF5 with one strided hyperslab, any
// other list in contiguous blocks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ringtrain/data/dataset.hpp"

namespace ringtrain {

struct DataSource {
  std::string path;
  std::string x_name = "X";
  std::string y_name = "y";
  Task task = Task::kClassification;
};

struct SourceInfo {
  int64_t rows = 0;
  int64_t features = 0;
  int64_t outputs = 0;  // classes (max label + 1) or regression targets per row
};

// Reads shapes (and, for classification, the labels to find the class count
// and check them: all of them, or the first `max_rows` when it is > 0, the
// rows data.max_rows / --max-rows use). UsageError naming the path/dataset on
// anything malformed, before allocating by a size the file declares.
SourceInfo probe_source(const DataSource& src, int64_t max_rows = 0);

// Reads rows `rows` (ascending file row indices). `outputs` is the class
// count the model uses (labels must lie in [0, outputs)) or the target width.
// Validates values (finite, labels in range) and fills global_rows.
Dataset read_source_rows(const DataSource& src, const SourceInfo& info,
                         const std::vector<int64_t>& rows, int64_t outputs);

// Writes an HDF5 data file (X float32 [N, D], y int32 [N] or float32 [N, K])
// atomically (tmp file, fsync, rename).
void write_hdf5_dataset(const std::string& path, const Dataset& data);

// `ringtrain convert`: IDX images (+ labels beside) -> HDF5 data file.
// Returns the number of rows written.
int64_t convert_idx_to_hdf5(const std::string& images_path, const std::string& out_path);

}  // namespace ringtrain
