// RingAllreduce against MPI_Allreduce (the reference): allreduce_checks.hpp.
#include "ringtrain/comm/ring_allreduce.hpp"

#include "allreduce_checks.hpp"

using ringtrain::RingAllreduce;
using namespace ringtrain::test;

TEST_CASE("ring all-reduce equals MPI_Allreduce exactly on integer-valued floats") {
  RingAllreduce ring(MPI_COMM_WORLD);
  check_equals_mpi_allreduce(ring);
}

TEST_CASE("ring all-reduce leaves bit-identical results on every rank for random floats") {
  RingAllreduce ring(MPI_COMM_WORLD);
  check_bit_identical_on_every_rank(ring);
}

TEST_CASE("ring all-reduce is deterministic run to run and reuses its scratch") {
  RingAllreduce ring(MPI_COMM_WORLD);
  check_deterministic(ring);
}
