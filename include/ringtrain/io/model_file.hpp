// Model and checkpoint files (docs/ARCHITECTURE.md, "Files"), readable with h5py, h5ls
// and h5dump.
//
// Model file (best.h5, final.h5):
//   / attrs        format="ringtrain-model", format_version, created,
//                  ringtrain_version, crc32_model
//   /model/dense_<i>/kernel  float32 [in, out];  /model/dense_<i>/bias  float32 [out]
//   /model attrs   architecture ("784-256-128-10"), activation, task, dropout
//   /metrics attrs every metric of the evaluation the weights come from, plus
//                  step, epoch, examples_seen, monitor, mode
//   /config        text: the effective INI of the run
// Checkpoint file (checkpoints/ckpt-<step>.h5): format="ringtrain-checkpoint",
// the groups above plus
//   / attrs            crc32_state
//   /optimizer/<layer>/<param>/<slot>  e.g. /optimizer/dense_0/kernel/momentum
//   /optimizer attrs   name, slots ("m,v"), step, hyper-parameters
//   /trainer attrs     step, epoch, examples_seen, world_size, ...; dataset
//                      rank_state int64 [world_size, k]
//   /tracker attrs     best-model and early-stopping state
// Integrity, in three layers, so that a flipped bit or a truncated file is an
// error and never silently loaded: the file uses the HDF5 1.10 format, whose
// object headers and chunk indexes carry checksums; text is fixed-length
// (in object headers, not in the unchecksummed global heap); datasets are
// chunked with the Fletcher32 filter; and crc32_model / crc32_state are CRC-32s
// of the decoded content, verified after every read.
// Writes are atomic (AtomicFile). This file knows nothing of training: the
// trainer fills the attribute maps.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ringtrain/data/dataset.hpp"
#include "ringtrain/io/hdf5.hpp"
#include "ringtrain/nn/mlp.hpp"

namespace ringtrain {

constexpr const char* kModelFormat = "ringtrain-model";
constexpr const char* kCheckpointFormat = "ringtrain-checkpoint";
constexpr int64_t kFormatVersion = 1;

struct SavedModel {
  MlpSpec spec;
  Task task = Task::kClassification;
  std::vector<float> params;  // flat, in mlp_layout(spec) order
  Attrs metrics;              // /metrics attributes (may be empty)
  std::string config;         // /config
  Attrs root;                 // read only: format, format_version, created, ringtrain_version
};

struct SavedCheckpoint {
  SavedModel model;
  std::string optimizer_name;
  Attrs optimizer;  // step and hyper-parameters (name is written from optimizer_name)
  std::vector<std::pair<std::string, std::vector<float>>> slots;  // slot name -> flat, params layout
  Attrs trainer, tracker;
  std::vector<int64_t> rank_state;  // row-major [rank_state_rows, rank_state_cols]
  int64_t rank_state_rows = 0, rank_state_cols = 0;
};

void write_model_file(const std::string& path, const SavedModel& model);
void write_checkpoint_file(const std::string& path, const SavedCheckpoint& ckpt);

// "ringtrain-model" or "ringtrain-checkpoint"; UsageError naming the path for
// anything else (missing, not HDF5, not ours).
std::string model_file_format(const std::string& path);
// The model part of either kind of file. UsageError naming the path and what
// is wrong (missing tensor, wrong shape, checksum mismatch, truncation).
SavedModel read_model_file(const std::string& path);
SavedCheckpoint read_checkpoint_file(const std::string& path);

// CRC-32 (zlib) of a whole file, for manifest.json.
uint32_t file_crc32(const std::string& path);

}  // namespace ringtrain
