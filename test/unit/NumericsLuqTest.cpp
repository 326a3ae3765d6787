//===- NumericsLuqTest.cpp - LUQ encode, decode, edges and SMP ------------===//

#include "lq/Numerics/Luq.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

using namespace lq::numerics;

namespace {

constexpr float kUniformStep = 0x1p-24f;
constexpr float kLargestUniform = 1.0f - 0x1p-24f;
const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

float below(float x) { return std::nextafter(x, -kInf); }
float above(float x) { return std::nextafter(x, kInf); }

// Codes of x, pre-filled with a value no encoder writes so that a missed
// element shows.
struct Encoded {
  LuqResult result;
  std::vector<int8_t> codes;
};

Encoded encode(const std::vector<float> &x, RandomKey key = {1, 0, 0}) {
  Encoded out;
  out.codes.assign(x.size(), int8_t(-1));
  out.result =
      luqEncode(MatrixView::f32(x.data(), 1, x.size()), key, out.codes.data());
  return out;
}

Encoded encodeHindsight(const std::vector<float> &x, float m,
                        RandomKey key = {1, 0, 0}) {
  Encoded out;
  out.codes.assign(x.size(), int8_t(-1));
  out.result = luqEncodeHindsight(MatrixView::f32(x.data(), 1, x.size()), m,
                                  key, out.codes.data());
  return out;
}

void expectAllZero(const Encoded &encoded) {
  EXPECT_EQ(encoded.result.status, Status::Ok);
  EXPECT_EQ(floatToBits(encoded.result.alpha), 0u);
  EXPECT_EQ(encoded.result.overflowCount, 0u);
  for (int8_t code : encoded.codes)
    EXPECT_EQ(code, 0);
}

// On a power of two the bin is exact: 2^n maps to e = n + 1 whatever u.
TEST(NumericsLuq, PowersOfTwoAreExactLevels) {
  for (int n = 0; n <= 5; ++n)
    for (float u : {0.0f, 0.5f, kLargestUniform})
      EXPECT_EQ(luqMagnitudeCode(std::ldexp(1.0f, n), u), n + 1)
          << "n " << n << " u " << u;
}

// floor(log2 r) comes from the exponent bits. One ulp below 2^n the value
// is in bin n - 1 with fraction 1 - 2^-23 (a log2 approximation would round
// it into bin n and never round down); one ulp above it is in bin n with
// fraction 2^-23.
TEST(NumericsLuq, ExponentFloorIsExactAroundPowersOfTwo) {
  for (int n = 1; n <= 6; ++n) {
    SCOPED_TRACE(testing::Message() << "n = " << n);
    float r = below(std::ldexp(1.0f, n));
    EXPECT_EQ(luqMagnitudeCode(r, 0.0f), n + 1);
    EXPECT_EQ(luqMagnitudeCode(r, 1.0f - 0x1p-23f - kUniformStep), n + 1);
    EXPECT_EQ(luqMagnitudeCode(r, 1.0f - 0x1p-23f), n);
    EXPECT_EQ(luqMagnitudeCode(r, kLargestUniform), n);
  }
  for (int n = 0; n <= 5; ++n) {
    SCOPED_TRACE(testing::Message() << "n = " << n);
    float r = above(std::ldexp(1.0f, n));
    EXPECT_EQ(luqMagnitudeCode(r, 0.0f), n + 2);
    EXPECT_EQ(luqMagnitudeCode(r, kUniformStep), n + 2);
    EXPECT_EQ(luqMagnitudeCode(r, 0x1p-23f), n + 1);
  }
}

// Stochastic rounding between 2^n and 2^(n+1): up exactly when u < f.
TEST(NumericsLuq, RoundsUpExactlyWhenUniformIsBelowFraction) {
  EXPECT_EQ(luqMagnitudeCode(12.0f, below(0.5f)), 5); // f = 0.5: up
  EXPECT_EQ(luqMagnitudeCode(12.0f, 0.5f), 4);
  EXPECT_EQ(luqMagnitudeCode(1.25f, below(0.25f)), 2);
  EXPECT_EQ(luqMagnitudeCode(1.25f, 0.25f), 1);
  EXPECT_EQ(luqMagnitudeCode(48.0f, 0.4f), 7);
  EXPECT_EQ(luqMagnitudeCode(48.0f, 0.6f), 6);
}

// Below 1 the element becomes alpha with probability r, else 0.
TEST(NumericsLuq, StochasticUnderflow) {
  EXPECT_EQ(luqMagnitudeCode(0.0f, 0.0f), 0);
  EXPECT_EQ(luqMagnitudeCode(0.3f, below(0.3f)), 1);
  EXPECT_EQ(luqMagnitudeCode(0.3f, 0.3f), 0);
  EXPECT_EQ(luqMagnitudeCode(below(1.0f), below(below(1.0f))), 1);
  EXPECT_EQ(luqMagnitudeCode(below(1.0f), below(1.0f)), 0);
  EXPECT_EQ(luqMagnitudeCode(0x1p-149f, 0.0f), 1);
  EXPECT_EQ(luqMagnitudeCode(0x1p-149f, kUniformStep), 0);
}

TEST(NumericsLuq, SaturatesAtTheTopLevel) {
  for (float r : {64.0f, above(64.0f), 1000.0f, FLT_MAX, kInf})
    for (float u : {0.0f, kLargestUniform})
      EXPECT_EQ(luqMagnitudeCode(r, u), 7) << r;
  // The top stochastic bin [32, 64) still rounds down sometimes.
  EXPECT_EQ(luqMagnitudeCode(below(64.0f), kLargestUniform), 6);
}

TEST(NumericsLuq, DecodeLevels) {
  const float alpha = 0.75f;
  for (int e = 0; e < 8; ++e) {
    float level = e == 0 ? 0.0f : std::ldexp(alpha, e - 1);
    EXPECT_EQ(luqDecode(int8_t(e), alpha), level);
    EXPECT_EQ(luqDecode(int8_t(8 | e), alpha), -level);
  }
}

TEST(NumericsLuq, ZeroTensor) {
  Encoded encoded = encode(std::vector<float>(9, 0.0f));
  expectAllZero(encoded);
  EXPECT_FALSE(encoded.result.nonfinite);
  Encoded negativeZero = encode(std::vector<float>(9, -0.0f));
  expectAllZero(negativeZero);
}

// The scale comes from max |x|: the most negative element gets the top
// level. The signed max (-0.5 here) would give a negative scale.
TEST(NumericsLuq, AllNegativeTensorUsesMaxAbs) {
  Encoded encoded = encode({-0.5f, -4.0f, -1.0f, -2.0f});
  ASSERT_EQ(encoded.result.status, Status::Ok);
  EXPECT_EQ(encoded.result.alpha, 4.0f / 64.0f);
  EXPECT_EQ(encoded.codes, (std::vector<int8_t>{8 | 4, 8 | 7, 8 | 5, 8 | 6}));
}

TEST(NumericsLuq, MaxAbsIsOrderFreeAndIgnoresSign) {
  std::vector<float> x = {0.5f, -7.25f, 3.0f, -0.0f, 7.0f, 0x1p-140f};
  MaxAbsResult forward = maxAbs(MatrixView::f32(x.data(), 2, 3));
  std::vector<float> reversed(x.rbegin(), x.rend());
  MaxAbsResult backward = maxAbs(MatrixView::f32(reversed.data(), 3, 2));
  EXPECT_EQ(forward.maxAbs, 7.25f);
  EXPECT_EQ(backward.maxAbs, 7.25f);
  EXPECT_FALSE(forward.nonfinite);
  std::vector<float> empty;
  EXPECT_EQ(maxAbs(MatrixView::f32(empty.data(), 0, 5)).maxAbs, 0.0f);
}

// A NaN or infinity anywhere, in f32 or bf16, in either mode: every code
// 0, alpha 0, flagged.
TEST(NumericsLuq, NonfiniteAnywhereZeroesTheTensor) {
  const std::vector<float> finite = {1.0f, -2.0f, 3.0f, 0.25f, -8.0f};
  for (float bad : {kNaN, kInf, -kInf}) {
    for (size_t position = 0; position < finite.size(); ++position) {
      SCOPED_TRACE(testing::Message() << bad << " at " << position);
      std::vector<float> x = finite;
      x[position] = bad;
      for (const Encoded &encoded : {encode(x), encodeHindsight(x, 8.0f)}) {
        expectAllZero(encoded);
        EXPECT_TRUE(encoded.result.nonfinite);
      }
      EXPECT_TRUE(maxAbs(MatrixView::f32(x.data(), 1, x.size())).nonfinite);
      std::vector<uint16_t> bf16;
      for (float v : x)
        bf16.push_back(floatToBf16(v));
      std::vector<int8_t> codes(x.size(), -1);
      LuqResult result = luqEncode(MatrixView::bf16(bf16.data(), 1, x.size()),
                                   {1, 0, 0}, codes.data());
      EXPECT_TRUE(result.nonfinite);
      EXPECT_EQ(codes, std::vector<int8_t>(x.size(), 0));
    }
  }
}

// A max estimate that is not a number cannot scale anything: the step is
// skipped like for a non-finite gradient.
TEST(NumericsLuq, NonfiniteMaxEstimate) {
  for (float m : {kNaN, kInf, -kInf}) {
    Encoded encoded = encodeHindsight({1.0f, 2.0f}, m);
    expectAllZero(encoded);
    EXPECT_TRUE(encoded.result.nonfinite);
  }
}

// m >= 2^-120 quantizes (alpha = 2^-126 is still normal); anything
// smaller, zero or negative gives all zeros without the non-finite flag.
TEST(NumericsLuq, SmallestUsableMax) {
  Encoded smallest = encode({0x1p-120f, -0x1p-121f});
  EXPECT_EQ(smallest.result.alpha, 0x1p-126f);
  EXPECT_EQ(smallest.codes, (std::vector<int8_t>{7, 8 | 6}));

  Encoded tooSmall = encode({below(0x1p-120f), 0x1p-130f});
  expectAllZero(tooSmall);
  EXPECT_FALSE(tooSmall.result.nonfinite);

  for (float m : {below(0x1p-120f), 0.0f, -1.0f}) {
    Encoded hindsight = encodeHindsight({0.5f, 1.0f}, m);
    expectAllZero(hindsight);
    EXPECT_FALSE(hindsight.result.nonfinite);
  }
  EXPECT_EQ(encodeHindsight({0.5f}, 0x1p-120f).result.alpha, 0x1p-126f);
}

// Subnormal inputs are scaled exactly: with m = 2^-120 the scale is 2^126,
// so 2^-127 becomes r = 1/2 and 3 * 2^-129 becomes r = 3/8; each comes out
// as alpha with that probability.
TEST(NumericsLuq, SubnormalInputs) {
  const size_t count = 1 << 16;
  for (float x : {0x1p-127f, -0x3p-129f}) {
    SCOPED_TRACE(x);
    ASSERT_EQ(std::fpclassify(x), FP_SUBNORMAL);
    std::vector<float> data(count, x);
    Encoded encoded = encodeHindsight(data, 0x1p-120f);
    double r = std::fabs(double(x)) * 0x1p126;
    size_t ones = 0;
    for (int8_t code : encoded.codes) {
      ASSERT_TRUE(code == 0 || code == (x < 0 ? 9 : 1));
      ones += code != 0;
    }
    double sd = std::sqrt(r * (1 - r) / count);
    EXPECT_NEAR(double(ones) / count, r, 5 * sd);
  }
  // The same values arriving as bf16 (0x0040 is 2^-127) widen exactly.
  std::vector<uint16_t> bf16(64, 0x0040);
  std::vector<int8_t> fromBf16(64), fromF32(64);
  std::vector<float> f32(64, 0x1p-127f);
  luqEncodeHindsight(MatrixView::bf16(bf16.data(), 8, 8), 0x1p-120f, {3, 0, 0},
                     fromBf16.data());
  luqEncodeHindsight(MatrixView::f32(f32.data(), 8, 8), 0x1p-120f, {3, 0, 0},
                     fromF32.data());
  EXPECT_EQ(fromBf16, fromF32);
}

// In-hindsight mode: r = |x| * 64 / m above 64 saturates and is counted;
// r == 64 is the top level, not an overflow.
TEST(NumericsLuq, HindsightOverflowIsCounted) {
  Encoded encoded = encodeHindsight(
      {1.0f, above(1.0f), -3.0f, 0.5f, FLT_MAX, -FLT_MAX, 0.0f}, 1.0f);
  ASSERT_EQ(encoded.result.status, Status::Ok);
  EXPECT_EQ(encoded.result.overflowCount, 4u);
  EXPECT_EQ(encoded.result.alpha, 1.0f / 64.0f);
  EXPECT_FALSE(encoded.result.nonfinite);
  EXPECT_EQ(encoded.codes,
            (std::vector<int8_t>{7, 7, 8 | 7, 6, 7, 8 | 7, 0}));
}

// With m = max |x| no element can exceed the top level: 64 / m rounded
// times m rounds back to at most 64.
TEST(NumericsLuq, CurrentMaxNeverOverflows) {
  std::vector<float> x;
  for (int i = 1; i <= 4096; ++i)
    x.push_back(float(i) * 1.0001f * (i % 2 ? 1.0f : -1.0f));
  for (size_t top = 0; top < 40; ++top) {
    std::vector<float> y(x.begin(), x.begin() + 1 + top * 97);
    Encoded encoded = encode(y);
    EXPECT_EQ(encoded.result.overflowCount, 0u);
    EXPECT_EQ(encoded.codes.back() & 7, 7);
  }
}

// Negative values that underflow to zero give code 0, never 0x8.
TEST(NumericsLuq, NegativeZeroCodeIsNeverProduced) {
  std::vector<float> x(4096, -0.2f);
  x[0] = 64.0f;
  Encoded encoded = encode(x);
  size_t negatives = 0;
  for (size_t i = 1; i < x.size(); ++i) {
    ASSERT_NE(encoded.codes[i], 8);
    ASSERT_TRUE(encoded.codes[i] == 0 || encoded.codes[i] == 9);
    negatives += encoded.codes[i] == 9;
  }
  // r = 0.2: about one in five rounds up to -alpha.
  EXPECT_GT(negatives, 600u);
  EXPECT_LT(negatives, 1000u);
}

// The random stream is keyed on the logical row-major index: a padded row
// stride, bf16 or f16 storage changes nothing.
TEST(NumericsLuq, RowStrideAnd16BitInputsGiveTheSameCodes) {
  const size_t rows = 5, cols = 7, stride = 11;
  std::vector<float> fromBf16(rows * cols), fromF16(rows * cols);
  std::vector<float> padded(rows * stride, 1e30f);
  std::vector<uint16_t> bf16(rows * cols), f16(rows * cols);
  for (size_t i = 0; i < bf16.size(); ++i) {
    bf16[i] = uint16_t(0x3f80 + 37 * i) ^ (i % 3 ? 0x8000 : 0);
    f16[i] = uint16_t(0x0101 + 0x2a0 * i) ^ (i % 4 ? 0x8000 : 0);
    fromBf16[i] = bf16ToFloat(bf16[i]);
    fromF16[i] = f16ToFloat(f16[i]);
    padded[(i / cols) * stride + i % cols] = fromBf16[i];
  }
  const RandomKey key{99, 4, 2};
  auto codesOf = [&](const MatrixView &view, float &alpha) {
    std::vector<int8_t> codes(rows * cols);
    LuqResult result = luqEncode(view, key, codes.data());
    EXPECT_EQ(result.status, Status::Ok);
    EXPECT_FALSE(result.nonfinite);
    alpha = result.alpha;
    return codes;
  };
  float a, b, c, d, e;
  std::vector<int8_t> dense =
      codesOf(MatrixView::f32(fromBf16.data(), rows, cols), a);
  EXPECT_EQ(codesOf(MatrixView::f32(padded.data(), rows, cols, stride), b),
            dense);
  EXPECT_EQ(codesOf(MatrixView::bf16(bf16.data(), rows, cols), c), dense);
  EXPECT_EQ(floatToBits(a), floatToBits(b));
  EXPECT_EQ(floatToBits(a), floatToBits(c));
  EXPECT_EQ(codesOf(MatrixView::f16(f16.data(), rows, cols), d),
            codesOf(MatrixView::f32(fromF16.data(), rows, cols), e));
  EXPECT_EQ(floatToBits(d), floatToBits(e));
}

TEST(NumericsLuq, InvalidArguments) {
  std::vector<float> x(6, 1.0f);
  std::vector<int8_t> codes(6);
  EXPECT_EQ(luqEncode(MatrixView::f32(x.data(), 2, 3), {}, nullptr).status,
            Status::NullPointer);
  EXPECT_EQ(luqEncode(MatrixView::f32(nullptr, 2, 3), {}, codes.data()).status,
            Status::NullPointer);
  EXPECT_EQ(
      luqEncode(MatrixView::f32(x.data(), 2, 3, 2), {}, codes.data()).status,
      Status::InvalidShape);
  EXPECT_EQ(luqEncodeHindsight(MatrixView::f32(x.data(), 2, 3), 1.0f, {},
                               nullptr)
                .status,
            Status::NullPointer);
  // Empty tensors need no buffers.
  EXPECT_EQ(luqEncode(MatrixView::f32(nullptr, 0, 3), {}, nullptr).status,
            Status::Ok);
}

TEST(NumericsLuq, NextMaxEstimate) {
  EXPECT_EQ(luqNextMaxEstimate(8.0f, 2.0f, 0.0f), 2.0f);
  EXPECT_EQ(luqNextMaxEstimate(8.0f, 2.0f, 1.0f), 8.0f);
  EXPECT_EQ(luqNextMaxEstimate(8.0f, 2.0f, 0.75f), 6.5f);
  // Two rounded products, then a rounded sum: (1 - eta) * 3 and eta * 7
  // each round before they are added.
  float eta = 0.9f;
  float expected = float(1.0f - eta) * 3.0f + float(eta * 7.0f);
  EXPECT_EQ(floatToBits(luqNextMaxEstimate(7.0f, 3.0f, eta)),
            floatToBits(expected));
}

// SMP: sample s of luqEncodeSamples is luqEncode with sample id s, all
// with the same alpha.
TEST(NumericsLuq, SamplesAreIndependentEncodesWithOneScale) {
  std::vector<float> x;
  for (int i = 0; i < 30; ++i)
    x.push_back(std::sin(float(i)) * 3.0f);
  MatrixView view = MatrixView::f32(x.data(), 5, 6);
  const uint32_t samples = 4;
  std::vector<int8_t> all(samples * x.size());
  LuqResult smp = luqEncodeSamples(view, {5, 6, 99}, samples, all.data());
  ASSERT_EQ(smp.status, Status::Ok);
  for (uint32_t s = 0; s < samples; ++s) {
    std::vector<int8_t> one(x.size());
    LuqResult single = luqEncode(view, {5, 6, s}, one.data());
    EXPECT_EQ(floatToBits(single.alpha), floatToBits(smp.alpha));
    EXPECT_EQ(one, std::vector<int8_t>(all.begin() + s * x.size(),
                                       all.begin() + (s + 1) * x.size()));
  }
  // The estimate: fp32(sum of levels) * (alpha / N).
  std::vector<float> values(x.size());
  ASSERT_EQ(luqDecodeSamples(all.data(), x.size(), samples, smp.alpha,
                             values.data()),
            Status::Ok);
  for (size_t i = 0; i < x.size(); ++i) {
    int sum = 0;
    for (uint32_t s = 0; s < samples; ++s)
      sum += codeValue(Format::Log4, all[s * x.size() + i]);
    EXPECT_EQ(values[i], float(sum) * (smp.alpha / samples));
  }
}

TEST(NumericsLuq, SampleCountMustBeAPowerOfTwoUpTo64) {
  std::vector<float> x(4, 1.0f);
  std::vector<int8_t> codes(4 * 64);
  std::vector<float> values(4);
  MatrixView view = MatrixView::f32(x.data(), 1, 4);
  for (uint32_t bad : {0u, 3u, 6u, 65u, 128u}) {
    EXPECT_EQ(luqEncodeSamples(view, {}, bad, codes.data()).status,
              Status::InvalidSampleCount);
    EXPECT_EQ(luqDecodeSamples(codes.data(), 4, bad, 1.0f, values.data()),
              Status::InvalidSampleCount);
  }
  for (uint32_t good : {1u, 2u, 8u, 64u})
    EXPECT_EQ(luqEncodeSamples(view, {}, good, codes.data()).status,
              Status::Ok);
  codes[5] = 16;
  EXPECT_EQ(luqDecodeSamples(codes.data(), 4, 2, 1.0f, values.data()),
            Status::InvalidCode);
}

} // namespace
