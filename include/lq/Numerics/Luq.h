//===- Luq.h - 4-bit logarithmic unbiased quantization ----------*- C++ -*-===//
//
// LUQ for neural gradients: sign + 3-bit exponent codes, levels
// alpha * {0, 1, 2, ..., 64}, stochastic underflow below alpha and
// stochastic rounding between neighbouring powers of two above it, so that
// the decoded value is an unbiased estimate of the input. See
// docs/numerics.md for the exact rules.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_NUMERICS_LUQ_H
#define LQ_NUMERICS_LUQ_H

#include "lq/Numerics/Philox.h"
#include "lq/Numerics/Types.h"

#include <cstddef>
#include <cstdint>

namespace lq::numerics {

// Below this max the scale 64 / m would overflow f32; such a tensor
// quantizes to all zeros (2^-120).
inline constexpr float kLuqMinMax = 0x1p-120f;

// The largest SMP sample count.
inline constexpr uint32_t kMaxSamples = 64;

struct MaxAbsResult {
  Status status = Status::Ok;
  // max |x| over the finite elements; 0 for an empty tensor.
  float maxAbs = 0.0f;
  // Some element is NaN or +-Inf.
  bool nonfinite = false;
};

// max |x| (not the signed max): exact and independent of evaluation order.
MaxAbsResult maxAbs(const MatrixView &x);

struct LuqResult {
  Status status = Status::Ok;
  // The scale: level value of code e is alpha * 2^(e-1). 0 when every code
  // was forced to 0.
  float alpha = 0.0f;
  // Some input element, or the given max estimate, is not finite; every
  // code is 0 and the caller is expected to skip the step.
  bool nonfinite = false;
  // Elements with |x| * (64 / m) > 64, all saturated to e = 7. Only a max
  // estimate (in-hindsight mode) below max |x| can produce them.
  uint64_t overflowCount = 0;
};

// The exponent field e (0..7) of an element with scaled magnitude
// r = |x| * (64 / m) and uniform u in [0, 1). floor(log2 r) is read from the
// exponent bits, never from a log approximation.
uint8_t luqMagnitudeCode(float r, float u);

// Quantizes x with m = max |x| into rows * cols codes (row-major,
// contiguous).
LuqResult luqEncode(const MatrixView &x, const RandomKey &key, int8_t *codes);

// In-hindsight mode: quantizes with a caller-given estimate m of max |x|.
LuqResult luqEncodeHindsight(const MatrixView &x, float maxEstimate,
                             const RandomKey &key, int8_t *codes);

// The next in-hindsight estimate, (1 - eta) * currentMax + eta * estimate,
// each product and the sum rounded to f32 separately (no fused multiply-add).
float luqNextMaxEstimate(float estimate, float currentMax, float eta);

// SMP: samples 0..numSamples-1 of the same tensor with the same scale
// (m = max |x|), written one after another: sample s occupies
// codes[s * rows * cols, (s + 1) * rows * cols). key.sample is ignored.
LuqResult luqEncodeSamples(const MatrixView &x, const RandomKey &key,
                           uint32_t numSamples, int8_t *codes);

// alpha * level(code), exact for every alpha that luqEncode returns.
float luqDecode(int8_t code, float alpha);

// The SMP estimate of element i: fp32(sum_s level_s(i)) * fp32(alpha / N),
// the same arithmetic as an SMP GEMM against an identity matrix. `codes`
// holds numSamples blocks of `count` codes as luqEncodeSamples writes them.
Status luqDecodeSamples(const int8_t *codes, size_t count,
                        uint32_t numSamples, float alpha, float *values);

// 1, 2, 4, ..., 64.
inline bool isValidSampleCount(uint32_t numSamples) {
  return numSamples != 0 && numSamples <= kMaxSamples &&
         (numSamples & (numSamples - 1)) == 0;
}

} // namespace lq::numerics

#endif // LQ_NUMERICS_LUQ_H
