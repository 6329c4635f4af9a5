// Pre-emption signals. SIGTERM and SIGUSR1 (what Slurm sends before a time
// limit, on scancel --signal, or what a launcher forwards) only set a flag
// here; the training loop reads it at every step, the ranks agree on it in
// the step's all-reduce, and every rank stops on the same step after a
// checkpoint. A handler that did more (write files, call MPI) could corrupt
// the state it interrupts; a second signal only sets the flag again.
#pragma once

namespace ringtrain {

// Installs the handlers (SA_RESTART, so interrupted system calls go on).
void install_stop_signal_handlers();
// 0, or the number of the first stop signal received.
int stop_signal();
// For tests: as if `signo` had arrived (0 clears the flag).
void set_stop_signal(int signo);
// "SIGTERM", "SIGUSR1", or "signal N".
const char* stop_signal_name(int signo);

}  // namespace ringtrain
