// ShardSampler: which rows a rank trains on, in which order (docs/ARCHITECTURE.md, "Data-parallel semantics").
//
// World size p, rank r, per-rank batch b, N training rows:
//  - rank r owns the rows {i : i mod p == r, i < p*floor(N/p)}; every rank
//    has floor(N/p) rows, so all ranks run the same number of steps and an
//    uneven shard can never deadlock a collective. N mod p rows are dropped.
//  - local row j of rank r is global row j*p + r.
//  - unshuffled, local step s takes local rows [s*b, (s+1)*b), so global step
//    s consumes global rows [s*p*b, (s+1)*p*b) (PyTorch DistributedSampler
//    with shuffle=False). The last batch of an epoch may be short (the same
//    length on every rank).
//  - shuffled, each rank permutes its own rows once per epoch with a
//    counter-based generator keyed by (seed, epoch, rank).
//  - gradient accumulation (train.accumulate = k): a step takes k
//    micro-batches of b rows, i.e. k*b rows per rank; `batch` above is then
//    k*b everywhere (the trainer cuts a step's rows into micro-batches).
#pragma once

#include <cstdint>
#include <vector>

namespace ringtrain {

class ShardSampler {
 public:
  ShardSampler(int64_t total_rows, int rank, int world, int batch, bool shuffle, uint64_t seed);

  int64_t rows_per_rank() const { return rows_per_rank_; }
  int64_t dropped_rows() const { return dropped_; }
  int64_t steps_per_epoch() const { return (rows_per_rank_ + batch_ - 1) / batch_; }
  // A step of k micro-batches of the constructor's batch b: k*b rows per rank
  // per step. UsageError naming train.accumulate when k < 1 or k*b exceeds
  // the rank's rows (a step that can never be filled).
  void set_accumulate(int k);
  int accumulate() const { return accumulate_; }
  int micro_batch() const { return micro_; }  // b
  int step_rows() const { return batch_; }    // k*b

  // Sets the local order for `epoch`. Allocation-free after construction.
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }
  // Local row positions of step s of the current epoch and how many there are.
  const int64_t* batch_rows(int64_t step) const { return order_.data() + step * batch_; }
  int batch_size(int64_t step) const;

  static int64_t global_row(int64_t local, int rank, int world) { return local * world + rank; }

 private:
  int64_t rows_per_rank_, dropped_;
  int rank_, batch_;  // batch_: rows per rank per step (micro_ * accumulate_)
  int micro_, accumulate_ = 1;
  bool shuffle_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
};

// The deterministic train/validation split used when no validation file is
// given: a seeded permutation of [0, N) picks `val_rows` validation rows.
// Returns sorted global row lists {train, val}.
struct RowSplit {
  std::vector<int64_t> train, val;
};
RowSplit split_rows(int64_t total_rows, double val_fraction, uint64_t seed);

// Fisher-Yates shuffle of `v` driven by Philox keyed by `key`.
void shuffle_in_place(std::vector<int64_t>& v, uint64_t key);

}  // namespace ringtrain
