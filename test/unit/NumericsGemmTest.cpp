//===- NumericsGemmTest.cpp - The exact quantized GEMM --------------------===//

#include "lq/Numerics/Gemm.h"
#include "lq/Numerics/Luq.h"
#include "lq/Numerics/Pack.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

using namespace lq::numerics;

namespace {

// A GEMM problem in logical layout plus how it is stored.
struct Problem {
  GemmShape shape;
  Format lhsFormat = Format::Log4;
  Format rhsFormat = Format::Int4Signed;
  float lhsScale = 1.0f;
  float rhsScale = 1.0f;
  bool transA = false;
  bool transB = false;
  uint32_t samples = 1;
  std::vector<float> bias; // empty: none
  bool relu = false;
  std::vector<int8_t> a; // logical [samples][m][k]
  std::vector<int8_t> b; // logical [k][n]
};

struct Outputs {
  GemmResult result;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<int32_t> acc;
};

int8_t randomCode(Format format, std::mt19937 &engine) {
  int nibble = int(engine() & 15);
  return int8_t(format == Format::Int4Signed ? nibble - 8 : nibble);
}

std::vector<int8_t> randomCodes(Format format, size_t count,
                                std::mt19937 &engine) {
  std::vector<int8_t> codes(count);
  for (int8_t &code : codes)
    code = randomCode(format, engine);
  return codes;
}

// The stored form: transposed operands are kept as the transpose of their
// logical matrix, one sample after another.
std::vector<int8_t> stored(const std::vector<int8_t> &logical, size_t rows,
                           size_t cols, size_t samples, bool transposed) {
  if (!transposed)
    return logical;
  std::vector<int8_t> out(logical.size());
  for (size_t s = 0; s < samples; ++s)
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c)
        out[s * rows * cols + c * rows + r] =
            logical[s * rows * cols + r * cols + c];
  return out;
}

GemmOptions optionsOf(const Problem &p) {
  GemmOptions options;
  options.lhsSamples = p.samples;
  options.bias = p.bias.empty() ? nullptr : p.bias.data();
  options.relu = p.relu;
  return options;
}

Outputs allocate(const GemmShape &shape) {
  Outputs out;
  size_t count = shape.m * shape.n;
  out.f32.assign(count, -12345.0f);
  out.bf16.assign(count, 0xdead);
  out.acc.assign(count, 0x7eadbeef);
  return out;
}

Outputs runUnpacked(const Problem &p) {
  const GemmShape &s = p.shape;
  std::vector<int8_t> a = stored(p.a, s.m, s.k, p.samples, p.transA);
  std::vector<int8_t> b = stored(p.b, s.k, s.n, 1, p.transB);
  Outputs out = allocate(s);
  out.result = quantizedGemm(
      s, {a.data(), p.lhsFormat, p.lhsScale, p.transA},
      {b.data(), p.rhsFormat, p.rhsScale, p.transB}, optionsOf(p),
      {out.f32.data(), out.bf16.data(), out.acc.data()});
  return out;
}

std::vector<uint8_t> packAll(Format format, const std::vector<int8_t> &codes,
                             size_t rows, size_t cols, size_t samples) {
  size_t perSample = rows * packedRowBytes(cols);
  std::vector<uint8_t> packed(samples * perSample);
  for (size_t s = 0; s < samples; ++s)
    EXPECT_EQ(packCodes(format, codes.data() + s * rows * cols, rows, cols,
                        packed.data() + s * perSample),
              Status::Ok);
  return packed;
}

Outputs runPacked(const Problem &p) {
  const GemmShape &s = p.shape;
  size_t aRows = p.transA ? s.k : s.m, aCols = p.transA ? s.m : s.k;
  size_t bRows = p.transB ? s.n : s.k, bCols = p.transB ? s.k : s.n;
  std::vector<uint8_t> a =
      packAll(p.lhsFormat, stored(p.a, s.m, s.k, p.samples, p.transA), aRows,
              aCols, p.samples);
  std::vector<uint8_t> b =
      packAll(p.rhsFormat, stored(p.b, s.k, s.n, 1, p.transB), bRows, bCols, 1);
  Outputs out = allocate(s);
  out.result = quantizedGemmPacked(
      s, {a.data(), p.lhsFormat, p.lhsScale, p.transA},
      {b.data(), p.rhsFormat, p.rhsScale, p.transB}, optionsOf(p),
      {out.f32.data(), out.bf16.data(), out.acc.data()});
  return out;
}

// Independent of the library: the f64 sum of the decoded integers (exact,
// far below 2^53), and the real value of the decoded GEMM,
// s_a * s_b * sum / N, rounded once in f64 (summing the decoded real
// products instead would add f64 cancellation noise where the sum is 0).
struct Reference {
  std::vector<double> integer;
  std::vector<double> real;
};

Reference referenceOf(const Problem &p) {
  const GemmShape &s = p.shape;
  Reference ref;
  ref.integer.assign(s.m * s.n, 0.0);
  for (size_t i = 0; i < s.m; ++i)
    for (size_t j = 0; j < s.n; ++j)
      for (uint32_t smp = 0; smp < p.samples; ++smp)
        for (size_t k = 0; k < s.k; ++k)
          ref.integer[i * s.n + j] +=
              double(codeValue(p.lhsFormat, p.a[(smp * s.m + i) * s.k + k])) *
              double(codeValue(p.rhsFormat, p.b[k * s.n + j]));
  double scale = double(p.lhsScale) * double(p.rhsScale) / p.samples;
  for (double sum : ref.integer)
    ref.real.push_back(sum * scale);
  return ref;
}

// bf16 round to nearest even computed in double (8 significant bits).
uint16_t bf16ByDouble(float value) {
  if (std::isnan(value) || std::isinf(value) || value == 0.0f)
    return uint16_t(floatToBits(value) >> 16);
  int exponent;
  std::frexp(double(value), &exponent);
  int quantum = std::max(exponent - 8, -133);
  double rounded =
      std::ldexp(std::nearbyint(std::ldexp(double(value), -quantum)), quantum);
  return uint16_t(floatToBits(float(rounded)) >> 16);
}

void checkAgainstReference(const Problem &p) {
  Outputs out = runUnpacked(p);
  ASSERT_EQ(out.result.status, Status::Ok);
  Reference ref = referenceOf(p);
  float scale = float(p.lhsScale * p.rhsScale) * (1.0f / p.samples);
  EXPECT_EQ(floatToBits(out.result.scale), floatToBits(scale));
  for (size_t at = 0; at < out.acc.size(); ++at) {
    SCOPED_TRACE(testing::Message() << "element " << at);
    ASSERT_EQ(double(out.acc[at]), ref.integer[at]) << "accumulator";
    // Before the epilogue: within the three f32 roundings (s_a * s_b,
    // fp32(acc), the product) of the real value.
    float plain = float(out.acc[at]) * out.result.scale;
    EXPECT_LE(std::fabs(double(plain) - ref.real[at]),
              3.0 * 0x1p-24 * std::fabs(ref.real[at]));
    float expected = plain;
    if (!p.bias.empty())
      expected = expected + p.bias[at % p.shape.n];
    if (p.relu)
      expected = expected > 0.0f ? expected : 0.0f;
    EXPECT_EQ(floatToBits(out.f32[at]), floatToBits(expected));
    EXPECT_EQ(out.bf16[at], bf16ByDouble(out.f32[at]));
  }
  Outputs packed = runPacked(p);
  ASSERT_EQ(packed.result.status, Status::Ok);
  EXPECT_EQ(floatToBits(packed.result.scale), floatToBits(out.result.scale));
  EXPECT_EQ(packed.acc, out.acc);
  EXPECT_EQ(packed.bf16, out.bf16);
  for (size_t at = 0; at < out.f32.size(); ++at)
    ASSERT_EQ(floatToBits(packed.f32[at]), floatToBits(out.f32[at]));
}

Problem randomProblem(GemmShape shape, Format lhs, Format rhs, bool transA,
                      bool transB, uint32_t samples, bool bias, bool relu,
                      std::mt19937 &engine) {
  Problem p;
  p.shape = shape;
  p.lhsFormat = lhs;
  p.rhsFormat = rhs;
  p.transA = transA;
  p.transB = transB;
  p.samples = samples;
  p.relu = relu;
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  p.lhsScale = std::ldexp(mantissa(engine), -int(engine() % 20));
  p.rhsScale = std::ldexp(mantissa(engine), -int(engine() % 20));
  p.a = randomCodes(lhs, samples * shape.m * shape.k, engine);
  p.b = randomCodes(rhs, shape.k * shape.n, engine);
  if (bias)
    for (size_t j = 0; j < shape.n; ++j)
      p.bias.push_back((mantissa(engine) - 1.5f) * p.lhsScale * p.rhsScale *
                       float(shape.k) * 8.0f);
  return p;
}

struct FormatPair {
  Format lhs;
  Format rhs;
};
const FormatPair kFormatPairs[] = {
    {Format::Log4, Format::Int4Signed},
    {Format::Int4Signed, Format::Log4},
    {Format::Log4, Format::Int4Unsigned},
    {Format::Int4Unsigned, Format::Log4},
    {Format::Int4Signed, Format::Int4Signed},
    {Format::Int4Unsigned, Format::Int4Signed}};

// Shapes with 1, odd and prime sizes, every transpose, SMP 1/2/4, and the
// epilogue variants, cycled so that each appears with many others.
TEST(NumericsGemm, MatchesFloat64ReferenceOnRandomShapes) {
  std::mt19937 engine(2023);
  const size_t dims[] = {1, 3, 7, 13, 31};
  const uint32_t sampleCounts[] = {1, 2, 4};
  size_t variant = 0;
  for (size_t m : dims)
    for (size_t n : dims)
      for (size_t k : dims)
        for (int trans = 0; trans < 4; ++trans, ++variant) {
          FormatPair formats = kFormatPairs[variant % 6];
          uint32_t samples = sampleCounts[variant % 3];
          bool bias = variant % 4 >= 2, relu = variant % 5 >= 2;
          SCOPED_TRACE(testing::Message()
                       << m << "x" << n << "x" << k << " trans " << trans
                       << " formats " << int(formats.lhs) << ","
                       << int(formats.rhs) << " N " << samples << " bias "
                       << bias << " relu " << relu);
          checkAgainstReference(randomProblem(
              {m, n, k}, formats.lhs, formats.rhs, trans & 1, trans & 2,
              samples, bias, relu, engine));
        }
}

TEST(NumericsGemm, LargerProblems) {
  std::mt19937 engine(7);
  checkAgainstReference(randomProblem({64, 48, 96}, Format::Log4,
                                      Format::Int4Signed, false, true, 8, true,
                                      true, engine));
  checkAgainstReference(randomProblem({2, 3, 4099}, Format::Int4Signed,
                                      Format::Log4, true, false, 64, true,
                                      false, engine));
}

// An SMP GEMM against the identity reproduces the SMP estimate of the LUQ
// samples bit for bit.
TEST(NumericsGemm, SmpAgainstIdentityIsTheSampleAverage) {
  const size_t rows = 6, cols = 9;
  std::vector<float> x;
  for (size_t i = 0; i < rows * cols; ++i)
    x.push_back(std::cos(float(i) * 0.7f) * 5.0f);
  for (uint32_t samples : {1u, 2u, 4u, 8u}) {
    std::vector<int8_t> codes(samples * rows * cols);
    LuqResult luq = luqEncodeSamples(MatrixView::f32(x.data(), rows, cols),
                                     {31, 2, 0}, samples, codes.data());
    ASSERT_EQ(luq.status, Status::Ok);
    std::vector<float> average(rows * cols);
    ASSERT_EQ(luqDecodeSamples(codes.data(), rows * cols, samples, luq.alpha,
                               average.data()),
              Status::Ok);
    std::vector<int8_t> identity(cols * cols, 0);
    for (size_t i = 0; i < cols; ++i)
      identity[i * cols + i] = 1;
    std::vector<float> c(rows * cols);
    GemmOptions options;
    options.lhsSamples = samples;
    GemmResult result = quantizedGemm(
        {rows, cols, cols}, {codes.data(), Format::Log4, luq.alpha, false},
        {identity.data(), Format::Int4Unsigned, 1.0f, false}, options,
        {c.data(), nullptr, nullptr});
    ASSERT_EQ(result.status, Status::Ok);
    for (size_t i = 0; i < c.size(); ++i)
      EXPECT_EQ(floatToBits(c[i]), floatToBits(average[i])) << i;
  }
}

// ReLU is max(v, +0): negative values and -0 become +0; NaN stays NaN.
TEST(NumericsGemm, ReluProducesPositiveZero) {
  std::vector<int8_t> a = {1};
  std::vector<int8_t> b = {2, 0, 3};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // A negative scale turns the accumulators 2, 0, 3 into -2, -0, -3; a bias
  // of -0 keeps them, a NaN bias makes a NaN.
  std::vector<float> bias = {-0.0f, -0.0f, nan};
  auto run = [&](const float *biasData, bool relu) {
    std::vector<float> c(3, 1.0f);
    GemmOptions options;
    options.bias = biasData;
    options.relu = relu;
    GemmResult result = quantizedGemm(
        {1, 3, 1}, {a.data(), Format::Int4Unsigned, -1.0f, false},
        {b.data(), Format::Int4Unsigned, 1.0f, false}, options,
        {c.data(), nullptr, nullptr});
    EXPECT_EQ(result.status, Status::Ok);
    std::vector<uint32_t> bits;
    for (float value : c)
      bits.push_back(floatToBits(value));
    return bits;
  };
  EXPECT_EQ(run(nullptr, false),
            (std::vector<uint32_t>{0xc0000000u, 0x80000000u, 0xc0400000u}));
  EXPECT_TRUE(std::isnan(bitsToFloat(run(bias.data(), false)[2])));
  EXPECT_EQ(run(nullptr, true), std::vector<uint32_t>(3, 0u));
  std::vector<uint32_t> withNan = run(bias.data(), true);
  EXPECT_EQ(withNan[0], 0u);
  EXPECT_EQ(withNan[1], 0u);
  EXPECT_TRUE(std::isnan(bitsToFloat(withNan[2])));
}

// K = 0 leaves only the epilogue: C = relu(0 * s + bias), acc = 0. That
// makes the bf16 rounding of the bias directly visible.
TEST(NumericsGemm, EmptyInnerDimension) {
  std::vector<float> bias = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -5.0f,
                             0x1.fffffep127f};
  std::vector<float> c(8);
  std::vector<uint16_t> bf16(8);
  std::vector<int32_t> acc(8, 7);
  GemmOptions options;
  options.bias = bias.data();
  GemmResult result = quantizedGemm(
      {2, 4, 0}, {nullptr, Format::Log4, 1.0f, false},
      {nullptr, Format::Int4Signed, 1.0f, true}, options,
      {c.data(), bf16.data(), acc.data()});
  ASSERT_EQ(result.status, Status::Ok);
  EXPECT_EQ(acc, std::vector<int32_t>(8, 0));
  for (size_t row = 0; row < 2; ++row)
    for (size_t j = 0; j < 4; ++j)
      EXPECT_EQ(c[row * 4 + j], bias[j]);
  EXPECT_EQ(bf16[0], 0x3f80); // tie to even: down
  EXPECT_EQ(bf16[1], 0x3f82); // tie to even: up
  EXPECT_EQ(bf16[2], 0xc0a0);
  EXPECT_EQ(bf16[3], 0x7f80); // beyond the largest bf16: infinity
}

TEST(NumericsGemm, EmptyOutputWritesNothing) {
  std::vector<int8_t> codes(16, 1);
  std::vector<float> c(4, 3.0f);
  for (GemmShape shape : {GemmShape{0, 4, 4}, GemmShape{4, 0, 4}}) {
    GemmResult result =
        quantizedGemm(shape, {codes.data(), Format::Log4, 1.0f, false},
                      {codes.data(), Format::Int4Signed, 1.0f, false}, {},
                      {c.data(), nullptr, nullptr});
    EXPECT_EQ(result.status, Status::Ok);
    EXPECT_EQ(c, std::vector<float>(4, 3.0f));
    // Only the operand that still has elements needs a buffer.
    const int8_t *lhs = shape.m == 0 ? nullptr : codes.data();
    const int8_t *rhs = shape.n == 0 ? nullptr : codes.data();
    EXPECT_EQ(quantizedGemm(shape, {lhs, Format::Log4, 1.0f, false},
                            {rhs, Format::Int4Signed, 1.0f, false}, {}, {})
                  .status,
              Status::Ok);
    EXPECT_EQ(quantizedGemm(shape, {nullptr, Format::Log4, 1.0f, false},
                            {nullptr, Format::Int4Signed, 1.0f, false}, {}, {})
                  .status,
              Status::NullPointer);
  }
}

// The largest K the accumulator bound admits, at the largest |a * b|:
// K * 960 = 2147483520 < 2^31, exact; one more term is refused.
TEST(NumericsGemm, AccumulatorBoundIsExactAndEnforced) {
  const size_t maxK = 2236962; // floor((2^31 - 1) / 960)
  for (int8_t top : {int8_t(7), int8_t(15)}) {
    std::vector<int8_t> a(maxK, top); // log4 +-64
    std::vector<int8_t> b(maxK, 15);  // unsigned 15
    int32_t acc = 0;
    float c = 0.0f;
    GemmResult result = quantizedGemm(
        {1, 1, maxK}, {a.data(), Format::Log4, 1.0f, false},
        {b.data(), Format::Int4Unsigned, 1.0f, false}, {}, {&c, nullptr, &acc});
    ASSERT_EQ(result.status, Status::Ok);
    int32_t expected = 2147483520 * (top == 7 ? 1 : -1);
    EXPECT_EQ(acc, expected);
    EXPECT_EQ(c, float(expected));
    EXPECT_EQ(quantizedGemm({1, 1, maxK + 1},
                            {a.data(), Format::Log4, 1.0f, false},
                            {b.data(), Format::Int4Unsigned, 1.0f, false}, {},
                            {&c, nullptr, &acc})
                  .status,
              Status::AccumulatorRange);
  }
  // With 64 samples the bound is on K * 64.
  std::vector<int8_t> codes(64 * (maxK / 64 + 1), 0);
  float c = 0.0f;
  GemmOptions options;
  options.lhsSamples = 64;
  EXPECT_EQ(quantizedGemm({1, 1, maxK / 64},
                          {codes.data(), Format::Log4, 1.0f, false},
                          {codes.data(), Format::Int4Signed, 1.0f, false},
                          options, {&c, nullptr, nullptr})
                .status,
            Status::Ok);
  EXPECT_EQ(quantizedGemm({1, 1, maxK / 64 + 1},
                          {codes.data(), Format::Log4, 1.0f, false},
                          {codes.data(), Format::Int4Signed, 1.0f, false},
                          options, {&c, nullptr, nullptr})
                .status,
            Status::AccumulatorRange);
}

// Every rejected call leaves the outputs untouched.
class NumericsGemmErrors : public testing::Test {
protected:
  std::vector<int8_t> a = std::vector<int8_t>(12, 1);
  std::vector<int8_t> b = std::vector<int8_t>(12, 1);
  std::vector<float> c = std::vector<float>(9, 5.0f);
  GemmShape shape{3, 3, 4};

  Status run(Format lhs, Format rhs, GemmOptions options = {}) {
    return quantizedGemm(shape, {a.data(), lhs, 1.0f, false},
                         {b.data(), rhs, 1.0f, false}, options,
                         {c.data(), nullptr, nullptr})
        .status;
  }
  void TearDown() override { EXPECT_EQ(c, std::vector<float>(9, 5.0f)); }
};

TEST_F(NumericsGemmErrors, Log4TimesLog4) {
  EXPECT_EQ(run(Format::Log4, Format::Log4), Status::Log4TimesLog4);
  std::vector<uint8_t> packed(12, 0x11);
  EXPECT_EQ(quantizedGemmPacked(shape, {packed.data(), Format::Log4, 1, false},
                                {packed.data(), Format::Log4, 1, false}, {},
                                {c.data(), nullptr, nullptr})
                .status,
            Status::Log4TimesLog4);
}

TEST_F(NumericsGemmErrors, SampleCount) {
  for (uint32_t samples : {0u, 3u, 5u, 65u, 128u}) {
    GemmOptions options;
    options.lhsSamples = samples;
    EXPECT_EQ(run(Format::Log4, Format::Int4Signed, options),
              Status::InvalidSampleCount)
        << samples;
  }
}

TEST_F(NumericsGemmErrors, NullPointers) {
  EXPECT_EQ(quantizedGemm(shape, {nullptr, Format::Log4, 1, false},
                          {b.data(), Format::Int4Signed, 1, false}, {},
                          {c.data(), nullptr, nullptr})
                .status,
            Status::NullPointer);
  EXPECT_EQ(quantizedGemm(shape, {a.data(), Format::Log4, 1, false},
                          {nullptr, Format::Int4Signed, 1, false}, {},
                          {c.data(), nullptr, nullptr})
                .status,
            Status::NullPointer);
  EXPECT_EQ(quantizedGemm(shape, {a.data(), Format::Log4, 1, false},
                          {b.data(), Format::Int4Signed, 1, false}, {}, {})
                .status,
            Status::NullPointer);
  EXPECT_EQ(quantizedGemmPacked(shape, {nullptr, Format::Log4, 1, false},
                                {nullptr, Format::Int4Signed, 1, false}, {},
                                {c.data(), nullptr, nullptr})
                .status,
            Status::NullPointer);
}

TEST_F(NumericsGemmErrors, InvalidCodes) {
  a[5] = 16;
  EXPECT_EQ(run(Format::Log4, Format::Int4Signed), Status::InvalidCode);
  a[5] = -9;
  EXPECT_EQ(run(Format::Int4Signed, Format::Log4), Status::InvalidCode);
  a[5] = 1;
  b[11] = -1;
  EXPECT_EQ(run(Format::Log4, Format::Int4Unsigned), Status::InvalidCode);
  // A bad code in the second SMP sample.
  b[11] = 1;
  std::vector<int8_t> twoSamples(24, 1);
  twoSamples[20] = 8;
  GemmOptions options;
  options.lhsSamples = 2;
  EXPECT_EQ(quantizedGemm(shape, {twoSamples.data(), Format::Int4Signed, 1,
                                  false},
                          {b.data(), Format::Log4, 1, false}, options,
                          {c.data(), nullptr, nullptr})
                .status,
            Status::InvalidCode);
}

TEST_F(NumericsGemmErrors, SizeOverflow) {
  shape = {SIZE_MAX / 2, SIZE_MAX / 2, 4};
  EXPECT_EQ(run(Format::Log4, Format::Int4Signed), Status::InvalidShape);
}

} // namespace
