// main() for tests run under mpiexec: MPI is started once, every rank runs the
// doctest cases (collectives need all ranks), ranks other than 0 print only
// failures, and the process fails on every rank if any rank had a failure,
// so mpiexec's exit code is the verdict.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <mpi.h>

#include "ringtrain/comm/mpi_communicator.hpp"

int main(int argc, char** argv) {
  ringtrain::MpiEnvironment env(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  doctest::Context ctx(argc, argv);
  ctx.setOption("no-colors", true);  // output passes through mpiexec's pty
  if (rank != 0) ctx.setOption("minimal", true);
  int failed = ctx.run() != 0 ? 1 : 0;
  if (ctx.shouldExit()) return failed;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return failed;
}
