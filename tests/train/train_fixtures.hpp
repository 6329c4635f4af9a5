// Fixtures for trainer tests under MPI: a synthetic data file written once by
// rank 0 into a temporary directory that every rank can read, and a config
// for short, deterministic runs.
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include "ringtrain/comm/communicator.hpp"
#include "ringtrain/io/data_reader.hpp"
#include "ringtrain/train/config.hpp"
#include "test_helpers.hpp"

namespace ringtrain::test {

// True on every rank iff `ok` holds on every rank.
inline bool all_ranks(Communicator& comm, bool ok) { return comm.allreduce_min(ok ? 1 : 0) == 1; }

// A classification problem with `classes` Gaussian-ish clusters in `features`
// dimensions, deterministic in the row index (no RNG state to share).
inline Dataset synthetic_classification(int64_t rows, int64_t features, int classes) {
  Dataset d;
  d.rows = rows;
  d.features = features;
  d.outputs = classes;
  d.source = "synthetic";
  d.x.resize(std::size_t(rows * features));
  d.labels.resize(std::size_t(rows));
  for (int64_t i = 0; i < rows; ++i) {
    const int label = int((i * 7 + i / 3) % classes);
    d.labels[i] = label;
    for (int64_t j = 0; j < features; ++j)
      d.x[i * features + j] = 0.8f * float(((label + j) % classes) == 0) +
                              0.3f * std::sin(float(i * 13 + j * 7)) + 0.05f * float(j % 3);
  }
  return d;
}

// Rank 0 creates a temp dir and writes `data` there as data.h5; every rank
// gets the same path. The directory lives as long as the fixture.
class SharedDataFile {
 public:
  SharedDataFile(Communicator& comm, const Dataset& data, const std::string& name = "data.h5") {
    if (comm.rank() == 0) {
      dir_ = std::make_unique<TempDir>();
      write_hdf5_dataset(dir_->file(name), data);
    }
    dir_path_ = broadcast_string(comm, dir_ ? dir_->path() : "", 0);
    path_ = dir_path_ + "/" + name;
    comm.barrier();
  }
  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_path_; }

 private:
  std::unique_ptr<TempDir> dir_;
  std::string dir_path_, path_;
};

inline TrainConfig short_run_config(const std::string& train_path, const std::string& run_dir) {
  TrainConfig c;
  c.train_path = train_path;
  c.run_dir = run_dir;
  c.val_fraction = 0;
  c.hidden = {16, 8};
  c.batch_per_rank = 4;
  c.epochs = 1000;
  c.max_steps = 20;
  c.shuffle = false;
  c.seed = 7;
  c.lr = 0.2;
  c.progress = false;
  c.effective_ini = "# test\n";
  return c;
}

}  // namespace ringtrain::test
