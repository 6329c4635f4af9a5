// RecursiveDoubling against MPI_Allreduce (allreduce_checks.hpp), on every
// world size CTest launches (1 to 5: powers of two and the folded rest).
#include "allreduce_checks.hpp"
#include "ringtrain/comm/recursive_doubling.hpp"

using ringtrain::RecursiveDoubling;
using namespace ringtrain::test;

TEST_CASE("recursive doubling equals MPI_Allreduce exactly on integer-valued floats") {
  RecursiveDoubling rd(MPI_COMM_WORLD);
  check_equals_mpi_allreduce(rd);
}

TEST_CASE("recursive doubling leaves bit-identical results on every rank and is deterministic") {
  RecursiveDoubling rd(MPI_COMM_WORLD);
  check_bit_identical_on_every_rank(rd);
  check_deterministic(rd);
}
