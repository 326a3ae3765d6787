//===- Sawb.cpp - 4-bit integer quantization with SAWB clipping -----------===//

#include "lq/Numerics/Sawb.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace lq::numerics {

namespace {

struct IntRange {
  int32_t low;
  int32_t high;
  float levels; // clip maps to this many steps
};

IntRange rangeOf(SawbKind kind) {
  if (kind == SawbKind::Signed)
    return {-7, 7, 7.0f};
  return {0, 15, 15.0f};
}

// Round half to even, then clamp to [low, high]. Written without the
// floating-point environment so that the result never depends on a
// caller's rounding mode. v is finite or +-Inf, never NaN.
int32_t roundHalfEvenClamped(float v, IntRange range) {
  if (v <= float(range.low))
    return range.low;
  if (v >= float(range.high))
    return range.high;
  float whole = std::trunc(v);
  // Exact: a float minus its truncation is always representable.
  float rest = std::fabs(v - whole);
  int32_t q = int32_t(whole);
  bool odd = (q & 1) != 0;
  if (rest > 0.5f || (rest == 0.5f && odd))
    q += v > 0.0f ? 1 : -1;
  return q;
}

SawbResult zeroCodes(int8_t *codes, size_t count, bool nonfinite) {
  if (count != 0)
    std::memset(codes, 0, count);
  SawbResult result;
  result.nonfinite = nonfinite;
  return result;
}

} // namespace

SawbClipResult sawbClip(const MatrixView &x) {
  SawbClipResult result;
  result.status = x.validate();
  if (result.status != Status::Ok || x.size() == 0)
    return result;
  double sumSquares = 0.0;
  double sumMagnitudes = 0.0;
  float maxMagnitude = 0.0f;
  for (size_t row = 0; row < x.rows(); ++row) {
    for (size_t col = 0; col < x.cols(); ++col) {
      float value = x.at(row, col);
      if (!std::isfinite(value)) {
        result.nonfinite = true;
        result.clip = std::numeric_limits<float>::quiet_NaN();
        return result;
      }
      double wide = value;
      // Exact in f64: the square of an f32 has at most 48 significant bits.
      sumSquares += wide * wide;
      sumMagnitudes += std::fabs(wide);
      maxMagnitude = std::fmax(maxMagnitude, std::fabs(value));
    }
  }
  result.clip = sawbClipFromMoments(sumSquares, sumMagnitudes,
                                    double(x.size()), maxMagnitude);
  return result;
}

float sawbClipFromMoments(double sumSquares, double sumMagnitudes,
                          double count, float maxMagnitude) {
  double meanSquare = sumSquares / count;
  double meanMagnitude = sumMagnitudes / count;
  double root = kSawbSqrtCoefficient * std::sqrt(meanSquare);
  double shrink = kSawbMeanCoefficient * meanMagnitude;
  float clip = float(root - shrink);
  if (!std::isfinite(clip) || clip <= 0.0f || clip > maxMagnitude)
    clip = maxMagnitude;
  return clip;
}

SawbResult sawbEncode(const MatrixView &x, float clip, SawbKind kind,
                      int8_t *codes) {
  SawbResult result;
  result.status = x.validate();
  if (result.status == Status::Ok && x.size() != 0 && codes == nullptr)
    result.status = Status::NullPointer;
  if (result.status != Status::Ok)
    return result;
  // A clip that is not a number can only come from a broken tensor or
  // history: flagged like non-finite input, so that the step is skipped.
  if (!std::isfinite(clip) || !allFinite(x))
    return zeroCodes(codes, x.size(), /*nonfinite=*/true);
  if (!(clip >= kSawbMinClip))
    return zeroCodes(codes, x.size(), /*nonfinite=*/false);
  IntRange range = rangeOf(kind);
  float inv = range.levels / clip;
  for (size_t row = 0; row < x.rows(); ++row)
    for (size_t col = 0; col < x.cols(); ++col)
      codes[row * x.cols() + col] =
          int8_t(roundHalfEvenClamped(x.at(row, col) * inv, range));
  result.clip = clip;
  result.step = clip / range.levels;
  return result;
}

SawbResult sawbQuantize(const MatrixView &x, SawbKind kind, int8_t *codes) {
  SawbClipResult clip = sawbClip(x);
  if (clip.status != Status::Ok) {
    SawbResult result;
    result.status = clip.status;
    return result;
  }
  return sawbEncode(x, clip.clip, kind, codes);
}

} // namespace lq::numerics
