// Watchdog (see watchdog.hpp): waits with a timeout and a roll call.
#include "ringtrain/comm/watchdog.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "ringtrain/comm/mpi_helpers.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace {

constexpr int kQuestionTag = 0x7701, kAnswerTag = 0x7702;

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string s;
  for (int r : ranks) s += (s.empty() ? "" : ", ") + std::to_string(r);
  return s;
}

}  // namespace

Watchdog::Watchdog(MPI_Comm comm, double timeout_s) : timeout_(timeout_s) {
  check_mpi(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  reply_.assign(size_, 0);
  question_.assign(size_, rank_);
  reply_reqs_.assign(size_, MPI_REQUEST_NULL);
}

Watchdog::~Watchdog() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  for (MPI_Request& r : reply_reqs_)
    if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
  MPI_Comm_free(&comm_);
}

void wait_all(Watchdog* watchdog, int n, MPI_Request* requests, const char* what) {
  if (n == 0) return;
  if (watchdog) return watchdog->wait(n, requests, what);
  check_mpi(MPI_Waitall(n, requests, MPI_STATUSES_IGNORE), what);
}

namespace {

// Polls before a wait outside MPI starts yielding: about a microsecond and a
// half, longer than a shared-memory barrier takes when every rank is running.
constexpr unsigned kSpinPolls = 2048;

void pause_or_yield(unsigned polls) {
  if (polls < kSpinPolls) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    return;
  }
  std::this_thread::yield();
}

struct MpiRequests {
  int n;
  MPI_Request* requests;
  const char* what;
};

bool requests_done(const void* ctx) {
  const auto* r = static_cast<const MpiRequests*>(ctx);
  int done = 0;
  check_mpi(MPI_Testall(r->n, r->requests, &done, MPI_STATUSES_IGNORE), r->what);
  return done != 0;
}

}  // namespace

void wait_until(Watchdog* watchdog, bool (*ready)(const void*), const void* ctx, const char* what) {
  if (watchdog) return watchdog->wait_until(ready, ctx, what);
  for (unsigned polls = 0; !ready(ctx); ++polls) pause_or_yield(polls);
}

void Watchdog::wait(int n, MPI_Request* requests, const char* what) {
  int done = 0;
  check_mpi(MPI_Testall(n, requests, &done, MPI_STATUSES_IGNORE), what);
  if (done) return;
  if (timeout_ <= 0 || size_ == 1)  // nothing to watch
    return check_mpi(MPI_Waitall(n, requests, MPI_STATUSES_IGNORE), what);
  // MPI's own polling decides when to yield (Open MPI: when oversubscribed).
  const MpiRequests r{n, requests, what};
  poll(requests_done, &r, what, false);
}

void Watchdog::wait_until(bool (*ready)(const void*), const void* ctx, const char* what) {
  if (ready(ctx)) return;
  poll(ready, ctx, what, true);
}

void Watchdog::poll(bool (*ready)(const void*), const void* ctx, const char* what, bool spin_then_yield) {
  if (timeout_ <= 0 || size_ == 1) {  // nothing to watch
    for (unsigned polls = 1; !ready(ctx); ++polls)
      if (spin_then_yield) pause_or_yield(polls);
    return;
  }
  // Read the clock and look for roll calls only every so many polls: one
  // poll is well under a microsecond when nothing arrived.
  const double start = now_s();
  double since = start, next_look = start + 0.01;
  for (unsigned polls = 1;; ++polls) {
    if (spin_then_yield) pause_or_yield(polls);
    if (ready(ctx)) return;
    if (polls % 64 != 0) continue;
    const double t = now_s();
    if (t < next_look) continue;
    next_look = t + 0.01;
    answer_roll_calls(kWaiting);
    // A rank that said it is busy (rank 0 waiting for its writer) is
    // progress: wait another period.
    if (t - since >= timeout_ && roll_call(what, t - start) == RollCall::kSomeBusy) since = now_s();
  }
}

void Watchdog::answer_roll_calls(int state) {
  for (;;) {
    int pending = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kQuestionTag, comm_, &pending, &st) != MPI_SUCCESS || !pending) return;
    int question = 0;
    if (MPI_Recv(&question, 1, MPI_INT, st.MPI_SOURCE, kQuestionTag, comm_, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      return;
    const int q = st.MPI_SOURCE;
    int idle = 1;
    if (reply_reqs_[q] != MPI_REQUEST_NULL) MPI_Test(&reply_reqs_[q], &idle, MPI_STATUS_IGNORE);
    if (!idle) continue;  // the last answer to q is still on its way
    reply_[q] = state;
    MPI_Isend(&reply_[q], 1, MPI_INT, q, kAnswerTag, comm_, &reply_reqs_[q]);
  }
}

Watchdog::RollCall Watchdog::roll_call(const char* what, double waited) {
  // Ask everyone; the sends to a dead rank may never complete, which is fine:
  // the job ends below either way.
  std::vector<MPI_Request> asks(size_, MPI_REQUEST_NULL);
  for (int q = 0; q < size_; ++q)
    if (q != rank_) MPI_Isend(&question_[q], 1, MPI_INT, q, kQuestionTag, comm_, &asks[q]);
  std::vector<int> alive(size_, 0);  // 0: no answer, else kWaiting or kBusy
  alive[rank_] = kWaiting;
  const double grace = std::min(10.0, std::max(1.0, 0.5 * timeout_));
  const double end = now_s() + grace;
  int answered = 1;
  while (answered < size_ && now_s() < end) {
    answer_roll_calls(kWaiting);  // another rank may be calling the roll too
    int pending = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kAnswerTag, comm_, &pending, &st) != MPI_SUCCESS) break;
    if (!pending) continue;
    int state = kWaiting;
    MPI_Recv(&state, 1, MPI_INT, st.MPI_SOURCE, kAnswerTag, comm_, MPI_STATUS_IGNORE);
    if (!alive[st.MPI_SOURCE]) ++answered;
    alive[st.MPI_SOURCE] = state == kBusy ? kBusy : kWaiting;
  }
  for (MPI_Request& r : asks)  // questions to live ranks have arrived; drop the rest
    if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
  const bool busy = std::count(alive.begin(), alive.end(), int(kBusy)) > 0;
  if (answered == size_ && busy) return RollCall::kSomeBusy;
  std::vector<int> missing, waiting;
  for (int q = 0; q < size_; ++q) (alive[q] ? waiting : missing).push_back(q);
  // A rank that is busy while another is missing cannot save the job.
  const std::string missing_text =
      missing.empty() ? "every rank answered the roll call and waits (a deadlock, not a lost rank)"
                      : str_cat(missing.size() == 1 ? "rank " : "ranks ", rank_list(missing),
                                " did not answer (dead, stopped, or busy outside communication all along)");
  std::fflush(stdout);
  std::fprintf(stderr,
               "ringtrain: error: rank %d: no progress for %.0f s in %s (comm.timeout_seconds=%g): %s; "
               "ranks alive: %s; ending the job\n",
               rank_, waited, what, timeout_, missing_text.c_str(), rank_list(waiting).c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, kExitRuntime);
  std::_Exit(kExitRuntime);
}

}  // namespace ringtrain
