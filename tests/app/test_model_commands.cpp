// `ringtrain evaluate`, `predict` and `inspect` on small models with known
// weights: metrics and predictions checked against a direct Mlp forward,
// output files' shapes and attributes, and the usage errors.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ringtrain/app/model_commands.hpp"
#include "ringtrain/io/data_reader.hpp"
#include "ringtrain/io/hdf5.hpp"
#include "ringtrain/io/model_file.hpp"
#include "ringtrain/nn/loss.hpp"
#include "ringtrain/nn/metrics.hpp"
#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/util/error.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;
using namespace ringtrain::test;
using PlainJson = nlohmann::json;

namespace {

// A 4-3-2 model with deterministic, non-trivial weights.
SavedModel small_model(Task task) {
  SavedModel m;
  m.spec.sizes = {4, 3, 2};
  m.spec.activation = Activation::kTanh;
  m.task = task;
  m.params.resize(mlp_layout(m.spec).total());
  for (std::size_t i = 0; i < m.params.size(); ++i) m.params[i] = 0.8f * float(std::sin(1.7 * double(i) + 0.3));
  m.metrics = {{"val_accuracy", 0.75}, {"step", int64_t{40}}, {"epoch", int64_t{2}},
               {"examples_seen", int64_t{640}}, {"monitor", std::string("val_loss")}, {"mode", std::string("min")}};
  m.config = "# ringtrain effective configuration\n[model]\nhidden = 3\n";
  return m;
}

Dataset small_data(Task task, int64_t rows, int64_t features) {
  Dataset d;
  d.task = task;
  d.rows = rows;
  d.features = features;
  d.outputs = 2;
  d.source = "test";
  for (int64_t i = 0; i < rows * features; ++i) d.x.push_back(float(std::cos(0.37 * double(i))));
  for (int64_t i = 0; i < rows; ++i) {
    d.labels.push_back(int32_t((i * 7 / 3) % 2));
    d.y.push_back(float(std::sin(double(i))));
    d.y.push_back(0.5f * float(i % 3));
  }
  if (task == Task::kClassification) d.y.clear();
  else d.labels.clear();
  return d;
}

// The model's raw outputs (rows, 2) on d, computed in one forward pass.
std::vector<float> direct_forward(const SavedModel& m, const Dataset& d) {
  Mlp mlp(m.spec, int(d.rows));
  std::copy(m.params.begin(), m.params.end(), mlp.params());
  ConstMatMap out = mlp.forward(d.x.data(), int(d.rows), false);
  return std::vector<float>(out.data(), out.data() + out.size());
}

// Runs fn with stdout sent to a file; returns what it printed.
std::string capture_stdout(const std::function<int()>& fn, int* rc = nullptr) {
  TempDir dir;
  const std::string path = dir.file("stdout.txt");
  std::cout.flush();  // doctest's own pending output must not land in the capture
  std::fflush(stdout);
  const int saved = ::dup(STDOUT_FILENO);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path);  // no doctest output while capturing
  ::dup2(fd, STDOUT_FILENO);
  ::close(fd);
  struct Restore {
    int saved;
    ~Restore() {
      std::cout.flush();
      std::fflush(stdout);
      ::dup2(saved, STDOUT_FILENO);
      ::close(saved);
    }
  };
  {
    Restore restore{saved};
    const int code = fn();
    if (rc) *rc = code;
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<float> read_floats(hid_t file, const std::string& name, std::vector<hsize_t> shape) {
  H5Handle ds = h5_open_dataset(file, name, "test");
  CHECK(h5_dataset_shape(ds) == shape);
  std::vector<float> v(shape[0] * (shape.size() > 1 ? shape[1] : 1));
  REQUIRE(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0);
  return v;
}

// A data file holding only X (what predict is mostly given).
void write_x_only(const std::string& path, const Dataset& d) {
  H5Handle f = h5_create_file(path);
  h5_write_floats(f, "X", {hsize_t(d.rows), hsize_t(d.features)}, d.x.data());
}

struct Files {
  TempDir dir;
  std::string model, data;
  SavedModel m;
  Dataset d;
  explicit Files(Task task, int64_t rows = 13) : m(small_model(task)), d(small_data(task, rows, 4)) {
    model = dir.file("best.h5");
    data = dir.file("data.h5");
    write_model_file(model, m);
    write_hdf5_dataset(data, d);
  }
};

}  // namespace

TEST_CASE("evaluate: classification metrics equal Mlp forward + loss + EvalSums") {
  Files f(Task::kClassification);
  const std::vector<float> logits = direct_forward(f.m, f.d);
  std::vector<int32_t> predicted(f.d.rows);
  EvalSums sums(2, 2);
  const double loss = softmax_cross_entropy(ConstMatMap(logits.data(), f.d.rows, 2), f.d.labels.data(), nullptr,
                                            predicted.data());
  sums.add_classification(loss, f.d.labels.data(), predicted.data(), int(f.d.rows));
  const auto expected = sums.metrics();
  // An independent accuracy: argmax by hand.
  int correct = 0;
  for (int64_t i = 0; i < f.d.rows; ++i) correct += int(logits[i * 2 + 1] > logits[i * 2]) == f.d.labels[i];
  CHECK(expected.at("accuracy") == doctest::Approx(double(correct) / double(f.d.rows)));

  for (const std::string batch : {"5", "1024"}) {
    CAPTURE(batch);
    int rc = -1;
    const std::string out = capture_stdout(
        [&] { return run_evaluate({"--model", f.model, "--data", f.data, "--json", "--batch-size", batch}); }, &rc);
    CHECK(rc == 0);
    const PlainJson j = PlainJson::parse(out);
    CHECK(j["rows"] == f.d.rows);
    CHECK(j["metrics"].size() == 5);
    for (const auto& [name, value] : expected) {
      CAPTURE(name);
      CHECK(j["metrics"][name].get<double>() == doctest::Approx(value).epsilon(1e-6));
    }
  }
  // Text form: a header line, then every metric as `name value`.
  const std::string text = capture_stdout([&] { return run_evaluate({"--model", f.model, "--data", f.data}); });
  CHECK(text.find("13 rows") != std::string::npos);
  for (const char* name : {"\nloss ", "\naccuracy ", "\nerror ", "\nmcc ", "\nmacro_f1 "})
    CHECK(text.find(name) != std::string::npos);
  // --max-rows takes the first rows only.
  const PlainJson few = PlainJson::parse(capture_stdout(
      [&] { return run_evaluate({"--model", f.model, "--data", f.data, "--json", "--max-rows", "4"}); }));
  CHECK(few["rows"] == 4);
}

TEST_CASE("evaluate: regression metrics (loss, mse, mae)") {
  Files f(Task::kRegression);
  const std::vector<float> pred = direct_forward(f.m, f.d);
  double abs_sum = 0;
  EvalSums sums(0, 2);
  const double loss = mean_squared_error(ConstMatMap(pred.data(), f.d.rows, 2), f.d.y.data(), nullptr, &abs_sum);
  sums.add_regression(loss, abs_sum, int(f.d.rows));
  const PlainJson j = PlainJson::parse(capture_stdout(
      [&] { return run_evaluate({"--model", f.model, "--data", f.data, "--json", "--batch-size=3"}); }));
  CHECK(j["metrics"].size() == 3);
  for (const auto& [name, value] : sums.metrics()) {
    CAPTURE(name);
    CHECK(j["metrics"][name].get<double>() == doctest::Approx(value).epsilon(1e-6));
  }
}

TEST_CASE("predict: probabilities, argmax and shapes match a direct forward; X alone is enough") {
  Files f(Task::kClassification, 9);
  const std::string x_only = f.dir.file("x_only.h5");
  write_x_only(x_only, f.d);
  const std::vector<float> logits = direct_forward(f.m, f.d);
  for (const std::string& input : {f.data, x_only}) {
    CAPTURE(input);
    const std::string out_path = f.dir.file("p.h5");
    const std::string out = capture_stdout([&] {
      return run_predict({"--model", f.model, "--input", input, "--output", out_path, "--batch-size", "4"});
    });
    CHECK(out == "wrote 9 predictions to " + out_path + "\n");
    H5Handle file = h5_open_read(out_path);
    const std::vector<float> probs = read_floats(file, "probabilities", {9, 2});
    H5Handle pd = h5_open_dataset(file, "predicted", "test");
    CHECK(h5_dataset_shape(pd) == std::vector<hsize_t>{9});
    CHECK(h5_is_integer(pd));
    std::vector<int32_t> predicted(9);
    REQUIRE(H5Dread(pd, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, predicted.data()) >= 0);
    for (int i = 0; i < 9; ++i) {
      const double a = logits[i * 2], b = logits[i * 2 + 1];
      CHECK(probs[i * 2] + probs[i * 2 + 1] == doctest::Approx(1.0).epsilon(1e-6));
      CHECK(probs[i * 2 + 1] == doctest::Approx(1.0 / (1.0 + std::exp(a - b))).epsilon(1e-6));
      CHECK(predicted[i] == (b > a ? 1 : 0));
      CHECK(predicted[i] == (probs[i * 2 + 1] > probs[i * 2] ? 1 : 0));
    }
    const Attrs attrs = h5_read_attrs(file, "test");
    CHECK(attr_to_string(attrs.at("model")) == f.model);
    CHECK(attr_to_string(attrs.at("architecture")) == "4-3-2");
    CHECK(attr_to_string(attrs.at("task")) == "classification");
  }
  // Stable on huge logits: no NaN, one-hot probabilities.
  SavedModel big = f.m;
  for (float& p : big.params) p *= 1e4f;
  write_model_file(f.dir.file("big.h5"), big);
  capture_stdout([&] {
    return run_predict({"--model", f.dir.file("big.h5"), "--input", x_only, "--output", f.dir.file("pb.h5")});
  });
  H5Handle file = h5_open_read(f.dir.file("pb.h5"));
  for (float p : read_floats(file, "probabilities", {9, 2})) CHECK(std::isfinite(p));
}

TEST_CASE("predict: regression writes the raw predictions") {
  Files f(Task::kRegression, 7);
  const std::string out_path = f.dir.file("p.h5");
  capture_stdout([&] { return run_predict({"--model", f.model, "--input", f.data, "--output", out_path}); });
  H5Handle file = h5_open_read(out_path);
  CHECK_FALSE(h5_exists(file, "probabilities"));
  const std::vector<float> got = read_floats(file, "predictions", {7, 2});
  const std::vector<float> want = direct_forward(f.m, f.d);
  for (std::size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));
  CHECK(attr_to_string(h5_read_attrs(file, "test").at("task")) == "regression");
}

TEST_CASE("evaluate/predict/inspect: bad input is a usage error naming what is wrong, and writes nothing") {
  Files f(Task::kClassification);
  const std::string wide = f.dir.file("wide.h5"), out = f.dir.file("out.h5");
  write_hdf5_dataset(wide, small_data(Task::kClassification, 5, 5));
  Dataset many = small_data(Task::kClassification, 6, 4);
  many.labels[3] = 4;
  write_hdf5_dataset(f.dir.file("many.h5"), many);
  auto fails = [](const std::function<int()>& fn, const std::string& needle) {
    CAPTURE(needle);
    CHECK_THROWS_WITH_AS(fn(), doctest::Contains(needle.c_str()), UsageError);
  };
  const auto evaluate = [](std::vector<std::string> a) { return [a] { return run_evaluate(a); }; };
  const auto predict = [](std::vector<std::string> a) { return [a] { return run_predict(a); }; };
  fails(evaluate({"--model", f.model, "--data", wide}), "5 features");
  fails(evaluate({"--model", f.model, "--data", wide}), "expects 4");
  fails(evaluate({"--model", f.model, "--data", f.dir.file("many.h5")}), "2 classes");
  fails(evaluate({"--model", f.dir.file("missing.h5"), "--data", f.data}), "missing.h5");
  fails(evaluate({"--model", f.data, "--data", f.data}), "not a ringtrain model");
  fails(evaluate({"--model", f.model, "--data", f.data, "--bogus"}), "--bogus");
  fails(evaluate({"--model", f.model, "--dat", f.data}), "--dat");  // no abbreviations
  fails(evaluate({"--model", f.model}), "missing --data");
  fails(evaluate({}), "--model, --data");
  fails(evaluate({"--model", f.model, "--data", f.data, "extra"}), "'extra'");
  fails(evaluate({"--model", f.model, "--data", f.data, "--batch-size", "0"}), "--batch-size");
  fails(evaluate({"--model", f.model, "--data", f.data, "--batch-size", "ten"}), "batch-size");
  fails(predict({"--model", f.model, "--input", wide, "--output", out}), "5 features");
  fails(predict({"--model", f.model, "--input", wide, "--output", out}), "expects 4");
  fails(predict({"--model", f.model, "--input", f.data, "--x-name", "Z", "--output", out}), "'Z'");
  fails(predict({"--model", f.model, "--input", f.dir.file("nope.h5"), "--output", out}), "nope.h5");
  fails(predict({"--model", f.model, "--input", f.data}), "--output");
  fails(predict({"--model", f.model, "--input", f.data, "--output", f.dir.file("no/dir/p.h5")}), "no/dir");
  fails([&] { return run_inspect({f.data}); }, "not a ringtrain model");
  fails([&] { return run_inspect({f.dir.file("gone.h5")}); }, "gone.h5");
  fails([&] { return run_inspect({}); }, "FILE");
  fails([&] { return run_inspect({f.model, f.data}); }, "unexpected argument");
  fails([&] { return run_inspect({f.model, "--yaml"}); }, "--yaml");
  // No output and no temporary left behind by the failed predictions.
  for (const auto& e : std::filesystem::directory_iterator(f.dir.path()))
    CHECK(e.path().filename().string().rfind("out.h5", 0) == std::string::npos);
}

TEST_CASE("predict never writes over its model, its input or a special file") {
  Files f(Task::kClassification);
  std::filesystem::create_directory(f.dir.file("sub"));
  std::filesystem::create_hard_link(f.data, f.dir.file("data-link.h5"));
  std::filesystem::create_symlink("/dev/null", f.dir.file("null"));
  const auto bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string model_bytes = bytes(f.model), data_bytes = bytes(f.data);
  const auto refused = [&](const std::string& out, const std::string& needle) {
    CAPTURE(out);
    CHECK_THROWS_WITH_AS(run_predict({"--model", f.model, "--input", f.data, "--output", out}),
                         doctest::Contains(needle.c_str()), UsageError);
  };
  refused(f.model, "is an input");
  refused(f.data, "is an input");
  refused(f.dir.file("sub/../best.h5"), "is the input '" + f.model + "'");
  refused(f.dir.file("data-link.h5"), "is the input '" + f.data + "'");
  refused(f.dir.file("null"), "is a symbolic link");
  refused(f.dir.file("sub"), "is a directory");
  CHECK(bytes(f.model) == model_bytes);
  CHECK(bytes(f.data) == data_bytes);
  CHECK(std::filesystem::is_symlink(f.dir.file("null")));
  CHECK(std::filesystem::is_character_file("/dev/null"));
}

TEST_CASE("evaluate/predict/inspect: --help prints usage and succeeds") {
  int rc = -1;
  CHECK(capture_stdout([] { return run_evaluate({"--help"}); }, &rc).find("--batch-size") != std::string::npos);
  CHECK(rc == 0);
  CHECK(capture_stdout([] { return run_predict({"-h"}); }, &rc).find("--output") != std::string::npos);
  CHECK(rc == 0);
  CHECK(capture_stdout([] { return run_inspect({"--help"}); }, &rc).find("inspect FILE") != std::string::npos);
  CHECK(rc == 0);
}

TEST_CASE("inspect: a model file, as text and as JSON") {
  Files f(Task::kClassification);
  const std::string text = capture_stdout([&] { return run_inspect({f.model}); });
  for (const char* needle : {"ringtrain-model", "4-3-2", "tanh", "dense_0/kernel     [4, 3]", "dense_1/bias",
                             "parameters:        23", "val_accuracy", "monitor", "val_loss", "config:\n# ringtrain"})
    CHECK_MESSAGE(text.find(needle) != std::string::npos, needle);
  CHECK(text.find("optimizer") == std::string::npos);
  const PlainJson j = PlainJson::parse(capture_stdout([&] { return run_inspect({f.model, "--json"}); }));
  CHECK(j["format"] == "ringtrain-model");
  CHECK(j["format_version"] == 1);
  CHECK(j["architecture"] == "4-3-2");
  CHECK(j["parameters"] == 23);
  CHECK(j["layers"].size() == 4);
  CHECK(j["layers"][0]["name"] == "dense_0/kernel");
  CHECK(j["layers"][0]["shape"] == PlainJson::array({4, 3}));
  CHECK(j["metrics"]["val_accuracy"] == 0.75);
  CHECK(j["metrics"]["step"] == 40);
  CHECK(j["config"] == f.m.config);
}

TEST_CASE("inspect: a checkpoint shows optimizer, trainer, rank_state and tracker") {
  TempDir dir;
  SavedCheckpoint c;
  c.model = small_model(Task::kClassification);
  c.optimizer_name = "adamw";
  c.optimizer = {{"step", int64_t{40}}, {"beta1", 0.9}, {"lr", 0.01}};
  c.slots = {{"m", std::vector<float>(c.model.params.size(), 0.1f)},
             {"v", std::vector<float>(c.model.params.size(), 0.2f)}};
  c.trainer = {{"step", int64_t{40}}, {"epoch", int64_t{2}}, {"world_size", int64_t{2}}};
  c.rank_state = {1, 2, 3, 4, 5, 6};
  c.rank_state_rows = 2;
  c.rank_state_cols = 3;
  c.tracker = {{"best_value", 0.25}, {"best_step", int64_t{30}}, {"bad_evals", int64_t{1}}};
  const std::string path = dir.file("ckpt-40.h5");
  write_checkpoint_file(path, c);
  const PlainJson j = PlainJson::parse(capture_stdout([&] { return run_inspect({path, "--json"}); }));
  CHECK(j["format"] == "ringtrain-checkpoint");
  CHECK(j["architecture"] == "4-3-2");
  CHECK(j["metrics"]["val_accuracy"] == 0.75);
  CHECK(j["optimizer"]["name"] == "adamw");
  CHECK(j["optimizer"]["attributes"]["lr"] == 0.01);
  CHECK(j["optimizer"]["slots"] == PlainJson::array({"m", "v"}));
  CHECK(j["trainer"]["world_size"] == 2);
  CHECK(j["rank_state"] == PlainJson::parse("[[1,2,3],[4,5,6]]"));
  CHECK(j["tracker"]["best_step"] == 30);
  const std::string text = capture_stdout([&] { return run_inspect({path}); });
  for (const char* needle : {"optimizer adamw (slots: m, v):", "beta1", "trainer:", "world_size",
                             "rank 1: 4 5 6", "tracker:", "best_value", "config:"})
    CHECK_MESSAGE(text.find(needle) != std::string::npos, needle);
  // A checkpoint is a model too: evaluate and predict accept it.
  const std::string data = dir.file("d.h5");
  write_hdf5_dataset(data, small_data(Task::kClassification, 5, 4));
  int rc = -1;
  capture_stdout([&] { return run_evaluate({"--model", path, "--data", data}); }, &rc);
  CHECK(rc == 0);
}
