// Subcommands and the mapping of outcomes to exit codes: 0 success, 2 bad
// input or usage, 3 runtime failure, 4 early stopping, 5 diverged, 75
// pre-empted with a checkpoint written (util/error.hpp).
#include "ringtrain/app/app.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <boost/version.hpp>

#include "ringtrain/app/model_commands.hpp"
#include "ringtrain/app/options.hpp"
#include "ringtrain/app/plot.hpp"
#include "ringtrain/app/report.hpp"
#include "ringtrain/io/hdf5.hpp"
#include "ringtrain/comm/mpi_communicator.hpp"
#include "ringtrain/io/data_reader.hpp"
#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/io/idx.hpp"
#include "ringtrain/train/trainer.hpp"
#include "ringtrain/util/stop_signal.hpp"

extern char** environ;

namespace ringtrain {

namespace {

constexpr const char* kUsage =
    "usage: ringtrain <command> [options]\n"
    "commands:\n"
    "  train     train a model (ringtrain train --help lists every option)\n"
    "  evaluate  print every metric of a saved model on a data file:\n"
    "            ringtrain evaluate --model FILE --data FILE\n"
    "  predict   write a saved model's predictions: ringtrain predict --model FILE --input X.h5 --output P.h5\n"
    "  inspect   show what a model or checkpoint file holds: ringtrain inspect FILE\n"
    "  convert   convert IDX images (+ labels beside them) to an HDF5 data file:\n"
    "            ringtrain convert IMAGES_IDX OUTPUT.h5\n"
    "  plot      training curves of run directories, or benchmark results, as a PNG (gnuplot):\n"
    "            ringtrain plot RUN_DIR [RUN_DIR ...] --output curves.png\n"
    "            ringtrain plot --bench allreduce.json [--bench train.json] --output bench.png\n"
    "  report    compare run directories in a table (or --json):\n"
    "            ringtrain report RUN_DIR [RUN_DIR ...] [--json]\n"
    "options: --help, --version (with the versions of MPI, HDF5, Eigen and Boost built with)\n";

std::string compiler_text() {
#if defined(__clang__)
  return str_cat("clang ", __clang_major__, ".", __clang_minor__, ".", __clang_patchlevel__);
#elif defined(__GNUC__)
  return str_cat("GCC ", __GNUC__, ".", __GNUC_MINOR__, ".", __GNUC_PATCHLEVEL__);
#else
  return "an unknown compiler";
#endif
}

// ringtrain --version: ours and the libraries' we were built with.
std::string version_text() {
  return str_cat("ringtrain ", RINGTRAIN_VERSION, "\n", "built with: ", mpi_build_version(), "; HDF5 ",
                 hdf5_build_version(), "; Eigen ", EIGEN_WORLD_VERSION, ".", EIGEN_MAJOR_VERSION, ".",
                 EIGEN_MINOR_VERSION, "; Boost ", BOOST_VERSION / 100000, ".", BOOST_VERSION / 100 % 1000, ".",
                 BOOST_VERSION % 100, "; ", compiler_text(), "\n");
}

void print_error(const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "ringtrain: error: %s\n", message.c_str());
  std::fflush(stderr);
}

// JobState of a Slurm job ("RUNNING", "CANCELLED", ...), "" when scontrol
// cannot tell. `job` comes from SLURM_JOB_ID: digits and "_" only.
std::string slurm_job_state(const std::string& job) {
  if (job.find_first_not_of("0123456789_") != std::string::npos) return "";
  FILE* p = popen(("scontrol show job -o " + job + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return "";
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  pclose(p);
  const std::size_t at = out.find(" JobState=");
  if (at == std::string::npos) return "";
  const std::size_t from = at + std::strlen(" JobState=");
  return out.substr(from, out.find_first_of(" \n", from) - from);
}

// train.requeue: rank 0, after the pre-emption checkpoint is on disk. Slurm
// then ends this job and starts it again later; --resume auto continues.
void request_requeue() {
  const char* job = std::getenv("SLURM_JOB_ID");
  if (job == nullptr || *job == '\0') {
    print_error("train.requeue: not inside a Slurm allocation (SLURM_JOB_ID unset); not requeued");
    return;
  }
  std::fflush(nullptr);
  // A plain `scancel` also sends SIGTERM; a job its user cancelled must not
  // come back. Slurm marks it CANCELLED at once, so requeue only a RUNNING job.
  const std::string state = slurm_job_state(job);
  if (!state.empty() && state != "RUNNING") {
    print_error(str_cat("train.requeue: job ", job, " is ", state, " (cancelled?), not requeued"));
    return;
  }
  std::string a0 = "scontrol", a1 = "requeue", a2 = job;
  char* argv[] = {a0.data(), a1.data(), a2.data(), nullptr};
  pid_t pid = 0;
  int status = 0;
  const int rc = posix_spawnp(&pid, "scontrol", nullptr, nullptr, argv, environ);
  if (rc == 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    std::printf("ringtrain: asked Slurm to requeue job %s (scontrol requeue %s)\n", job, job);
    std::fflush(stdout);
    return;
  }
  print_error(str_cat("train.requeue: 'scontrol requeue ", job, "' failed",
                      rc != 0 ? " (scontrol not found)" : "", "; the checkpoint is written: requeue or resubmit by hand"));
}

int run_train(int argc, char** argv, const std::vector<std::string>& args) {
  // Before MPI_Init (a signal that arrives while it runs must not kill the
  // rank: Slurm may warn right at the start) and again after it, so that
  // ours are the handlers in place. A file-size limit (ulimit -f) must fail
  // the write with a message, not kill the rank.
  install_stop_signal_handlers();
  signal(SIGXFSZ, SIG_IGN);
  MpiEnvironment mpi(&argc, &argv);
  install_stop_signal_handlers();
  std::unique_ptr<Communicator> comm;
  try {
    comm = make_mpi_communicator("mpi");  // for agreeing on option errors
  } catch (const Error& e) {
    print_error(e.what());
    return e.exit_code();
  }
  try {
    ParsedTrainArgs parsed;
    run_collectively(*comm, [&] { parsed = parse_train_args(args); });
    if (parsed.help) {
      if (comm->rank() == 0) std::printf("%s", parsed.help_text.c_str());
      return kExitSuccess;
    }
    std::unique_ptr<Communicator> training_comm;
    run_collectively(*comm, [&] {
      training_comm = make_mpi_communicator(parsed.config.comm_algorithm, parsed.config.comm_timeout_seconds,
                                            parsed.config.comm_compression);
    });
    comm = std::move(training_comm);
    Trainer trainer(parsed.config, *comm);
    const TrainResult result = trainer.run();
    comm->barrier();
    if (result.preempted) {
      if (parsed.config.requeue && comm->rank() == 0) request_requeue();
      return kExitPreempted;
    }
    switch (result.stop) {
      case StopReason::kPatience:
      case StopReason::kBaseline:
        return kExitEarlyStop;
      case StopReason::kDivergence:
      case StopReason::kNonFinite:
        return kExitDiverged;
      default:
        return kExitSuccess;
    }
  } catch (const CollectiveError& e) {
    // Every rank knows; say it once.
    if (comm->rank() == 0) print_error(e.what());
    return e.exit_code();
  } catch (const Error& e) {
    // Only this rank failed: the others may be waiting in a collective, so
    // end the whole job (never a hang) with this rank's message.
    print_error(comm->size() > 1 ? str_cat("rank ", comm->rank(), ": ", e.what()) : e.what());
    comm->abort(e.exit_code());
  } catch (const std::exception& e) {
    print_error(str_cat("rank ", comm->rank(), ": ", e.what()));
    comm->abort(kExitRuntime);
  }
  return kExitRuntime;  // not reached: abort() does not return
}

int run_convert(const std::vector<std::string>& args) {
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::printf("usage: ringtrain convert IMAGES_IDX OUTPUT.h5\n"
                "Writes X float32 [N, D] (pixels / 255) and y int32 [N] from an IDX images file and\n"
                "the labels file beside it (gzip or plain).\n");
    return kExitSuccess;
  }
  if (args.size() != 2) throw UsageError("convert: expected IMAGES_IDX OUTPUT.h5");
  check_output(args[1], {args[0], idx_labels_path(args[0])}, "convert: OUTPUT.h5");  // both IDX files are read
  remove_temporaries_on_signals();  // an interrupted convert leaves no OUTPUT.h5.tmp
  const int64_t rows = convert_idx_to_hdf5(args[0], args[1]);
  std::printf("wrote %lld rows to %s\n", (long long)rows, args[1].c_str());
  return kExitSuccess;
}

}  // namespace

int run_app(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "%s", kUsage);
    return kExitUsage;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "train") return run_train(argc, argv, args);
    if (command == "convert") return run_convert(args);
    if (command == "evaluate") return run_evaluate(args);
    if (command == "predict") return run_predict(args);
    if (command == "inspect") return run_inspect(args);
    if (command == "plot") return run_plot(args);
    if (command == "report") return run_report(args);
    if (command == "--help" || command == "-h" || command == "help") {
      std::printf("%s", kUsage);
      return kExitSuccess;
    }
    if (command == "--version" || command == "version") {
      std::printf("%s", version_text().c_str());
      return kExitSuccess;
    }
    throw UsageError(str_cat("unknown command '", command, "' (commands: train, evaluate, predict, inspect, ",
                             "convert, plot, report; ringtrain --help)"));
  } catch (const Error& e) {
    print_error(e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    print_error(e.what());
    return kExitRuntime;
  }
}

}  // namespace ringtrain
