// `ringtrain evaluate`, `predict` and `inspect` (see model_commands.hpp): one
// process each, no MPI. Options are parsed with Boost.Program_options as
// `train` does (no abbreviations). Metrics are computed batch by batch with
// EvalSums exactly as Trainer::evaluate does, so they match what training
// logged. Model files are read through io/model_file; nothing here writes a
// model, only prediction files (atomically), and never over an input or
// anything but a regular file (check_output).
#include "ringtrain/app/model_commands.hpp"

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "ringtrain/app/command_line.hpp"
#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/io/data_reader.hpp"
#include "ringtrain/io/hdf5.hpp"
#include "ringtrain/io/model_file.hpp"
#include "ringtrain/nn/loss.hpp"
#include "ringtrain/nn/metrics.hpp"
#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace po = boost::program_options;
using Json = nlohmann::ordered_json;

namespace {

constexpr int kDefaultBatch = 1024;  // as eval.batch_size

int positive_batch(const po::variables_map& vm) {
  const int b = vm["batch-size"].as<int>();
  if (b <= 0) throw UsageError(str_cat("--batch-size: must be positive, got ", b));
  return b;
}

// ---- evaluate --------------------------------------------------------------

// Every row of the data file (or the first max_rows), checked against the model.
Dataset read_eval_data(const SavedModel& m, const po::variables_map& vm) {
  const DataSource src{vm["data"].as<std::string>(), vm["x-name"].as<std::string>(),
                       vm["y-name"].as<std::string>(), m.task};
  const SourceInfo info = probe_source(src);
  const int64_t inputs = m.spec.sizes.front(), outputs = m.spec.sizes.back();
  const std::string arch = m.spec.architecture();
  if (info.features != inputs)
    throw UsageError(str_cat(src.path, ": rows have ", info.features, " features, the model (", arch, ") expects ",
                             inputs));
  if (m.task == Task::kClassification && info.outputs > outputs)
    throw UsageError(str_cat(src.path, ": labels go up to ", info.outputs - 1, ", the model (", arch, ") has ",
                             outputs, " classes"));
  if (m.task == Task::kRegression && info.outputs != outputs)
    throw UsageError(str_cat(src.path, ": targets have width ", info.outputs, ", the model (", arch, ") predicts ",
                             outputs));
  const int64_t max_rows = vm["max-rows"].as<int64_t>();
  if (max_rows < 0) throw UsageError(str_cat("--max-rows: must be >= 0, got ", max_rows));
  std::vector<int64_t> rows(max_rows > 0 ? std::min(info.rows, max_rows) : info.rows);
  std::iota(rows.begin(), rows.end(), int64_t{0});
  return read_source_rows(src, info, rows, outputs);
}

// The same batched computation as Trainer::evaluate, on one process.
std::map<std::string, double> compute_metrics(Mlp& mlp, const Dataset& d, int batch) {
  const bool cls = d.task == Task::kClassification;
  EvalSums sums(cls ? mlp.output_size() : 0, mlp.output_size());
  std::vector<int32_t> predicted(std::size_t(mlp.max_batch()));
  for (int64_t i = 0; i < d.rows; i += batch) {
    const int count = int(std::min<int64_t>(batch, d.rows - i));
    ConstMatMap out = mlp.forward(d.row(i), count, false);
    if (cls) {
      const double loss = softmax_cross_entropy(out, d.labels.data() + i, nullptr, predicted.data());
      sums.add_classification(loss, d.labels.data() + i, predicted.data(), count);
    } else {
      double abs_sum = 0;
      const double loss = mean_squared_error(out, d.y.data() + i * d.outputs, nullptr, &abs_sum);
      sums.add_regression(loss, abs_sum, count);
    }
  }
  return sums.metrics();
}

// The model part of a model or checkpoint file. The format is checked first
// so that any other HDF5 file gets "not a ringtrain model", not a complaint
// about one of its attributes.
SavedModel read_model(const std::string& path) {
  model_file_format(path);
  return read_model_file(path);
}

// An Mlp holding the saved weights, with workspaces for `batch` rows.
Mlp load_mlp(const SavedModel& m, int batch) {
  Mlp mlp(m.spec, batch);
  std::copy(m.params.begin(), m.params.end(), mlp.params());
  return mlp;
}

// Metric names in a fixed order (loss first, then the classification and the
// regression metrics, as the README lists them); any others after.
std::vector<std::string> metric_order(const std::map<std::string, double>& metrics) {
  std::vector<std::string> names;
  for (const char* n : {"loss", "accuracy", "error", "mcc", "macro_f1", "mse", "mae"})
    if (metrics.count(n)) names.emplace_back(n);
  for (const auto& kv : metrics)
    if (std::find(names.begin(), names.end(), kv.first) == names.end()) names.push_back(kv.first);
  return names;
}

// ---- predict ---------------------------------------------------------------

// X [N, D] of an HDF5 file: labels are neither needed nor read.
std::vector<float> read_features(const std::string& path, const std::string& x_name, int64_t inputs, int64_t& rows) {
  H5Handle file = h5_open_read(path);
  H5Handle x = h5_open_dataset(file, x_name, path);
  const auto shape = h5_dataset_shape(x);
  if (shape.size() != 2)
    throw UsageError(str_cat(path, ": dataset '", x_name, "' has ", shape.size(), " dimensions, expected 2"));
  if (int64_t(shape[1]) != inputs)
    throw UsageError(str_cat(path, ": '", x_name, "' has ", shape[1], " features, the model expects ", inputs));
  if (shape[0] == 0) throw UsageError(str_cat(path, ": dataset '", x_name, "' is empty"));
  rows = int64_t(shape[0]);
  std::vector<float> out(shape[0] * shape[1]);
  if (H5Dread(x, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    throw UsageError(str_cat(path, ": cannot read '", x_name, "' (checksum mismatch or corrupt file)"));
  const auto bad = std::find_if(out.begin(), out.end(), [](float v) { return !std::isfinite(v); });
  if (bad != out.end())
    throw UsageError(str_cat(path, ": non-finite feature value ", *bad, " in row ", (bad - out.begin()) / inputs,
                             ", column ", (bad - out.begin()) % inputs));
  return out;
}

// Softmax of each row of `logits` (batch, k), shifted by the row max so exp
// never overflows; `predicted` gets the argmax (the first one on ties, as the
// loss does).
void softmax_rows(const ConstMatMap& logits, float* probs, int32_t* predicted) {
  const Eigen::Index k = logits.cols();
  for (Eigen::Index i = 0; i < logits.rows(); ++i) {
    const float* row = logits.data() + i * k;
    const Eigen::Index arg = std::max_element(row, row + k) - row;
    double sum = 0;
    for (Eigen::Index j = 0; j < k; ++j) sum += std::exp(double(row[j]) - double(row[arg]));
    for (Eigen::Index j = 0; j < k; ++j) probs[i * k + j] = float(std::exp(double(row[j]) - double(row[arg])) / sum);
    predicted[i] = int32_t(arg);
  }
}

void write_predictions(const std::string& out_path, const SavedModel& m, const std::string& model_path,
                       int64_t rows, const std::vector<float>& values, const std::vector<int32_t>& predicted) {
  const hsize_t n = hsize_t(rows), k = hsize_t(m.spec.sizes.back());
  AtomicFile out(out_path);
  {
    H5Handle file = h5_create_file(out.tmp_path());
    h5_write_attrs(file, Attrs{{"model", model_path},
                               {"architecture", m.spec.architecture()},
                               {"task", std::string(task_name(m.task))}});
    if (m.task == Task::kClassification) {
      h5_write_floats(file, "probabilities", {n, k}, values.data());
      h5_write_ints(file, "predicted", {n}, predicted.data());
    } else {
      h5_write_floats(file, "predictions", {n, k}, values.data());
    }
    h5_check(H5Fflush(file, H5F_SCOPE_GLOBAL), "flushing " + out.tmp_path());
  }  // closed before the rename
  out.commit();
}

// ---- inspect ---------------------------------------------------------------

// Everything a model or checkpoint file holds, as one JSON object; the text
// form is printed from it, so both always say the same.
Json describe_file(const std::string& path) {
  const bool ckpt = model_file_format(path) == kCheckpointFormat;
  SavedCheckpoint c;
  if (ckpt) c = read_checkpoint_file(path);
  else c.model = read_model_file(path);
  const SavedModel& m = c.model;
  Json j{{"file", path}};
  for (const auto& [k, v] : m.root) j[k] = attr_json(v);
  j["architecture"] = m.spec.architecture();
  j["activation"] = activation_name(m.spec.activation);
  j["task"] = task_name(m.task);
  j["dropout"] = m.spec.dropout;
  const ParamLayout layout = mlp_layout(m.spec);
  j["parameters"] = layout.total();
  Json layers = Json::array();
  for (std::size_t l = 0; l + 1 < m.spec.sizes.size(); ++l)
    for (const char* p : {"kernel", "bias"}) {
      const TensorSpec& t = layout.find(str_cat("dense_", l, "/", p));
      layers.push_back({{"name", t.name}, {"shape", t.shape}, {"size", t.size()}});
    }
  j["layers"] = layers;
  j["metrics"] = attrs_json(m.metrics);
  if (ckpt) {
    Json slots = Json::array();
    for (const auto& s : c.slots) slots.push_back(s.first);
    j["optimizer"] = {{"name", c.optimizer_name}, {"attributes", attrs_json(c.optimizer)}, {"slots", slots}};
    j["trainer"] = attrs_json(c.trainer);
    Json table = Json::array();
    for (int64_t r = 0; r < c.rank_state_rows; ++r)
      table.push_back(std::vector<int64_t>(c.rank_state.begin() + r * c.rank_state_cols,
                                           c.rank_state.begin() + (r + 1) * c.rank_state_cols));
    j["rank_state"] = table;
    j["tracker"] = attrs_json(c.tracker);
  }
  j["config"] = m.config;
  return j;
}

std::string scalar_text(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v.get<double>());
    return buf;
  }
  return v.dump();
}

void print_section(const std::string& title, const Json& attrs) {
  std::printf("%s:%s\n", title.c_str(), attrs.empty() ? " (none)" : "");
  for (const auto& [k, v] : attrs.items()) std::printf("  %-22s %s\n", k.c_str(), scalar_text(v).c_str());
}

void print_description(const Json& j) {
  for (const char* k : {"file", "format", "format_version", "created", "ringtrain_version", "architecture",
                        "activation", "task", "dropout", "parameters"})
    if (j.contains(k)) std::printf("%-18s %s\n", (std::string(k) + ":").c_str(), scalar_text(j[k]).c_str());
  std::printf("layers:\n");
  for (const Json& t : j["layers"]) {
    std::string shape;
    for (const Json& d : t["shape"]) shape += (shape.empty() ? "[" : ", ") + d.dump();
    std::printf("  %-18s %-14s %s\n", t["name"].get<std::string>().c_str(), (shape + "]").c_str(),
                t["size"].dump().c_str());
  }
  print_section("metrics", j["metrics"]);
  if (j.contains("optimizer")) {
    const Json& o = j["optimizer"];
    std::string slots;
    for (const Json& s : o["slots"]) slots += (slots.empty() ? "" : ", ") + s.get<std::string>();
    print_section("optimizer " + o["name"].get<std::string>() + " (slots: " + (slots.empty() ? "none" : slots) + ")",
                  o["attributes"]);
    print_section("trainer", j["trainer"]);
    std::printf("rank_state:%s\n", j["rank_state"].empty() ? " (none)" : "");
    for (std::size_t r = 0; r < j["rank_state"].size(); ++r) {
      std::string row;
      for (const Json& v : j["rank_state"][r]) row += " " + v.dump();
      std::printf("  rank %zu:%s\n", r, row.c_str());
    }
    print_section("tracker", j["tracker"]);
  }
  const std::string config = j["config"].get<std::string>();
  std::printf("config:%s\n%s", config.empty() ? " (none)" : "", config.c_str());
  if (!config.empty() && config.back() != '\n') std::printf("\n");
}

}  // namespace

int run_evaluate(const std::vector<std::string>& args) {
  po::options_description opts("evaluate options");
  opts.add_options()("model", po::value<std::string>(), "model or checkpoint file")(
      "data", po::value<std::string>(), "data file: HDF5 (X, y) or IDX images with labels beside")(
      "x-name", po::value<std::string>()->default_value("X"), "HDF5 dataset of the features")(
      "y-name", po::value<std::string>()->default_value("y"), "HDF5 dataset of the labels or targets")(
      "batch-size", po::value<int>()->default_value(kDefaultBatch), "rows per forward pass")(
      "max-rows", po::value<int64_t>()->default_value(0), "use only the first N rows (0: all)")(
      "json", po::bool_switch(), "print one JSON object");
  po::variables_map vm;
  if (!parse_command("evaluate", "ringtrain evaluate --model FILE --data FILE [options]", opts, args, 0,
                     {"model", "data"}, vm))
    return kExitSuccess;
  const int batch = positive_batch(vm);
  const std::string model_path = vm["model"].as<std::string>();
  const SavedModel m = read_model(model_path);
  const Dataset d = read_eval_data(m, vm);
  Mlp mlp = load_mlp(m, int(std::min<int64_t>(batch, std::max<int64_t>(d.rows, 1))));
  const auto metrics = compute_metrics(mlp, d, mlp.max_batch());
  if (vm["json"].as<bool>()) {
    Json j{{"model", model_path}, {"data", d.source}, {"rows", d.rows}, {"architecture", m.spec.architecture()},
           {"task", task_name(m.task)}};
    for (const std::string& n : metric_order(metrics)) j["metrics"][n] = metrics.at(n);
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("model %s (%s, %s) on %s: %lld rows\n", model_path.c_str(), m.spec.architecture().c_str(),
                task_name(m.task), d.source.c_str(), (long long)d.rows);
    for (const std::string& n : metric_order(metrics)) std::printf("%s %.6g\n", n.c_str(), metrics.at(n));
  }
  return kExitSuccess;
}

int run_predict(const std::vector<std::string>& args) {
  po::options_description opts("predict options");
  opts.add_options()("model", po::value<std::string>(), "model or checkpoint file")(
      "input", po::value<std::string>(), "HDF5 file holding the features X [N, D] (labels not needed)")(
      "output", po::value<std::string>(), "HDF5 file to write (replaced atomically)")(
      "x-name", po::value<std::string>()->default_value("X"), "HDF5 dataset of the features")(
      "batch-size", po::value<int>()->default_value(kDefaultBatch), "rows per forward pass");
  po::variables_map vm;
  if (!parse_command("predict", "ringtrain predict --model FILE --input X.h5 --output P.h5 [options]", opts, args, 0,
                     {"model", "input", "output"}, vm))
    return kExitSuccess;
  const int batch = positive_batch(vm);
  const std::string model_path = vm["model"].as<std::string>(), out_path = vm["output"].as<std::string>(),
                    input_path = vm["input"].as<std::string>();
  check_output(out_path, {model_path, input_path}, "predict: --output");
  remove_temporaries_on_signals();  // an interrupted predict leaves no OUTPUT.tmp
  const SavedModel m = read_model(model_path);
  int64_t rows = 0;
  const std::vector<float> x = read_features(input_path, vm["x-name"].as<std::string>(), m.spec.sizes.front(), rows);
  Mlp mlp = load_mlp(m, int(std::min<int64_t>(batch, rows)));
  const bool cls = m.task == Task::kClassification;
  const int64_t k = mlp.output_size();
  std::vector<float> values(std::size_t(rows * k));   // (rows, k)
  std::vector<int32_t> predicted(cls ? rows : 0);    // (rows)
  for (int64_t i = 0; i < rows; i += mlp.max_batch()) {
    const int count = int(std::min<int64_t>(mlp.max_batch(), rows - i));
    ConstMatMap out = mlp.forward(x.data() + i * mlp.input_size(), count, false);  // (count, k)
    if (cls) softmax_rows(out, values.data() + i * k, predicted.data() + i);
    else std::copy(out.data(), out.data() + count * k, values.begin() + i * k);
  }
  write_predictions(out_path, m, model_path, rows, values, predicted);
  std::printf("wrote %lld predictions to %s\n", (long long)rows, out_path.c_str());
  return kExitSuccess;
}

int run_inspect(const std::vector<std::string>& args) {
  po::options_description opts("inspect options");
  opts.add_options()("json", po::bool_switch(), "print one JSON object");
  po::variables_map vm;
  if (!parse_command("inspect", "ringtrain inspect FILE [--json]", opts, args, 1, {"positional"}, vm))
    return kExitSuccess;
  const Json j = describe_file(positional_words(vm).front());
  if (vm["json"].as<bool>()) std::printf("%s\n", j.dump(2).c_str());
  else print_description(j);
  return kExitSuccess;
}

}  // namespace ringtrain
