// Collective helpers built only on the Communicator interface.
#include "ringtrain/comm/communicator.hpp"

#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

namespace ringtrain {

void SelfCommunicator::abort(int exit_code) {
  std::fflush(nullptr);
  std::_Exit(exit_code);
}

std::string broadcast_string(Communicator& comm, const std::string& s, int root) {
  uint64_t len = s.size();
  comm.broadcast(&len, sizeof(len), root);
  std::string out = comm.rank() == root ? s : std::string(len, '\0');
  if (len) comm.broadcast(out.data(), len, root);
  return out;
}

void run_collectively(Communicator& comm, const std::function<void()>& fn) {
  std::string message;
  int code = kExitSuccess;
  try {
    fn();
  } catch (const Error& e) {
    message = e.what();
    code = e.exit_code();
  } catch (const std::bad_alloc&) {
    message = "out of memory (the model, the batch or this rank's data does not fit)";
    code = kExitRuntime;
  } catch (const std::exception& e) {
    message = e.what();
    code = kExitRuntime;
  }
  const bool failed = code != kExitSuccess;
  const int first = comm.allreduce_min(failed ? comm.rank() : comm.size());
  if (first == comm.size()) return;
  const bool all_failed = comm.allreduce_min(failed ? 1 : 0) == 1;
  int32_t agreed_code = code;
  comm.broadcast(&agreed_code, sizeof(agreed_code), first);
  const std::string agreed = broadcast_string(comm, message, first);
  // Name the rank only when it matters: when some ranks failed and others did not.
  const std::string prefix = all_failed ? "" : str_cat("rank ", first, ": ");
  throw CollectiveError(prefix + agreed, agreed_code);
}

}  // namespace ringtrain
