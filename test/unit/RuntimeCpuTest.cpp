//===- RuntimeCpuTest.cpp - host kernels against the numerics core --------===//
//
// Every generated CPU kernel must produce the bits of the scalar numerics
// core: same codes (given the same scale), same GEMM output. Shapes are
// randomized and include 1, odd and prime sizes and sizes just off the
// micro-kernel tile.
//
//===----------------------------------------------------------------------===//

#include "lq/Numerics/Numerics.h"
#include "lq/Runtime/Runtime.h"

#include "KernelCacheEnvironment.h"
#include "NumericsFormats.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"


#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace num = lq::numerics;
using lq::DType;
using lq::Format;

namespace {

const auto *cacheEnvironment =
    ::testing::AddGlobalTestEnvironment(new KernelCacheEnvironment);

/// A float matrix as f32 and as its bf16 rounding.
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;

  Matrix(int64_t rows, int64_t cols, std::mt19937 &rng, bool nonNegative)
      : rows(rows), cols(cols), f32(rows * cols), bf16(rows * cols) {
    // Heavy-tailed like neural gradients: a normal times 2^(uniform bin).
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int> octave(-6, 3);
    for (size_t i = 0; i < f32.size(); ++i) {
      float v = normal(rng) * std::ldexp(1.0f, octave(rng));
      f32[i] = nonNegative ? std::fabs(v) : v;
      bf16[i] = num::floatToBf16(f32[i]);
    }
  }
  lq::TensorRef ref(DType dtype) const {
    return dtype == DType::BF16 ? lq::TensorRef::bf16(bf16.data(), rows, cols)
                                : lq::TensorRef::f32(f32.data(), rows, cols);
  }
  num::MatrixView view(DType dtype) const {
    return dtype == DType::BF16
               ? num::MatrixView::bf16(bf16.data(), rows, cols)
               : num::MatrixView::f32(f32.data(), rows, cols);
  }
};

/// The SAWB clip with the moments summed in the host kernels' order
/// (docs/runtime.md, "Host kernels"): f64 sums per chunk of 32 rows, in each
/// chunk 8 lanes (lane l takes the columns c with c % 8 == l, rows in order),
/// the lanes added in order, then the chunks in order; then the numerics
/// core's rule (sawbClipFromMoments). The contract makes the clip exact
/// given the summation order, so the kernel's must equal this bit for bit.
float clipInKernelOrder(const num::MatrixView &x) {
  const size_t chunkRows = 32, lanes = 8;
  double sumSquares = 0.0, sumMagnitudes = 0.0;
  float maxAbs = 0.0f;
  for (size_t r0 = 0; r0 < x.rows(); r0 += chunkRows) {
    double squares[lanes] = {}, magnitudes[lanes] = {};
    for (size_t r = r0; r < std::min(x.rows(), r0 + chunkRows); ++r)
      for (size_t c = 0; c < x.cols(); ++c) {
        double d = x.at(r, c);
        squares[c % lanes] += d * d;
        magnitudes[c % lanes] += std::fabs(d);
        maxAbs = std::max(maxAbs, std::fabs(x.at(r, c)));
      }
    double chunkSquares = 0.0, chunkMagnitudes = 0.0;
    for (size_t l = 0; l < lanes; ++l) {
      chunkSquares += squares[l];
      chunkMagnitudes += magnitudes[l];
    }
    sumSquares += chunkSquares;
    sumMagnitudes += chunkMagnitudes;
  }
  if (x.size() == 0)
    return 0.0f;
  return num::sawbClipFromMoments(sumSquares, sumMagnitudes, double(x.size()),
                                  maxAbs);
}

/// Codes of one float operand as the numerics core makes them, given the
/// range the kernel reported.
std::vector<int8_t> referenceCodes(const Matrix &x, DType dtype, Format format,
                                   unsigned samples, float range,
                                   bool hindsight, uint64_t seed,
                                   uint32_t stream, float *scale) {
  std::vector<int8_t> codes(x.rows * x.cols * samples);
  num::MatrixView view = x.view(dtype);
  if (format == Format::Log4) {
    for (unsigned s = 0; s < samples; ++s) {
      num::RandomKey key{seed, stream, s};
      num::LuqResult r =
          hindsight ? num::luqEncodeHindsight(view, range, key,
                                              codes.data() + s * view.size())
                    : num::luqEncode(view, key, codes.data() + s * view.size());
      EXPECT_EQ(r.status, num::Status::Ok);
      *scale = r.alpha;
    }
    return codes;
  }
  EXPECT_EQ(num::floatToBits(range), num::floatToBits(clipInKernelOrder(view)));
  num::SawbResult r = num::sawbEncode(
      view, range,
      format == Format::SInt4 ? num::SawbKind::Signed : num::SawbKind::Unsigned,
      codes.data());
  EXPECT_EQ(r.status, num::Status::Ok);
  *scale = r.step;
  return codes;
}

struct Case {
  lq::GemmSpec spec;
  int64_t m, n, k;
};

std::string describe(const Case &c) {
  return c.spec.describe() + " M=" + std::to_string(c.m) +
         " N=" + std::to_string(c.n) + " K=" + std::to_string(c.k);
}

/// Runs one case through the kernel and the numerics core; compares bits.
void checkCase(const Case &c, std::mt19937 &rng) {
  SCOPED_TRACE(describe(c));
  const lq::GemmSpec &spec = c.spec;
  auto kernel = lq::Runtime::get().compile(spec);
  ASSERT_TRUE(kernel.ok()) << kernel.error();

  int64_t aRows = spec.lhs.transposed ? c.k : c.m;
  int64_t aCols = spec.lhs.transposed ? c.m : c.k;
  int64_t bRows = spec.rhs.transposed ? c.n : c.k;
  int64_t bCols = spec.rhs.transposed ? c.k : c.n;
  Matrix a(aRows, aCols, rng, spec.lhs.format == Format::UInt4);
  Matrix b(bRows, bCols, rng, spec.rhs.format == Format::UInt4);
  std::vector<float> bias(c.n);
  std::uniform_real_distribution<float> biasDist(-0.5f, 0.5f);
  for (float &v : bias)
    v = biasDist(rng);

  lq::LaunchArgs args;
  args.lhs = a.ref(spec.lhs.dtype);
  args.rhs = b.ref(spec.rhs.dtype);
  std::vector<float> outF32(c.m * c.n, -1.0f);
  std::vector<uint16_t> outBf16(c.m * c.n, 0xFFFF);
  args.out = spec.output == DType::BF16
                 ? lq::TensorRef::bf16(outBf16.data(), c.m, c.n)
                 : lq::TensorRef::f32(outF32.data(), c.m, c.n);
  if (spec.bias) {
    args.bias = bias.data();
    args.biasLength = c.n;
  }
  args.seed = rng();
  args.stream = rng() % 1000;
  if (spec.hindsight) {
    // An estimate below the true max, so that some elements saturate.
    num::MaxAbsResult max = num::maxAbs(a.view(spec.lhs.dtype));
    args.maxEstimate = max.maxAbs * 0.75f;
  }
  auto status = kernel->launch(args);
  ASSERT_TRUE(status.ok()) << status.error();
  EXPECT_FALSE(status->nonfinite);

  float lhsScale = 0.0f, rhsScale = 0.0f;
  std::vector<int8_t> lhsCodes = referenceCodes(
      a, spec.lhs.dtype, spec.lhs.format, spec.samples, status->lhsRange,
      spec.hindsight, args.seed, args.stream, &lhsScale);
  std::vector<int8_t> rhsCodes =
      referenceCodes(b, spec.rhs.dtype, spec.rhs.format, 1, status->rhsRange,
                     false, args.seed, args.stream, &rhsScale);
  EXPECT_EQ(num::floatToBits(status->lhsScale), num::floatToBits(lhsScale));
  EXPECT_EQ(num::floatToBits(status->rhsScale), num::floatToBits(rhsScale));
  if (spec.hindsight) {
    EXPECT_GT(status->overflow, 0u);
  }

  std::vector<float> refF32(c.m * c.n);
  std::vector<uint16_t> refBf16(c.m * c.n);
  num::GemmOptions options;
  options.lhsSamples = spec.samples;
  options.bias = spec.bias ? bias.data() : nullptr;
  options.relu = spec.relu;
  num::GemmResult ref = num::quantizedGemm(
      {size_t(c.m), size_t(c.n), size_t(c.k)},
      {lhsCodes.data(), numericsFormat(spec.lhs.format), lhsScale,
       spec.lhs.transposed},
      {rhsCodes.data(), numericsFormat(spec.rhs.format), rhsScale,
       spec.rhs.transposed},
      options, {refF32.data(), refBf16.data(), nullptr});
  ASSERT_EQ(ref.status, num::Status::Ok);

  int64_t mismatches = 0;
  for (int64_t i = 0; i < c.m * c.n; ++i) {
    bool same = spec.output == DType::BF16
                    ? outBf16[i] == refBf16[i]
                    : num::floatToBits(outF32[i]) ==
                          num::floatToBits(refF32[i]);
    if (!same && mismatches++ < 5)
      ADD_FAILURE() << "element (" << i / c.n << ", " << i % c.n
                    << "): kernel "
                    << (spec.output == DType::BF16
                            ? num::bf16ToFloat(outBf16[i])
                            : outF32[i])
                    << " reference "
                    << (spec.output == DType::BF16
                            ? num::bf16ToFloat(refBf16[i])
                            : refF32[i]);
  }
  EXPECT_EQ(mismatches, 0);
}

/// Sizes around the tile (6 x 16, K in pairs) plus 1 and primes.
std::vector<std::array<int64_t, 3>> shapes(std::mt19937 &rng, int count) {
  std::vector<std::array<int64_t, 3>> result = {
      {1, 1, 1}, {6, 16, 2}, {7, 17, 3}, {13, 31, 29}, {5, 15, 1}};
  std::uniform_int_distribution<int64_t> dim(1, 70);
  for (int i = 0; i < count; ++i)
    result.push_back({dim(rng), dim(rng), dim(rng)});
  return result;
}

void checkSpec(lq::GemmSpec spec, uint32_t seed, int extraShapes = 3) {
  std::mt19937 rng(seed);
  for (auto [m, n, k] : shapes(rng, extraShapes))
    checkCase({spec, m, n, k}, rng);
}

TEST(RuntimeCpu, ForwardMatchesNumerics) {
  checkSpec(lq::GemmSpec::forward(), 1);
}

TEST(RuntimeCpu, ForwardUnsignedBiasReluBf16Input) {
  lq::GemmSpec spec = lq::GemmSpec::forward(DType::BF16, true);
  spec.bias = true;
  spec.relu = true;
  checkSpec(spec, 2);
}

TEST(RuntimeCpu, ForwardBf16Output) {
  lq::GemmSpec spec = lq::GemmSpec::forward();
  spec.bias = true;
  spec.output = DType::BF16;
  checkSpec(spec, 3);
}

TEST(RuntimeCpu, BackwardDataMatchesNumerics) {
  checkSpec(lq::GemmSpec::backwardData(), 4);
}

TEST(RuntimeCpu, BackwardDataSmp2Bf16) {
  checkSpec(lq::GemmSpec::backwardData(DType::BF16, 2), 5);
}

TEST(RuntimeCpu, WeightGradMatchesNumerics) {
  checkSpec(lq::GemmSpec::weightGrad(), 6);
}

TEST(RuntimeCpu, WeightGradSmp4Unsigned) {
  checkSpec(lq::GemmSpec::weightGrad(DType::F32, 4, true), 7);
}

// With a long K only a few row blocks fit the cache budget of a panel
// group: the GEMM then walks several groups, across threads.
TEST(RuntimeCpu, LongReductionUsesSeveralPanelGroups) {
  std::mt19937 rng(12);
  checkCase({lq::GemmSpec::backwardData(), 61, 35, 4001}, rng);
  checkCase({lq::GemmSpec::weightGrad(DType::F32, 2), 55, 19, 3003}, rng);
}

TEST(RuntimeCpu, BackwardDataHindsightCountsOverflow) {
  lq::GemmSpec spec = lq::GemmSpec::backwardData();
  spec.hindsight = true;
  checkSpec(spec, 8);
}

/// Both backward GEMMs of a layer quantize dy on the fly; with the same
/// seed and stream they must see the same LUQ sample: dW computed from the
/// codes that dx used equals the weight-gradient kernel's output.
TEST(RuntimeCpu, BackwardGemmsShareTheSample) {
  std::mt19937 rng(9);
  const int64_t batch = 23, in = 37, out = 19;
  Matrix dy(batch, out, rng, false), x(batch, in, rng, false);
  auto wg = lq::Runtime::get().compile(lq::GemmSpec::weightGrad());
  ASSERT_TRUE(wg.ok()) << wg.error();
  std::vector<float> dw(out * in);
  lq::LaunchArgs args;
  args.lhs = dy.ref(DType::F32);
  args.rhs = x.ref(DType::F32);
  args.out = lq::TensorRef::f32(dw.data(), out, in);
  args.seed = 77;
  args.stream = 5;
  auto st = wg->launch(args);
  ASSERT_TRUE(st.ok()) << st.error();

  // The LUQ codes of dy as the backward-data kernel would draw them.
  std::vector<int8_t> codes(batch * out);
  num::LuqResult luq =
      num::luqEncode(dy.view(DType::F32), {77, 5, 0}, codes.data());
  std::vector<int8_t> xCodes(batch * in);
  num::SawbResult sawb = num::sawbEncode(x.view(DType::F32), st->rhsRange,
                                         num::SawbKind::Signed, xCodes.data());
  std::vector<float> ref(out * in);
  num::quantizedGemm({size_t(out), size_t(in), size_t(batch)},
                     {codes.data(), num::Format::Log4, luq.alpha, true},
                     {xCodes.data(), num::Format::Int4Signed, sawb.step, false},
                     {}, {ref.data(), nullptr, nullptr});
  for (size_t i = 0; i < ref.size(); ++i)
    ASSERT_EQ(num::floatToBits(dw[i]), num::floatToBits(ref[i])) << i;
}

TEST(RuntimeCpu, PackedOperandsMatchFloatPath) {
  // Quantize with the standalone kernel, then multiply the packed codes:
  // the same bits as the fused kernel.
  std::mt19937 rng(10);
  const int64_t m = 11, n = 21, k = 9;
  Matrix dy(m, k, rng, false), w(k, n, rng, false);
  std::vector<uint8_t> dyPacked(m * ((k + 1) / 2)), wPacked(k * ((n + 1) / 2));
  lq::QuantizeArgs qa;
  qa.input = dy.ref(DType::F32);
  qa.output = lq::TensorRef::packed4(dyPacked.data(), m, k);
  qa.format = Format::Log4;
  qa.seed = 3;
  qa.stream = 4;
  auto qdy = lq::Runtime::get().quantize(qa);
  ASSERT_TRUE(qdy.ok()) << qdy.error();
  qa.input = w.ref(DType::F32);
  qa.output = lq::TensorRef::packed4(wPacked.data(), k, n);
  qa.format = Format::SInt4;
  auto qw = lq::Runtime::get().quantize(qa);
  ASSERT_TRUE(qw.ok()) << qw.error();

  // The packed bytes are the numerics core's.
  std::vector<int8_t> codes(m * k);
  num::luqEncode(dy.view(DType::F32), {3, 4, 0}, codes.data());
  std::vector<uint8_t> expected(dyPacked.size());
  num::packCodes(num::Format::Log4, codes.data(), m, k, expected.data());
  EXPECT_EQ(dyPacked, expected);

  lq::GemmSpec packedSpec = lq::GemmSpec::backwardData(DType::Packed4);
  auto packed = lq::Runtime::get().compile(packedSpec);
  ASSERT_TRUE(packed.ok()) << packed.error();
  std::vector<float> fromPacked(m * n), fused(m * n);
  lq::LaunchArgs args;
  args.lhs = lq::TensorRef::packed4(dyPacked.data(), m, k);
  args.rhs = lq::TensorRef::packed4(wPacked.data(), k, n);
  args.out = lq::TensorRef::f32(fromPacked.data(), m, n);
  args.lhsScale = qdy->scale;
  args.rhsScale = qw->scale;
  ASSERT_TRUE(packed->launch(args).ok());

  auto fusedKernel = lq::Runtime::get().compile(lq::GemmSpec::backwardData());
  ASSERT_TRUE(fusedKernel.ok());
  args.lhs = dy.ref(DType::F32);
  args.rhs = w.ref(DType::F32);
  args.out = lq::TensorRef::f32(fused.data(), m, n);
  args.seed = 3;
  args.stream = 4;
  ASSERT_TRUE(fusedKernel->launch(args).ok());
  for (size_t i = 0; i < fused.size(); ++i)
    ASSERT_EQ(num::floatToBits(fromPacked[i]), num::floatToBits(fused[i])) << i;
}

/// Random valid codes of `format` for `count` elements, packed per stored
/// row of `cols` codes.
std::vector<uint8_t> randomPacked(num::Format format, size_t rows, size_t cols,
                                  std::mt19937 &rng) {
  std::uniform_int_distribution<int> code(
      format == num::Format::Int4Signed ? -8 : 0,
      format == num::Format::Int4Signed ? 7 : 15);
  std::vector<int8_t> codes(rows * cols);
  for (int8_t &c : codes)
    c = int8_t(code(rng));
  std::vector<uint8_t> bytes(rows * num::packedRowBytes(cols));
  EXPECT_EQ(num::packCodes(format, codes.data(), rows, cols, bytes.data()),
            num::Status::Ok);
  return bytes;
}

TEST(RuntimeCpu, PackedOperandsMatchNumericsCore) {
  // Packed codes as callers hand them in (every valid code, SMP samples
  // stacked along the stored rows, transposed operands), multiplied by the
  // kernel and by the numerics core: the same bits.
  std::mt19937 rng(21);
  std::vector<lq::GemmSpec> specs = {
      lq::GemmSpec::forward(DType::Packed4),
      lq::GemmSpec::forward(DType::Packed4, /*unsignedInput=*/true),
      lq::GemmSpec::backwardData(DType::Packed4),
      lq::GemmSpec::backwardData(DType::Packed4, 2),
      lq::GemmSpec::backwardData(DType::Packed4, 4),
      lq::GemmSpec::weightGrad(DType::Packed4),
      lq::GemmSpec::weightGrad(DType::Packed4, 4, /*unsignedInput=*/true)};
  std::uniform_real_distribution<float> scale(1e-3f, 2.0f);
  for (const lq::GemmSpec &spec : specs) {
    auto kernel = lq::Runtime::get().compile(spec);
    ASSERT_TRUE(kernel.ok()) << spec.describe() << ": " << kernel.error();
    for (auto [m, n, k] : shapes(rng, 3)) {
      SCOPED_TRACE(spec.describe() + " " + std::to_string(m) + "x" +
                   std::to_string(n) + "x" + std::to_string(k));
      int64_t lhsRows = spec.lhs.transposed ? k : m;
      int64_t lhsCols = spec.lhs.transposed ? m : k;
      int64_t rhsRows = spec.rhs.transposed ? n : k;
      int64_t rhsCols = spec.rhs.transposed ? k : n;
      num::Format lhsFormat = numericsFormat(spec.lhs.format);
      num::Format rhsFormat = numericsFormat(spec.rhs.format);
      std::vector<uint8_t> lhs =
          randomPacked(lhsFormat, spec.samples * lhsRows, lhsCols, rng);
      std::vector<uint8_t> rhs = randomPacked(rhsFormat, rhsRows, rhsCols, rng);
      std::vector<float> bias(n);
      for (float &b : bias)
        b = scale(rng) - 1.0f;
      lq::LaunchArgs args;
      args.lhs =
          lq::TensorRef::packed4(lhs.data(), spec.samples * lhsRows, lhsCols);
      args.rhs = lq::TensorRef::packed4(rhs.data(), rhsRows, rhsCols);
      args.lhsScale = scale(rng);
      args.rhsScale = scale(rng);
      std::vector<float> out(m * n, -1.0f), ref(m * n, -2.0f);
      args.out = lq::TensorRef::f32(out.data(), m, n);
      if (spec.bias) {
        args.bias = bias.data();
        args.biasLength = n;
      }
      auto status = kernel->launch(args);
      ASSERT_TRUE(status.ok()) << status.error();
      num::GemmOptions options;
      options.lhsSamples = spec.samples;
      options.bias = spec.bias ? bias.data() : nullptr;
      options.relu = spec.relu;
      num::GemmResult r = num::quantizedGemmPacked(
          {size_t(m), size_t(n), size_t(k)},
          {lhs.data(), lhsFormat, args.lhsScale, spec.lhs.transposed},
          {rhs.data(), rhsFormat, args.rhsScale, spec.rhs.transposed},
          options, {ref.data(), nullptr, nullptr});
      ASSERT_EQ(r.status, num::Status::Ok);
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_EQ(num::floatToBits(out[i]), num::floatToBits(ref[i]))
            << "element " << i << ": kernel " << out[i] << " core " << ref[i];
    }
  }
}

TEST(RuntimeCpu, NonFiniteGradientIsReportedAndZeroed) {
  std::mt19937 rng(11);
  Matrix dy(8, 8, rng, false), w(8, 8, rng, false);
  dy.f32[13] = std::nanf("");
  auto kernel = lq::Runtime::get().compile(lq::GemmSpec::backwardData());
  ASSERT_TRUE(kernel.ok());
  std::vector<float> out(64, 1.0f);
  lq::LaunchArgs args;
  args.lhs = dy.ref(DType::F32);
  args.rhs = w.ref(DType::F32);
  args.out = lq::TensorRef::f32(out.data(), 8, 8);
  auto st = kernel->launch(args);
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st->nonfinite);
  EXPECT_EQ(st->lhsScale, 0.0f);
  for (float v : out)
    EXPECT_EQ(num::floatToBits(v), 0u);
}

TEST(RuntimeCpu, EmptyAndDegenerateShapes) {
  auto kernel = lq::Runtime::get().compile(lq::GemmSpec::forward());
  ASSERT_TRUE(kernel.ok());
  std::vector<float> x(4, 1.0f), w(4, 1.0f), out(4, 7.0f);
  lq::LaunchArgs args;
  // K = 0: the product is empty, the output is the epilogue of 0.
  args.lhs = lq::TensorRef::f32(x.data(), 2, 0);
  args.rhs = lq::TensorRef::f32(w.data(), 2, 0);
  args.out = lq::TensorRef::f32(out.data(), 2, 2);
  auto st = kernel->launch(args);
  ASSERT_TRUE(st.ok()) << st.error();
  for (float v : out)
    EXPECT_EQ(v, 0.0f);
  // M = 0: nothing to write.
  args.lhs = lq::TensorRef::f32(x.data(), 0, 2);
  args.rhs = lq::TensorRef::f32(w.data(), 2, 2);
  args.out = lq::TensorRef::f32(out.data(), 0, 2);
  EXPECT_TRUE(kernel->launch(args).ok());
}

} // namespace

namespace {

TEST(RuntimeProgram, SpecFromBackwardDataProgram) {
  const char *program = R"mlir(
    func.func @dx(%dy: tensor<?x512xbf16>, %w: tensor<512x784xf32>, %seed: i64) -> tensor<?x784xf32> {
      %m, %bad = lq.max_abs %dy : tensor<?x512xbf16>
      %g0, %a, %nf, %ov = lq.quantize %dy range %m seed %seed : tensor<?x512xbf16> -> !lq.qtensor<?x512x!lq.log4>
      %g1, %a1, %nf1, %ov1 = lq.quantize %dy range %m seed %seed {sample = 1} : tensor<?x512xbf16> -> !lq.qtensor<?x512x!lq.log4>
      %c = lq.sawb_clip %w : tensor<512x784xf32>
      %qw, %sw, %nf2, %ov2 = lq.quantize %w range %c : tensor<512x784xf32> -> !lq.qtensor<512x784x!lq.sint4>
      %dx = lq.matmul (%g0, %g1) scale %a, %qw scale %sw {role = #lq.role<backward_data>}
          : (!lq.qtensor<?x512x!lq.log4>, !lq.qtensor<?x512x!lq.log4>), !lq.qtensor<512x784x!lq.sint4> -> tensor<?x784xf32>
      return %dx : tensor<?x784xf32>
    })mlir";
  auto spec = lq::GemmSpec::fromProgram(program);
  ASSERT_TRUE(spec.ok()) << spec.error();
  lq::GemmSpec expected = lq::GemmSpec::backwardData(DType::BF16, 2);
  expected.rhs.dtype = DType::F32;
  EXPECT_EQ(spec->describe(), expected.describe());
  auto kernel = lq::Runtime::get().compileProgram(program);
  EXPECT_TRUE(kernel.ok()) << kernel.error();
}

TEST(RuntimeProgram, LinearLayerExpandsToTheForwardGemm) {
  const char *program = R"mlir(
    func.func @y(%x: tensor<8x16xf32>, %w: tensor<4x16xf32>, %b: tensor<4xf32>) -> tensor<8x4xf32> {
      %y = lq.linear %x, %w bias %b {unsigned_input} : tensor<8x16xf32>, tensor<4x16xf32>, tensor<4xf32> -> tensor<8x4xf32>
      return %y : tensor<8x4xf32>
    })mlir";
  auto spec = lq::GemmSpec::fromProgram(program);
  ASSERT_TRUE(spec.ok()) << spec.error();
  lq::GemmSpec expected = lq::GemmSpec::forward(DType::F32, true);
  expected.bias = true;
  EXPECT_EQ(spec->describe(), expected.describe());
}

TEST(RuntimeProgram, BadProgramsAreErrors) {
  auto syntax = lq::GemmSpec::fromProgram("func.func @f( {");
  ASSERT_FALSE(syntax.ok());
  EXPECT_NE(syntax.error().find("invalid lq program"), std::string::npos);
  EXPECT_NE(syntax.error().find("program:1:"), std::string::npos)
      << syntax.error();

  auto none = lq::GemmSpec::fromProgram("func.func @f() { return }");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().find("exactly one lq.matmul"), std::string::npos);

  auto invalid = lq::GemmSpec::fromProgram(R"mlir(
    func.func @f(%x: tensor<4x8xf32>, %m: f32) {
      %q, %a, %nf, %ov = lq.quantize %x range %m : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.log4>
      return
    })mlir");
  ASSERT_FALSE(invalid.ok());
  EXPECT_NE(invalid.error().find("needs a seed"), std::string::npos)
      << invalid.error();
}

} // namespace

namespace {

TEST(RuntimeDump, EveryStageIsWrittenToTheDumpDirectory) {
  llvm::SmallString<128> dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("lq-dump-test", dir));
  setenv("LQ_DUMP_DIR", dir.c_str(), 1);
  lq::Runtime::get().clearMemoryCache();
  auto kernel = lq::Runtime::get().compile(lq::GemmSpec::forward());
  unsetenv("LQ_DUMP_DIR");
  ASSERT_TRUE(kernel.ok()) << kernel.error();
  std::vector<std::string> stages;
  std::error_code ec;
  for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec;
       it.increment(ec))
    stages.push_back(llvm::sys::path::filename(it->path()).str());
  std::sort(stages.begin(), stages.end());
  ASSERT_EQ(stages.size(), 4u);
  EXPECT_NE(stages[0].find(".1-kernels.mlir"), std::string::npos);
  EXPECT_NE(stages[1].find(".2-llvm-dialect.mlir"), std::string::npos);
  EXPECT_NE(stages[2].find(".3-optimized.ll"), std::string::npos);
  EXPECT_NE(stages[3].find(".4-host.s"), std::string::npos);
  llvm::sys::fs::remove_directories(dir);
}

} // namespace

namespace {

TEST(RuntimeStatistics, ClipFromTheMomentsIsExactInKernelOrder) {
  // Normal data, where the clip is 12.1 sqrt(E[x^2]) - 12.2 E[|x|] rather
  // than the max |x| fallback that heavy tails take: the f64 sums decide
  // its bits.
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{33, 47}, {100, 8},
                            {70, 129}, {3, 1001}}) {
    std::vector<float> x(rows * cols);
    for (float &v : x)
      v = normal(rng);
    auto stats =
        lq::Runtime::get().statistics(lq::TensorRef::f32(x.data(), rows, cols));
    ASSERT_TRUE(stats.ok()) << stats.error();
    num::MatrixView view = num::MatrixView::f32(x.data(), rows, cols);
    EXPECT_LT(stats->sawbClip, stats->maxAbs);
    EXPECT_EQ(num::floatToBits(stats->sawbClip),
              num::floatToBits(clipInKernelOrder(view)));
  }
}

TEST(RuntimeStatistics, MaxAndClipOfAFloatTensor) {
  std::mt19937 rng(13);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {37, 53},
                            {100, 8}, {3, 1001}}) {
    Matrix x(rows, cols, rng, false);
    for (DType dtype : {DType::F32, DType::BF16}) {
      auto stats = lq::Runtime::get().statistics(x.ref(dtype));
      ASSERT_TRUE(stats.ok()) << stats.error();
      num::MaxAbsResult max = num::maxAbs(x.view(dtype));
      num::SawbClipResult clip = num::sawbClip(x.view(dtype));
      EXPECT_EQ(num::floatToBits(stats->maxAbs), num::floatToBits(max.maxAbs));
      EXPECT_EQ(num::floatToBits(stats->sawbClip),
                num::floatToBits(clipInKernelOrder(x.view(dtype))));
      // The core sums row-major: another order, so only close to it (the
      // contract lets the sums differ in the last bits).
      EXPECT_NEAR(stats->sawbClip, clip.clip, 1e-5f * clip.clip);
      EXPECT_FALSE(stats->nonfinite);
    }
    x.f32[rows * cols / 2] = -std::numeric_limits<float>::infinity();
    auto bad = lq::Runtime::get().statistics(x.ref(DType::F32));
    ASSERT_TRUE(bad.ok());
    EXPECT_TRUE(bad->nonfinite);
    EXPECT_TRUE(std::isnan(bad->sawbClip));
  }
  auto packed = lq::Runtime::get().statistics(lq::TensorRef::packed4(
      static_cast<const uint8_t *>(nullptr), 0, 0));
  EXPECT_FALSE(packed.ok());
}

} // namespace

//===----------------------------------------------------------------------===//
// Launches on several threads
//===----------------------------------------------------------------------===//

namespace {

// A launch with enough work runs its phases (statistics, quantization,
// packing, the product) on the worker team, a small one on the calling
// thread alone: both give the numerics core's bits.
TEST(RuntimeLaunch, LargeLaunchesMatchNumerics) {
  std::mt19937 rng(31);
  lq::GemmSpec forward = lq::GemmSpec::forward(DType::BF16, true);
  forward.bias = true;
  forward.relu = true;
  lq::GemmSpec hindsight = lq::GemmSpec::backwardData(DType::F32, 2);
  hindsight.hindsight = true;
  for (const lq::GemmSpec &spec :
       {forward, lq::GemmSpec::backwardData(), hindsight,
        lq::GemmSpec::weightGrad(DType::F32, 4, true)})
    checkCase({spec, 150, 90, 260}, rng);
}

// In-hindsight scaling finds a non-finite element only while quantizing:
// the codes already written on every thread are voided.
TEST(RuntimeLaunch, LargeHindsightLaunchZeroesNonFiniteCodes) {
  std::mt19937 rng(32);
  const int64_t m = 200, n = 120, k = 300;
  Matrix dy(m, k, rng, false), w(k, n, rng, false);
  dy.f32[m * k - 5] = std::numeric_limits<float>::infinity();
  lq::GemmSpec spec = lq::GemmSpec::backwardData();
  spec.hindsight = true;
  auto kernel = lq::Runtime::get().compile(spec);
  ASSERT_TRUE(kernel.ok()) << kernel.error();
  std::vector<float> out(m * n, 1.0f);
  lq::LaunchArgs args;
  args.lhs = dy.ref(DType::F32);
  args.rhs = w.ref(DType::F32);
  args.out = lq::TensorRef::f32(out.data(), m, n);
  args.maxEstimate = 1.0f;
  auto st = kernel->launch(args);
  ASSERT_TRUE(st.ok()) << st.error();
  EXPECT_TRUE(st->nonfinite);
  EXPECT_EQ(st->lhsScale, 0.0f);
  EXPECT_EQ(st->overflow, 0u);
  for (float v : out)
    ASSERT_EQ(num::floatToBits(v), 0u);
}

/// A call of the runtime on fixed inputs that returns every bit it
/// produced (output and status) as words.
using Job = std::function<std::vector<uint32_t>()>;

std::vector<uint32_t> statusWords(const lq::LaunchStatus &s) {
  return {uint32_t(s.nonfinite), uint32_t(s.overflow),
          num::floatToBits(s.lhsMax), num::floatToBits(s.lhsScale),
          num::floatToBits(s.rhsScale), num::floatToBits(s.lhsRange),
          num::floatToBits(s.rhsRange)};
}

/// A GEMM launch of `spec` on m x n x k: its output's bits, then its
/// status's.
Job gemmJob(const lq::GemmSpec &spec, int64_t m, int64_t n, int64_t k,
            std::mt19937 &rng) {
  auto kernel = lq::Runtime::get().compile(spec);
  EXPECT_TRUE(kernel.ok()) << kernel.error();
  auto a = std::make_shared<Matrix>(spec.lhs.transposed ? k : m,
                                    spec.lhs.transposed ? m : k, rng, false);
  auto b = std::make_shared<Matrix>(spec.rhs.transposed ? n : k,
                                    spec.rhs.transposed ? k : n, rng, false);
  lq::LaunchArgs args;
  args.lhs = a->ref(spec.lhs.dtype);
  args.rhs = b->ref(spec.rhs.dtype);
  args.seed = rng();
  args.stream = rng() % 100;
  args.maxEstimate = spec.hindsight ? 2.0f : 0.0f;
  lq::Kernel k0 = *kernel;
  return [k0, a, b, args, m, n] {
    std::vector<float> out(m * n, -1.0f);
    lq::LaunchArgs call = args;
    call.out = lq::TensorRef::f32(out.data(), m, n);
    auto status = k0.launch(call);
    EXPECT_TRUE(status.ok()) << status.error();
    std::vector<uint32_t> words(out.size());
    for (size_t i = 0; i < out.size(); ++i)
      words[i] = num::floatToBits(out[i]);
    if (status.ok())
      for (uint32_t w : statusWords(*status))
        words.push_back(w);
    return words;
  };
}

/// Runtime::quantize of a rows x cols tensor to LUQ codes: the packed
/// bytes, then the scale and overflow.
Job quantizeJob(int64_t rows, int64_t cols, std::mt19937 &rng) {
  auto x = std::make_shared<Matrix>(rows, cols, rng, false);
  uint64_t seed = rng();
  return [x, rows, cols, seed] {
    std::vector<uint8_t> bytes(rows * ((cols + 1) / 2), 0xEE);
    lq::QuantizeArgs q;
    q.input = x->ref(DType::F32);
    q.output = lq::TensorRef::packed4(bytes.data(), rows, cols);
    q.format = Format::Log4;
    q.seed = seed;
    auto status = lq::Runtime::get().quantize(q);
    EXPECT_TRUE(status.ok()) << status.error();
    std::vector<uint32_t> words(bytes.begin(), bytes.end());
    if (status.ok()) {
      words.push_back(num::floatToBits(status->scale));
      words.push_back(uint32_t(status->overflow));
    }
    return words;
  };
}

Job statisticsJob(int64_t rows, int64_t cols, std::mt19937 &rng) {
  auto x = std::make_shared<Matrix>(rows, cols, rng, false);
  return [x] {
    auto stats = lq::Runtime::get().statistics(x->ref(DType::BF16));
    EXPECT_TRUE(stats.ok()) << stats.error();
    if (!stats.ok())
      return std::vector<uint32_t>();
    return std::vector<uint32_t>{num::floatToBits(stats->maxAbs),
                                 num::floatToBits(stats->sawbClip)};
  };
}

/// Small launches (on the calling thread), large ones (on the worker
/// team), quantization and statistics, as several threads mix them.
std::vector<Job> mixedJobs() {
  std::mt19937 rng(41);
  lq::GemmSpec hindsight = lq::GemmSpec::backwardData();
  hindsight.hindsight = true;
  return {gemmJob(lq::GemmSpec::forward(), 16, 16, 16, rng),
          gemmJob(lq::GemmSpec::backwardData(DType::BF16, 2), 40, 24, 56, rng),
          gemmJob(lq::GemmSpec::forward(), 160, 200, 300, rng),
          gemmJob(hindsight, 180, 150, 260, rng),
          gemmJob(lq::GemmSpec::weightGrad(DType::F32, 2, true), 96, 130,
                  210, rng),
          quantizeJob(300, 257, rng),
          statisticsJob(400, 300, rng)};
}

// Concurrent launches borrow separate workspaces, and those large enough
// for the worker team take it in turn: every result is the one the same
// call gives alone, bit for bit.
TEST(RuntimeLaunch, ConcurrentLaunchesAreBitExact) {
  std::vector<Job> jobs = mixedJobs();
  std::vector<std::vector<uint32_t>> expected;
  for (Job &job : jobs)
    expected.push_back(job());
  const int threads = 4, rounds = 12;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::mt19937 order(t);
      std::vector<size_t> indices(jobs.size());
      for (size_t i = 0; i < indices.size(); ++i)
        indices[i] = i;
      for (int r = 0; r < rounds; ++r) {
        std::shuffle(indices.begin(), indices.end(), order);
        for (size_t i : indices)
          if (jobs[i]() != expected[i])
            ++mismatches;
      }
    });
  for (std::thread &t : pool)
    t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

/// Runtime::quantize of x (f32) with LUQ under (seed, stream, sample):
/// the numerics core's packed codes and scale, bit for bit.
void expectLuqQuantizeMatchesNumerics(const Matrix &x, uint64_t seed,
                                      uint32_t stream, uint32_t sample) {
  int64_t rows = x.rows, cols = x.cols;
  std::vector<uint8_t> bytes(rows * ((cols + 1) / 2));
  lq::QuantizeArgs q;
  q.input = x.ref(DType::F32);
  q.output = lq::TensorRef::packed4(bytes.data(), rows, cols);
  q.format = Format::Log4;
  q.seed = seed;
  q.stream = stream;
  q.sample = sample;
  auto status = lq::Runtime::get().quantize(q);
  ASSERT_TRUE(status.ok()) << status.error();
  std::vector<int8_t> codes(rows * cols);
  num::LuqResult luq =
      num::luqEncode(x.view(DType::F32), {seed, stream, sample}, codes.data());
  std::vector<uint8_t> expected(bytes.size());
  num::packCodes(num::Format::Log4, codes.data(), rows, cols, expected.data());
  EXPECT_EQ(bytes, expected);
  EXPECT_EQ(num::floatToBits(status->scale), num::floatToBits(luq.alpha));
}

// A large quantization runs on the worker team: the numerics core's
// packed codes.
TEST(RuntimeLaunch, LargeQuantizeMatchesNumerics) {
  std::mt19937 rng(43);
  Matrix x(300, 257, rng, false);
  expectLuqQuantizeMatchesNumerics(x, 5, 6, 0);
}

// The vectorized Philox keeps words in 64-bit lanes: a seed with both key
// words set, a stream and a sample with the top bit set, and rows that
// start off a block boundary must still give the numerics core's bits.
TEST(RuntimeLaunch, QuantizeWideKeyMatchesNumerics) {
  std::mt19937 rng(45);
  Matrix x(37, 1001, rng, false);
  expectLuqQuantizeMatchesNumerics(x, 0xF3C9A1E5D7B20486ull, 0x80000003u,
                                   0xC0000001u);
}

// Magnitudes at the LUQ code's edges: zeros of both signs, exact levels and
// their neighbours in f32, values just off the top level, subnormals and
// scaled values below the uniform's 2^-24 grid, each with both signs; with
// an estimate below max |x| some also saturate and count as overflow. The
// row length puts rows off the Philox block boundary and leaves tails.
TEST(RuntimeLaunch, QuantizeEdgeValuesMatchNumerics) {
  std::mt19937 rng(46);
  const int64_t rows = 61, cols = 203;
  const float m = 3.0f;
  std::vector<float> edges = {0.0f, -0.0f, m, std::nextafter(m, 0.0f),
                              std::numeric_limits<float>::denorm_min(),
                              std::numeric_limits<float>::min()};
  for (int k = -40; k <= 0; ++k) {
    float level = std::ldexp(m, k);
    edges.push_back(level);
    edges.push_back(std::nextafter(level, 0.0f));
    edges.push_back(std::nextafter(level, m));
    edges.push_back(1.5f * level);
  }
  std::uniform_int_distribution<size_t> pick(0, edges.size() - 1);
  std::bernoulli_distribution negative(0.5);
  std::vector<float> x(rows * cols);
  for (float &v : x)
    v = negative(rng) ? -edges[pick(rng)] : edges[pick(rng)];
  x[17] = m;
  auto view = num::MatrixView::f32(x.data(), rows, cols);
  for (std::optional<float> estimate : {std::optional<float>(),
                                        std::optional<float>(m / 5.0f)}) {
    std::vector<uint8_t> bytes(rows * ((cols + 1) / 2));
    lq::QuantizeArgs q;
    q.input = lq::TensorRef::f32(x.data(), rows, cols);
    q.output = lq::TensorRef::packed4(bytes.data(), rows, cols);
    q.format = Format::Log4;
    q.seed = 0x9E3779B97F4A7C15ull;
    q.stream = 3;
    q.maxEstimate = estimate;
    auto status = lq::Runtime::get().quantize(q);
    ASSERT_TRUE(status.ok()) << status.error();
    std::vector<int8_t> codes(rows * cols);
    num::RandomKey key{q.seed, q.stream, 0};
    num::LuqResult luq =
        estimate ? num::luqEncodeHindsight(view, *estimate, key, codes.data())
                 : num::luqEncode(view, key, codes.data());
    std::vector<uint8_t> expected(bytes.size());
    num::packCodes(num::Format::Log4, codes.data(), rows, cols,
                   expected.data());
    EXPECT_EQ(bytes, expected);
    EXPECT_EQ(num::floatToBits(status->scale), num::floatToBits(luq.alpha));
    EXPECT_EQ(status->overflow, luq.overflowCount);
    EXPECT_EQ(estimate.has_value(), luq.overflowCount > 0);
  }
}

// A child forked while the worker team's threads exist in the parent has
// none of them: its large launches run on the calling thread alone, with
// the same bits.
TEST(RuntimeLaunch, ForkedChildLaunchesAlone) {
  std::mt19937 rng(44);
  Job job = gemmJob(lq::GemmSpec::forward(), 160, 200, 300, rng);
  std::vector<uint32_t> expected = job();
  EXPECT_EXIT(std::_Exit(job() == expected ? 0 : 1),
              ::testing::ExitedWithCode(0), "");
}

} // namespace
