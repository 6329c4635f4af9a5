// Optimizers (optim/optimizer.hpp): SGD (momentum, Nesterov, L2) and AdamW
// against hand-computed torch.optim semantics, convergence, grad_scale, slots.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ringtrain/optim/optimizer.hpp"
#include "ringtrain/util/error.hpp"

using namespace ringtrain;

namespace {
// Gradients fed step by step (independent of w), two parameters, w0 = {1, -2}.
const std::vector<std::vector<float>> kGrads = {{0.5f, 0.1f}, {-0.25f, 0.3f}, {1.0f, -0.2f}};

// Runs `steps` steps of `opt` from w0 with lr and returns w after each step.
std::vector<std::vector<float>> run(Optimizer& opt, float lr, int steps = 3) {
  std::vector<float> w = {1.0f, -2.0f};
  std::vector<std::vector<float>> out;
  for (int s = 0; s < steps; ++s) {
    opt.step(w.data(), kGrads[s].data(), lr, 1.0f);
    out.push_back(w);
  }
  return out;
}

// Values computed by hand (double) from torch.optim semantics; see the header.
void check_trajectory(const std::vector<std::vector<float>>& got,
                      const std::vector<std::vector<double>>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t s = 0; s < want.size(); ++s)
    for (std::size_t i = 0; i < 2; ++i) {
      INFO("step ", s + 1, " param ", i);
      CHECK(got[s][i] == doctest::Approx(want[s][i]).epsilon(1e-6));
    }
}

// f(w) = 0.5 * sum a_i (w_i - c_i)^2, gradient a_i (w_i - c_i).
const std::vector<float> kA = {1.0f, 2.0f, 0.5f}, kC = {3.0f, -1.0f, 2.0f};
std::vector<float> minimise(Optimizer& opt, float lr, int steps) {
  std::vector<float> w(3, 0.0f), g(3);
  for (int s = 0; s < steps; ++s) {
    for (int i = 0; i < 3; ++i) g[i] = kA[i] * (w[i] - kC[i]);
    opt.step(w.data(), g.data(), lr, 1.0f);
  }
  return w;
}
}  // namespace

TEST_CASE("sgd: plain gradient descent converges on a quadratic") {
  Sgd opt(3, 0.0, false, 0.0);
  const auto w = minimise(opt, 0.1f, 500);
  for (int i = 0; i < 3; ++i) CHECK(w[i] == doctest::Approx(kC[i]).epsilon(1e-4));
  CHECK(opt.steps() == 500);
}

TEST_CASE("sgd: momentum converges on a quadratic") {
  Sgd opt(3, 0.9, true, 0.0);
  const auto w = minimise(opt, 0.05f, 1000);
  for (int i = 0; i < 3; ++i) CHECK(w[i] == doctest::Approx(kC[i]).epsilon(1e-4));
}

TEST_CASE("sgd: matches torch.optim.SGD step by step") {
  SUBCASE("momentum 0.9") {
    // v1 = g1; w1 = w0 - lr v1; v2 = 0.9 v1 + g2 ...
    Sgd opt(2, 0.9, false, 0.0);
    check_trajectory(run(opt, 0.1f), {{0.95, -2.01}, {0.93, -2.049}, {0.812, -2.0641}});
  }
  SUBCASE("nesterov") {
    Sgd opt(2, 0.9, true, 0.0);
    check_trajectory(run(opt, 0.1f), {{0.905, -2.019}, {0.912, -2.0841}, {0.7058, -2.07769}});
  }
  SUBCASE("momentum with L2 weight decay 0.01") {
    Sgd opt(2, 0.9, false, 0.01);
    check_trajectory(run(opt, 0.1f), {{0.949, -2.008},
                                      {0.927151, -2.043192},
                                      {0.806559749, -2.05282161}});
  }
  SUBCASE("no momentum, weight decay 0.1") {
    Sgd opt(2, 0.0, false, 0.1);
    check_trajectory(run(opt, 0.1f), {{0.94, -1.99}, {0.9556, -2.0001}, {0.846044, -1.960099}});
  }
}

TEST_CASE("sgd: the momentum slot holds the buffer v") {
  Sgd opt(2, 0.9, false, 0.0);
  REQUIRE(opt.slots().size() == 1);
  CHECK(opt.slots()[0].name == "momentum");
  CHECK(opt.slots()[0].values.size() == 2);
  run(opt, 0.1f, 2);
  CHECK(opt.slots()[0].values[0] == doctest::Approx(0.2));  // 0.9 * 0.5 - 0.25
  CHECK(opt.slots()[0].values[1] == doctest::Approx(0.39));
  CHECK(Sgd(2, 0.0, false, 0.0).slots().empty());
  CHECK(opt.name() == "sgd");
}

TEST_CASE("adamw: matches torch.optim.AdamW for three steps") {
  // lr 0.01, wd 0.1, betas (0.9, 0.999), eps 1e-8: w *= 1 - lr*wd, then the
  // bias-corrected Adam step.
  AdamW opt(2, 0.9, 0.999, 1e-8, 0.1);
  check_trajectory(run(opt, 0.01f), {{0.989, -2.008},
                                     {0.98534763, -2.01516981},
                                     {0.977781166, -2.01573368}});
  REQUIRE(opt.slots().size() == 2);
  CHECK(opt.slots()[0].name == "m");
  CHECK(opt.slots()[1].name == "v");
  // m = 0.9 (0.9 * 0.1 * 0.5 + 0.1 * -0.25) + 0.1 * 1 = 0.1180
  CHECK(opt.slots()[0].values[0] == doctest::Approx(0.118).epsilon(1e-5));
  CHECK(opt.steps() == 3);
  CHECK(opt.name() == "adamw");
}

TEST_CASE("adamw: converges on a quadratic") {
  AdamW opt(3, 0.9, 0.999, 1e-8, 0.0);
  const auto w = minimise(opt, 0.01f, 3000);
  for (int i = 0; i < 3; ++i) CHECK(w[i] == doctest::Approx(kC[i]).epsilon(1e-3));
}

TEST_CASE("optimizers: grad_scale equals pre-scaling the gradients") {
  const float scale = 1.0f / 3.0f;
  for (const std::string name : {"sgd", "adamw"}) {
    OptimSpec spec;
    spec.name = name;
    spec.nesterov = true;
    spec.weight_decay = 0.05;
    auto a = make_optimizer(spec, 4), b = make_optimizer(spec, 4);
    const std::vector<float> w0 = {0.5f, -1.0f, 2.0f, 0.0f};
    std::vector<float> wa = w0, wb = w0;
    std::vector<float> g = {3.0f, -6.0f, 0.3f, 1.5f}, gs(4);
    for (int step = 0; step < 4; ++step) {
      for (int i = 0; i < 4; ++i) g[i] += 0.7f * float(step);
      for (int i = 0; i < 4; ++i) gs[i] = g[i] * scale;
      a->step(wa.data(), g.data(), 0.05f, scale);
      b->step(wb.data(), gs.data(), 0.05f, 1.0f);
    }
    for (int i = 0; i < 4; ++i) {
      INFO(name, " param ", i);
      CHECK(wa[i] == doctest::Approx(wb[i]).epsilon(1e-6));
      CHECK(std::fabs(wa[i] - w0[i]) > 1e-3f);  // the steps did move w
    }
  }
}

TEST_CASE("optimizers: shards of one step give the same bits as the whole step (sharded optimizer)") {
  // comm.shard_optimizer: each rank updates its shard; frozen ranges stay
  // untouched whichever shard they fall in.
  const std::size_t n = 37;
  for (const std::string name : {"sgd", "adamw"}) {
    for (const bool frozen : {false, true}) {
      OptimSpec spec;
      spec.name = name;
      spec.nesterov = true;
      spec.weight_decay = 0.01;
      auto whole = make_optimizer(spec, n), sharded = make_optimizer(spec, n);
      if (frozen) {
        whole->freeze({{3, 9}, {20, 30}});
        sharded->freeze({{3, 9}, {20, 30}});
      }
      std::vector<float> wa(n), g(n);
      for (std::size_t i = 0; i < n; ++i) wa[i] = 0.1f * float(i) - 1.5f;
      std::vector<float> wb = wa;
      const std::size_t cuts[] = {0, 5, 6, 21, 37};  // uneven shards, one of length 1
      for (int step = 0; step < 5; ++step) {
        for (std::size_t i = 0; i < n; ++i) g[i] = std::sin(float(i * 7 + step)) * 2.0f;
        whole->step(wa.data(), g.data(), 0.03f, 0.5f);
        for (int s = 0; s < 4; ++s) {
          auto& opt = *sharded;
          opt.step_shard(wb.data(), g.data(), 0.03f, 0.5f, cuts[s], cuts[s + 1]);
          if (s < 3) opt.set_steps(opt.steps() - 1);  // p ranks, one step each: count it once here
        }
      }
      INFO(name, frozen ? " with frozen ranges" : "");
      CHECK(std::memcmp(wa.data(), wb.data(), n * sizeof(float)) == 0);
      for (std::size_t k = 0; k < whole->slots().size(); ++k)
        CHECK(std::memcmp(whole->slots()[k].values.data(), sharded->slots()[k].values.data(), n * sizeof(float)) == 0);
      CHECK(sharded->steps() == 5);
      if (frozen) CHECK(wb[4] == doctest::Approx(0.1f * 4 - 1.5f));
    }
  }
  auto opt = make_optimizer(OptimSpec{}, 4);
  std::vector<float> w(4), g(4);
  CHECK_THROWS(opt->step_shard(w.data(), g.data(), 0.1f, 1.0f, 2, 5));
}

TEST_CASE("make_optimizer: builds the named optimizer and rejects bad settings") {
  OptimSpec spec;
  CHECK(make_optimizer(spec, 5)->name() == "sgd");
  CHECK(make_optimizer(spec, 5)->slots().at(0).values.size() == 5);
  spec.name = "adamw";
  auto adam = make_optimizer(spec, 7);
  CHECK(adam->name() == "adamw");
  REQUIRE(adam->slots().size() == 2);
  CHECK(adam->slots()[0].values.size() == 7);
  CHECK(adam->slots()[1].values.size() == 7);

  spec.name = "adam";
  CHECK_THROWS_AS(make_optimizer(spec, 5), UsageError);
  try {
    make_optimizer(spec, 5);
  } catch (const UsageError& e) {
    CHECK(std::string(e.what()).find("optim.name") != std::string::npos);
  }
  OptimSpec sgd;
  sgd.momentum = 1.0;
  CHECK_THROWS_AS(make_optimizer(sgd, 5), UsageError);
  sgd.momentum = -0.1;
  CHECK_THROWS_AS(make_optimizer(sgd, 5), UsageError);
  sgd.momentum = 0.0;
  sgd.nesterov = true;
  CHECK_THROWS_AS(make_optimizer(sgd, 5), UsageError);
  sgd.nesterov = false;
  sgd.weight_decay = -1e-4;
  CHECK_THROWS_AS(make_optimizer(sgd, 5), UsageError);
  OptimSpec aw;
  aw.name = "adamw";
  aw.weight_decay = -1.0;
  CHECK_THROWS_AS(make_optimizer(aw, 5), UsageError);
}

namespace {
// The reference formulas (torch.optim.SGD and torch.optim.AdamW) evaluated in
// double with the hyper-parameters as given, on f(w) = 0.5 sum a_i (w_i - c_i)^2.
struct Quadratic {
  static constexpr int kN = 64;
  std::vector<double> a, c, w0;
  Quadratic() : a(kN), c(kN), w0(kN) {
    for (int i = 0; i < kN; ++i) {
      a[i] = 0.25 + 0.05 * i;
      c[i] = (i % 2 ? 1.0 : -1.0) * (1.5 + 0.02 * i);  // out of reach in 100 steps: every step counts
      w0[i] = 0.3 * std::sin(double(i));
    }
  }
};

std::vector<double> reference(const Quadratic& q, const OptimSpec& s, double lr, int steps) {
  const int n = Quadratic::kN;
  std::vector<double> w = q.w0, m(n, 0.0), v(n, 0.0);
  for (int t = 1; t <= steps; ++t) {
    for (int i = 0; i < n; ++i) {
      double g = q.a[i] * (w[i] - q.c[i]);
      if (s.name == "sgd") {
        g += s.weight_decay * w[i];
        if (s.momentum == 0) {
          w[i] -= lr * g;
          continue;
        }
        m[i] = t == 1 ? g : s.momentum * m[i] + g;
        w[i] -= lr * (s.nesterov ? g + s.momentum * m[i] : m[i]);
      } else {
        w[i] *= 1.0 - lr * s.weight_decay;
        m[i] = s.beta1 * m[i] + (1.0 - s.beta1) * g;
        v[i] = s.beta2 * v[i] + (1.0 - s.beta2) * g * g;
        const double c1 = 1.0 - std::pow(s.beta1, t), c2 = 1.0 - std::pow(s.beta2, t);
        w[i] -= lr / c1 * m[i] / (std::sqrt(v[i]) / std::sqrt(c2) + s.eps);
      }
    }
  }
  return w;
}

// The float optimizer on the same problem (gradients in float from its own
// float parameters): the largest difference from the reference, relative to
// the largest distance the reference moved.
double drift(const Quadratic& q, const OptimSpec& s, double lr, int steps) {
  const int n = Quadratic::kN;
  auto opt = make_optimizer(s, n);
  std::vector<float> w(n), g(n);
  for (int i = 0; i < n; ++i) w[i] = float(q.w0[i]);
  for (int t = 0; t < steps; ++t) {
    for (int i = 0; i < n; ++i) g[i] = float(q.a[i]) * (w[i] - float(q.c[i]));
    opt->step(w.data(), g.data(), lr, 1.0f);
  }
  const std::vector<double> ref = reference(q, s, lr, steps);
  double diff = 0, moved = 0;
  for (int i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(double(w[i]) - ref[i]));
    moved = std::max(moved, std::fabs(ref[i] - q.w0[i]));
  }
  return diff / moved;
}
}  // namespace

TEST_CASE("optimizers: 100 steps stay within float rounding of the reference formula in double") {
  // A constant derived in float from rounded hyper-parameters (1.0f - 0.999f
  // is 0.00099998713) biases every step the same way, and the bias adds up
  // over the steps: AdamW computed so drifts several times further from the
  // reference than float rounding alone takes it, which this bound catches.
  const Quadratic q;
  struct Case {
    const char* what;
    OptimSpec spec;
    double lr;
  };
  std::vector<Case> cases;
  OptimSpec s;
  s.name = "adamw";
  s.weight_decay = 0.0;
  cases.push_back({"adamw", s, 0.01});
  s.weight_decay = 0.1;
  cases.push_back({"adamw, weight decay 0.1", s, 0.01});
  s.beta1 = 0.8, s.beta2 = 0.99, s.eps = 1e-6, s.weight_decay = 0.01;
  cases.push_back({"adamw, betas (0.8, 0.99), eps 1e-6, weight decay 0.01", s, 0.003});
  s = OptimSpec{};
  s.momentum = 0.0;
  cases.push_back({"sgd", s, 0.01});
  s.weight_decay = 0.01;
  cases.push_back({"sgd, L2 0.01", s, 0.01});
  s.momentum = 0.9;
  cases.push_back({"sgd, momentum 0.9, L2 0.01", s, 0.01});
  s.nesterov = true;
  cases.push_back({"sgd, nesterov 0.9, L2 0.01", s, 0.01});
  for (const Case& c : cases) {
    const double d = drift(q, c.spec, c.lr, 100);
    INFO(std::string(c.what), ": largest difference / largest move = ", d);
    CHECK(d < 2.5e-6);
  }
}
