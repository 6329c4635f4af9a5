// The MLP's matrix products (nn/gemm.hpp): each against a plain triple loop,
// shape mismatches refused, and, in the sanitizer build, where Eigen's kernel
// runs uninstrumented, an operand that overruns its buffer still reported by
// ASan (in a forked child, which must die).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "ringtrain/nn/gemm.hpp"
#include "ringtrain/util/error.hpp"
#include "ringtrain/util/philox.hpp"

using namespace ringtrain;

namespace {
std::vector<float> random_values(int n, uint64_t key) {
  const Philox rng(key);
  std::vector<float> v(std::size_t(n), 0.0f);
  for (int i = 0; i < n; ++i) v[std::size_t(i)] = 2.0f * rng.uniform(uint64_t(i)) - 1.0f;
  return v;
}

// Element (i, j) of a row-major block of `cols` columns.
float at(const std::vector<float>& m, int cols, int i, int j) { return m[std::size_t(i) * std::size_t(cols) + j]; }

// out(i, j) against the sum over t of A(i, t) * B(t, j), in double.
template <typename FA, typename FB>
void check_product(const MatMap& out, int k, FA A, FB B) {
  for (int i = 0; i < out.rows(); ++i)
    for (int j = 0; j < out.cols(); ++j) {
      double s = 0;
      for (int t = 0; t < k; ++t) s += double(A(i, t)) * B(t, j);
      CHECK(out(i, j) == doctest::Approx(s).epsilon(1e-5));
    }
}
}  // namespace

TEST_CASE("gemm: matmul, matmul_tn and matmul_nt match a triple loop") {
  const int m = 7, k = 33, n = 5;  // odd sizes: Eigen's kernels peel the edges
  const std::vector<float> a = random_values(m * k, 1), b = random_values(k * n, 2);
  const std::vector<float> at_ = random_values(k * m, 3), bt = random_values(n * k, 4);
  std::vector<float> out(std::size_t(m * n), -1.0f);
  MatMap o(out.data(), m, n);

  matmul(ConstMatMap(a.data(), m, k), ConstMatMap(b.data(), k, n), o);
  check_product(o, k, [&](int i, int t) { return at(a, k, i, t); }, [&](int t, int j) { return at(b, n, t, j); });
  matmul_tn(ConstMatMap(at_.data(), k, m), ConstMatMap(b.data(), k, n), o);  // at_ is (k, m)
  check_product(o, k, [&](int i, int t) { return at(at_, m, t, i); }, [&](int t, int j) { return at(b, n, t, j); });
  matmul_nt(ConstMatMap(a.data(), m, k), ConstMatMap(bt.data(), n, k), o);  // bt is (n, k)
  check_product(o, k, [&](int i, int t) { return at(a, k, i, t); }, [&](int t, int j) { return at(bt, k, j, t); });
}

TEST_CASE("gemm: operands whose shapes do not match are refused") {
  std::vector<float> x(64, 1.0f), y(64, 1.0f), z(64, 0.0f);
  MatMap out(z.data(), 2, 3);
  CHECK_THROWS_WITH_AS(matmul(ConstMatMap(x.data(), 2, 4), ConstMatMap(y.data(), 5, 3), out),
                       doctest::Contains("matmul: operands (2x4) and (5x3) into (2x3) do not match"), RuntimeError);
  CHECK_THROWS_AS(matmul_tn(ConstMatMap(x.data(), 4, 2), ConstMatMap(y.data(), 3, 3), out), RuntimeError);
  CHECK_THROWS_AS(matmul_nt(ConstMatMap(x.data(), 2, 4), ConstMatMap(y.data(), 3, 5), out), RuntimeError);
  CHECK(z[0] == 0.0f);  // nothing written
}

#if defined(__SANITIZE_ADDRESS__)
TEST_CASE("gemm: in the sanitizer build an operand past its buffer is an ASan error") {
  // b is declared (k, n) but its buffer is one float short: the uninstrumented
  // kernel would read past it; the check before the product must abort.
  const int m = 4, k = 16, n = 8;
  std::vector<float> a(std::size_t(m * k), 1.0f), c(std::size_t(m * n), 0.0f);
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // the child's stderr (ASan's report) goes to the parent
    close(fds[0]);
    dup2(fds[1], 2);
    std::unique_ptr<float[]> short_b(new float[std::size_t(k * n - 1)]());
    MatMap out(c.data(), m, n);
    matmul(ConstMatMap(a.data(), m, k), ConstMatMap(short_b.get(), k, n), out);
    _exit(0);  // not reached when ASan reports the overrun
  }
  close(fds[1]);
  std::string report;
  char buf[4096];
  for (ssize_t got; (got = read(fds[0], buf, sizeof buf)) > 0;) report.append(buf, std::size_t(got));
  close(fds[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK_FALSE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CHECK(report.find("AddressSanitizer: heap-buffer-overflow") != std::string::npos);
  CHECK(report.find("matmul") != std::string::npos);
}
#endif
