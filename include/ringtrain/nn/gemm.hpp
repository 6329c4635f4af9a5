// The MLP's three matrix products, out of line in src/nn/gemm.cpp.
//
// They live in a source file of their own for the sanitizer build: there
// Eigen's GEMM kernel is compiled without ASan/UBSan instrumentation (a shadow
// check on every packet load made training 44x slower than Release and most
// of the sanitizer suite's time), and instead each product first checks, with
// ASan, that every byte of its three operands is addressable. A product that
// would read or write outside a buffer is still reported, before it runs.
// In every other build these are plain Eigen products.
#pragma once

#include "ringtrain/nn/tensor.hpp"

namespace ringtrain {

// out = a * b        a (m, k), b (k, n), out (m, n)
void matmul(const ConstMatMap& a, const ConstMatMap& b, MatMap& out);
// out = a^T * b      a (k, m), b (k, n), out (m, n)
void matmul_tn(const ConstMatMap& a, const ConstMatMap& b, MatMap& out);
// out = a * b^T      a (m, k), b (n, k), out (m, n)
void matmul_nt(const ConstMatMap& a, const ConstMatMap& b, MatMap& out);

}  // namespace ringtrain
