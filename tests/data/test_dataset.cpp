// Dataset helpers (data/dataset.hpp): gather_rows copies the requested rows,
// validate_dataset rejects bad values naming the source and the file row.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ringtrain/data/dataset.hpp"
#include "ringtrain/util/error.hpp"

using namespace ringtrain;

namespace {
// 5 rows, 3 features, value = 10*row + column; held rows are file rows 100, 103, ...
Dataset make(Task task) {
  Dataset d;
  d.task = task;
  d.rows = 5;
  d.features = 3;
  d.outputs = task == Task::kClassification ? 4 : 2;
  d.source = "train.h5";
  for (int r = 0; r < 5; ++r) {
    for (int c = 0; c < 3; ++c) d.x.push_back(float(10 * r + c));
    d.global_rows.push_back(100 + 3 * r);
    if (task == Task::kClassification)
      d.labels.push_back(r % 4);
    else
      d.y.insert(d.y.end(), {float(r), float(-r)});
  }
  return d;
}

// The message of the UsageError validate_dataset throws ("" if none).
std::string failure(const Dataset& d) {
  try {
    validate_dataset(d);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}
bool has(const std::string& msg, const std::string& part) { return msg.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("gather_rows: copies rows and labels in index order") {
  const Dataset d = make(Task::kClassification);
  const int64_t index[] = {4, 0, 2, 2};
  std::vector<float> x(4 * 3, -1.0f);
  std::vector<int32_t> labels(4, -1);
  gather_rows(d, index, 4, x.data(), labels.data(), nullptr);
  CHECK(x == std::vector<float>{40, 41, 42, 0, 1, 2, 20, 21, 22, 20, 21, 22});
  CHECK(labels == std::vector<int32_t>{0, 0, 2, 2});

  // Only `count` rows are written.
  std::vector<float> x2(2 * 3, -1.0f);
  std::vector<int32_t> l2(2, -1);
  gather_rows(d, index, 1, x2.data(), l2.data(), nullptr);
  CHECK(x2 == std::vector<float>{40, 41, 42, -1, -1, -1});
  CHECK(l2 == std::vector<int32_t>{0, -1});
}

TEST_CASE("gather_rows: copies regression targets") {
  const Dataset d = make(Task::kRegression);
  const int64_t index[] = {3, 1};
  std::vector<float> x(2 * 3), y(2 * 2, 99.0f);
  gather_rows(d, index, 2, x.data(), nullptr, y.data());
  CHECK(x == std::vector<float>{30, 31, 32, 10, 11, 12});
  CHECK(y == std::vector<float>{3, -3, 1, -1});
}

TEST_CASE("validate_dataset: clean data passes") {
  CHECK_NOTHROW(validate_dataset(make(Task::kClassification)));
  CHECK_NOTHROW(validate_dataset(make(Task::kRegression)));
}

TEST_CASE("validate_dataset: non-finite features name the source and file row") {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    Dataset d = make(Task::kClassification);
    d.x[2 * 3 + 1] = bad;  // held row 2 = file row 106, column 1
    const std::string msg = failure(d);
    INFO(msg);
    CHECK(has(msg, "train.h5"));
    CHECK(has(msg, "row 106"));
    CHECK(has(msg, "column 1"));
  }
  Dataset r = make(Task::kRegression);
  r.x[4 * 3] = std::numeric_limits<float>::quiet_NaN();
  CHECK(has(failure(r), "row 112"));
}

TEST_CASE("validate_dataset: labels outside [0, outputs) name the file row") {
  Dataset d = make(Task::kClassification);
  d.labels[1] = -1;
  std::string msg = failure(d);
  INFO(msg);
  CHECK(has(msg, "train.h5"));
  CHECK(has(msg, "row 103"));
  CHECK(has(msg, "-1"));

  d = make(Task::kClassification);
  d.labels[3] = 4;  // == outputs
  msg = failure(d);
  CHECK(has(msg, "row 109"));
  d.labels[3] = 3;  // the largest valid label
  CHECK(failure(d).empty());
}

TEST_CASE("validate_dataset: non-finite regression targets name the file row") {
  Dataset d = make(Task::kRegression);
  d.y[3 * 2 + 1] = std::numeric_limits<float>::infinity();  // held row 3 = file row 109
  const std::string msg = failure(d);
  INFO(msg);
  CHECK(has(msg, "train.h5"));
  CHECK(has(msg, "row 109"));
  d.y[3 * 2 + 1] = std::numeric_limits<float>::quiet_NaN();
  CHECK(has(failure(d), "row 109"));
}

TEST_CASE("parse_task and task_name round-trip") {
  CHECK(parse_task("classification") == Task::kClassification);
  CHECK(parse_task("regression") == Task::kRegression);
  CHECK(std::string(task_name(Task::kRegression)) == "regression");
  CHECK_THROWS_AS(parse_task("segmentation"), UsageError);
}
