// ShardSampler and the seeded validation split (see sampler.hpp).
#include "ringtrain/data/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ringtrain/util/error.hpp"
#include "ringtrain/util/philox.hpp"

namespace ringtrain {

namespace {
constexpr uint64_t kShuffleStream = 0x5348u;  // "SH"
constexpr uint64_t kSplitStream = 0x5350u;    // "SP"
}  // namespace

void shuffle_in_place(std::vector<int64_t>& v, uint64_t key) {
  const Philox rng(key, kShuffleStream);
  for (std::size_t i = v.size(); i > 1; --i) {
    const std::size_t j = rng.below(i, i);
    std::swap(v[i - 1], v[j]);
  }
}

ShardSampler::ShardSampler(int64_t total_rows, int rank, int world, int batch, bool shuffle,
                           uint64_t seed)
    : rank_(rank), batch_(batch), micro_(batch), shuffle_(shuffle), seed_(seed) {
  RT_CHECK(world > 0 && rank >= 0 && rank < world, "bad rank ", rank, " of ", world);
  if (batch <= 0) throw UsageError(str_cat("train.batch_per_rank: must be positive, got ", batch));
  rows_per_rank_ = total_rows / world;
  dropped_ = total_rows - rows_per_rank_ * world;
  if (rows_per_rank_ == 0)
    throw UsageError(str_cat("training set has ", total_rows, " rows, fewer than the ", world,
                             " ranks: every rank needs at least one row"));
  order_.resize(rows_per_rank_);
  set_epoch(0);
}

void ShardSampler::set_epoch(int64_t epoch) {
  if (epoch == epoch_) return;
  epoch_ = epoch;
  std::iota(order_.begin(), order_.end(), int64_t{0});
  if (shuffle_) shuffle_in_place(order_, mix_key(seed_, static_cast<uint64_t>(epoch), uint64_t(rank_)));
}

void ShardSampler::set_accumulate(int k) {
  if (k < 1) throw UsageError(str_cat("train.accumulate: must be >= 1, got ", k));
  if (k > 1 && int64_t(micro_) * k > rows_per_rank_)
    throw UsageError(str_cat("train.accumulate: ", k, " micro-batches x train.batch_per_rank ", micro_, " = ",
                             int64_t(micro_) * k, " rows per step, more than the ", rows_per_rank_,
                             " training rows of each rank"));
  accumulate_ = k;
  batch_ = micro_ * k;  // fits: at most rows_per_rank_, checked above
}

int ShardSampler::batch_size(int64_t step) const {
  return static_cast<int>(std::min<int64_t>(batch_, rows_per_rank_ - step * batch_));
}

RowSplit split_rows(int64_t total_rows, double val_fraction, uint64_t seed) {
  if (!(val_fraction > 0 && val_fraction < 1))
    throw UsageError(str_cat("data.val_fraction: expected a value in (0, 1), got ", val_fraction));
  const int64_t val_rows = static_cast<int64_t>(std::llround(val_fraction * double(total_rows)));
  if (val_rows < 1 || val_rows >= total_rows)
    throw UsageError(str_cat("data.val_fraction=", val_fraction, " of ", total_rows,
                             " rows leaves an empty training or validation set"));
  std::vector<int64_t> perm(total_rows);
  std::iota(perm.begin(), perm.end(), int64_t{0});
  const Philox rng(mix_key(seed, kSplitStream));
  // Partial Fisher-Yates: the first val_rows positions become a uniform sample.
  for (int64_t i = 0; i < val_rows; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.below(uint64_t(i), uint64_t(total_rows - i)));
    std::swap(perm[i], perm[j]);
  }
  RowSplit s;
  s.val.assign(perm.begin(), perm.begin() + val_rows);
  s.train.assign(perm.begin() + val_rows, perm.end());
  std::sort(s.val.begin(), s.val.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

}  // namespace ringtrain
