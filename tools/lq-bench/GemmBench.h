//===- GemmBench.h - fused 4-bit GEMMs against OpenBLAS SGEMM ---*- C++ -*-===//

#ifndef LQ_BENCH_GEMMBENCH_H
#define LQ_BENCH_GEMMBENCH_H

#include "Harness.h"

#include <string>
#include <vector>

namespace lq::bench {

/// C[M, N] = op(A) op(B) with the operands stored as the role's GemmSpec
/// says: A is [M, K], or [K, M] when transposed; B is [K, N], or [N, K].
struct GemmCase {
  Role role;
  int64_t M, N, K;
  /// What the shape is, for the table.
  std::string what;

  std::string shape() const {
    return "m" + std::to_string(M) + "n" + std::to_string(N) + "k" +
           std::to_string(K);
  }
  std::string name(const char *impl) const {
    return std::string("gemm/") + impl + "/" + roleName(role) + "/" + shape();
  }
  double flops() const { return 2.0 * double(M) * double(N) * double(K); }
  GemmSpec spec() const { return specOf(role); }
  bool lhsT() const { return spec().lhs.transposed; }
  bool rhsT() const { return spec().rhs.transposed; }
  int64_t lhsRows() const { return lhsT() ? K : M; }
  int64_t lhsCols() const { return lhsT() ? M : K; }
  int64_t rhsRows() const { return rhsT() ? N : K; }
  int64_t rhsCols() const { return rhsT() ? K : N; }
  const std::vector<float> &lhs() const {
    return randomBuffer(lhsRows() * lhsCols(), 2);
  }
  const std::vector<float> &rhs() const {
    return randomBuffer(rhsRows() * rhsCols(), 3);
  }
};

/// Registers gemm/{lq,lq-packed,openblas}/<role>/<shape> for each case and
/// returns the cases, in order.
std::vector<GemmCase> registerGemmBenchmarks();

} // namespace lq::bench

#endif // LQ_BENCH_GEMMBENCH_H
