//===- Gemm.h - Exact quantized GEMM ----------------------------*- C++ -*-===//
//
// C = fp32(acc) * s with acc the exact int32 sum of products of the code
// integers, summed over the SMP samples of the LHS, and
// s = fp32(fp32(s_a * s_b) * (1 / N)); then an optional bias, an optional
// ReLU and an optional bf16 rounding. Every kernel of the project must
// reproduce these bits.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_NUMERICS_GEMM_H
#define LQ_NUMERICS_GEMM_H

#include "lq/Numerics/Types.h"

#include <cstddef>
#include <cstdint>

namespace lq::numerics {

// The largest |a * b| of two 4-bit operands when at most one is log4:
// 15 * 64.
inline constexpr int64_t kMaxProductMagnitude = 960;

// acc is exact when K * samples * kMaxProductMagnitude stays below this.
inline constexpr int64_t kAccumulatorLimit = int64_t(1) << 31;

// The logical problem: A is [m, k], B is [k, n], C is [m, n].
struct GemmShape {
  size_t m = 0;
  size_t n = 0;
  size_t k = 0;
};

// One operand as unpacked codes. Stored row-major as the logical matrix,
// or, when `transposed`, as its transpose (A stored [k, m], B stored
// [n, k]). The LHS of an SMP GEMM holds its samples one after another, each
// a complete stored matrix.
struct GemmOperand {
  const int8_t *codes = nullptr;
  Format format = Format::Int4Signed;
  float scale = 0.0f;
  bool transposed = false;
};

// The same operand in packed storage (Pack.h): every stored row takes
// packedRowBytes(stored cols) bytes.
struct PackedGemmOperand {
  const uint8_t *data = nullptr;
  Format format = Format::Int4Signed;
  float scale = 0.0f;
  bool transposed = false;
};

struct GemmOptions {
  // SMP sample count N of the LHS: 1, 2, 4, ..., 64.
  uint32_t lhsSamples = 1;
  // n values added to every row of C; null for no bias.
  const float *bias = nullptr;
  // max(C, +0); a NaN stays NaN.
  bool relu = false;
};

// Row-major [m, n] destinations; each one that is non-null is written, and
// at least one must be when m * n > 0.
struct GemmOutput {
  float *f32 = nullptr;
  // The f32 result rounded to bf16, nearest even, as bit patterns.
  uint16_t *bf16 = nullptr;
  // The exact integer sums, before any scaling.
  int32_t *accumulators = nullptr;
};

struct GemmResult {
  Status status = Status::Ok;
  // The scale s applied to every accumulator.
  float scale = 0.0f;
};

// Sizes of zero are valid: m or n = 0 writes nothing, k = 0 gives acc = 0
// and C = epilogue(0 * s). A pointer may be null only if its buffer has no
// elements. Nothing is written unless the status is Ok.
GemmResult quantizedGemm(const GemmShape &shape, const GemmOperand &lhs,
                         const GemmOperand &rhs, const GemmOptions &options,
                         const GemmOutput &output);

// Unpacks both operands, then quantizedGemm: the same result bits.
GemmResult quantizedGemmPacked(const GemmShape &shape,
                               const PackedGemmOperand &lhs,
                               const PackedGemmOperand &rhs,
                               const GemmOptions &options,
                               const GemmOutput &output);

} // namespace lq::numerics

#endif // LQ_NUMERICS_GEMM_H
