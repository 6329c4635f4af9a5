// Dataset helpers: batch gathering and validation (see dataset.hpp).
#include "ringtrain/data/dataset.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

Task parse_task(const std::string& name) {
  if (name == "classification") return Task::kClassification;
  if (name == "regression") return Task::kRegression;
  throw UsageError(str_cat("task: expected classification or regression, got '", name, "'"));
}

const char* task_name(Task t) { return t == Task::kClassification ? "classification" : "regression"; }

void gather_rows(const Dataset& d, const int64_t* index, int count, float* x_out,
                 int32_t* labels_out, float* y_out) {
  for (int i = 0; i < count; ++i) {
    const int64_t r = index[i];
    std::memcpy(x_out + std::size_t(i) * d.features, d.row(r), sizeof(float) * d.features);
    if (d.task == Task::kClassification)
      labels_out[i] = d.labels[r];
    else
      std::memcpy(y_out + std::size_t(i) * d.outputs, d.y.data() + r * d.outputs,
                  sizeof(float) * d.outputs);
  }
}

namespace {
int64_t file_row(const Dataset& d, int64_t i) {
  return i < int64_t(d.global_rows.size()) ? d.global_rows[i] : i;
}
}  // namespace

void validate_dataset(const Dataset& d) {
  auto bad = std::find_if(d.x.begin(), d.x.end(), [](float v) { return !std::isfinite(v); });
  if (bad != d.x.end()) {
    const auto pos = bad - d.x.begin();
    throw UsageError(str_cat(d.source, ": non-finite feature value ", *bad, " in row ",
                             file_row(d, pos / d.features), ", column ", pos % d.features));
  }
  if (d.task == Task::kClassification) {
    for (std::size_t i = 0; i < d.labels.size(); ++i)
      if (d.labels[i] < 0 || d.labels[i] >= d.outputs)
        throw UsageError(str_cat(d.source, ": label ", d.labels[i], " out of range [0, ", d.outputs,
                                 ") in row ", file_row(d, int64_t(i))));
  } else {
    auto bady = std::find_if(d.y.begin(), d.y.end(), [](float v) { return !std::isfinite(v); });
    if (bady != d.y.end())
      throw UsageError(str_cat(d.source, ": non-finite target value in row ",
                               file_row(d, (bady - d.y.begin()) / d.outputs)));
  }
}

}  // namespace ringtrain
