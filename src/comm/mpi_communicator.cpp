// MpiEnvironment and MpiCommunicator (see mpi_communicator.hpp).
#include "ringtrain/comm/mpi_communicator.hpp"

#include <mpi.h>

#include <cstdio>
#include <limits>

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
    } catch (...) {  // ranks on several nodes: the destructor will not run
      ring_.reset();
      watchdog_.reset();
      MPI_Comm_free(&comm_);
      throw;
    }
  }
  ~MpiCommunicator() override {
    shm_.reset();  // collective: every rank frees the window
    ring_.reset();
    watchdog_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string algorithm() const override { return algorithm_; }
  std::string compression() const override { return wire_format_name(wire_); }
  bool allows_comm_thread() const override {
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    return level >= MPI_THREAD_SERIALIZED;
  }
  void reserve(std::size_t n) override {
    if (shm_) return shm_->reserve(n);
    ring_->reserve(n);
  }
  void reserve_gradients(std::size_t n) override {
    if (wire_ == WireFormat::kFp32) return reserve(n);
    ring_->reserve(n, wire_);
  }
  void allreduce_gradients(float* data, std::size_t n) override {
    if (wire_ == WireFormat::kFp32) return allreduce_sum(data, n);
    ring_->run(data, n, wire_);
  }
  float* shared_gradient_buffer(std::size_t n) override { return shm_ ? shm_->shared_buffer(n) : nullptr; }
  void keep_alive() override { watchdog_->answer_roll_calls(Watchdog::kBusy); }

  // The float path with comm.algorithm=mpi stays the blocking MPI_Allreduce:
  // it is the reference the ring is checked and benchmarked against. Every
  // other collective is non-blocking and waited for by the watchdog.
  void allreduce_sum(float* data, std::size_t n) override {
    if (shm_) return shm_->run(data, n);
    if (algorithm_ == "ring") return ring_->run(data, n);
    check_count(n);
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_),
              "MPI_Allreduce");
  }
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
  std::unique_ptr<ShmAllreduce> shm_;  // comm.algorithm=shm
};

}  // namespace

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
  if (algorithm != "ring" && algorithm != "mpi" && algorithm != "shm")
    throw UsageError(str_cat("comm.algorithm: expected ring, shm or mpi, got '", algorithm, "'"));
  const WireFormat wire = parse_wire_format(compression);
  if (wire != WireFormat::kFp32 && algorithm != "ring")
    throw UsageError(str_cat("comm.compression=", compression, " needs comm.algorithm=ring (got '", algorithm,
                             "': shm adds in shared memory, mpi is the uncompressed reference)"));
  return std::make_unique<MpiCommunicator>(algorithm, timeout_s, wire);
}

}  // namespace ringtrain
