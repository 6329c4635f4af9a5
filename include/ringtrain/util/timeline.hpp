// Timeline: what each thread of a rank did when, for a Chrome trace
// (run.trace; chrome://tracing or https://ui.perfetto.dev open it).
//
// A fixed number of slots is allocated once (reserve); add() fills the next
// one and does nothing when all are taken, so recording never allocates in
// the step loop and a long run keeps its first steps. Two threads may add at
// once (the main thread and comm.overlap's communication thread): a slot is
// claimed with one atomic increment. Times are microseconds since
// set_origin(), which every rank calls right after the same barrier, so the
// ranks' rows line up to within the barrier's skew.
//
// Names must be string literals (the pointer is stored). No I/O here.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ringtrain {

class Timeline {
 public:
  struct Event {
    const char* name = nullptr;
    int thread = 0;     // 0: main, 1: communication thread
    int64_t step = -1;  // the training step it belongs to; -1: none
    double begin_us = 0, end_us = 0;
  };

  // Room for `events` events (0: off; add() then does nothing).
  void reserve(std::size_t events) {
    slots_.assign(events, Event{});
    used_.store(0);
  }
  bool enabled() const { return !slots_.empty(); }
  void set_origin() { origin_ = Clock::now(); }
  double now_us() const { return std::chrono::duration<double, std::micro>(Clock::now() - origin_).count(); }

  void add(const char* name, int thread, int64_t step, double begin_us, double end_us) {
    if (slots_.empty()) return;
    const std::size_t i = used_.fetch_add(1, std::memory_order_relaxed);
    if (i >= slots_.size()) return;  // full: the first events are kept
    slots_[i] = Event{name, thread, step, begin_us, end_us};
  }
  // The events recorded (call when no other thread adds any more).
  std::size_t size() const { return std::min(used_.load(), slots_.size()); }
  const Event& operator[](std::size_t i) const { return slots_[i]; }
  std::size_t dropped() const { return used_.load() > slots_.size() ? used_.load() - slots_.size() : 0; }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point origin_ = Clock::now();
  std::vector<Event> slots_;
  std::atomic<std::size_t> used_{0};
};

// Records [construction, destruction) as one event when the timeline is on.
class TimelineScope {
 public:
  TimelineScope(Timeline* t, const char* name, int thread = 0, int64_t step = -1)
      : t_(t && t->enabled() ? t : nullptr), name_(name), thread_(thread), step_(step), begin_(t_ ? t_->now_us() : 0) {}
  ~TimelineScope() {
    if (t_) t_->add(name_, thread_, step_, begin_, t_->now_us());
  }
  TimelineScope(const TimelineScope&) = delete;
  TimelineScope& operator=(const TimelineScope&) = delete;

 private:
  Timeline* t_;
  const char* name_;
  int thread_;
  int64_t step_;
  double begin_;
};

}  // namespace ringtrain
