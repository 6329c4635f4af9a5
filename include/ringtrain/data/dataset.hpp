// Dataset: the rows one rank holds in memory, plus the bookkeeping that says
// which global rows they are. Pure data; readers live in io/.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ringtrain {

enum class Task { kClassification, kRegression };
Task parse_task(const std::string& name);  // UsageError if unknown
const char* task_name(Task t);

struct Dataset {
  Task task = Task::kClassification;
  int64_t rows = 0;      // rows held here
  int64_t features = 0;  // D
  int64_t outputs = 0;   // K: classes (classification) or targets per row
  std::vector<float> x;         // (rows, features) row-major
  std::vector<int32_t> labels;  // (rows) classification
  std::vector<float> y;         // (rows, outputs) regression
  std::vector<int64_t> global_rows;  // file row of each row held here (messages)
  std::string source;           // path, for messages

  const float* row(int64_t i) const { return x.data() + i * features; }
};

// Copies rows `index[0..count)` of `data` into the batch buffers, which must
// hold count*features floats (and count labels or count*outputs targets).
void gather_rows(const Dataset& data, const int64_t* index, int count, float* x_out,
                 int32_t* labels_out, float* y_out);

// Throws UsageError naming the source and the first bad row when a feature or
// target is NaN or infinite, or a label is outside [0, outputs).
void validate_dataset(const Dataset& data);

}  // namespace ringtrain
