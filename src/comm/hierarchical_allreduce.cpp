// Node-aware all-reduce (see hierarchical_allreduce.hpp).
#include "ringtrain/comm/hierarchical_allreduce.hpp"

#include <algorithm>
#include <limits>

#include "ringtrain/comm/mpi_helpers.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

HierarchicalAllreduce::HierarchicalAllreduce(MPI_Comm comm, Watchdog* watchdog, MPI_Comm node) : watchdog_(watchdog) {
  if (node == MPI_COMM_NULL) {
    check_mpi(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node_), "MPI_Comm_split_type");
  } else {
    check_mpi(MPI_Comm_dup(node, &node_), "MPI_Comm_dup");
  }
  MPI_Comm_set_errhandler(node_, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_rank(node_, &local_rank_), "MPI_Comm_rank");
  const bool leader = local_rank_ == 0;
  check_mpi(MPI_Comm_split(comm, leader ? 0 : MPI_UNDEFINED, 0, &leaders_), "MPI_Comm_split");
  int is_leader = leader ? 1 : 0;
  check_mpi(MPI_Allreduce(&is_leader, &nodes_, 1, MPI_INT, MPI_SUM, comm), "MPI_Allreduce");
  shm_ = std::make_unique<ShmAllreduce>(node_, watchdog);
  if (leader) {
    MPI_Comm_set_errhandler(leaders_, MPI_ERRORS_RETURN);
    ring_ = std::make_unique<RingAllreduce>(leaders_, watchdog);
  }
}

HierarchicalAllreduce::~HierarchicalAllreduce() {
  shm_.reset();  // collective over the node
  ring_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (leaders_ != MPI_COMM_NULL) MPI_Comm_free(&leaders_);
  if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);
}

void HierarchicalAllreduce::reserve(std::size_t n, WireFormat wire, bool staging) {
  if (staging) shm_->reserve(n);
  if (ring_) ring_->reserve(n, wire);
}

void HierarchicalAllreduce::run(float* data, std::size_t n, WireFormat wire) {
  if (n == 0) return;
  shm_->run(data, n);  // every rank of the node: the node's sum
  if (nodes_ == 1) return;
  if (ring_) ring_->run(data, n, wire);
  // The leader's bits to the node, in pieces MPI's int count can hold.
  constexpr std::size_t kPiece = std::size_t(1) << 28;
  for (std::size_t at = 0; at < n; at += kPiece) {
    MPI_Request req;
    check_mpi(MPI_Ibcast(data + at, int(std::min(kPiece, n - at)), MPI_FLOAT, 0, node_, &req), "MPI_Ibcast");
    wait_all(watchdog_, 1, &req, "the node-aware all-reduce (result to the node)");
  }
}

}  // namespace ringtrain
