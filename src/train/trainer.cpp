// Trainer (see trainer.hpp).
#include "ringtrain/train/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <numeric>

#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/io/data_reader.hpp"
#include "ringtrain/nn/loss.hpp"
#include "ringtrain/util/timer.hpp"

namespace ringtrain {

namespace {

std::vector<int64_t> iota_rows(int64_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

// Positions r, r+p, r+2p, ... of `rows` (all of them, for evaluation sets).
std::vector<int64_t> every_pth(const std::vector<int64_t>& rows, int rank, int world) {
  std::vector<int64_t> out;
  for (std::size_t i = rank; i < rows.size(); i += world) out.push_back(rows[i]);
  return out;
}

int64_t limit_rows(int64_t rows, int64_t max_rows) { return max_rows > 0 ? std::min(rows, max_rows) : rows; }

// The confusion matrix is classes^2 doubles per evaluation; beyond this the
// labels are almost certainly not class indices.
constexpr int64_t kMaxClasses = 4096;

SourceInfo probe_eval_file(const std::string& key, const DataSource& src, const SourceInfo& train, int64_t max_rows) {
  const SourceInfo info = probe_source(src, max_rows);
  if (info.features != train.features)
    throw UsageError(str_cat(key, ": ", src.path, " has ", info.features, " features per row, the training data has ",
                             train.features));
  if (src.task == Task::kRegression && info.outputs != train.outputs)
    throw UsageError(str_cat(key, ": ", src.path, " has ", info.outputs, " targets per row, the training data has ",
                             train.outputs));
  return info;
}

}  // namespace

Trainer::Trainer(TrainConfig cfg, Communicator& comm)
    : cfg_(std::move(cfg)), comm_(comm), log_(comm.rank() == 0, cfg_.run_dir, cfg_.progress),
      files_(cfg_.run_dir, comm.rank() == 0, cfg_.checkpoint_keep_last, [&comm] { comm.keep_alive(); }) {
  files_.on_checkpoint([this](const nlohmann::ordered_json& e) { log_.event("checkpoint", e); });
  // Phases that can fail on some ranks only run inside run_collectively and
  // contain no collectives themselves; the agreement check runs between them.
  // Nothing is written into the run directory (beyond its lock) until every
  // check below has passed: a refused run leaves it as it was.
  run_collectively(comm_, [&] {
    log_.open(cfg_.resume != "none", cfg_.config_path);
    refuse_inputs_in_run_files();
    probe_data();
  });
  check_ranks_agree();
  run_collectively(comm_, [&] {
    read_data();
    build_model();
    plan_training();
    check_monitor();
    apply_freeze();
    if (!cfg_.init_from.empty()) init_from_file();
    if (cfg_.resume != "none" && comm_.rank() == 0) find_resume_point();
  });
  // The first write, in a phase of its own: run_collectively agrees only
  // after each rank's lambda, so in the phase above rank 0 would write while
  // another rank's checks may still fail.
  run_collectively(comm_, [&] {
    log_.begin(cfg_.effective_ini, cfg_.config_path, cfg_.resume != "none" && resume_ == nullptr);
  });
  // Identical replicas: rank 0's initial parameters everywhere.
  comm_.broadcast(model_->params(), model_->num_params() * sizeof(float), 0);
  restore_resumed();
  // Collective, so here and not in build_model() (run_collectively phases
  // hold no collectives).
  grads_n_ = model_->num_params() + kTail;
  grads_ = comm_.shared_gradient_buffer(grads_n_);
  // Every rank, shared buffer or not (hierarchical: a node of one rank has
  // none): out of memory on one rank is the same error on all.
  run_collectively(comm_, [&] {
    if (grads_ != nullptr) return;
    grads_storage_.assign(grads_n_, 0.0f);
    grads_ = grads_storage_.data();
  });
  const auto bucket_floats = std::size_t(cfg_.comm_bucket_mb * double(1 << 20) / sizeof(float));
  reducer_ = std::make_unique<BucketReducer>(comm_, grads_, model_->num_params(), grads_n_,
                                             model_->gradient_ready_points(), bucket_floats, cfg_.comm_overlap);
  // The same decision on every rank: options, world size and algorithm agree.
  sharded_ = cfg_.comm_shard_optimizer && !cfg_.comm_overlap && comm_.shards_gradients(model_->num_params());
  if (sharded_) shard_ = comm_.shard(model_->num_params());
  // Per traced step: data, forward, backward, waiting, all-reduce, optimizer
  // and one per bucket; room for evaluations and checkpoints besides.
  const int64_t traced = std::min(cfg_.trace_steps, total_steps_ - start_step_);  // no room for steps never run
  if (traced > 0) timeline_.reserve(std::size_t(traced) * (8 + reducer_->ranges().size()) + 1024);
  log_setup();
}

void Trainer::refuse_inputs_in_run_files() const {
  // Resuming: a data file that is one of the run's own files (best.h5,
  // final.h5, ...) would be written over as training goes on.
  for (const auto& [key, path] : {std::pair<const char*, const std::string&>{"data.train", cfg_.train_path},
                                  {"data.val", cfg_.val_path},
                                  {"data.test", cfg_.test_path}})
    for (const std::string& name : log_.contents().run_files)
      if (!path.empty() && name.back() != '/' && same_file_or_path(path, cfg_.run_dir + "/" + name))
        throw UsageError(str_cat(key, ": ", path, " is the run directory's ", name,
                                 ", which ringtrain writes: keep data files out of run.dir's own names"));
}

DataSource Trainer::source(const std::string& path) const {
  return DataSource{path, cfg_.x_name, cfg_.y_name, cfg_.task};
}

void Trainer::probe_data() {
  if (cfg_.train_path.empty()) throw UsageError("data.train: no training data given");
  train_info_ = probe_source(source(cfg_.train_path), cfg_.max_rows);
  outputs_ = train_info_.outputs;
  if (cfg_.task == Task::kClassification && outputs_ < 2)
    throw UsageError(str_cat(cfg_.train_path, ": every training label is 0: classification needs 2 or more classes"));
  if (cfg_.task == Task::kClassification && outputs_ > kMaxClasses)
    throw UsageError(str_cat(cfg_.train_path, ": labels go up to ", outputs_ - 1, ", more than ", kMaxClasses,
                             " classes (are they regression targets? task = regression)"));
  if (!cfg_.val_path.empty()) val_info_ = probe_eval_file("data.val", source(cfg_.val_path), train_info_, cfg_.max_rows);
  if (!cfg_.test_path.empty()) test_info_ = probe_eval_file("data.test", source(cfg_.test_path), train_info_, cfg_.max_rows);
}

void Trainer::check_ranks_agree() {
  // A rank given other options, or another copy of a file (node-local
  // staging), would run different collectives and hang the job: refuse.
  const std::string ini0 = broadcast_string(comm_, cfg_.effective_ini, 0);
  const int64_t mine[5] = {train_info_.rows, train_info_.features, outputs_, val_info_.rows, test_info_.rows};
  int64_t root[5];
  std::copy(mine, mine + 5, root);
  comm_.broadcast(root, sizeof(root), 0);
  run_collectively(comm_, [&] {
    if (ini0 != cfg_.effective_ini)
      throw UsageError("options differ from rank 0's: every rank must be given the same options and config file");
    if (!std::equal(mine, mine + 5, root))
      throw UsageError(str_cat("data differs from rank 0's: rank 0 sees ", root[0], " training rows x ", root[1],
                               " features, ", root[2], " outputs, ", root[3], " validation and ", root[4],
                               " test rows; this rank sees ", mine[0], " x ", mine[1], ", ", mine[2], ", ", mine[3],
                               " and ", mine[4], " (every rank must read the same files)"));
  });
}

void Trainer::read_data() {
  const int rank = comm_.rank(), world = comm_.size();
  const DataSource src = source(cfg_.train_path);
  const SourceInfo& info = train_info_;
  const int64_t rows = limit_rows(info.rows, cfg_.max_rows);

  std::vector<int64_t> train_rows, val_rows;
  if (cfg_.val_path.empty() && cfg_.val_fraction > 0) {
    RowSplit split = split_rows(rows, cfg_.val_fraction, cfg_.seed);
    train_rows = std::move(split.train);
    val_rows = std::move(split.val);
  } else {
    train_rows = iota_rows(rows);
  }
  sampler_ = std::make_unique<ShardSampler>(int64_t(train_rows.size()), rank, world,
                                            cfg_.batch_per_rank, cfg_.shuffle, cfg_.seed);
  dropped_rows_ = sampler_->dropped_rows();
  // A shard smaller than one batch trains on batches of the shard's size:
  // the lr rule and the plan must count those, not the batch asked for.
  if (cfg_.batch_per_rank > sampler_->rows_per_rank()) {
    log_.info(str_cat("train.batch_per_rank: ", cfg_.batch_per_rank, " is more than the ", sampler_->rows_per_rank(),
                      " rows of each rank's shard (", train_rows.size(), " training rows over ", world,
                      world == 1 ? " rank" : " ranks", "); training on batches of ", sampler_->rows_per_rank(),
                      ", with the lr scaled for them"));
    cfg_.batch_per_rank = int(sampler_->rows_per_rank());
    sampler_ = std::make_unique<ShardSampler>(int64_t(train_rows.size()), rank, world, cfg_.batch_per_rank,
                                              cfg_.shuffle, cfg_.seed);
  }
  std::vector<int64_t> mine(sampler_->rows_per_rank());
  for (int64_t j = 0; j < int64_t(mine.size()); ++j)
    mine[j] = train_rows[ShardSampler::global_row(j, rank, world)];
  train_ = read_source_rows(src, info, mine, outputs_);

  auto eval_rows = [&](const SourceInfo& i) { return every_pth(iota_rows(limit_rows(i.rows, cfg_.max_rows)), rank, world); };
  if (!cfg_.val_path.empty()) {
    val_ = read_source_rows(source(cfg_.val_path), val_info_, eval_rows(val_info_), outputs_);
    has_val_ = true;
  } else if (!val_rows.empty()) {
    val_ = read_source_rows(src, info, every_pth(val_rows, rank, world), outputs_);
    has_val_ = true;
  }
  if (!cfg_.test_path.empty()) {
    test_ = read_source_rows(source(cfg_.test_path), test_info_, eval_rows(test_info_), outputs_);
    has_test_ = true;
  }
  // One evaluation batch never needs more rows than a set has (the model
  // keeps activations for the largest batch).
  cfg_.eval_batch = int(std::min<int64_t>(cfg_.eval_batch, std::max<int64_t>({val_.rows, test_.rows, 1})));
}

void Trainer::build_model() {
  MlpSpec spec;
  spec.sizes.push_back(int(train_.features));
  spec.sizes.insert(spec.sizes.end(), cfg_.hidden.begin(), cfg_.hidden.end());
  spec.sizes.push_back(int(outputs_));
  spec.activation = cfg_.activation;
  spec.dropout = cfg_.dropout;
  if (cfg_.eval_batch <= 0) throw UsageError(str_cat("eval.batch_size: must be positive, got ", cfg_.eval_batch));
  const int max_batch = std::max(cfg_.batch_per_rank, cfg_.eval_batch);
  model_ = std::make_unique<Mlp>(spec, max_batch);
  model_->init(cfg_.seed);
  optimizer_ = make_optimizer(cfg_.optim, model_->num_params());
  // train.accumulate: the micro-batches' gradient sum; the activations stay
  // sized for one micro-batch of batch_per_rank rows.
  if (cfg_.accumulate > 1) accum_.assign(model_->num_params(), 0.0f);

  const std::size_t k = std::size_t(outputs_), b = std::size_t(cfg_.batch_per_rank);
  batch_x_.assign(b * std::size_t(train_.features), 0.0f);
  batch_labels_.assign(b, 0);
  batch_y_.assign(cfg_.task == Task::kRegression ? b * k : 0, 0.0f);
  dout_.assign(std::size_t(max_batch) * k, 0.0f);
  predicted_.assign(std::size_t(max_batch), 0);
}

void Trainer::plan_training() {
  // A step takes train.accumulate micro-batches: the plan, the lr scaling and
  // the examples counted all follow the true global batch.
  sampler_->set_accumulate(cfg_.accumulate);
  plan_ = TrainingPlan::make(sampler_->rows_per_rank(), comm_.size(), sampler_->step_rows(), cfg_.epochs,
                             cfg_.examples, cfg_.evals, cfg_.eval_every_steps, cfg_.max_steps);
  total_steps_ = plan_.total_steps;
  const int64_t spe = sampler_->steps_per_epoch();
  schedule_.base_lr = cfg_.lr;
  schedule_.global_batch = int64_t(sampler_->step_rows()) * comm_.size();
  schedule_.ref_batch = cfg_.ref_batch;
  if (cfg_.warmup_steps > 0 && cfg_.warmup_epochs > 0)
    throw UsageError("optim.warmup_steps and optim.warmup_epochs: give one, not both");
  if (cfg_.warmup_epochs < 0) throw UsageError("optim.warmup_epochs: must be >= 0");
  schedule_.warmup_steps = cfg_.warmup_steps > 0 ? cfg_.warmup_steps
                                                 : int64_t(std::llround(cfg_.warmup_epochs * double(spe)));
  schedule_.decay = cfg_.decay;
  schedule_.total_steps = total_steps_;
  schedule_.decay_every_steps = std::llround(cfg_.decay_every_epochs * double(spe));  // validate(): >= 1
  schedule_.decay_gamma = cfg_.decay_gamma;
  schedule_.min_factor = cfg_.min_lr_factor;
  schedule_.validate();
}

void Trainer::check_monitor() {
  // The names evaluation produces: train_loss always, val_* with validation data.
  std::vector<std::string> known{"train_loss"};
  if (has_val_) {
    for (const char* k : cfg_.task == Task::kClassification
                             ? std::vector<const char*>{"loss", "accuracy", "error", "mcc", "macro_f1"}
                             : std::vector<const char*>{"loss", "mse", "mae"})
      known.push_back(str_cat("val_", k));
  }
  monitor_ = cfg_.monitor == "auto" ? (has_val_ ? "val_loss" : "train_loss") : cfg_.monitor;
  if (std::find(known.begin(), known.end(), monitor_) == known.end()) {
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    throw UsageError(str_cat("eval.monitor: '", monitor_, "' is not a metric this run produces (", list,
                             has_val_ ? "" : "; no validation data, so no val_* metrics", ")"));
  }
  if (cfg_.mode == "auto") {
    const auto dir = metric_direction(monitor_);
    RT_CHECK(dir.has_value(), "no direction for ", monitor_);
    monitor_mode_ = *dir;
  } else {
    monitor_mode_ = cfg_.mode == "min" ? MetricMode::kMin : MetricMode::kMax;
  }
  EarlyStopSpec es;
  es.patience = cfg_.patience;
  es.min_delta = Delta::parse(cfg_.es_min_delta, "early_stop.min_delta");
  const auto number = [](const std::string& text, const char* key) -> std::optional<double> {
    if (text.empty()) return std::nullopt;
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (*end != '\0' || !std::isfinite(v)) throw UsageError(str_cat(key, ": expected a number, got '", text, "'"));
    return v;
  };
  es.baseline = number(cfg_.baseline, "early_stop.baseline");
  es.divergence = number(cfg_.divergence, "early_stop.divergence");
  if (es.baseline && es.patience == 0)
    throw UsageError("early_stop.baseline: needs early_stop.patience > 0 (evaluations allowed to beat it)");
  es.restore_best = cfg_.restore_best;
  tracker_ = Tracker(monitor_, monitor_mode_, Delta::parse(cfg_.min_delta, "eval.min_delta"), es, cfg_.keep_best);
}

void Trainer::log_setup() const {
  const int p = comm_.size();
  log_.info(str_cat("ringtrain: ", p, " rank(s), all-reduce '", comm_.algorithm(), "'",
                    sharded_ ? str_cat(" with the optimizer sharded ", p, " ways") : std::string(), ", model ",
                    model_->spec().architecture(), " (", activation_name(cfg_.activation), ", ",
                    model_->num_params(), " parameters), ", task_name(cfg_.task)));
  log_.info(str_cat("data: ", sampler_->rows_per_rank() * p, " training rows (", sampler_->rows_per_rank(),
                    " per rank", dropped_rows_ ? str_cat(", ", dropped_rows_, " remainder rows dropped") : "",
                    "), validation ", has_val_ ? "yes" : "none", has_test_ ? ", test set given" : ""));
  log_.info(str_cat("batch: ", cfg_.batch_per_rank, " per rank x ",
                    cfg_.accumulate > 1 ? str_cat(cfg_.accumulate, " micro-batches (train.accumulate) x ") : "", p,
                    " ranks = global batch ",
                    schedule_.global_batch, "; ", sampler_->steps_per_epoch(), " steps per pass, ", total_steps_,
                    " steps = ", plan_.total_examples, " examples (", plan_.epoch_at(total_steps_),
                    " passes), evaluated and checkpointed ", plan_.virtual_epochs(), " times"));
  const bool climbs = schedule_.warmup_steps > 0 && schedule_.peak() > schedule_.base_lr;
  log_.info(str_cat("lr: ", cfg_.optim.name, " base ", schedule_.base_lr, " x ", schedule_.global_batch, "/",
                    schedule_.ref_batch, " = ", schedule_.peak(),
                    climbs ? str_cat(", reached by a linear warm-up over ", schedule_.warmup_steps, " steps")
                           : std::string(", no warm-up"),
                    ", then decay ", decay_name(schedule_.decay), " over ", total_steps_, " steps"));
  log_.info(str_cat("best model: ", monitor_, " (", metric_mode_name(monitor_mode_), ")",
                    cfg_.patience > 0 ? str_cat(", early stopping after ", cfg_.patience, " evaluations without "
                                                "improvement")
                                      : std::string()));
  if (start_step_ > 0)
    log_.info(str_cat("resumed from ", resume_path_, " at step ", start_step_, " (", examples_seen_,
                      " examples seen)"));
  log_.info(str_cat("run directory: ", log_.dir()));
  nlohmann::ordered_json e;
  e["step"] = start_step_;
  e["examples_seen"] = examples_seen_;
  e["world_size"] = p;
  e["batch_per_rank"] = cfg_.batch_per_rank;
  e["accumulate"] = cfg_.accumulate;
  e["global_batch"] = schedule_.global_batch;
  e["base_lr"] = schedule_.base_lr;
  e["ref_batch"] = schedule_.ref_batch;
  e["effective_lr"] = schedule_.peak();
  e["warmup_steps"] = schedule_.warmup_steps;
  e["decay"] = decay_name(schedule_.decay);
  e["total_steps"] = total_steps_;
  e["total_examples"] = plan_.total_examples;
  e["pass_examples"] = plan_.pass_examples;
  e["architecture"] = model_->spec().architecture();
  e["parameters"] = model_->num_params();
  e["algorithm"] = comm_.algorithm();
  e["shard_optimizer"] = sharded_;
  e["monitor"] = monitor_;
  e["mode"] = metric_mode_name(monitor_mode_);
  if (start_step_ > 0) e["resumed_from"] = resume_path_;
  log_.event("start", e);
}

std::map<std::string, double> Trainer::evaluate(const Dataset& d, const std::string& prefix) {
  const bool cls = cfg_.task == Task::kClassification;
  EvalSums sums(cls ? int(outputs_) : 0, int(outputs_));
  for (int64_t i = 0; i < d.rows; i += cfg_.eval_batch) {
    const int count = int(std::min<int64_t>(cfg_.eval_batch, d.rows - i));
    ConstMatMap out = model_->forward(d.row(i), count, false);
    if (cls) {
      const double loss = softmax_cross_entropy(out, d.labels.data() + i, nullptr, predicted_.data());
      sums.add_classification(loss, d.labels.data() + i, predicted_.data(), count);
    } else {
      double abs_sum = 0;
      const double loss = mean_squared_error(out, d.y.data() + i * d.outputs, nullptr, &abs_sum);
      sums.add_regression(loss, abs_sum, count);
    }
  }
  comm_.allreduce_sum(sums.data().data(), sums.data().size());
  std::map<std::string, double> out;
  for (const auto& [k, v] : sums.metrics()) out[prefix + k] = v;
  return out;
}

void Trainer::check_replicas(int64_t step) {
  // FNV-1a over the parameter bytes: cheap next to an evaluation, and any
  // difference between replicas (a bug, a bit flip) changes it.
  const auto* bytes = reinterpret_cast<const unsigned char*>(model_->params());
  uint64_t hash = 1469598103934665603ull;
  for (std::size_t i = 0; i < model_->num_params() * sizeof(float); ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  uint64_t root = hash;
  comm_.broadcast(&root, sizeof(root), 0);
  run_collectively(comm_, [&] {
    if (hash != root)
      throw RuntimeError(str_cat("replicas diverged: this rank's parameters differ from rank 0's at step ", step));
  });
}

}  // namespace ringtrain
