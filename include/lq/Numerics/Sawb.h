//===- Sawb.h - 4-bit integer quantization with SAWB clipping ---*- C++ -*-===//
//
// Weights and activations: symmetric int4 (-7..7) or unsigned int4 (0..15)
// with round-to-nearest-even, clipped at a value chosen from the tensor's
// first and second absolute moments (statistics-aware weight binning).
//
//===----------------------------------------------------------------------===//

#ifndef LQ_NUMERICS_SAWB_H
#define LQ_NUMERICS_SAWB_H

#include "lq/Numerics/Types.h"

#include <cstdint>

namespace lq::numerics {

// Coefficients of the 4-bit clip, clip = a * sqrt(E[x^2]) - b * E[|x|].
inline constexpr double kSawbSqrtCoefficient = 12.1;
inline constexpr double kSawbMeanCoefficient = 12.2;

// A clip below this quantizes to all zeros: 15 / clip would overflow f32
// (the same bound as LUQ's, 2^-120).
inline constexpr float kSawbMinClip = 0x1p-120f;

enum class SawbKind : uint8_t {
  // -7..7, step clip / 7: weights and activations of either sign.
  Signed,
  // 0..15, step clip / 15: activations known to be >= 0.
  Unsigned,
};

inline constexpr Format sawbFormat(SawbKind kind) {
  return kind == SawbKind::Signed ? Format::Int4Signed : Format::Int4Unsigned;
}

struct SawbClipResult {
  Status status = Status::Ok;
  // In (0, max|x|]; 0 for an empty or all-zero tensor; NaN when some
  // element is not finite (nonfinite is set too).
  float clip = 0.0f;
  bool nonfinite = false;
};

// The clip from f64 statistics of x (row-major summation order), rounded
// to f32, falling back to max |x| when it is not finite, <= 0 or above
// max |x|.
SawbClipResult sawbClip(const MatrixView &x);

// The clip rule alone, from the moments of `count` finite elements: sums
// of x^2 and |x| in f64 and max |x|. Kernels that sum in another order
// call this so that only the summation differs.
float sawbClipFromMoments(double sumSquares, double sumMagnitudes,
                          double count, float maxMagnitude);

struct SawbResult {
  Status status = Status::Ok;
  // The clip used; 0 when every code was forced to 0.
  float clip = 0.0f;
  // The tensor's scale: clip / 7 (signed) or clip / 15 (unsigned); 0 when
  // every code was forced to 0.
  float step = 0.0f;
  // Some element, or the clip, is not finite; the caller is expected to
  // skip the step.
  bool nonfinite = false;
};

// Quantizes x with a given clip into rows * cols codes (row-major,
// contiguous). Every code is 0 and step is 0 when some element or the clip
// is not finite (nonfinite is set), or when the clip is below kSawbMinClip
// (0 and negative clips included; nonfinite is not set).
SawbResult sawbEncode(const MatrixView &x, float clip, SawbKind kind,
                      int8_t *codes);

// sawbClip, then sawbEncode with that clip.
SawbResult sawbQuantize(const MatrixView &x, SawbKind kind, int8_t *codes);

} // namespace lq::numerics

#endif // LQ_NUMERICS_SAWB_H
