//===- Checks.h - launch checks and quantizer rules of every runtime -*- C++ -*-===//
//
// Internal to the runtimes. Plain C++ with no LLVM: the host runtime and the
// CUDA launcher validate specs and launch arguments with the same code and
// derive a float operand's quantizer (inverse step, scale, zero flag) from
// its statistics with the same rules, so that both report the same errors
// and the same scales.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_RUNTIME_CHECKS_H
#define LQ_RUNTIME_CHECKS_H

#include "lq/Runtime/Runtime.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace lq::runtime {

/// Success when `t` can be the tensor `name` of a kernel that reads
/// `dtype` on `device`, else why not.
Status checkTensor(const char *name, const TensorRef &t, DType dtype,
                   Device device);
std::string shapeString(int64_t rows, int64_t cols);

/// The logical problem of a GEMM launch.
struct GemmProblem {
  int64_t m = 0, n = 0, k = 0;
  /// Stored rows of one SMP sample of the left operand (K when transposed).
  int64_t lhsRows = 0;
};

/// Checks every argument of a launch of `spec` on `device` (tensors, shapes
/// against each other and the transposes, bias, the exact int32 bound, the
/// scales of packed operands when there is output to write) and returns
/// the problem's sizes.
Result<GemmProblem> checkGemmLaunch(const GemmSpec &spec,
                                    const LaunchArgs &args, Device device);

/// Success when `args` can be quantized on `device`, else why not.
Status checkQuantize(const QuantizeArgs &args, Device device);

bool usableRange(float range);

/// How a float operand is quantized, from its statistics.
struct OperandQuantizer {
  /// The LUQ max (or estimate) or the SAWB clip.
  float range = 0.0f;
  /// 64 / m (LUQ) or levels / clip (SAWB): the kernels' multiplier.
  float inv = 0.0f;
  /// alpha or step; 0 when every code is zero.
  float scale = 0.0f;
  /// Every code is zero: the range is not finite or not usable.
  bool zero = false;
  bool nonfinite = false;
};

/// LUQ with max (or estimate) `m`; `nonfinite` when the tensor or the
/// estimate holds NaN or Inf.
OperandQuantizer luqQuantizer(float m, bool nonfinite);
/// SAWB with `clip` in `format` (SInt4: 7 levels, UInt4: 15).
OperandQuantizer sawbQuantizer(float clip, bool nonfinite, Format format);
/// The SAWB clip of `count` elements from moments summed in a kernel's
/// order: NaN when an element is not finite, 0 for an empty tensor.
float sawbClipFromSums(double sumSquares, double sumMagnitudes, int64_t count,
                       float maxFinite, bool nonfinite);

} // namespace lq::runtime

#endif // LQ_RUNTIME_CHECKS_H
