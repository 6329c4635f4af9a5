// The training loop and its decision points (see trainer.hpp): steps, the
// evaluation after which rank 0 decides and broadcasts, the background saves,
// and what happens when training ends (restore_best, final.h5, test set).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/train/trainer.hpp"
#include "ringtrain/util/stop_signal.hpp"

namespace ringtrain {

TrackerDecision Trainer::evaluate_and_decide(int64_t step, TrainResult& result) {
  check_replicas(step);
  EvalRecord rec;
  rec.step = step;
  rec.epoch = plan_.epoch_at(step);
  rec.examples_seen = examples_seen_;
  rec.lr = schedule_.at(step - 1);  // the rate the last step used
  rec.train_loss = window_.examples > 0 ? window_.loss_sum / double(window_.examples) : 0.0;
  if (has_val_) rec.metrics = evaluate(val_, "val_");
  rec.elapsed_s = wall_.seconds();
  rec.samples_per_s = double(window_.examples) / std::max(window_.seconds, 1e-9);
  const int64_t spe = sampler_->steps_per_epoch();
  log_.evaluation(rec, (step + spe - 1) / spe, (total_steps_ + spe - 1) / spe);
  result.last_eval = rec.metrics;
  last_metrics_ = rec.metrics;
  last_metrics_["train_loss"] = rec.train_loss;
  last_eval_step_ = step;
  last_eval_examples_ = examples_seen_;
  window_ = TrainWindow{};

  // Rank 0 decides; everyone learns the decision (and any write failure).
  TrackerDecision d;
  int32_t msg[4] = {0, 0, 0, 0};
  std::string text;
  if (comm_.rank() == 0) {
    d = tracker_.update(step, last_metrics_.at(monitor_));
    const std::string failure = files_.failed();
    msg[0] = d.improved, msg[1] = d.keep, msg[2] = int32_t(d.stop), msg[3] = !failure.empty();
    text = failure.empty() ? d.message : failure;
  }
  comm_.broadcast(msg, sizeof msg, 0);
  if (msg[2] != 0 || msg[3] != 0) text = broadcast_string(comm_, text, 0);
  if (msg[3]) throw CollectiveError(str_cat("writing the run's files failed: ", text), kExitRuntime);
  d.improved = msg[0], d.keep = msg[1], d.stop = StopReason(msg[2]), d.message = text;
  if (d.improved)
    log_.info(str_cat("new best ", monitor_, " ", last_metrics_.at(monitor_), " at step ", step,
                      cfg_.keep_best > 1 ? " (best.h5, " + RunFiles::versioned_name(step) + ")" : " (best.h5)"));
  return d;
}

void Trainer::save(int64_t step, const TrackerDecision& d, bool checkpoint) {
  if (checkpoint) gather_optimizer_state();  // collective: every rank decided alike
  if (comm_.rank() != 0) return;
  const bool best = d.improved, versioned = cfg_.keep_best > 1 && d.keep;
  if (!best && !versioned && !checkpoint && d.evicted.empty()) return;
  const Timer timer;
  const TimelineScope scope(tracing(step - 1) ? &timeline_ : nullptr, "checkpoint (hand to writer)", 0, step - 1);
  SavedCheckpoint& c = files_.stage();  // waits for the write in flight
  if (checkpoint) {
    stage_checkpoint(c, step);
  } else {
    stage_model(c.model, step);
  }
  SaveRequest r;
  r.step = step;
  r.checkpoint = checkpoint;
  r.best = best;
  r.versioned = versioned;
  r.evicted = d.evicted;
  files_.submit(std::move(r));
  if (checkpoint) since_checkpoint_.reset();
  save_seconds_ += timer.seconds();
}

TrainResult Trainer::run() {
  TrainResult result;
  const int64_t spe = sampler_->steps_per_epoch();
  const int64_t epochs = (total_steps_ + spe - 1) / spe;
  const int64_t end = cfg_.stop_after_steps > 0 ? std::min(total_steps_, cfg_.stop_after_steps) : total_steps_;
  const bool checkpoints = cfg_.checkpoint_keep_last > 0;
  if (cfg_.trace_steps > 0) {  // one time origin for every rank's row
    comm_.barrier();
    timeline_.set_origin();
  }
  wall_.reset();
  since_checkpoint_.reset();
  double train_seconds = 0;
  int64_t step = start_step_;
  // Not examples_after(start_step_): after a reshaped resume the first step
  // of the new geometry lies past the examples the checkpoint had seen.
  const int64_t examples_at_start = examples_seen_;
  while (step < end) {
    const int64_t epoch = step / spe, in_epoch = step % spe;
    sampler_->set_epoch(epoch);
    const Timer step_timer;
    const double loss = train_step(step, in_epoch);
    if (writer_failed_flag_ > 0) {
      const std::string why = broadcast_string(comm_, files_.active() ? files_.failed() : "", 0);
      throw CollectiveError(str_cat("writing the run's files failed: ", why), kExitRuntime);
    }
    if (!std::isfinite(loss)) {
      result.stop = StopReason::kNonFinite;
      result.stop_message = str_cat("training diverged: non-finite loss or gradient at step ", step,
                                    " (lower optim.lr?); no checkpoint or model written from that state");
      break;
    }
    const int64_t examples = int64_t(sampler_->batch_size(in_epoch)) * comm_.size();
    const double dt = step_timer.seconds();
    ++step;
    examples_seen_ += examples;
    window_.loss_sum += loss;
    window_.examples += examples;
    window_.seconds += dt;
    train_seconds += dt;
    log_.progress(epoch + 1, epochs, in_epoch + 1, spe, window_.loss_sum / double(window_.examples),
                  double(window_.examples) / std::max(window_.seconds, 1e-9));
    const bool eval_due = plan_.is_eval_step(step);
    TrackerDecision d;
    if (eval_due) {
      const Timer eval_timer;
      const TimelineScope scope(tracing(step - 1) ? &timeline_ : nullptr, "evaluation", 0, step - 1);
      d = evaluate_and_decide(step, result);
      eval_seconds_ += eval_timer.seconds();
    }
    const bool diverged = d.stop == StopReason::kNonFinite || d.stop == StopReason::kDivergence;
    // A stop signal on any rank: every rank saw the same sum, so all stop
    // here, after this step's evaluation (if due) and with a checkpoint.
    const bool preempt = stop_flag_ > 0 && step < total_steps_;
    const bool checkpoint_due =
        checkpoints && !diverged &&
        (eval_due || step == end || preempt || checkpoint_flag_ > 0 ||
         (cfg_.checkpoint_every_steps > 0 && step % cfg_.checkpoint_every_steps == 0));
    save(step, d, checkpoint_due);
    if (d.stop != StopReason::kNone) {
      result.stop = d.stop;
      result.stop_message = d.message;
      break;
    }
    if (preempt) {
      result.preempted = true;
      result.preempted_ranks = int(stop_flag_);
      break;
    }
  }
  gather_optimizer_state();  // whole on every rank once the loop ends
  result.steps = step;
  result.examples_seen = examples_seen_;
  result.interrupted = result.stop == StopReason::kNone && step < total_steps_;
  result.trained_examples = examples_seen_ - examples_at_start;
  result.samples_per_s = double(result.trained_examples) / std::max(train_seconds, 1e-9);
  result.train_seconds = train_seconds;
  result.step_times = times_;
  result.eval_seconds = eval_seconds_;
  result.checkpoint_seconds = save_seconds_;
  end_of_training(step, result);
  return result;
}

void Trainer::end_of_training(int64_t step, TrainResult& result) {
  // Every file written so far is on disk (or every rank learns why not).
  run_collectively(comm_, [&] {
    if (files_.active()) files_.wait();
  });
  write_trace();
  if (!result.stop_message.empty()) log_.info(result.stop_message);
  if (result.interrupted) {
    const bool saved = cfg_.checkpoint_keep_last > 0;
    const std::string how =
        saved ? str_cat("checkpoint ", cfg_.run_dir, "/checkpoints/ckpt-", step, ".h5 written; continue with --resume auto")
              : "no checkpoint written (checkpoint.keep_last=0): a new run starts over";
    if (result.preempted) {
      const int own = stop_signal();
      log_.info(str_cat("pre-empted: a stop signal reached ", result.preempted_ranks, " of ", comm_.size(),
                        comm_.size() == 1 ? " rank" : " ranks",
                        own ? str_cat(" (", stop_signal_name(own), " on rank 0)") : std::string(),
                        "; all stopped after step ", step, " of ", total_steps_, "; ", how));
    } else {
      log_.info(str_cat("stopped after step ", step, " of ", total_steps_, " (train.stop_after_steps); ", how));
    }
    record_end(step, result);
    return;
  }
  const bool diverged = result.stop == StopReason::kNonFinite || result.stop == StopReason::kDivergence;
  // restore_best: end with the best weights, whatever stopped training.
  int32_t restore = 0;
  if (comm_.rank() == 0) restore = cfg_.restore_best && tracker_.has_best();
  comm_.broadcast(&restore, sizeof restore, 0);
  Attrs restored;  // best.h5's metrics, for final.h5
  if (restore) {
    run_collectively(comm_, [&] {
      if (comm_.rank() != 0) return;
      const SavedModel best = read_model_file(cfg_.run_dir + "/best.h5");
      if (best.params.size() != model_->num_params())
        throw RuntimeError(str_cat(cfg_.run_dir, "/best.h5: holds another model than this run's"));
      std::copy(best.params.begin(), best.params.end(), model_->params());
      restored = best.metrics;
    });
    comm_.broadcast(model_->params(), model_->num_params() * sizeof(float), 0);
    log_.info(str_cat("restored the best weights (", monitor_, " ", tracker_.best_value(), " at step ",
                      tracker_.best_step(), ") as the final model"));
  }
  if (diverged && !restore) {  // nothing trustworthy to write or test
    record_end(step, result);
    return;
  }
  run_collectively(comm_, [&] {
    if (comm_.rank() != 0) return;
    SavedCheckpoint& c = files_.stage();
    stage_model(c.model, step);
    if (restore) c.model.metrics = restored;
    SaveRequest r;
    r.step = restore ? tracker_.best_step() : step;
    r.final_model = true;
    files_.submit(std::move(r));
    files_.wait();
  });
  if (has_test_) {
    result.test = evaluate(test_, "test_");
    log_.info(str_cat("test: ", format_metrics(result.test)));
    run_collectively(comm_, [&] { log_.write_json("test_metrics.json", result.test); });
  }
  char summary[384];
  std::snprintf(summary, sizeof summary,
                "done: %lld steps, %lld examples in %.2f s (%.1fk samples/s while training, %.1f%% of it in the "
                "all-reduce%s; %.3f s spent handing states to the writer); results in ",
                (long long)step, (long long)result.examples_seen, wall_.seconds(), result.samples_per_s / 1e3,
                100.0 * times_.comm / std::max(result.train_seconds, 1e-9),
                profiles_wait() ? "" : ", waiting for the slowest rank included", save_seconds_);
  log_.info(summary + log_.dir());
  const double t = std::max(result.train_seconds, 1e-9);
  char waiting[48] = "";
  if (profiles_wait())
    std::snprintf(waiting, sizeof waiting, ", waiting for the slowest rank %.1f%%", 100 * result.step_times.wait / t);
  std::snprintf(summary, sizeof summary,
                "step time (rank 0): compute %.1f%%, all-reduce %.1f%%%s, optimizer %.1f%%, batch rows %.1f%%; "
                "evaluation %.2f s, checkpoints %.2f s",
                100 * result.step_times.compute / t, 100 * result.step_times.comm / t, waiting,
                100 * result.step_times.optimizer / t, 100 * result.step_times.data / t, result.eval_seconds,
                result.checkpoint_seconds);
  log_.info(summary);
  record_end(step, result);
}

void Trainer::write_trace() {
  if (cfg_.trace_steps <= 0) return;
  // Chrome's trace format: complete events ("ph": "X"), one process per rank
  // and one thread per thread of it, times in microseconds.
  nlohmann::json mine = nlohmann::json::array();
  for (std::size_t i = 0; i < timeline_.size(); ++i) {
    const Timeline::Event& ev = timeline_[i];
    nlohmann::json j = {{"name", ev.name}, {"ph", "X"},   {"pid", comm_.rank()},
                        {"tid", ev.thread}, {"ts", ev.begin_us}, {"dur", ev.end_us - ev.begin_us}};
    if (ev.step >= 0) j["args"] = {{"step", ev.step}};
    mine.push_back(std::move(j));
  }
  if (timeline_.dropped() > 0)
    log_.info(str_cat("trace: ", timeline_.dropped(), " events past the trace's room left out"));
  nlohmann::json all = nlohmann::json::array();
  for (int r = 0; r < comm_.size(); ++r) {
    const std::string part = broadcast_string(comm_, comm_.rank() == r ? mine.dump() : std::string(), r);
    if (comm_.rank() != 0) continue;
    for (auto& ev : nlohmann::json::parse(part)) all.push_back(std::move(ev));
    all.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", r}, {"args", {{"name", str_cat("rank ", r)}}}});
    all.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", r}, {"tid", 0}, {"args", {{"name", "main"}}}});
    all.push_back(
        {{"name", "thread_name"}, {"ph", "M"}, {"pid", r}, {"tid", 1}, {"args", {{"name", "communication"}}}});
  }
  // A trace is a diagnostic: failing to write it must not cost the run its
  // final model (nothing collective follows here, so rank 0 just says so).
  if (comm_.rank() != 0) return;
  try {
    const nlohmann::json trace = {{"traceEvents", all}, {"displayTimeUnit", "ms"}};
    write_file_atomic(cfg_.run_dir + "/trace.json", trace.dump() + "\n");
    log_.info(str_cat("trace of the first ", cfg_.trace_steps, " steps: ", cfg_.run_dir, "/trace.json"));
  } catch (const std::exception& e) {
    log_.info(str_cat("warning: trace.json not written: ", e.what()));
  }
}

void Trainer::record_end(int64_t step, const TrainResult& result) const {
  const char* reason = "completed";
  if (result.preempted) reason = "preempted";
  else if (result.interrupted) reason = "stopped";
  else if (result.stop == StopReason::kPatience || result.stop == StopReason::kBaseline) reason = "early_stop";
  else if (result.stop == StopReason::kDivergence || result.stop == StopReason::kNonFinite) reason = "diverged";
  nlohmann::ordered_json e;
  e["reason"] = reason;
  if (result.stop != StopReason::kNone) e["stop"] = stop_reason_name(result.stop);
  if (!result.stop_message.empty()) e["message"] = result.stop_message;
  if (result.preempted) e["preempted_ranks"] = result.preempted_ranks;
  e["step"] = step;
  e["examples_seen"] = result.examples_seen;
  e["total_steps"] = total_steps_;
  e["trained_examples"] = result.trained_examples;
  e["wall_s"] = since_launch_.seconds();
  e["train_s"] = result.train_seconds;
  e["comm_s"] = result.step_times.comm;
  e["samples_per_s"] = result.samples_per_s;
  // Rank 0's seconds per phase of the training loop (train_s is the steps:
  // data + compute + wait + comm + optimizer).
  e["breakdown"] = {{"data_s", result.step_times.data},
                    {"compute_s", result.step_times.compute},
                    {"wait_s", result.step_times.wait},
                    {"comm_s", result.step_times.comm},
                    {"optimizer_s", result.step_times.optimizer},
                    {"eval_s", result.eval_seconds},
                    {"checkpoint_s", result.checkpoint_seconds},
                    {"profiled_wait", profiles_wait()}};
  e["comm"] = {{"algorithm", comm_.algorithm()},
               {"compression", comm_.compression()},
               {"buckets", reducer_->ranges().size()},
               {"overlap", reducer_->overlapped()},
               {"shard_optimizer", sharded_}};
  if (!result.test.empty()) e["test"] = result.test;
  log_.event("end", e);
}

}  // namespace ringtrain
