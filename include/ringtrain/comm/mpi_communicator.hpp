// The MPI side of comm/: MPI start-up/shut-down and the MPI Communicator.
// This header does not include <mpi.h>, so train/ and app/ can use it.
#pragma once

#include <memory>
#include <string>

#include "ringtrain/comm/communicator.hpp"

namespace ringtrain {

// RAII MPI_Init_thread / MPI_Finalize. Only one may exist per process. Asks
// for MPI_THREAD_SERIALIZED (comm.overlap's communication thread makes the
// calls while the main thread computes); Communicator::allows_comm_thread()
// says whether the library gave it.
class MpiEnvironment {
 public:
  MpiEnvironment(int* argc, char*** argv);
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;
};

// comm.algorithm's values, and the sizes up to which auto takes recursive
// doubling. On one node, measured with bench_allreduce (2 ranks): recursive
// doubling 1.1 us against shm's 1.4 us at 1 KiB, 3.2 us against 2.1 us at
// 4 KiB. Across nodes it competes with hierarchical's leaders' ring, whose
// every step crosses the network: 16 KiB, where recursive doubling still
// beat shm with MPI's barriers on one node (5.5 us against 6.1 us); not
// measured on a real cluster.
constexpr const char* kAlgorithms = "auto, ring, shm, hierarchical or mpi";
constexpr std::size_t kAutoSmallBytesOneNode = std::size_t(1) << 10;
constexpr std::size_t kAutoSmallBytes = std::size_t(16) << 10;
bool is_algorithm(const std::string& name);

// A communicator over a duplicate of MPI_COMM_WORLD. `algorithm` picks the
// float all-reduce:
//   "ring"          ours over messages (ring_allreduce.hpp);
//   "shm"           ours, one node, shared memory (CollectiveError when the
//                   ranks span nodes);
//   "hierarchical"  shared memory in each node, a ring of one rank per node
//                   between them (hierarchical_allreduce.hpp);
//   "auto"          by size: recursive doubling up to kAutoSmallBytesOneNode,
//                   then shm, on one node; across nodes recursive doubling
//                   up to kAutoSmallBytes, then hierarchical;
//   "mpi"           MPI_Allreduce, the reference.
// `compression` ("none", "bf16", "fp16") is the wire format of
// allreduce_gradients (the ring's messages, and the leaders' ring of
// hierarchical); not with shm or mpi. UsageError naming comm.algorithm or
// comm.compression otherwise. Every collective except the reference
// MPI_Allreduce waits under a watchdog of `timeout_s` seconds
// (comm.timeout_seconds; 0: wait for ever; see watchdog.hpp).
constexpr double kDefaultCommTimeout = 300;
std::unique_ptr<Communicator> make_mpi_communicator(const std::string& algorithm,
                                                    double timeout_s = kDefaultCommTimeout,
                                                    const std::string& compression = "none");

// The MPI this was built with ("Open MPI 4.1.4, MPI standard 3.1"), from the
// headers; needs no MPI_Init (ringtrain --version).
std::string mpi_build_version();

}  // namespace ringtrain
