//===- NumericsSawbTest.cpp - SAWB clip and int4 encoding -----------------===//

#include "lq/Numerics/Sawb.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

using namespace lq::numerics;

namespace {

const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Encoded {
  SawbResult result;
  std::vector<int8_t> codes;
};

Encoded encodeWithClip(const std::vector<float> &x, float clip,
                       SawbKind kind) {
  Encoded out;
  out.codes.assign(x.size(), int8_t(100));
  out.result = sawbEncode(MatrixView::f32(x.data(), 1, x.size()), clip, kind,
                          out.codes.data());
  return out;
}

Encoded quantize(const std::vector<float> &x, SawbKind kind) {
  Encoded out;
  out.codes.assign(x.size(), int8_t(100));
  out.result = sawbQuantize(MatrixView::f32(x.data(), 1, x.size()), kind,
                            out.codes.data());
  return out;
}

void expectAllZero(const Encoded &encoded) {
  EXPECT_EQ(encoded.result.status, Status::Ok);
  EXPECT_EQ(encoded.result.step, 0.0f);
  EXPECT_EQ(encoded.result.clip, 0.0f);
  for (int8_t code : encoded.codes)
    EXPECT_EQ(code, 0);
}

// clip = 7 makes x * 7 / clip = x, so the rounding itself is visible.
TEST(NumericsSawb, SignedRoundsHalfToEvenAndClampsSymmetrically) {
  Encoded encoded = encodeWithClip(
      {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 6.5f, 6.49f, -0.0f, 7.49f,
       100.0f, -7.5f, -8.0f, -FLT_MAX, 3.7f, -3.2f},
      7.0f, SawbKind::Signed);
  ASSERT_EQ(encoded.result.status, Status::Ok);
  EXPECT_EQ(encoded.codes, (std::vector<int8_t>{0, 2, 2, 0, -2, -2, 6, 6, 0,
                                                7, 7, -7, -7, -7, 4, -3}));
  EXPECT_EQ(encoded.result.step, 1.0f);
  EXPECT_EQ(encoded.result.clip, 7.0f);
}

TEST(NumericsSawb, UnsignedRoundsHalfToEvenAndClampsAtZero) {
  Encoded encoded =
      encodeWithClip({0.5f, 1.5f, 14.5f, 15.5f, 13.5f, -1.0f, -FLT_MAX, 40.0f},
                     15.0f, SawbKind::Unsigned);
  ASSERT_EQ(encoded.result.status, Status::Ok);
  EXPECT_EQ(encoded.codes,
            (std::vector<int8_t>{0, 2, 14, 15, 14, 0, 0, 15}));
  EXPECT_EQ(encoded.result.step, 1.0f);
}

// The scale and step are single f32 operations: inv = 7 / clip, code =
// rne(x * inv), step = clip / 7.
TEST(NumericsSawb, ScaleArithmeticIsF32) {
  const float clip = 0.3f;
  std::vector<float> x;
  for (int i = -40; i <= 40; ++i)
    x.push_back(float(i) * 0.0075f);
  Encoded encoded = encodeWithClip(x, clip, SawbKind::Signed);
  float inv = 7.0f / clip;
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_EQ(encoded.codes[i], int8_t(std::nearbyint(x[i] * inv))) << x[i];
  EXPECT_EQ(floatToBits(encoded.result.step), floatToBits(clip / 7.0f));
  Encoded unsignedCodes = encodeWithClip(x, clip, SawbKind::Unsigned);
  EXPECT_EQ(floatToBits(unsignedCodes.result.step), floatToBits(clip / 15.0f));
}

// -8 is representable in four bits but never produced.
TEST(NumericsSawb, MinusEightIsNeverProduced) {
  std::vector<float> x;
  for (int i = 0; i < 1000; ++i)
    x.push_back(-float(i) * 0.37f);
  for (float clip : {0.01f, 1.0f, 50.0f}) {
    Encoded encoded = encodeWithClip(x, clip, SawbKind::Signed);
    for (int8_t code : encoded.codes)
      ASSERT_GE(code, -7);
  }
}

// The clip statistics: 12.1 sqrt(E[x^2]) - 12.2 E[|x|], falling back to
// max |x| when that is <= 0 or above max |x|.
TEST(NumericsSawb, ClipFromStatistics) {
  // A constant tensor: 12.1 c - 12.2 c < 0, so clip = c.
  std::vector<float> constant(10, -0.75f);
  EXPECT_EQ(sawbClip(MatrixView::f32(constant.data(), 2, 5)).clip, 0.75f);
  // One spike among zeros: 12.1 / 2 - 12.2 / 4 = 3 > max = 1, so clip = 1.
  std::vector<float> spike = {0.0f, -1.0f, 0.0f, 0.0f};
  EXPECT_EQ(sawbClip(MatrixView::f32(spike.data(), 1, 4)).clip, 1.0f);
  // A spread-out tensor keeps the statistical clip, well inside max |x|.
  std::vector<float> ramp;
  for (int i = 0; i < 1000; ++i)
    ramp.push_back(float(i) / 500.0f - 1.0f);
  SawbClipResult clip = sawbClip(MatrixView::f32(ramp.data(), 1, 1000));
  double s2 = 0.0, s1 = 0.0;
  for (float v : ramp) {
    s2 += double(v) * double(v);
    s1 += std::fabs(double(v));
  }
  double expected = 12.1 * std::sqrt(s2 / 1000.0) - 12.2 * (s1 / 1000.0);
  EXPECT_EQ(clip.clip, float(expected));
  // Uniform on [-1, 1]: 12.1 / sqrt(3) - 12.2 / 2 = 0.886.
  EXPECT_NEAR(clip.clip, 0.886f, 0.002f);
}

TEST(NumericsSawb, ZeroAndEmptyTensors) {
  expectAllZero(quantize(std::vector<float>(6, 0.0f), SawbKind::Signed));
  expectAllZero(quantize(std::vector<float>(6, -0.0f), SawbKind::Unsigned));
  SawbResult result =
      sawbQuantize(MatrixView::f32(nullptr, 0, 0), SawbKind::Signed, nullptr);
  EXPECT_EQ(result.status, Status::Ok);
  EXPECT_EQ(result.step, 0.0f);
}

TEST(NumericsSawb, NonfiniteInput) {
  for (float bad : {kNaN, kInf, -kInf}) {
    std::vector<float> x = {1.0f, 2.0f, bad, -3.0f};
    for (SawbKind kind : {SawbKind::Signed, SawbKind::Unsigned}) {
      Encoded viaStatistics = quantize(x, kind);
      expectAllZero(viaStatistics);
      EXPECT_TRUE(viaStatistics.result.nonfinite);
      Encoded withClip = encodeWithClip(x, 2.0f, kind);
      expectAllZero(withClip);
      EXPECT_TRUE(withClip.result.nonfinite);
    }
    SawbClipResult clip = sawbClip(MatrixView::f32(x.data(), 2, 2));
    EXPECT_TRUE(clip.nonfinite);
    EXPECT_TRUE(std::isnan(clip.clip));
  }
}

// A clip that is not positive, or so small that 15 / clip overflows, gives
// all zeros and step 0. A clip that is not a number does too, and is
// flagged like a non-finite input.
TEST(NumericsSawb, UnusableExplicitClip) {
  std::vector<float> x = {0.1f, -0.2f, 0.3f};
  for (float clip : {0.0f, -0.0f, -1.0f, std::nextafter(0x1p-120f, 0.0f),
                     0x1p-149f}) {
    SCOPED_TRACE(clip);
    Encoded encoded = encodeWithClip(x, clip, SawbKind::Signed);
    expectAllZero(encoded);
    EXPECT_FALSE(encoded.result.nonfinite);
  }
  for (float clip : {kNaN, kInf, -kInf}) {
    SCOPED_TRACE(clip);
    Encoded encoded = encodeWithClip(x, clip, SawbKind::Unsigned);
    expectAllZero(encoded);
    EXPECT_TRUE(encoded.result.nonfinite);
  }
  Encoded smallest = encodeWithClip(x, 0x1p-120f, SawbKind::Unsigned);
  EXPECT_EQ(smallest.codes, (std::vector<int8_t>{15, 0, 15}));
  EXPECT_EQ(smallest.result.step, 0x1p-120f / 15.0f);
}

// A tensor whose max is below 2^-120 (here subnormal) quantizes to zero.
TEST(NumericsSawb, TinyTensor) {
  expectAllZero(quantize({0x1p-130f, -0x1p-135f}, SawbKind::Signed));
}

TEST(NumericsSawb, RowStrideAnd16BitInputsGiveTheSameCodes) {
  const size_t rows = 4, cols = 5, stride = 8;
  std::vector<uint16_t> bf16(rows * cols), padded(rows * stride, 0x7fc0);
  std::vector<float> f32(rows * cols);
  for (size_t i = 0; i < f32.size(); ++i) {
    bf16[i] = uint16_t(0x3e00 + 29 * i) ^ (i % 4 ? 0 : 0x8000);
    padded[(i / cols) * stride + i % cols] = bf16[i];
    f32[i] = bf16ToFloat(bf16[i]);
  }
  std::vector<int8_t> a(f32.size()), b(f32.size()), c(f32.size());
  SawbResult ra = sawbQuantize(MatrixView::f32(f32.data(), rows, cols),
                               SawbKind::Signed, a.data());
  SawbResult rb = sawbQuantize(MatrixView::bf16(bf16.data(), rows, cols),
                               SawbKind::Signed, b.data());
  SawbResult rc =
      sawbQuantize(MatrixView::bf16(padded.data(), rows, cols, stride),
                   SawbKind::Signed, c.data());
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  EXPECT_EQ(floatToBits(ra.step), floatToBits(rb.step));
  EXPECT_EQ(floatToBits(ra.step), floatToBits(rc.step));
  EXPECT_FALSE(rc.nonfinite); // the NaN padding is never read

  // f16 (0x0001 and 0x83ff are subnormal) against its exact widening.
  std::vector<uint16_t> f16 = {0x3c00, 0xb800, 0x0001, 0x83ff, 0x4a00,
                               0x2e66, 0xc500, 0x0000, 0x3555, 0xbbff};
  std::vector<float> widened;
  for (uint16_t bits : f16)
    widened.push_back(f16ToFloat(bits));
  std::vector<int8_t> d(f16.size()), e(f16.size());
  SawbResult rd = sawbQuantize(MatrixView::f16(f16.data(), 2, 5),
                               SawbKind::Signed, d.data());
  SawbResult re = sawbQuantize(MatrixView::f32(widened.data(), 2, 5),
                               SawbKind::Signed, e.data());
  EXPECT_EQ(d, e);
  EXPECT_EQ(floatToBits(rd.step), floatToBits(re.step));
}

TEST(NumericsSawb, InvalidArguments) {
  std::vector<float> x(4, 1.0f);
  std::vector<int8_t> codes(4);
  EXPECT_EQ(sawbEncode(MatrixView::f32(x.data(), 2, 2), 1.0f,
                       SawbKind::Signed, nullptr)
                .status,
            Status::NullPointer);
  EXPECT_EQ(sawbQuantize(MatrixView::f32(x.data(), 2, 2, 1), SawbKind::Signed,
                         codes.data())
                .status,
            Status::InvalidShape);
  EXPECT_EQ(sawbClip(MatrixView::f32(nullptr, 2, 2)).status,
            Status::NullPointer);
}

} // namespace

// lq.quantize's canonicalization folds quantize(dequantize(q, step), clip)
// with the producer's clip to q, which holds only if every code's value
// (code * step in f32) quantizes back to the code for every finite clip.
// Clips from 2^-120 up scale by powers of two without reaching subnormals,
// so the mantissas at one exponent decide it, plus the top exponent (where
// code * step could round to infinity): every 61st mantissa and the last
// 4096 below each power of two, at the bottom, 1 and the top exponent.
TEST(NumericsSawb, RequantizeGivesCodesBack) {
  for (SawbKind kind : {SawbKind::Signed, SawbKind::Unsigned}) {
    const int lo = kind == SawbKind::Signed ? -7 : 0;
    const int hi = kind == SawbKind::Signed ? 7 : 15;
    std::vector<float> values(hi - lo + 1);
    std::vector<int8_t> codes(values.size());
    for (float base : {1.0f, 0x1p127f, kSawbMinClip})
      for (uint32_t mantissa = 0; mantissa < (1u << 23);
           mantissa += mantissa < (1u << 23) - 4096 ? 61 : 1) {
        float clip = bitsToFloat(floatToBits(base) | mantissa);
        float probe = 0.0f;
        int8_t probeCode = 0;
        float step =
            sawbEncode(MatrixView::f32(&probe, 1, 1), clip, kind, &probeCode)
                .step;
        for (int q = lo; q <= hi; ++q)
          values[q - lo] = float(q) * step;
        SawbResult again = sawbEncode(MatrixView::f32(values.data(), 1,
                                                      values.size()),
                                      clip, kind, codes.data());
        ASSERT_FALSE(again.nonfinite) << clip;
        ASSERT_EQ(floatToBits(again.step), floatToBits(step)) << clip;
        for (int q = lo; q <= hi; ++q)
          ASSERT_EQ(codes[q - lo], q) << "clip " << clip << " code " << q;
      }
  }
}
