// Stop-signal flag (see stop_signal.hpp).
#include "ringtrain/util/stop_signal.hpp"

#include <signal.h>

#include <csignal>
#include <cstdio>

namespace ringtrain {

namespace {

// Async-signal-safe: a lock-free atomic store is all the handler does.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int signo) {
  if (g_stop_signal == 0) g_stop_signal = signo;
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

int stop_signal() { return g_stop_signal; }

void set_stop_signal(int signo) { g_stop_signal = signo; }

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
