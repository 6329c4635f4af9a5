// MpiEnvironment and MpiCommunicator (see mpi_communicator.hpp).
#include "ringtrain/comm/mpi_communicator.hpp"

#include <mpi.h>

#include <cstdio>
#include <functional>
#include <limits>

#include "ringtrain/comm/hierarchical_allreduce.hpp"
#include "ringtrain/comm/mpi_helpers.hpp"
#include "ringtrain/comm/recursive_doubling.hpp"
#include "ringtrain/comm/ring_allreduce.hpp"
#include "ringtrain/comm/shm_allreduce.hpp"
#include "ringtrain/comm/watchdog.hpp"
#include "ringtrain/comm/wire_format.hpp"

namespace ringtrain {

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  int provided = MPI_THREAD_SINGLE;  // less than asked: Communicator::allows_comm_thread() says no
  check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  // Errors come back as return codes (checked everywhere) rather than
  // aborting inside the library without a message.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiEnvironment::~MpiEnvironment() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

namespace {

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(std::string algorithm, double timeout_s, WireFormat wire)
      : algorithm_(std::move(algorithm)), wire_(wire) {
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    watchdog_ = std::make_unique<Watchdog>(comm_, timeout_s);
    ring_ = std::make_unique<RingAllreduce>(comm_, watchdog_.get());
    try {
      if (algorithm_ == "shm") shm_ = std::make_unique<ShmAllreduce>(comm_, watchdog_.get());
      if (algorithm_ == "hierarchical") hier_ = std::make_unique<HierarchicalAllreduce>(comm_, watchdog_.get());
      if (algorithm_ == "auto") {
        small_ = std::make_unique<RecursiveDoubling>(comm_, watchdog_.get());
        if (ShmAllreduce::single_node(comm_)) {
          shm_ = std::make_unique<ShmAllreduce>(comm_, watchdog_.get());
          small_bytes_ = kAutoSmallBytesOneNode;
        } else {
          hier_ = std::make_unique<HierarchicalAllreduce>(comm_, watchdog_.get());
        }
      }
    } catch (...) {  // ranks on several nodes: the destructor will not run
      ring_.reset();
      watchdog_.reset();
      MPI_Comm_free(&comm_);
      throw;
    }
  }
  ~MpiCommunicator() override {
    shm_.reset();  // collective: every rank frees the window
    hier_.reset();
    small_.reset();
    ring_.reset();
    watchdog_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // auto names what it resolved to: "auto (shm)", "auto (hierarchical)",
  // or "auto (ring: ...)" when shared memory had no room.
  std::string algorithm() const override {
    if (algorithm_ != "auto") return algorithm_;
    if (!fallback_.empty()) return "auto (ring: " + fallback_ + ")";
    return shm_ ? "auto (shm)" : "auto (hierarchical)";
  }
  std::string compression() const override { return wire_format_name(wire_); }
  bool allows_comm_thread() const override {
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    return level >= MPI_THREAD_SERIALIZED;
  }
  void reserve(std::size_t n) override { reserve_for(n, WireFormat::kFp32); }
  void reserve_gradients(std::size_t n) override { reserve_for(n, wire_); }
  float* shared_gradient_buffer(std::size_t n) override {
    float* buffer = nullptr;
    if (shm_ || hier_) guard_shared_memory([&] { buffer = shm_ ? shm_->shared_buffer(n) : hier_->shared_buffer(n); });
    handed_out_ = handed_out_ || buffer != nullptr;
    return buffer;
  }
  void keep_alive() override { watchdog_->answer_roll_calls(Watchdog::kBusy); }

  // The sharded optimizer: shm and the uncompressed ring have the two halves
  // (auto's recursive doubling for small buffers and hierarchical do not;
  // mpi stays the plain reference).
  bool shards_gradients(std::size_t n) const override {
    if (size_ == 1 || algorithm_ == "mpi" || hier_) return false;
    if (small_ && n * sizeof(float) <= small_bytes_) return false;
    return shm_ || wire_ == WireFormat::kFp32;
  }
  std::pair<std::size_t, std::size_t> shard(std::size_t n) const override {
    return shm_ ? shm_->owned(n) : ring_->owned(n);
  }
  void reduce_scatter_gradients(float* data, std::size_t n) override {
    RT_CHECK(shards_gradients(n), "reduce_scatter_gradients: comm.algorithm=", algorithm(), " does not shard");
    if (shm_) return shm_->reduce_scatter(data, n);
    ring_->reduce_scatter(data, n);
  }
  void allgather_shards(float* data, std::size_t n, float* scratch) override {
    RT_CHECK(shards_gradients(n), "allgather_shards: comm.algorithm=", algorithm(), " does not shard");
    if (shm_) return shm_->allgather(data, n, scratch);
    ring_->allgather(data, n);
  }

  // The float path with comm.algorithm=mpi stays the blocking MPI_Allreduce:
  // it is the reference the others are checked and benchmarked against.
  // Every other collective is non-blocking and waited for by the watchdog.
  void allreduce_sum(float* data, std::size_t n) override { reduce(data, n, WireFormat::kFp32); }
  void allreduce_gradients(float* data, std::size_t n) override { reduce(data, n, wire_); }
  void allreduce_sum(double* data, std::size_t n) override {
    check_count(n);
    MPI_Request req;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, comm_, &req),
              "MPI_Iallreduce");
    watchdog_->wait(1, &req, "an all-reduce of metrics");
  }
  int allreduce_min(int value) override {
    MPI_Request req;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, &value, 1, MPI_INT, MPI_MIN, comm_, &req), "MPI_Iallreduce");
    watchdog_->wait(1, &req, "an all-reduce of status flags");
    return value;
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    check_count(bytes);
    MPI_Request req;
    check_mpi(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, &req), "MPI_Ibcast");
    watchdog_->wait(1, &req, "a broadcast from rank 0");
  }
  void barrier() override {
    MPI_Request req;
    check_mpi(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
    watchdog_->wait(1, &req, "a barrier");
  }
  [[noreturn]] void abort(int exit_code) override {
    std::fflush(nullptr);
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);
  }

 private:
  // Which algorithm a call of n floats takes: the same on every rank (it
  // depends on n and the configuration only), so every rank runs the same.
  void reduce(float* data, std::size_t n, WireFormat wire) {
    if (algorithm_ == "mpi") {
      check_count(n);
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_),
                "MPI_Allreduce");
      return;
    }
    if (small_ && n * sizeof(float) <= small_bytes_) return small_->run(data, n);
    if (hier_) return hier_->run(data, n, wire);
    // On one node auto adds in shared memory: no wire to compress.
    if (shm_ && (wire == WireFormat::kFp32 || algorithm_ == "auto")) return shm_->run(data, n);
    ring_->run(data, n, wire);
  }
  void reserve_for(std::size_t n, WireFormat wire) {
    if (small_) small_->reserve(std::min(n, small_bytes_ / sizeof(float)));
    // The shared-memory algorithms reduce the trainer's buffer where it lies
    // in their window: no staging window is reserved here (a call on other
    // memory makes one on first use, on every rank alike).
    if (hier_) return hier_->reserve(n, wire, false);
    if (shm_ && (wire == WireFormat::kFp32 || algorithm_ == "auto")) return;
    ring_->reserve(n, wire);
  }
  // Runs a set-up step of the shared-memory algorithms (a window in
  // /dev/shm) and makes its outcome the same on every rank of the job: a
  // node without room fails on its own ranks only (hierarchical), and the
  // others must not wait for them until the watchdog fires. On failure auto
  // falls back to the ring everywhere; shm and hierarchical end the job with
  // the failing rank's message (CollectiveError on every rank).
  void guard_shared_memory(const std::function<void()>& step) {
    try {
      run_collectively(*this, step);
    } catch (const CollectiveError&) {
      // A buffer handed out lives in the windows: they cannot go now.
      if (algorithm_ != "auto" || handed_out_) throw;
      fallback_ = "no room for shared memory in /dev/shm";
      small_bytes_ = kAutoSmallBytes;
      shm_.reset();  // collective over each node: every rank of the job is here
      hier_.reset();
    }
  }

  static void check_count(std::size_t n) {
    RT_CHECK(n <= std::size_t(std::numeric_limits<int>::max()), "message of ", n,
             " elements exceeds MPI's int count");
  }
  std::string algorithm_;
  WireFormat wire_ = WireFormat::kFp32;  // comm.compression, ring only
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<RingAllreduce> ring_;
  std::unique_ptr<ShmAllreduce> shm_;            // shm, or auto on one node
  std::unique_ptr<HierarchicalAllreduce> hier_;  // hierarchical, or auto across nodes
  std::unique_ptr<RecursiveDoubling> small_;     // auto: calls of at most small_bytes_
  std::size_t small_bytes_ = kAutoSmallBytes;    // kAutoSmallBytesOneNode with shm_
  std::string fallback_;                         // auto: why it fell back to the ring
  bool handed_out_ = false;                      // a shared_gradient_buffer() lives in shm_/hier_
};

}  // namespace

bool is_algorithm(const std::string& name) {
  return name == "auto" || name == "ring" || name == "shm" || name == "hierarchical" || name == "mpi";
}

std::string mpi_build_version() {
#if defined(OMPI_MAJOR_VERSION)
  const std::string library = str_cat("Open MPI ", OMPI_MAJOR_VERSION, ".", OMPI_MINOR_VERSION, ".", OMPI_RELEASE_VERSION);
#elif defined(MPICH_VERSION)
  const std::string library = str_cat("MPICH ", MPICH_VERSION);
#else
  const std::string library = "MPI";
#endif
  return str_cat(library, ", MPI standard ", MPI_VERSION, ".", MPI_SUBVERSION);
}

std::unique_ptr<Communicator> make_mpi_communicator(const std::string& algorithm, double timeout_s,
                                                    const std::string& compression) {
  if (!is_algorithm(algorithm))
    throw UsageError(str_cat("comm.algorithm: expected ", kAlgorithms, ", got '", algorithm, "'"));
  const WireFormat wire = parse_wire_format(compression);
  if (wire != WireFormat::kFp32 && (algorithm == "shm" || algorithm == "mpi"))
    throw UsageError(str_cat("comm.compression=", compression, " needs comm.algorithm=ring, hierarchical or auto (got '",
                             algorithm, "': shm adds in shared memory, mpi is the uncompressed reference)"));
  return std::make_unique<MpiCommunicator>(algorithm, timeout_s, wire);
}

}  // namespace ringtrain
