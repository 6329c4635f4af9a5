// Watchdog on the launched world size (CTest runs this on 1..5 ranks). What
// ends the job (a lost rank, a deadlock) cannot be checked from inside one
// process: tests/e2e/test_rank_failure.sh stops a rank for that. Here: waits
// that complete are returned from, and a rank that is busy on its own but
// says so keeps the others waiting past the timeout instead of ending the job.
#include <doctest/doctest.h>
#include <mpi.h>
#include <unistd.h>

#include "ringtrain/comm/watchdog.hpp"
#include "ringtrain/util/timer.hpp"

using ringtrain::Timer;
using ringtrain::Watchdog;

TEST_CASE("watchdog: completed requests return at once, also with a timeout") {
  Watchdog wd(MPI_COMM_WORLD, 1.0);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int value = rank, sum = 0;
  MPI_Request r;
  MPI_Iallreduce(&value, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD, &r);
  wd.wait(1, &r, "a test all-reduce");
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  CHECK(sum == size * (size - 1) / 2);
  CHECK(r == MPI_REQUEST_NULL);
}

TEST_CASE("watchdog: a rank busy past the timeout that answers 'busy' does not end the job") {
  Watchdog wd(MPI_COMM_WORLD, 1.0);  // the others call the roll after 1 s, 2 s, ...
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const Timer timer;
  if (rank == 0) {
    while (timer.seconds() < 3.5) {  // as rank 0 does while its writer works
      wd.answer_roll_calls(Watchdog::kBusy);
      usleep(20000);
    }
  }
  MPI_Request r;
  MPI_Ibarrier(MPI_COMM_WORLD, &r);
  wd.wait(1, &r, "a test barrier");  // would MPI_Abort (failing the test) if rank 0 were taken for lost
  CHECK(timer.seconds() >= 3.0);
}
