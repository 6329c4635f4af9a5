// EvalSums and the confusion-matrix metrics (see metrics.hpp).
#include "ringtrain/nn/metrics.hpp"

#include <cmath>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

EvalSums::EvalSums(int classes, int outputs)
    : classes_(classes), outputs_(outputs),
      data_(3 + std::size_t(classes) * std::size_t(classes), 0.0) {}

void EvalSums::clear() { std::fill(data_.begin(), data_.end(), 0.0); }

void EvalSums::add_classification(double loss_sum, const int32_t* labels,
                                  const int32_t* predicted, int count) {
  data_[0] += loss_sum;
  data_[1] += count;
  for (int i = 0; i < count; ++i) data_[3 + labels[i] * classes_ + predicted[i]] += 1.0;
}

void EvalSums::add_regression(double loss_sum, double abs_sum, int count) {
  data_[0] += loss_sum;
  data_[1] += count;
  data_[2] += abs_sum;
}

double matthews_corrcoef(const std::vector<double>& c, int k) {
  double correct = 0, total = 0, pt = 0, pp = 0, tt = 0;
  std::vector<double> truth(k, 0.0), pred(k, 0.0);
  for (int t = 0; t < k; ++t)
    for (int p = 0; p < k; ++p) {
      const double v = c[std::size_t(t) * k + p];
      truth[t] += v;
      pred[p] += v;
      total += v;
      if (t == p) correct += v;
    }
  for (int i = 0; i < k; ++i) pt += pred[i] * truth[i], pp += pred[i] * pred[i], tt += truth[i] * truth[i];
  const double denom = std::sqrt(total * total - pp) * std::sqrt(total * total - tt);
  return denom > 0 ? (correct * total - pt) / denom : 0.0;
}

double macro_f1(const std::vector<double>& c, int k) {
  double sum = 0.0;
  int present = 0;
  for (int i = 0; i < k; ++i) {
    double tp = c[std::size_t(i) * k + i], truth = 0, pred = 0;
    for (int j = 0; j < k; ++j) truth += c[std::size_t(i) * k + j], pred += c[std::size_t(j) * k + i];
    if (truth + pred == 0) continue;
    sum += 2.0 * tp / (truth + pred);
    ++present;
  }
  return present ? sum / present : 0.0;
}

std::map<std::string, double> EvalSums::metrics() const {
  std::map<std::string, double> m;
  const double n = count();
  RT_CHECK(n > 0, "metrics of an empty evaluation");
  m["loss"] = data_[0] / n;
  if (classes_ > 0) {
    std::vector<double> conf(data_.begin() + 3, data_.end());
    double correct = 0;
    for (int i = 0; i < classes_; ++i) correct += confusion(i, i);
    m["accuracy"] = correct / n;
    m["error"] = 1.0 - correct / n;
    m["mcc"] = matthews_corrcoef(conf, classes_);
    m["macro_f1"] = macro_f1(conf, classes_);
  } else {
    m["mse"] = data_[0] / n;  // the loss is already the per-sample mean over outputs
    m["mae"] = data_[2] / (n * outputs_);
  }
  return m;
}

const char* metric_mode_name(MetricMode m) { return m == MetricMode::kMin ? "min" : "max"; }

std::optional<MetricMode> metric_direction(const std::string& name) {
  // The part after the last '_' prefix group: val_macro_f1 -> macro_f1.
  static const std::pair<const char*, MetricMode> kRegistry[] = {
      {"loss", MetricMode::kMin},     {"error", MetricMode::kMin},   {"mse", MetricMode::kMin},
      {"mae", MetricMode::kMin},      {"accuracy", MetricMode::kMax}, {"mcc", MetricMode::kMax},
      {"macro_f1", MetricMode::kMax},
  };
  for (const auto& [base, mode] : kRegistry) {
    const std::string b = base;
    if (name == b || (name.size() > b.size() && name.compare(name.size() - b.size(), b.size(), b) == 0 &&
                      name[name.size() - b.size() - 1] == '_'))
      return mode;
  }
  return std::nullopt;
}

}  // namespace ringtrain
