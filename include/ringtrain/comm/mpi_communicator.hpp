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

// A communicator over a duplicate of MPI_COMM_WORLD. `algorithm` picks the
// float all-reduce: "ring" (ours), "shm" (ours, one node, shared memory;
// CollectiveError when the ranks span nodes) or "mpi" (MPI_Allreduce, the
// reference). `compression` ("none", "bf16", "fp16") is the wire format of
// allreduce_gradients; other than "none" it needs the ring.
// UsageError naming comm.algorithm (comm.compression) when it is none of
// those. Every collective
// except the reference MPI_Allreduce waits under a watchdog of `timeout_s`
// seconds (comm.timeout_seconds; 0: wait for ever; see watchdog.hpp).
constexpr double kDefaultCommTimeout = 300;
std::unique_ptr<Communicator> make_mpi_communicator(const std::string& algorithm,
                                                    double timeout_s = kDefaultCommTimeout,
                                                    const std::string& compression = "none");

// The MPI this was built with ("Open MPI 4.1.4, MPI standard 3.1"), from the
// headers; needs no MPI_Init (ringtrain --version).
std::string mpi_build_version();

}  // namespace ringtrain
