// What a checkpoint holds and how a run resumes from it; starting from a
// saved model (train.init_from) and frozen layers (see trainer.hpp).
//
// Everything the training loop depends on is either in the checkpoint or a
// pure function of it: parameters, optimizer slots and step count, the step
// and examples seen (the sampler order and dropout masks are Philox streams
// keyed by seed, epoch or step, and rank), the loss window of the next
// metrics line, the tracker, and the lr schedule (a function of the step).
// That is what makes a resumed run bit-identical to an uninterrupted one.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "ringtrain/train/trainer.hpp"
#include "ringtrain/util/philox.hpp"

namespace ringtrain {

namespace fs = std::filesystem;

namespace {

// Keys a resumed run may set differently from the run that wrote the
// checkpoint: where and how it runs, not what it computes. The world size
// and batch per rank are checked on their own (train.allow_reshape).
const std::set<std::string> kResumeFreeKeys = {
    "resume", "run.dir", "run.progress", "train.allow_reshape", "train.stop_after_steps",
    "train.epochs", "train.examples",  // a longer (or shorter) plan: checked against the step
    "train.batch_per_rank", "train.accumulate", "train.init_from", "checkpoint.every_steps", "checkpoint.every_seconds",
    "checkpoint.keep_last", "eval.keep_best", "comm.algorithm", "eval.batch_size",
    "comm.timeout_seconds", "train.requeue", "comm.compression", "comm.bucket_mb", "comm.overlap",
    "comm.shard_optimizer", "run.trace", "run.profile"};

// "[optim]\nlr = 0.1" -> {"optim.lr": "0.1"}
std::map<std::string, std::string> ini_values(const std::string& ini) {
  std::map<std::string, std::string> out;
  std::stringstream ss(ini);
  std::string line, section;
  while (std::getline(ss, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    const auto eq = line.find(" = ");
    if (eq == std::string::npos) continue;
    out[(section.empty() ? "" : section + ".") + line.substr(0, eq)] = line.substr(eq + 3);
  }
  return out;
}

std::string filtered_config(const std::string& ini) {
  std::string out;
  for (const auto& [k, v] : ini_values(ini))
    if (!kResumeFreeKeys.count(k)) out += k + " = " + v + "\n";
  return out;
}

std::string fnv_hex(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
  return buf;
}

template <typename T>
T attr(const Attrs& a, const std::string& key, const std::string& context) {
  const auto it = a.find(key);
  if (it == a.end() || !std::holds_alternative<T>(it->second))
    throw UsageError(str_cat(context, ": missing attribute '", key, "'"));
  return std::get<T>(it->second);
}

}  // namespace

std::string Trainer::resume_config() const { return filtered_config(cfg_.effective_ini); }

void Trainer::stage_model(SavedModel& m, int64_t step) const {
  (void)step;
  m.spec = model_->spec();
  m.task = cfg_.task;
  m.params.resize(model_->num_params());  // allocates on first use only
  std::copy(model_->params(), model_->params() + model_->num_params(), m.params.begin());
  m.metrics.clear();
  for (const auto& [k, v] : last_metrics_) m.metrics[k] = v;
  m.metrics["step"] = last_eval_step_;
  m.metrics["epoch"] = plan_.epoch_at(last_eval_step_);
  m.metrics["examples_seen"] = last_eval_examples_;
  m.metrics["monitor"] = monitor_;
  m.metrics["mode"] = std::string(metric_mode_name(monitor_mode_));
  m.config = cfg_.effective_ini;
}

void Trainer::stage_checkpoint(SavedCheckpoint& c, int64_t step) const {
  stage_model(c.model, step);
  const std::size_t n = model_->num_params();
  c.optimizer_name = optimizer_->name();
  c.optimizer = Attrs{{"step", optimizer_->steps()}, {"lr", schedule_.at(step)}};
  for (const auto& [k, v] : optimizer_->hyper_parameters()) c.optimizer[k] = v;
  c.slots.resize(optimizer_->slots().size());
  for (std::size_t i = 0; i < c.slots.size(); ++i) {
    const OptimSlot& slot = optimizer_->slots()[i];
    c.slots[i].first = slot.name;
    c.slots[i].second.resize(n);
    std::copy(slot.values.data(), slot.values.data() + n, c.slots[i].second.begin());
  }
  const int64_t spe = sampler_->steps_per_epoch();
  const int p = comm_.size();
  c.trainer = Attrs{{"step", step},
                    {"epoch", plan_.epoch_at(step)},
                    {"sampler_epoch", step / spe},
                    {"step_in_epoch", step % spe},
                    {"examples_seen", examples_seen_},
                    {"world_size", int64_t(p)},
                    {"batch_per_rank", int64_t(cfg_.batch_per_rank)},
                    {"accumulate", int64_t(cfg_.accumulate)},
                    {"global_batch", schedule_.global_batch},
                    {"seed", int64_t(cfg_.seed)},
                    {"total_steps", total_steps_},
                    {"total_examples", plan_.total_examples},
                    {"train_rows", train_rows()},
                    {"window_loss_sum", window_.loss_sum},
                    {"window_examples", window_.examples},
                    {"last_eval_step", last_eval_step_},
                    {"last_eval_examples", last_eval_examples_},
                    {"lr", schedule_.at(step)},
                    {"lr_peak", schedule_.peak()},
                    {"lr_warmup_steps", schedule_.warmup_steps},
                    {"lr_decay", std::string(decay_name(schedule_.decay))},
                    {"config_hash", fnv_hex(resume_config())},
                    {"rng", std::string("philox4x32-10, counter-based: shuffle keyed by (seed, epoch, rank), "
                                        "dropout by (seed, step, rank, micro-batch); the state is the step")}};
  // Per rank: rank, sampler epoch, rows consumed in it, shuffle key. Every
  // rank's position is the same function of the step; recorded explicitly.
  c.rank_state_rows = p;
  c.rank_state_cols = 4;
  c.rank_state.resize(std::size_t(p) * 4);
  for (int r = 0; r < p; ++r) {
    const int64_t e = step / spe;
    c.rank_state[r * 4 + 0] = r;
    c.rank_state[r * 4 + 1] = e;
    c.rank_state[r * 4 + 2] = std::min<int64_t>((step % spe) * sampler_->step_rows(), sampler_->rows_per_rank());
    c.rank_state[r * 4 + 3] = int64_t(mix_key(cfg_.seed, uint64_t(e), uint64_t(r)));
  }
  c.tracker = tracker_.to_attrs();
}

void Trainer::apply_freeze() {
  frozen_.clear();
  const ParamLayout& layout = model_->layout();
  for (const std::string& layer : cfg_.freeze) {
    if (!layout.contains(layer + "/kernel"))
      throw UsageError(str_cat("train.freeze: no layer '", layer, "' (this model has dense_0 .. dense_",
                               model_->num_layers() - 1, ")"));
    for (const char* param : {"/kernel", "/bias"}) {
      const TensorSpec& t = layout.find(layer + param);
      frozen_.emplace_back(t.offset, t.offset + t.size());
    }
  }
  optimizer_->freeze(frozen_);
}

void Trainer::init_from_file() {
  if (comm_.rank() != 0) return;  // rank 0's weights are broadcast
  const std::string& path = cfg_.init_from;
  const SavedModel saved = read_model_file(path);
  const MlpSpec& mine = model_->spec();
  const auto& a = saved.spec.sizes;
  const auto& b = mine.sizes;
  const bool same_body = a.size() == b.size() && std::equal(a.begin(), a.end() - 1, b.begin());
  if (!same_body || (a.back() != b.back() && !cfg_.new_head))
    throw UsageError(str_cat("train.init_from: ", path, " holds a ", saved.spec.architecture(),
                             " model, this run builds ", mine.architecture(),
                             same_body ? " (a different output size: train.new_head=true replaces the output layer)"
                                       : " (only the output layer may differ, with train.new_head=true)"));
  if (saved.spec.activation != mine.activation)
    throw UsageError(str_cat("train.init_from: ", path, " uses ", activation_name(saved.spec.activation),
                             ", this run model.activation = ", activation_name(mine.activation)));
  const ParamLayout from = mlp_layout(saved.spec);
  const std::string head = "dense_" + std::to_string(model_->num_layers() - 1);
  for (const TensorSpec& t : model_->layout().tensors()) {
    const TensorSpec& f = from.find(t.name);
    if (f.shape != t.shape) continue;  // the new head keeps its fresh initialisation
    std::copy(saved.params.begin() + std::ptrdiff_t(f.offset), saved.params.begin() + std::ptrdiff_t(f.offset + f.size()),
              model_->params() + t.offset);
  }
  log_.info(str_cat("initialised from ", path, a.back() != b.back() ? str_cat(" (new output layer ", head, ")") : ""));
}

void Trainer::find_resume_point() {
  const auto check = [&](const SavedCheckpoint& c, const std::string& path) {
    if (c.model.spec.architecture() != model_->spec().architecture() ||
        c.model.spec.activation != model_->spec().activation)
      throw UsageError(str_cat("resume: ", path, " holds a ", c.model.spec.architecture(), " ",
                               activation_name(c.model.spec.activation), " model, this run builds ",
                               model_->spec().architecture(), " ", activation_name(model_->spec().activation)));
    std::string theirs_slots, mine_slots;
    for (const auto& s : c.slots) theirs_slots += (theirs_slots.empty() ? "" : ",") + s.first;
    for (const OptimSlot& s : optimizer_->slots()) mine_slots += (mine_slots.empty() ? "" : ",") + s.name;
    if (c.optimizer_name != optimizer_->name() || theirs_slots != mine_slots)
      throw UsageError(str_cat("resume: ", path, " holds ", c.optimizer_name, " state (slots '", theirs_slots,
                               "'), this run uses ", optimizer_->name(), " (slots '", mine_slots, "')"));
    const auto theirs = ini_values(c.model.config), mine = ini_values(cfg_.effective_ini);
    std::string diff;
    for (const auto& [k, v] : mine) {
      if (kResumeFreeKeys.count(k)) continue;
      const auto it = theirs.find(k);
      const std::string old = it == theirs.end() ? "(unset)" : it->second;
      if (old != v) diff += str_cat(diff.empty() ? "" : ", ", k, " (", old, " -> ", v, ")");
    }
    if (!diff.empty())
      throw UsageError(str_cat("resume: ", path, " was written with other settings: ", diff,
                               "; resume with the same settings"));
    check_resume_plan(c, path);
    const int64_t world = attr<int64_t>(c.trainer, "world_size", path);
    const int64_t batch = attr<int64_t>(c.trainer, "batch_per_rank", path);
    const auto acc = c.trainer.find("accumulate");  // absent before train.accumulate existed: 1
    const int64_t accumulate =
        acc != c.trainer.end() && std::holds_alternative<int64_t>(acc->second) ? std::get<int64_t>(acc->second) : 1;
    if ((world != comm_.size() || batch != cfg_.batch_per_rank || accumulate != cfg_.accumulate) && !cfg_.allow_reshape)
      throw UsageError(str_cat("resume: ", path, " was written by ", world, " ranks x batch ", batch, " per rank x ",
                               accumulate, " micro-batches; this run has ", comm_.size(), " x ", cfg_.batch_per_rank,
                               " x ", cfg_.accumulate,
                               ": use the same world size, train.batch_per_rank and train.accumulate, or "
                               "train.allow_reshape=true (continues from the same examples seen, lr rescaled; not "
                               "bit-exact)"));
  };
  const RunDirContents& found = log_.contents();
  if (cfg_.resume != "auto") {
    // Into its own run's directory, or one that holds no run: never mixed
    // into the records of another.
    std::error_code ec;
    const fs::path own = fs::path(cfg_.resume).parent_path().parent_path();
    if (!found.only_unfinished_launch && !fs::equivalent(own.empty() ? "." : own, cfg_.run_dir, ec))
      throw UsageError(str_cat("resume: ", cfg_.run_dir, " holds another run (", found.list(), ") than ", cfg_.resume,
                               "'s; resume into the checkpoint's own run directory or a new one"));
    auto c = std::make_unique<SavedCheckpoint>(read_checkpoint_file(cfg_.resume));
    check(*c, cfg_.resume);
    resume_ = std::move(c);
    resume_path_ = cfg_.resume;
    return;
  }
  for (const auto& [step, path] : RunFiles::list_checkpoints(cfg_.run_dir)) {
    std::unique_ptr<SavedCheckpoint> c;
    try {
      c = std::make_unique<SavedCheckpoint>(read_checkpoint_file(path));
    } catch (const UsageError& e) {
      log_.info(str_cat("resume: skipping ", path, ": ", e.what()));
      continue;  // damaged: the previous one
    }
    // The newest is chosen by the step in the name: a name that lies (a
    // checkpoint copied or renamed) would resume an older state over newer
    // ones and set those aside. The user's to sort out, as below.
    const int64_t inside = attr<int64_t>(c->trainer, "step", path);
    if (inside != step)
      throw UsageError(str_cat("resume: ", path, " holds step ", inside, ", not the ", step,
                               " its name says (copied or renamed?): move it out of ", cfg_.run_dir,
                               "/checkpoints or name it ckpt-", inside, ".h5"));
    check(*c, path);  // a valid but incompatible checkpoint is the user's to sort out
    resume_ = std::move(c);
    resume_path_ = path;
    return;
  }
  // Starting over is only for a directory with nothing of value in it, or
  // for a launch of these same settings stopped before its first checkpoint
  // (pre-empted, killed; why_not_restart): from step 0 with the same
  // settings the records it left (metrics.jsonl) are computed again, bit for
  // bit.
  if (found.only_unfinished_launch) {
    log_.info(str_cat("resume: no checkpoint in ", cfg_.run_dir,
                      found.empty() ? std::string()
                                    : str_cat(", only the records of a launch that never checkpointed (", found.list(), ")"),
                      "; starting from step 0"));
    return;
  }
  const std::string why_not = why_not_restart(found);
  if (!why_not.empty())
    throw UsageError(str_cat("resume: no usable checkpoint in ", cfg_.run_dir, "/checkpoints, but the directory holds ",
                             "a run (", found.list(), ") that a fresh start would replace (", why_not,
                             "); choose a new run.dir"));
  log_.info(str_cat("resume: no checkpoint in ", cfg_.run_dir, "; the launch there (", found.list(),
                    ") has these settings and stopped before its first checkpoint: starting it over from step 0"));
}

std::string Trainer::why_not_restart(const RunDirContents& found) const {
  if (!RunFiles::list_checkpoints(cfg_.run_dir).empty()) return "its checkpoints are unreadable or incompatible";
  // A checkpoint is written before the best.h5 of the same evaluation, so a
  // launch killed before its first checkpoint has no best model yet: a
  // best.h5 without a checkpoint means the checkpoints were deleted.
  for (const std::string& name : found.run_files)
    if (name == "final.h5" || name == "test_metrics.json" || name == "best.h5" || name.rfind("best-step", 0) == 0)
      return str_cat("it has ", name);
  const LaunchRecords records = read_launch_records(cfg_.run_dir + "/events.jsonl");
  if (records.checkpointed) return "events.jsonl records checkpoints that are gone";
  if (records.ended) return "events.jsonl records that it ended";
  if (records.last_world_size < 0) return "events.jsonl records no start, so its world size is unknown";
  if (records.last_world_size != comm_.size()) return str_cat("it ran on ", records.last_world_size, " ranks");
  const std::string recorded = cfg_.run_dir + "/config.ini";
  if (!is_run_config(recorded)) return "no config.ini of ringtrain's records its settings";
  std::ifstream in(recorded);
  std::stringstream text;
  text << in.rdbuf();
  // Every setting that can change a result, those a resume may change
  // included: the restart must compute the same records again.
  static const std::set<std::string> kNoEffect = {
      "resume", "run.dir", "run.progress", "run.trace", "run.profile", "train.stop_after_steps",
      "checkpoint.every_steps", "checkpoint.every_seconds", "checkpoint.keep_last", "comm.timeout_seconds",
      "train.requeue"};
  auto theirs = ini_values(text.str()), mine = ini_values(cfg_.effective_ini);
  for (auto* values : {&theirs, &mine})
    for (const std::string& k : kNoEffect) values->erase(k);
  if (theirs != mine) {
    for (const auto& [k, v] : mine)
      if (!theirs.count(k) || theirs.at(k) != v)
        return str_cat("it has other settings: ", k, " (", theirs.count(k) ? theirs.at(k) : "(unset)", " -> ", v, ")");
    return "it has other settings";
  }
  return "";
}

void Trainer::check_resume_plan(const SavedCheckpoint& c, const std::string& path) const {
  const int64_t step = attr<int64_t>(c.trainer, "step", path);
  const int64_t seen = attr<int64_t>(c.trainer, "examples_seen", path);
  if (step < 0 || seen < 0) throw UsageError(str_cat("resume: ", path, " records a negative step or example count"));
  // Absent from checkpoints of older versions: the plan check below remains.
  const auto rows = c.trainer.find("train_rows");
  if (rows != c.trainer.end() && std::holds_alternative<int64_t>(rows->second) &&
      std::get<int64_t>(rows->second) != train_rows())
    throw UsageError(str_cat("resume: ", path, " was written training on ", std::get<int64_t>(rows->second),
                             " rows, the training data now gives ", train_rows(),
                             " (data.train changed?); resume with the same data"));
  if (seen > plan_.total_examples)
    throw UsageError(str_cat("resume: ", path, " is at step ", step, " (", seen, " examples seen), past the end of ",
                             "this run's plan of ", total_steps_, " steps (", plan_.total_examples,
                             " examples): raise train.epochs or train.examples to train longer"));
  const auto planned = c.trainer.find("total_examples");
  if (planned != c.trainer.end() && std::holds_alternative<int64_t>(planned->second) &&
      std::get<int64_t>(planned->second) != plan_.total_examples)
    log_.info(str_cat("resume: the plan changes from ", std::get<int64_t>(planned->second), " to ",
                      plan_.total_examples, " examples (", total_steps_,
                      " steps); the lr schedule is recomputed over the new length"));
  if (cfg_.restore_best) {
    const auto best = c.tracker.find("best_step");
    const bool has_best = best != c.tracker.end() && std::holds_alternative<int64_t>(best->second) &&
                          std::get<int64_t>(best->second) >= 0;
    const std::string file = cfg_.run_dir + "/best.h5";
    if (has_best && !fs::exists(file))
      throw UsageError(str_cat("early_stop.restore_best: ", path, "'s run has a best model (step ",
                               std::get<int64_t>(best->second), ") but ", file,
                               " is missing; it could not be restored at the end"));
    if (has_best && read_model_file(file).params.size() != model_->num_params())
      throw UsageError(str_cat("early_stop.restore_best: ", file, " holds another model than this run's"));
  }
}

void Trainer::restore_resumed() {
  // Rank 0 read the checkpoint; every rank takes its state.
  int64_t head[6] = {0, 0, 0, 0, 0, 0};
  double window_loss = 0;
  if (resume_) {
    const SavedCheckpoint& c = *resume_;
    const std::string& path = resume_path_;
    head[0] = 1;
    head[1] = attr<int64_t>(c.trainer, "step", path);
    head[2] = attr<int64_t>(c.trainer, "examples_seen", path);
    head[3] = attr<int64_t>(c.optimizer, "step", path);
    head[4] = attr<int64_t>(c.trainer, "window_examples", path);
    head[5] = attr<int64_t>(c.trainer, "last_eval_step", path);
    window_loss = attr<double>(c.trainer, "window_loss_sum", path);
    std::copy(c.model.params.begin(), c.model.params.end(), model_->params());
    for (std::size_t i = 0; i < c.slots.size(); ++i)
      std::copy(c.slots[i].second.begin(), c.slots[i].second.end(), optimizer_->slots()[i].values.data());
  }
  comm_.broadcast(head, sizeof head, 0);
  if (!head[0]) {
    run_collectively(comm_, [&] {
      if (cfg_.resume != "none") log_.truncate_metrics(-1);  // a fresh start: no earlier lines
    });
    return;
  }
  comm_.broadcast(&window_loss, sizeof window_loss, 0);
  comm_.broadcast(model_->params(), model_->num_params() * sizeof(float), 0);
  for (OptimSlot& slot : optimizer_->slots()) comm_.broadcast(slot.values.data(), slot.values.size() * sizeof(float), 0);
  examples_seen_ = head[2];
  optimizer_->set_steps(head[3]);
  window_.examples = head[4];
  window_.loss_sum = window_loss;
  last_eval_step_ = head[5];
  const auto acc = resume_ ? resume_->trainer.find("accumulate") : Attrs::const_iterator();
  const int64_t accumulate = resume_ && acc != resume_->trainer.end() && std::holds_alternative<int64_t>(acc->second)
                                 ? std::get<int64_t>(acc->second)
                                 : 1;  // absent before train.accumulate existed
  const bool reshaped = resume_ && (attr<int64_t>(resume_->trainer, "world_size", resume_path_) != comm_.size() ||
                                    attr<int64_t>(resume_->trainer, "batch_per_rank", resume_path_) !=
                                        cfg_.batch_per_rank ||
                                    accumulate != cfg_.accumulate);
  int32_t reshape = reshaped;
  comm_.broadcast(&reshape, sizeof reshape, 0);
  // Same geometry: continue at the very step. Reshaped: at the step of the
  // new geometry that reaches the same examples (lr follows the new batch).
  start_step_ = reshape ? std::min(plan_.steps_to_reach(examples_seen_), total_steps_) : head[1];
  last_eval_examples_ = reshape ? examples_seen_ : plan_.examples_after(last_eval_step_);
  run_collectively(comm_, [&] {
    if (comm_.rank() != 0) return;
    tracker_.load(resume_->tracker, resume_path_);
    for (const auto& [k, v] : resume_->model.metrics)
      if (const auto* x = std::get_if<double>(&v); x && k != "epoch") last_metrics_[k] = *x;
    log_.truncate_metrics(examples_seen_);
    files_.adopt_existing(head[1]);
    if (reshape)
      log_.info(str_cat("resume: reshaped from ", attr<int64_t>(resume_->trainer, "world_size", resume_path_),
                        " ranks x batch ", attr<int64_t>(resume_->trainer, "batch_per_rank", resume_path_),
                        " x ", accumulate, " micro-batches to ", comm_.size(), " x ", cfg_.batch_per_rank, " x ",
                        cfg_.accumulate, "; continuing at step ", start_step_,
                        " with lr rescaled to the global batch (not bit-exact)"));
  });
  resume_.reset();
}

}  // namespace ringtrain
