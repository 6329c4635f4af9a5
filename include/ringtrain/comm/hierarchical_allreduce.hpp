// HierarchicalAllreduce: the node-aware all-reduce for ranks on several nodes
// (comm.algorithm=hierarchical; auto picks it when the ranks span nodes).
//
//   1. inside each node, the shared-memory all-reduce (ShmAllreduce): every
//      rank of the node holds the node's sum, through memory, no messages;
//   2. between nodes, one ring of the node leaders (the lowest rank of each
//      node) over the network (RingAllreduce, compressed when asked);
//   3. inside each node, the leader's result to the others (a broadcast
//      over shared memory).
// Only one rank per node talks over the network, so the bytes that cross
// it are those of a ring with one rank per node, whatever the ranks per node.
// Every rank ends with its leader's bits, and the leaders' ring leaves the
// same bits on every leader: the result is the same on every rank.
//
// `node` (optional) says which ranks share a node, as MPI_Comm_split_type
// would; tests pass a split of one machine into pretend nodes.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <memory>

#include "ringtrain/comm/ring_allreduce.hpp"
#include "ringtrain/comm/shm_allreduce.hpp"
#include "ringtrain/comm/watchdog.hpp"
#include "ringtrain/comm/wire_format.hpp"

namespace ringtrain {

class HierarchicalAllreduce {
 public:
  // Collective over `comm`.
  explicit HierarchicalAllreduce(MPI_Comm comm, Watchdog* watchdog = nullptr, MPI_Comm node = MPI_COMM_NULL);
  ~HierarchicalAllreduce();  // collective
  HierarchicalAllreduce(const HierarchicalAllreduce&) = delete;
  HierarchicalAllreduce& operator=(const HierarchicalAllreduce&) = delete;

  int nodes() const { return nodes_; }
  // `staging`: also the node's staging window, for buffers outside
  // shared_buffer() (collective over the node).
  void reserve(std::size_t n, WireFormat wire = WireFormat::kFp32, bool staging = true);
  // Collective: a buffer in the node's shared window (ShmAllreduce::shared_buffer).
  float* shared_buffer(std::size_t n) { return shm_->shared_buffer(n); }
  void run(float* data, std::size_t n, WireFormat wire = WireFormat::kFp32);

 private:
  Watchdog* watchdog_;
  MPI_Comm node_ = MPI_COMM_NULL, leaders_ = MPI_COMM_NULL;
  int local_rank_ = 0, nodes_ = 1;
  std::unique_ptr<ShmAllreduce> shm_;
  std::unique_ptr<RingAllreduce> ring_;  // leaders only
};

}  // namespace ringtrain
