// Subcommands that use saved models, in one process (no MPI):
//   ringtrain evaluate --model FILE --data FILE [--x-name X --y-name y --batch-size N --json]
//   ringtrain predict  --model FILE --input X.h5 --output P.h5 [--x-name X --batch-size N]
//   ringtrain inspect  FILE [--json]
// Each returns the process exit code and throws UsageError for bad input.
#pragma once

#include <string>
#include <vector>

namespace ringtrain {

int run_evaluate(const std::vector<std::string>& args);
int run_predict(const std::vector<std::string>& args);
int run_inspect(const std::vector<std::string>& args);

}  // namespace ringtrain
