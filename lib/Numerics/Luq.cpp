//===- Luq.cpp - 4-bit logarithmic unbiased quantization ------------------===//

#include "lq/Numerics/Luq.h"

#include <cmath>
#include <cstring>

namespace lq::numerics {

namespace {

constexpr uint8_t kMaxExponentField = 7;
constexpr int8_t kSignBit = 8;
constexpr float kTopLevel = 64.0f;

// floor(log2 r) for a normal r >= 1, straight from the biased exponent.
int exponentOf(float r) { return int((floatToBits(r) >> 23) & 0xffu) - 127; }

// r * 2^-n for r in [2^n, 2^(n+1)): r with its exponent replaced by 0.
float mantissaOf(float r) {
  return bitsToFloat((floatToBits(r) & 0x007fffffu) | 0x3f800000u);
}

Status checkOutput(const MatrixView &x, const void *out) {
  if (Status status = x.validate(); status != Status::Ok)
    return status;
  if (x.size() != 0 && out == nullptr)
    return Status::NullPointer;
  return Status::Ok;
}

void fillZeros(int8_t *codes, size_t count) {
  if (count != 0)
    std::memset(codes, 0, count);
}

// The shared body of both modes once the input is known to be finite: m is
// the max (current or estimated) that sets the scale.
LuqResult encodeWithScale(const MatrixView &x, float m, const RandomKey &key,
                          int8_t *codes) {
  LuqResult result;
  if (!(m >= kLuqMinMax)) {
    fillZeros(codes, x.size());
    return result;
  }
  float inv = kTopLevel / m;
  result.alpha = m / kTopLevel;
  UniformGenerator uniforms(key);
  for (size_t row = 0; row < x.rows(); ++row) {
    for (size_t col = 0; col < x.cols(); ++col) {
      uint64_t index = uint64_t(row) * x.cols() + col;
      float value = x.at(row, col);
      float r = std::fabs(value) * inv;
      if (r > kTopLevel)
        ++result.overflowCount;
      uint8_t e = luqMagnitudeCode(r, uniforms(index));
      bool negative = e != 0 && std::signbit(value);
      codes[index] = int8_t(e | (negative ? kSignBit : 0));
    }
  }
  return result;
}

LuqResult nonfiniteResult(int8_t *codes, size_t count) {
  fillZeros(codes, count);
  LuqResult result;
  result.nonfinite = true;
  return result;
}

LuqResult errorResult(Status status) {
  LuqResult result;
  result.status = status;
  return result;
}

} // namespace

MaxAbsResult maxAbs(const MatrixView &x) {
  MaxAbsResult result;
  result.status = x.validate();
  if (result.status != Status::Ok)
    return result;
  for (size_t row = 0; row < x.rows(); ++row) {
    for (size_t col = 0; col < x.cols(); ++col) {
      float magnitude = std::fabs(x.at(row, col));
      if (!std::isfinite(magnitude))
        result.nonfinite = true;
      else if (magnitude > result.maxAbs)
        result.maxAbs = magnitude;
    }
  }
  return result;
}

uint8_t luqMagnitudeCode(float r, float u) {
  // r == 0 lands here too: u < 0 never holds.
  if (!(r >= 1.0f))
    return u < r ? 1 : 0;
  int n = exponentOf(r);
  if (n >= 6)
    return kMaxExponentField;
  // Exact: mantissaOf(r) is in [1, 2), so the subtraction loses nothing.
  float fraction = mantissaOf(r) - 1.0f;
  return uint8_t(u < fraction ? n + 2 : n + 1);
}

LuqResult luqEncode(const MatrixView &x, const RandomKey &key,
                    int8_t *codes) {
  if (Status status = checkOutput(x, codes); status != Status::Ok)
    return errorResult(status);
  MaxAbsResult max = maxAbs(x);
  if (max.nonfinite)
    return nonfiniteResult(codes, x.size());
  return encodeWithScale(x, max.maxAbs, key, codes);
}

LuqResult luqEncodeHindsight(const MatrixView &x, float maxEstimate,
                             const RandomKey &key, int8_t *codes) {
  if (Status status = checkOutput(x, codes); status != Status::Ok)
    return errorResult(status);
  if (!std::isfinite(maxEstimate) || !allFinite(x))
    return nonfiniteResult(codes, x.size());
  return encodeWithScale(x, maxEstimate, key, codes);
}

float luqNextMaxEstimate(float estimate, float currentMax, float eta) {
  float fresh = (1.0f - eta) * currentMax;
  float remembered = eta * estimate;
  return fresh + remembered;
}

LuqResult luqEncodeSamples(const MatrixView &x, const RandomKey &key,
                           uint32_t numSamples, int8_t *codes) {
  if (!isValidSampleCount(numSamples))
    return errorResult(Status::InvalidSampleCount);
  if (Status status = checkOutput(x, codes); status != Status::Ok)
    return errorResult(status);
  size_t count = x.size();
  size_t total;
  if (!multiplyFits(count, numSamples, total))
    return errorResult(Status::InvalidShape);
  MaxAbsResult max = maxAbs(x);
  if (max.nonfinite)
    return nonfiniteResult(codes, total);
  LuqResult result;
  for (uint32_t sample = 0; sample < numSamples; ++sample) {
    RandomKey sampleKey = key;
    sampleKey.sample = sample;
    LuqResult one =
        encodeWithScale(x, max.maxAbs, sampleKey, codes + sample * count);
    result.alpha = one.alpha;
    result.overflowCount += one.overflowCount;
  }
  return result;
}

float luqDecode(int8_t code, float alpha) {
  return float(codeValue(Format::Log4, code)) * alpha;
}

Status luqDecodeSamples(const int8_t *codes, size_t count,
                        uint32_t numSamples, float alpha, float *values) {
  if (!isValidSampleCount(numSamples))
    return Status::InvalidSampleCount;
  if (count != 0 && (codes == nullptr || values == nullptr))
    return Status::NullPointer;
  size_t total;
  if (!multiplyFits(count, numSamples, total))
    return Status::InvalidShape;
  for (size_t i = 0; i < total; ++i)
    if (!isValidCode(Format::Log4, codes[i]))
      return Status::InvalidCode;
  float scale = alpha * (1.0f / float(numSamples));
  for (size_t i = 0; i < count; ++i) {
    int32_t sum = 0;
    for (uint32_t sample = 0; sample < numSamples; ++sample)
      sum += codeValue(Format::Log4, codes[sample * count + i]);
    values[i] = float(sum) * scale;
  }
  return Status::Ok;
}

} // namespace lq::numerics
