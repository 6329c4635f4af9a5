// Stop-signal flag (see stop_signal.hpp).
#include "ringtrain/util/stop_signal.hpp"

#include <signal.h>

#include <atomic>
#include <csignal>
#include <cstdio>

namespace ringtrain {

namespace {

// The handler may run on any thread (the writer, MPI's progress threads);
// a lock-free atomic is both async-signal-safe and race-free.
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal flag must be lock-free");

extern "C" void on_stop_signal(int signo) {
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, signo);
}

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

int stop_signal() { return g_stop_signal.load(); }

void set_stop_signal(int signo) { g_stop_signal.store(signo); }

const char* stop_signal_name(int signo) {
  static char other[32];
  switch (signo) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    default:
      std::snprintf(other, sizeof other, "signal %d", signo);
      return other;
  }
}

}  // namespace ringtrain
