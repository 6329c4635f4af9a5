// The MLP's matrix products (see gemm.hpp for why they are out of line).
#include "ringtrain/nn/gemm.hpp"

#include <cstddef>

#include "ringtrain/util/error.hpp"

#ifdef RINGTRAIN_GEMM_UNINSTRUMENTED
#include <sanitizer/asan_interface.h>
#endif

namespace ringtrain {

namespace {

// Every operand is a dense row-major block: rows * cols floats from data().
template <typename Map>
void check_addressable(const Map& m, bool is_write) {
#ifdef RINGTRAIN_GEMM_UNINSTRUMENTED
  const std::size_t bytes = std::size_t(m.rows()) * std::size_t(m.cols()) * sizeof(float);
  if (bytes == 0) return;
  void* bad = __asan_region_is_poisoned(const_cast<float*>(m.data()), bytes);
  if (bad != nullptr) {
    // The same report ASan gives for an instrumented access: where, and
    // whose memory it is. __asan_report_error does not return.
    __asan_report_error(__builtin_return_address(0), __builtin_frame_address(0), __builtin_frame_address(0),
                        bad, is_write ? 1 : 0, 1);
  }
#else
  (void)m;
  (void)is_write;
#endif
}

void check_shapes(bool ok, const char* op, const ConstMatMap& a, const ConstMatMap& b, const MatMap& out) {
  if (!ok)
    throw RuntimeError(str_cat(op, ": operands (", a.rows(), "x", a.cols(), ") and (", b.rows(), "x", b.cols(),
                               ") into (", out.rows(), "x", out.cols(), ") do not match"));
  check_addressable(a, false);
  check_addressable(b, false);
  check_addressable(out, true);
}

}  // namespace

void matmul(const ConstMatMap& a, const ConstMatMap& b, MatMap& out) {
  check_shapes(a.cols() == b.rows() && out.rows() == a.rows() && out.cols() == b.cols(), "matmul", a, b, out);
  out.noalias() = a * b;
}

void matmul_tn(const ConstMatMap& a, const ConstMatMap& b, MatMap& out) {
  check_shapes(a.rows() == b.rows() && out.rows() == a.cols() && out.cols() == b.cols(), "matmul_tn", a, b, out);
  out.noalias() = a.transpose() * b;
}

void matmul_nt(const ConstMatMap& a, const ConstMatMap& b, MatMap& out) {
  check_shapes(a.cols() == b.cols() && out.rows() == a.rows() && out.cols() == b.rows(), "matmul_nt", a, b, out);
  out.noalias() = a * b.transpose();
}

}  // namespace ringtrain
