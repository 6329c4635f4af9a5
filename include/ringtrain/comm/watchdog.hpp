// Watchdog: every wait of comm/ goes through it, so no rank waits forever.
//
// wait() polls MPI requests. When nothing completed for `timeout` seconds it
// calls the roll: it asks every other rank, on a communicator of its own (so
// the questions never mix with training traffic), whether it is alive, gives
// them a grace period to answer, prints which ranks did not answer (dead,
// stopped, or stuck outside communication) and ends the job with MPI_Abort.
// Ranks answer roll calls while they wait, so a rank that is alive and
// waiting is never named; one that is computing through the whole grace
// period is, and that is the rank holding everyone up. A rank that knows it
// is busy for a while (rank 0 waiting for its writer) answers "busy", and
// the others wait another period. When every rank answers "waiting", it is
// a deadlock and the job ends too.
//
// Why our own: when a rank dies, mpirun ends the job, but srun without
// --kill-on-bad-exit, a stopped process or a rank stuck in a file-system
// call leave the others blocked in MPI for ever. Polling costs nothing extra:
// MPI's own blocking waits spin on the same progress engine.
#pragma once

#include <mpi.h>

#include <vector>

namespace ringtrain {

class Watchdog {
 public:
  // Duplicates `comm` for the roll call. timeout_s <= 0: wait for ever.
  Watchdog(MPI_Comm comm, double timeout_s);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Waits until all n requests completed. `what` names the operation in the
  // report ("the ring all-reduce"). Never returns when the timeout fires.
  void wait(int n, MPI_Request* requests, const char* what);
  // The same for a wait outside MPI (the shared-memory barrier): polls
  // ready(ctx) until it returns true.
  void wait_until(bool (*ready)(const void*), const void* ctx, const char* what);
  double timeout() const { return timeout_; }
  // What a rank answers a roll call: waiting in a collective, or busy on
  // its own and known to come back (rank 0 waiting for its writer).
  enum State : int { kWaiting = 1, kBusy = 2 };
  // Replies to every pending roll call. wait() does it with kWaiting; a rank
  // busy outside communication for long calls it with kBusy, and the ranks
  // waiting for it wait another period instead of ending the job.
  void answer_roll_calls(int state);

 private:
  enum class RollCall { kSomeBusy };
  // wait() and wait_until(): polls ready(ctx) with the timeout and the roll
  // call; spin_then_yield for waits outside MPI (whose polling yields itself).
  void poll(bool (*ready)(const void*), const void* ctx, const char* what, bool spin_then_yield);
  // Returns kSomeBusy when every rank answered and one is busy; otherwise
  // reports and ends the job.
  RollCall roll_call(const char* what, double waited);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_ = 0;
  std::vector<int> reply_;               // payload per peer, alive while sending
  std::vector<int> question_;            // roll-call payload; a freed send may still read it
  std::vector<MPI_Request> reply_reqs_;  // one outstanding reply per peer
};

// Waits until all n requests completed: through `watchdog` when there is one,
// else plainly (MPI_Waitall; the algorithms' own tests run without one).
void wait_all(Watchdog* watchdog, int n, MPI_Request* requests, const char* what);
// Polls ready(ctx) until it returns true: through `watchdog` when there is
// one, else plainly. Either way it spins briefly, then yields the core
// between polls (the rank it waits for may need it: oversubscribed runs).
void wait_until(Watchdog* watchdog, bool (*ready)(const void*), const void* ctx, const char* what);

}  // namespace ringtrain
