//===- RuntimeCpuDotProductTest.cpp - every CPU dot product, bit for bit --===//
//
// The host GEMM micro-kernel multiplies 8-bit values with the dot product
// of the CPU it is compiled for: vpdpbusd (AVX-512 VNNI or AVX-VNNI), else
// vpmaddubsw widened by vpmaddwd (AVX2), with one operand offset into the
// unsigned range and corrected exactly. Each path this machine can run is
// forced through Runtime::compileForCpu and checked bit for bit against
// the numerics core where its exactness is at stake: every product at the
// contract's largest magnitude with one sign, K at the contract's bound
// (with and without SMP), the offset's correction on either operand, odd
// K, edge tiles, transposed operands, packed and float inputs.
//
//===----------------------------------------------------------------------===//

#include "lq/Numerics/Numerics.h"
#include "lq/Runtime/Runtime.h"

#include "KernelCacheEnvironment.h"
#include "NumericsFormats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace num = lq::numerics;
using lq::DType;
using lq::Format;
using lq::GemmSpec;

namespace {

const auto *cacheEnvironment =
    ::testing::AddGlobalTestEnvironment(new KernelCacheEnvironment);

/// A dot product and a CPU (HostJit's names) whose features choose it.
struct Path {
  const char *dot;
  const char *cpu;
};

void PrintTo(const Path &path, std::ostream *os) {
  *os << path.dot << " (CPU " << path.cpu << ")";
}

const Path kPaths[] = {
    {"avx2-vpmaddubsw", "x86-64-v3"},
    {"avx-vnni", "x86-64-v3,+avxvnni"},
    {"avx512-vnni", "x86-64-v4,+avx512vnni"},
};

/// The largest K with K * samples * 15 * 64 < 2^31 (docs/numerics.md).
int64_t kBound(unsigned samples) {
  return ((int64_t(1) << 31) - 1) / (int64_t(samples) * lq::kMaxCodeProduct);
}

/// Logical codes of an operand: code(row, col) of the logical matrix, for
/// each SMP sample.
using CodeFn = std::function<int8_t(unsigned sample, int64_t row,
                                    int64_t col)>;

/// An operand's codes in its stored form (transposed or not, samples
/// stacked along the stored rows), packed two per byte.
struct PackedOperand {
  std::vector<uint8_t> bytes;
  int64_t rows = 0, cols = 0;
};

PackedOperand packOperand(const lq::OperandSpec &op, unsigned samples,
                          int64_t rows, int64_t cols, const CodeFn &code) {
  int64_t storedRows = op.transposed ? cols : rows;
  int64_t storedCols = op.transposed ? rows : cols;
  std::vector<int8_t> codes(size_t(samples * storedRows * storedCols));
  for (unsigned s = 0; s < samples; ++s)
    for (int64_t r = 0; r < storedRows; ++r)
      for (int64_t c = 0; c < storedCols; ++c)
        codes[(s * storedRows + r) * storedCols + c] =
            op.transposed ? code(s, c, r) : code(s, r, c);
  PackedOperand p;
  p.rows = samples * storedRows;
  p.cols = storedCols;
  p.bytes.resize(size_t(p.rows) * num::packedRowBytes(p.cols));
  EXPECT_EQ(num::packCodes(numericsFormat(op.format), codes.data(), p.rows,
                           p.cols, p.bytes.data()),
            num::Status::Ok);
  return p;
}

/// The log4 code of +-64 (sign bit 3, exponent 7).
int8_t log4Max(int sign) { return int8_t(sign < 0 ? 0xF : 0x7); }

/// The code of value `v` of an int4 format (two's complement nibble for
/// signed codes, as packCodes takes them).
int8_t int4Code(int v) { return int8_t(v); }

class CpuDotProductPath : public ::testing::TestWithParam<Path> {
protected:
  void SetUp() override {
    lq::Result<std::string> dot =
        lq::Runtime::get().cpuDotProduct(GetParam().cpu);
    if (!dot && dot.error().find("this machine lacks") != std::string::npos)
      GTEST_SKIP() << "this machine cannot run the " << GetParam().dot
                   << " path: " << dot.error();
    ASSERT_TRUE(dot.ok()) << dot.error();
    ASSERT_EQ(*dot, GetParam().dot) << "CPU " << GetParam().cpu;
  }

  lq::Result<lq::Kernel> compile(const GemmSpec &spec) {
    return lq::Runtime::get().compileForCpu(spec, GetParam().cpu);
  }

  /// Launches `spec` (packed operands) on codes `a` [M, K] and `b` [K, N]
  /// and compares every output bit with the numerics core's. Scales of 1
  /// make the output f32(acc): exact wherever |acc| < 2^24.
  void checkPacked(const GemmSpec &spec, int64_t m, int64_t n, int64_t k,
                   const CodeFn &a, const CodeFn &b);
};

void CpuDotProductPath::checkPacked(const GemmSpec &spec, int64_t m,
                                    int64_t n, int64_t k, const CodeFn &a,
                                    const CodeFn &b) {
  SCOPED_TRACE(spec.describe() + " M=" + std::to_string(m) + " N=" +
               std::to_string(n) + " K=" + std::to_string(k));
  auto kernel = compile(spec);
  ASSERT_TRUE(kernel.ok()) << kernel.error();
  PackedOperand lhs = packOperand(spec.lhs, spec.samples, m, k, a);
  PackedOperand rhs = packOperand(spec.rhs, 1, k, n, b);
  lq::LaunchArgs args;
  args.lhs = lq::TensorRef::packed4(lhs.bytes.data(), lhs.rows, lhs.cols);
  args.rhs = lq::TensorRef::packed4(rhs.bytes.data(), rhs.rows, rhs.cols);
  args.lhsScale = 1.0f;
  args.rhsScale = 1.0f;
  std::vector<float> out(size_t(m * n), -1.0f), ref(size_t(m * n), -2.0f);
  args.out = lq::TensorRef::f32(out.data(), m, n);
  auto status = kernel->launch(args);
  ASSERT_TRUE(status.ok()) << status.error();

  num::GemmOptions options;
  options.lhsSamples = spec.samples;
  num::GemmResult r = num::quantizedGemmPacked(
      {size_t(m), size_t(n), size_t(k)},
      {lhs.bytes.data(), numericsFormat(spec.lhs.format), 1.0f,
       spec.lhs.transposed},
      {rhs.bytes.data(), numericsFormat(spec.rhs.format), 1.0f,
       spec.rhs.transposed},
      options, {ref.data(), nullptr, nullptr});
  ASSERT_EQ(r.status, num::Status::Ok);
  int64_t mismatches = 0;
  for (int64_t i = 0; i < m * n; ++i)
    if (num::floatToBits(out[i]) != num::floatToBits(ref[i]) &&
        mismatches++ < 5)
      ADD_FAILURE() << "element (" << i / n << ", " << i % n << "): kernel "
                    << out[i] << " core " << ref[i];
  EXPECT_EQ(mismatches, 0);
}

/// Edge tiles on both sides: one row past a tile of 6, one column past a
/// tile of 16.
constexpr int64_t kEdgeRows = 7, kEdgeCols = 17;
/// One column past the AVX-512 path's tile of four column blocks.
constexpr int64_t kWideEdgeCols = 65;

/// Sign patterns over K: one sign everywhere (|acc| up to 2^31 - 128), or
/// the sign flipped at K / 2 on one operand, so that every block of the
/// micro-kernel's sums is at its bound while the exact result is 0 and the
/// output exact to the last unit.
enum class Flip { None, Lhs, Rhs };

int flipSign(Flip flip, Flip side, int64_t k, int64_t K) {
  return flip == side && k >= K / 2 ? -1 : 1;
}

// Backward data and weight gradient: log4 +-64 everywhere against SAWB
// +-7 (signed: the offset operand, its correction from A's row sums) or 15
// (unsigned: no offset), K at the contract's bound.
TEST_P(CpuDotProductPath, LuqAtMaxMagnitudeAndKBound) {
  const int64_t K = kBound(1);
  std::vector<GemmSpec> specs = {
      GemmSpec::backwardData(DType::Packed4),
      GemmSpec::weightGrad(DType::Packed4),
      GemmSpec::weightGrad(DType::Packed4, 1, /*unsignedInput=*/true)};
  for (const GemmSpec &spec : specs) {
    bool unsignedB = spec.rhs.format == Format::UInt4;
    for (Flip flip : {Flip::None, Flip::Lhs, Flip::Rhs}) {
      if (flip == Flip::Rhs && unsignedB)
        continue;
      SCOPED_TRACE("flip " + std::to_string(int(flip)));
      // Rows alternate in sign, columns too for signed B.
      CodeFn a = [&](unsigned, int64_t m, int64_t k) {
        return log4Max((m % 2 ? -1 : 1) * flipSign(flip, Flip::Lhs, k, K));
      };
      CodeFn b = [&](unsigned, int64_t k, int64_t n) {
        if (unsignedB)
          return int4Code(15);
        return int4Code((n % 2 ? -7 : 7) * flipSign(flip, Flip::Rhs, k, K));
      };
      checkPacked(spec, kEdgeRows, kEdgeCols, K, a, b);
    }
  }
}

// SMP: 4 samples of log4 +-64 at K = bound(4); the row correction sums
// over the samples. Flipping the sign between samples leaves 0.
TEST_P(CpuDotProductPath, SmpSamplesAtKBound) {
  const unsigned samples = 4;
  const int64_t K = kBound(samples);
  for (bool flipSamples : {false, true}) {
    SCOPED_TRACE(flipSamples ? "samples of both signs" : "one sign");
    CodeFn a = [&](unsigned s, int64_t m, int64_t) {
      return log4Max((m % 3 ? 1 : -1) * (flipSamples && s >= 2 ? -1 : 1));
    };
    CodeFn b = [&](unsigned, int64_t, int64_t n) {
      return int4Code(n % 4 == 3 ? -8 : (n % 2 ? -7 : 7));
    };
    checkPacked(GemmSpec::backwardData(DType::Packed4, samples), kEdgeRows,
                kEdgeCols, K, a, b);
    checkPacked(GemmSpec::weightGrad(DType::Packed4, samples), kEdgeRows,
                kEdgeCols, K, a, b);
  }
}

// The offset on the left operand: SAWB signed A against log4 B, the
// correction from B's column sums; and both SAWB (forward), signed and
// unsigned A, at K's bound.
TEST_P(CpuDotProductPath, OffsetLeftOperandAndSawbTimesSawb) {
  const int64_t K = kBound(1);
  GemmSpec sawbTimesLuq = GemmSpec::forward(DType::Packed4);
  sawbTimesLuq.rhs.format = Format::Log4;
  for (Flip flip : {Flip::None, Flip::Lhs, Flip::Rhs}) {
    SCOPED_TRACE("flip " + std::to_string(int(flip)));
    CodeFn a = [&](unsigned, int64_t m, int64_t k) {
      return int4Code((m % 2 ? -7 : 7) * flipSign(flip, Flip::Lhs, k, K));
    };
    CodeFn luqB = [&](unsigned, int64_t k, int64_t n) {
      return log4Max((n % 2 ? -1 : 1) * flipSign(flip, Flip::Rhs, k, K));
    };
    CodeFn sawbB = [&](unsigned, int64_t k, int64_t n) {
      return int4Code((n % 2 ? 7 : -7) * flipSign(flip, Flip::Rhs, k, K));
    };
    checkPacked(sawbTimesLuq, kEdgeRows, kEdgeCols, K, a, luqB);
    checkPacked(GemmSpec::forward(DType::Packed4), kEdgeRows, kEdgeCols, K, a,
                sawbB);
  }
  CodeFn fifteen = [](unsigned, int64_t, int64_t) { return int4Code(15); };
  CodeFn minusEight = [](unsigned, int64_t, int64_t) { return int4Code(-8); };
  checkPacked(GemmSpec::forward(DType::Packed4, /*unsignedInput=*/true),
              kEdgeRows, kEdgeCols, K, fifteen, minusEight);
}

// The AVX-512 path's tile of four column blocks at K's bound: with the
// correction from each of its blocks' B headers (SAWB times log4) and from
// A's row sums (backward data), next to a leftover block of one column.
TEST_P(CpuDotProductPath, WideTilesAtKBound) {
  const int64_t K = kBound(1);
  GemmSpec sawbTimesLuq = GemmSpec::forward(DType::Packed4);
  sawbTimesLuq.rhs.format = Format::Log4;
  // One sign along K: every sum at its bound, of a sign that varies over
  // the rows and from column block to column block.
  CodeFn sawbA = [](unsigned, int64_t m, int64_t) {
    return int4Code(m % 2 ? -7 : 7);
  };
  CodeFn sawbB = [](unsigned, int64_t, int64_t n) {
    return int4Code((n + n / 16) % 2 ? -7 : 7);
  };
  CodeFn luqA = [](unsigned, int64_t m, int64_t) {
    return log4Max(m % 3 ? 1 : -1);
  };
  CodeFn luqB = [](unsigned, int64_t, int64_t n) {
    return log4Max((n + n / 16) % 2 ? 1 : -1);
  };
  checkPacked(sawbTimesLuq, kEdgeRows, kWideEdgeCols, K, sawbA, luqB);
  checkPacked(GemmSpec::backwardData(DType::Packed4), kEdgeRows,
              kWideEdgeCols, K, luqA, sawbB);
}

/// Shapes around the tile (6 x 16, K in quads): odd K, K one past and one
/// short of a quad and of the AVX2 block of 16 quads; column counts around
/// the AVX-512 tile of four column blocks (64 columns) and its leftover
/// blocks; and random ones.
std::vector<std::array<int64_t, 3>> edgeShapes(std::mt19937 &rng) {
  std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1},    {6, 16, 4},   {7, 17, 5},   {5, 15, 3},
      {13, 33, 63}, {12, 32, 64}, {11, 31, 65}, {1, 47, 129},
      {6, 64, 4},   {7, 63, 9},   {7, 65, 5},   {13, 113, 63}};
  std::uniform_int_distribution<int64_t> dim(1, 70);
  for (int i = 0; i < 3; ++i)
    shapes.push_back({dim(rng), dim(rng), 2 * dim(rng) + 1});
  return shapes;
}

// Random valid codes (every code, -8 and log4's negative zero included) in
// every role, transposes as the roles have them and the other way round.
TEST_P(CpuDotProductPath, RandomCodesOddKEdgeTilesTransposes) {
  std::mt19937 rng(31);
  std::vector<GemmSpec> specs = {
      GemmSpec::forward(DType::Packed4),
      GemmSpec::forward(DType::Packed4, /*unsignedInput=*/true),
      GemmSpec::backwardData(DType::Packed4),
      GemmSpec::backwardData(DType::Packed4, 2),
      GemmSpec::weightGrad(DType::Packed4, 4, /*unsignedInput=*/true)};
  for (size_t i = 0, count = specs.size(); i < count; ++i) {
    GemmSpec flipped = specs[i];
    flipped.lhs.transposed = !flipped.lhs.transposed;
    flipped.rhs.transposed = !flipped.rhs.transposed;
    specs.push_back(flipped);
  }
  std::uniform_int_distribution<int> nibble(0, 15);
  for (const GemmSpec &spec : specs)
    for (auto [m, n, k] : edgeShapes(rng)) {
      // Codes drawn once per element, whatever order the packer asks in.
      auto draw = [&](const lq::OperandSpec &op, unsigned samples,
                      int64_t rows, int64_t cols) {
        std::vector<int8_t> codes(size_t(samples * rows * cols));
        for (int8_t &c : codes) {
          int v = nibble(rng);
          c = int8_t(op.format == Format::SInt4 ? v - 8 : v);
        }
        return codes;
      };
      std::vector<int8_t> aCodes = draw(spec.lhs, spec.samples, m, k);
      std::vector<int8_t> bCodes = draw(spec.rhs, 1, k, n);
      checkPacked(
          spec, m, n, k,
          [&](unsigned s, int64_t r, int64_t c) {
            return aCodes[(s * m + r) * k + c];
          },
          [&](unsigned, int64_t r, int64_t c) { return bCodes[r * n + c]; });
    }
}

/// A float operand with a heavy tail, like neural gradients, as the
/// kernel reads it (f32, or bf16 bits) and as the numerics core does (the
/// bf16 values widened exactly).
struct FloatInput {
  std::vector<float> values;
  std::vector<uint16_t> bf16;
  lq::TensorRef ref;

  FloatInput(DType dtype, int64_t rows, int64_t cols, std::mt19937 &rng,
             bool nonNegative)
      : values(static_cast<size_t>(rows * cols)), bf16(values.size()) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int> octave(-6, 3);
    for (size_t i = 0; i < values.size(); ++i) {
      float v = normal(rng) * std::ldexp(1.0f, octave(rng));
      bf16[i] = num::floatToBf16(nonNegative ? std::fabs(v) : v);
      values[i] = dtype == DType::BF16 ? num::bf16ToFloat(bf16[i])
                                       : (nonNegative ? std::fabs(v) : v);
    }
    ref = dtype == DType::BF16 ? lq::TensorRef::bf16(bf16.data(), rows, cols)
                               : lq::TensorRef::f32(values.data(), rows, cols);
  }
};

/// The numerics core's codes of a float operand given the range the
/// kernel reported (the LUQ max is exact; the SAWB clip is the kernel's,
/// whose bits RuntimeCpuTest checks).
std::vector<int8_t> coreCodes(const std::vector<float> &x, int64_t rows,
                              int64_t cols, Format format, unsigned samples,
                              float range, uint64_t seed, uint32_t stream) {
  std::vector<int8_t> codes(size_t(rows * cols * samples));
  num::MatrixView view = num::MatrixView::f32(x.data(), rows, cols);
  if (format == Format::Log4) {
    for (unsigned s = 0; s < samples; ++s)
      num::luqEncode(view, {seed, stream, s}, codes.data() + s * rows * cols);
    return codes;
  }
  num::sawbEncode(view, range,
                  format == Format::SInt4 ? num::SawbKind::Signed
                                          : num::SawbKind::Unsigned,
                  codes.data());
  return codes;
}

// The fused kernels (quantization in the kernel, then this path's GEMM)
// of the three roles, with SMP, bias, ReLU and bf16 output.
TEST_P(CpuDotProductPath, FloatOperandsMatchNumerics) {
  std::mt19937 rng(47);
  GemmSpec forward = GemmSpec::forward(DType::F32, /*unsignedInput=*/true);
  forward.bias = true;
  forward.relu = true;
  GemmSpec backward = GemmSpec::backwardData(DType::BF16, 2);
  backward.output = DType::BF16;
  std::vector<GemmSpec> specs = {forward, backward,
                                 GemmSpec::weightGrad(DType::F32, 4)};
  for (const GemmSpec &spec : specs)
    for (auto [m, n, k] : {std::array<int64_t, 3>{7, 17, 5},
                           std::array<int64_t, 3>{37, 50, 301}}) {
      SCOPED_TRACE(spec.describe() + " M=" + std::to_string(m) +
                   " N=" + std::to_string(n) + " K=" + std::to_string(k));
      auto kernel = compile(spec);
      ASSERT_TRUE(kernel.ok()) << kernel.error();
      int64_t aRows = spec.lhs.transposed ? k : m;
      int64_t aCols = spec.lhs.transposed ? m : k;
      int64_t bRows = spec.rhs.transposed ? n : k;
      int64_t bCols = spec.rhs.transposed ? k : n;
      FloatInput a(spec.lhs.dtype, aRows, aCols, rng,
                   spec.lhs.format == Format::UInt4);
      FloatInput b(spec.rhs.dtype, bRows, bCols, rng,
                   spec.rhs.format == Format::UInt4);
      FloatInput bias(DType::F32, 1, n, rng, false);
      std::vector<float> outF32(size_t(m * n)), refF32(size_t(m * n));
      std::vector<uint16_t> outBf16(size_t(m * n)), refBf16(size_t(m * n));
      lq::LaunchArgs args;
      args.lhs = a.ref;
      args.rhs = b.ref;
      args.out = spec.bf16Output()
                     ? lq::TensorRef::bf16(outBf16.data(), m, n)
                     : lq::TensorRef::f32(outF32.data(), m, n);
      if (spec.bias) {
        args.bias = bias.values.data();
        args.biasLength = n;
      }
      args.seed = rng();
      args.stream = 3;
      auto status = kernel->launch(args);
      ASSERT_TRUE(status.ok()) << status.error();

      std::vector<int8_t> aCodes =
          coreCodes(a.values, aRows, aCols, spec.lhs.format, spec.samples,
                    status->lhsRange, args.seed, args.stream);
      std::vector<int8_t> bCodes = coreCodes(
          b.values, bRows, bCols, spec.rhs.format, 1, status->rhsRange, 0, 0);
      num::GemmOptions options;
      options.lhsSamples = spec.samples;
      options.bias = spec.bias ? bias.values.data() : nullptr;
      options.relu = spec.relu;
      num::GemmResult r = num::quantizedGemm(
          {size_t(m), size_t(n), size_t(k)},
          {aCodes.data(), numericsFormat(spec.lhs.format), status->lhsScale,
           spec.lhs.transposed},
          {bCodes.data(), numericsFormat(spec.rhs.format), status->rhsScale,
           spec.rhs.transposed},
          options, {refF32.data(), refBf16.data(), nullptr});
      ASSERT_EQ(r.status, num::Status::Ok);
      for (int64_t i = 0; i < m * n; ++i)
        if (spec.bf16Output())
          ASSERT_EQ(outBf16[i], refBf16[i]) << "element " << i;
        else
          ASSERT_EQ(num::floatToBits(outF32[i]), num::floatToBits(refF32[i]))
              << "element " << i;
    }
}

INSTANTIATE_TEST_SUITE_P(
    Paths, CpuDotProductPath, ::testing::ValuesIn(kPaths),
    [](const ::testing::TestParamInfo<Path> &info) {
      std::string name = info.param.dot;
      for (char &c : name)
        if (c == '-')
          c = '_';
      return name;
    });

// The machine's own CPU takes the best path it has, and a CPU without VNNI
// takes AVX2: the choice follows the CPU's features.
TEST(CpuDotProduct, ChoiceFollowsTheCpusFeatures) {
  lq::Runtime &rt = lq::Runtime::get();
  auto portable = rt.cpuDotProduct("x86-64-v3");
  ASSERT_TRUE(portable.ok()) << portable.error();
  EXPECT_EQ(*portable, "avx2-vpmaddubsw");
  auto host = rt.cpuDotProduct();
  ASSERT_TRUE(host.ok()) << host.error();
  bool vnni512 = rt.cpuDotProduct("x86-64-v4,+avx512vnni").ok();
  bool vnni256 = rt.cpuDotProduct("x86-64-v3,+avxvnni").ok();
  EXPECT_EQ(*host, vnni512   ? "avx512-vnni"
                   : vnni256 ? "avx-vnni"
                             : "avx2-vpmaddubsw");
}

TEST(CpuDotProduct, UnknownOrForeignCpusAreErrors) {
  lq::Runtime &rt = lq::Runtime::get();
  auto unknown = rt.compileForCpu(GemmSpec::forward(), "not-a-cpu");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().find("unknown CPU"), std::string::npos)
      << unknown.error();
  auto flag = rt.compileForCpu(GemmSpec::forward(), "x86-64-v3,+nofeature");
  ASSERT_FALSE(flag.ok());
  EXPECT_NE(flag.error().find("unknown CPU feature"), std::string::npos)
      << flag.error();
  auto noAvx2 = rt.compileForCpu(GemmSpec::forward(), "x86-64-v2");
  ASSERT_FALSE(noAvx2.ok());
  EXPECT_NE(noAvx2.error().find("lacks AVX2"), std::string::npos)
      << noAvx2.error();
}

} // namespace
