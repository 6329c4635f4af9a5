// Evaluation metrics computed from sums that can be all-reduced.
//
// Every rank accumulates an EvalSums over its shard of the validation set; the
// sums (a flat vector of doubles) are summed across ranks, and rank 0 turns
// them into metrics. Metrics are therefore exact for the whole set, not
// averages of per-rank metrics.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ringtrain {

class EvalSums {
 public:
  // classes > 0: classification with a classes x classes confusion matrix;
  // classes == 0: regression with `outputs` values per sample.
  EvalSums(int classes, int outputs);

  void add_classification(double loss_sum, const int32_t* labels, const int32_t* predicted,
                          int count);
  void add_regression(double loss_sum, double abs_sum, int count);
  void clear();

  // The flat representation that is all-reduced: [loss, count, abs, confusion...].
  std::vector<double>& data() { return data_; }
  double count() const { return data_[1]; }

  // loss, accuracy, error, mcc, macro_f1 (classification) or loss, mse, mae
  // (regression). "loss" is the mean per-sample loss.
  std::map<std::string, double> metrics() const;

 private:
  double confusion(int truth, int pred) const { return data_[3 + truth * classes_ + pred]; }
  int classes_;
  int outputs_;
  std::vector<double> data_;
};

// Multi-class Matthews correlation (Gorodkin's R_K) from a confusion matrix
// given row-major as [truth][predicted]; 0 when undefined.
double matthews_corrcoef(const std::vector<double>& confusion, int classes);
// Mean F1 over the classes that occur in truth or predictions (as sklearn's
// f1_score(average="macro") does).
double macro_f1(const std::vector<double>& confusion, int classes);

// Which way a metric improves, from its name with any prefix (val_, train_):
// loss, error, mse, mae are lower-is-better; accuracy, mcc, macro_f1 are
// higher-is-better; nullopt for names the registry does not know.
enum class MetricMode { kMin, kMax };
std::optional<MetricMode> metric_direction(const std::string& name);
const char* metric_mode_name(MetricMode m);

}  // namespace ringtrain
