// `ringtrain report RUN_DIR [RUN_DIR ...] [--json]`: a table for people, one
// column per run (world size, global batch, effective lr, examples seen, wall
// time, throughput, why it stopped, the best model's step and every metric in
// its best.h5, the final metrics), and the config keys that differ between
// the runs. --json prints the same as one JSON object for scripts.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ringtrain/app/run_summary.hpp"

namespace ringtrain {

// {"runs": [...], "config_differences": {key: {run label: value}}}
nlohmann::ordered_json report_json(const std::vector<RunSummary>& runs);

int run_report(const std::vector<std::string>& args);

}  // namespace ringtrain
