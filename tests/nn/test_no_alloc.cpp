// Nothing allocates in the step loop (docs/ARCHITECTURE.md): malloc and friends are
// counted (tests/support/alloc_counter) around
// sample -> gather -> forward -> loss -> backward -> step.
#include <doctest/doctest.h>

#include "alloc_counter.hpp"

#if !defined(RT_TEST_OWN_MALLOC)

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "ringtrain/data/dataset.hpp"
#include "ringtrain/data/sampler.hpp"
#include "ringtrain/nn/loss.hpp"
#include "ringtrain/nn/metrics.hpp"
#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/optim/optimizer.hpp"
#include "ringtrain/util/philox.hpp"

namespace {
using namespace ringtrain;
using test::AllocationCounter;

constexpr int kBatch = 64, kRows = 200;  // 200 rows: the last step of an epoch is short

struct Setup {
  Setup(Task task, float dropout, const std::string& optimizer)
      : net(spec(task, dropout), kBatch),
        sampler(kRows, 0, 1, kBatch, true, 5),
        sums(task == Task::kClassification ? 10 : 0, 10) {
    net.init(1);
    const Philox rng(3);
    data.task = task;
    data.rows = kRows;
    data.features = 784;
    data.outputs = 10;
    data.x.resize(std::size_t(kRows) * 784);
    for (std::size_t i = 0; i < data.x.size(); ++i) data.x[i] = rng.uniform(i);
    for (int r = 0; r < kRows; ++r) data.labels.push_back(r % 10);
    data.y.assign(std::size_t(kRows) * 10, 0.5f);
    x.resize(std::size_t(kBatch) * 784);
    labels.resize(kBatch);
    pred.resize(kBatch);
    y.resize(std::size_t(kBatch) * 10);
    dout.resize(std::size_t(kBatch) * 10);
    grads.resize(net.num_params());
    OptimSpec os;
    os.name = optimizer;
    os.nesterov = true;
    os.weight_decay = 1e-4;
    opt = make_optimizer(os, net.num_params());
  }
  static MlpSpec spec(Task task, float dropout) {
    MlpSpec s;
    s.sizes = {784, 256, 128, 10};
    s.activation = task == Task::kClassification ? Activation::kRelu : Activation::kTanh;
    s.dropout = dropout;
    return s;
  }

  // One epoch of training steps, then an evaluation pass over one batch.
  double epoch(int64_t e) {
    double loss = 0.0;
    sampler.set_epoch(e);
    for (int64_t s = 0; s < sampler.steps_per_epoch(); ++s) {
      const int b = sampler.batch_size(s);
      gather_rows(data, sampler.batch_rows(s), b, x.data(), labels.data(), y.data());
      const ConstMatMap out = net.forward(x.data(), b, true, mix_key(e, s));
      loss += data.task == Task::kClassification
                  ? softmax_cross_entropy(out, labels.data(), dout.data(), pred.data())
                  : mean_squared_error(out, y.data(), dout.data());
      net.backward(dout.data(), grads.data());
      opt->step(net.params(), grads.data(), 0.01f, 1.0f / float(b));
    }
    const ConstMatMap out = net.forward(x.data(), kBatch, false);
    if (data.task == Task::kClassification) {
      sums.add_classification(softmax_cross_entropy(out, labels.data(), nullptr, pred.data()), labels.data(),
                              pred.data(), kBatch);
    } else {
      double abs_sum = 0.0;
      sums.add_regression(mean_squared_error(out, y.data(), nullptr, &abs_sum), abs_sum, kBatch);
    }
    return loss;
  }

  Mlp net;
  ShardSampler sampler;
  EvalSums sums;
  Dataset data;
  std::vector<float> x, y, dout, grads;
  std::vector<int32_t> labels, pred;
  std::unique_ptr<Optimizer> opt;
};

void check_no_allocation(Task task, float dropout, const std::string& optimizer) {
  Setup setup(task, dropout, optimizer);
  const double first = setup.epoch(0);  // warm-up: anything lazy happens here
  double loss = 0.0;
  AllocationCounter counter;
  for (int64_t e = 1; e <= 3; ++e) loss = setup.epoch(e);
  const long allocations = counter.stop();
  CHECK(allocations == 0);
  CHECK(std::isfinite(loss));
  CHECK(loss != first);  // the steps really ran and changed the model
}
}  // namespace

TEST_CASE("no-alloc: the counter sees malloc, new and aligned allocations") {
  void* (*volatile do_malloc)(size_t) = std::malloc;
  AllocationCounter counter;
  void* p = do_malloc(64);
  auto* v = new std::vector<float>(1000);
  void* q = nullptr;
  const int rc = posix_memalign(&q, 64, 256);
  const long n = counter.stop();
  std::free(p);
  delete v;
  std::free(q);
  CHECK(rc == 0);
  CHECK(n >= 4);  // malloc, new (object), new (vector storage), posix_memalign
}

TEST_CASE("no-alloc: 784-256-128-10 relu, cross-entropy, SGD (Nesterov)") {
  check_no_allocation(Task::kClassification, 0.0f, "sgd");
}

TEST_CASE("no-alloc: 784-256-128-10 relu, cross-entropy, AdamW") {
  check_no_allocation(Task::kClassification, 0.0f, "adamw");
}

TEST_CASE("no-alloc: dropout in training, SGD and AdamW") {
  check_no_allocation(Task::kClassification, 0.2f, "sgd");
  check_no_allocation(Task::kClassification, 0.2f, "adamw");
}

TEST_CASE("no-alloc: tanh regression with MSE, AdamW") {
  check_no_allocation(Task::kRegression, 0.0f, "adamw");
}

#endif  // !RT_TEST_OWN_MALLOC
