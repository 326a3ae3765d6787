//===- RuntimeApiTest.cpp - misuse of the public runtime API --------------===//
//
// Every invalid spec, launch or quantization must come back as a failed
// Result whose message names the problem; nothing may crash, write the
// output of a rejected launch, or leave the runtime unusable. Each case is
// followed by a valid call that must still succeed.
//
//===----------------------------------------------------------------------===//

#include "lq/Runtime/Runtime.h"
#include "lq/Jit/CompilerIdentity.h"

#include "KernelCacheEnvironment.h"


#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using lq::DType;
using lq::Format;
using lq::GemmSpec;
using lq::LaunchArgs;
using lq::TensorRef;

namespace {

/// Keeps compiled kernels of this test out of the user's cache. Death-test
/// children (GoogleTest runs them as new processes of this binary) share
/// their parent's directory.
const auto *cacheEnvironment =
    ::testing::AddGlobalTestEnvironment(new KernelCacheEnvironment);

using Words = std::vector<std::string>;

std::string quoted(const Words &words) {
  std::string s;
  for (const std::string &w : words)
    s += (s.empty() ? "\"" : ", \"") + w + "\"";
  return s;
}

/// A failed Result whose message mentions every word.
template <typename T>
::testing::AssertionResult failsWith(const lq::Result<T> &result,
                                     const Words &words) {
  if (result.ok())
    return ::testing::AssertionFailure()
           << "the call succeeded; expected an error mentioning "
           << quoted(words);
  for (const std::string &w : words)
    if (result.error().find(w) == std::string::npos)
      return ::testing::AssertionFailure()
             << "error \"" << result.error() << "\" does not mention \"" << w
             << "\"";
  return ::testing::AssertionSuccess() << result.error();
}

/// Room around every buffer: an invalid shape that the runtime wrongly
/// accepted must fail a check, not corrupt memory.
size_t withSlack(int64_t elements) { return size_t(4 * elements + 64); }

constexpr uint32_t kSentinelBits = 0x7FC0BEEFu; // a NaN no kernel writes

float sentinel() {
  float f;
  std::memcpy(&f, &kSentinelBits, sizeof(f));
  return f;
}

uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

/// A valid problem for a spec with f32 or packed operands and f32 output:
/// random operands stored as the spec says, and LaunchArgs that launch it.
class Problem {
public:
  Problem(const GemmSpec &spec, int64_t m, int64_t n, int64_t k,
          uint32_t seed = 1)
      : spec(spec), m(m), n(n), k(k), rng(seed) {
    const unsigned s = spec.samples;
    int64_t lhsRows = spec.lhs.transposed ? k : m;
    int64_t lhsCols = spec.lhs.transposed ? m : k;
    if (spec.lhs.dtype == DType::Packed4)
      lhsRows *= s; // SMP samples stacked along rows
    args.lhs = operand(spec.lhs, lhsRows, lhsCols, lhs, lhsPacked);
    args.rhs = operand(spec.rhs, spec.rhs.transposed ? n : k,
                       spec.rhs.transposed ? k : n, rhs, rhsPacked);
    out.assign(withSlack(m * n), 0.0f);
    args.out = TensorRef::f32(out.data(), m, n);
    if (spec.bias) {
      bias.assign(withSlack(n), 0.25f);
      args.bias = bias.data();
      args.biasLength = n;
    }
    args.seed = 42;
    args.stream = 3;
    args.lhsScale = 0.01f;
    args.rhsScale = 0.02f;
    args.maxEstimate = 0.1f;
  }
  Problem(const Problem &) = delete;
  Problem &operator=(const Problem &) = delete;

  const GemmSpec spec;
  const int64_t m, n, k;
  std::vector<float> lhs, rhs, out, bias;
  std::vector<uint8_t> lhsPacked, rhsPacked;
  LaunchArgs args;

private:
  TensorRef operand(const lq::OperandSpec &op, int64_t rows, int64_t cols,
                    std::vector<float> &f32, std::vector<uint8_t> &packed) {
    if (op.dtype == DType::Packed4) {
      packed.resize(withSlack(rows * ((cols + 1) / 2)));
      std::uniform_int_distribution<int> byte(0, 255);
      for (uint8_t &b : packed)
        b = uint8_t(byte(rng));
      return TensorRef::packed4(packed.data(), rows, cols);
    }
    EXPECT_EQ(op.dtype, DType::F32) << "Problem makes f32 or packed operands";
    f32.resize(withSlack(rows * cols));
    std::normal_distribution<float> normal(0.0f, 0.1f);
    for (float &v : f32)
      v = op.format == Format::UInt4 ? std::fabs(normal(rng)) : normal(rng);
    return TensorRef::f32(f32.data(), rows, cols);
  }
  std::mt19937 rng;
};

/// A valid compile and launch: the runtime still works.
void expectRuntimeUsable() {
  Problem p(GemmSpec::backwardData(), 5, 6, 7, 99);
  auto kernel = lq::Runtime::get().compile(p.spec);
  ASSERT_TRUE(kernel.ok()) << kernel.error();
  auto status = kernel->launch(p.args);
  ASSERT_TRUE(status.ok()) << status.error();
  EXPECT_FALSE(status->nonfinite);
  EXPECT_GT(status->lhsScale, 0.0f);
  EXPECT_GT(status->rhsScale, 0.0f);
}

/// A valid quantization: the runtime still works.
void expectQuantizeUsable() {
  std::vector<float> x(4 * 6);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = float(i % 7) - 3.0f;
  std::vector<uint8_t> packed(4 * 3);
  lq::QuantizeArgs q;
  q.input = TensorRef::f32(x.data(), 4, 6);
  q.output = TensorRef::packed4(packed.data(), 4, 6);
  q.format = Format::Log4;
  auto status = lq::Runtime::get().quantize(q);
  ASSERT_TRUE(status.ok()) << status.error();
  EXPECT_GT(status->scale, 0.0f);
}

void expectCompileRejected(const GemmSpec &spec, const Words &words) {
  SCOPED_TRACE(spec.describe());
  EXPECT_TRUE(failsWith(lq::Runtime::get().compile(spec), words));
  expectRuntimeUsable();
}

void expectQuantizeRejected(const lq::QuantizeArgs &args, const Words &words) {
  EXPECT_TRUE(failsWith(lq::Runtime::get().quantize(args), words));
  expectQuantizeUsable();
}

/// Runs `call` (returning a Result) in a child process and expects a failed
/// Result whose message mentions `word`. A crash in the child fails this
/// test without ending the test binary.
template <typename Call>
void expectRejectedInChild(Call call, const std::string &word) {
  EXPECT_EXIT(
      {
        auto result = call();
        int code = 0;
        if (result.ok()) {
          std::fprintf(stderr, "the call was accepted\n");
          code = 1;
        } else if (result.error().find(word) == std::string::npos) {
          std::fprintf(stderr, "error \"%s\" does not mention \"%s\"\n",
                       result.error().c_str(), word.c_str());
          code = 2;
        }
        std::fflush(stderr);
        std::_Exit(code);
      },
      ::testing::ExitedWithCode(0), "");
}

/// Launch checks: each test prepares a valid problem for one kernel, then
/// launches it with one thing wrong.
class RuntimeApi : public ::testing::Test {
protected:
  void prepare(const GemmSpec &spec, int64_t m = 7, int64_t n = 9,
               int64_t k = 11) {
    problem = std::make_unique<Problem>(spec, m, n, k);
    auto compiled = lq::Runtime::get().compile(spec);
    ASSERT_TRUE(compiled.ok()) << compiled.error();
    kernel.emplace(*compiled);
    auto status = kernel->launch(problem->args);
    ASSERT_TRUE(status.ok()) << status.error();
    reference.assign(problem->out.begin(), problem->out.begin() + m * n);
  }

  /// A copy of the valid arguments to break.
  LaunchArgs good() const { return problem->args; }

  /// `bad` fails with a message that mentions every word and leaves the
  /// output alone; the valid launch still gives the reference bits.
  void expectLaunchRejected(const LaunchArgs &bad, const Words &words) {
    std::vector<float> &out = problem->out;
    std::fill(out.begin(), out.end(), sentinel());
    EXPECT_TRUE(failsWith(kernel->launch(bad), words));
    for (size_t i = 0; i < out.size(); ++i)
      if (bitsOf(out[i]) != kSentinelBits) {
        ADD_FAILURE() << "a rejected launch wrote out[" << i << "]";
        break;
      }
    auto status = kernel->launch(problem->args);
    ASSERT_TRUE(status.ok()) << status.error();
    for (size_t i = 0; i < reference.size(); ++i)
      ASSERT_EQ(bitsOf(out[i]), bitsOf(reference[i])) << "out[" << i << "]";
  }

  std::unique_ptr<Problem> problem;
  std::optional<lq::Kernel> kernel;
  std::vector<float> reference;
};

//===----------------------------------------------------------------------===//
// Shapes
//===----------------------------------------------------------------------===//

TEST_F(RuntimeApi, ReductionDimensionMismatch) {
  // dx[7, 9] = dy[7, 11] W[11, 9]
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData()));
  LaunchArgs bad = good();
  bad.rhs.rows = 12;
  expectLaunchRejected(bad,
                       {"reduction dimensions differ", "K = 11", "K = 12"});
  bad = good();
  bad.lhs.cols = 10;
  bad.lhs.rowStride = 10;
  expectLaunchRejected(bad,
                       {"reduction dimensions differ", "K = 10", "K = 11"});
}

TEST_F(RuntimeApi, ReductionDimensionMismatchTransposed) {
  // dW[7, 9] = dy[11, 7]^T x[11, 9]: K is the row count of both.
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::weightGrad()));
  LaunchArgs bad = good();
  bad.lhs.rows = 10;
  expectLaunchRejected(bad,
                       {"reduction dimensions differ", "K = 10", "K = 11"});
  bad = good();
  bad.rhs.rows = 12;
  expectLaunchRejected(bad, {"reduction dimensions differ", "K = 12"});
}

TEST_F(RuntimeApi, OutputShapeMismatch) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData()));
  LaunchArgs bad = good();
  bad.out.rows = 8;
  expectLaunchRejected(bad, {"out", "8x9", "7x9"});
  bad = good();
  bad.out.cols = 8;
  expectLaunchRejected(bad, {"out", "7x8", "7x9"});
  // Swapped: the shape of the transposed product.
  bad = good();
  bad.out = TensorRef::f32(problem->out.data(), 9, 7);
  expectLaunchRejected(bad, {"out", "9x7", "7x9"});
}

TEST_F(RuntimeApi, NegativeDimensions) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData()));
  LaunchArgs bad = good();
  bad.lhs.rows = -7;
  expectLaunchRejected(bad, {"lhs", "negative"});
  bad = good();
  bad.rhs.cols = -1;
  expectLaunchRejected(bad, {"rhs", "negative"});
  bad = good();
  bad.out.rows = -7;
  expectLaunchRejected(bad, {"out", "negative"});
}

TEST_F(RuntimeApi, RowStrideSmallerThanRow) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData()));
  LaunchArgs bad = good();
  bad.lhs.rowStride = 10;
  expectLaunchRejected(bad,
                       {"lhs", "row stride 10", "smaller than a row (11)"});
  bad = good();
  bad.rhs.rowStride = 0;
  expectLaunchRejected(bad, {"rhs", "row stride 0", "smaller than a row (9)"});
  bad = good();
  bad.out.rowStride = -9;
  expectLaunchRejected(bad, {"out", "row stride -9"});
}

TEST_F(RuntimeApi, PackedRowStrideSmallerThanRow) {
  // Packed rows take (cols + 1) / 2 bytes: 11 codes need 6.
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData(DType::Packed4)));
  LaunchArgs bad = good();
  bad.lhs.rowStride = 5;
  expectLaunchRejected(bad, {"lhs", "row stride 5", "smaller than a row (6)"});
}

TEST_F(RuntimeApi, PaddedRowStridesGiveTheSameBits) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData()));
  const Problem &p = *problem;
  auto padded = [](const std::vector<float> &v, int64_t rows, int64_t cols,
                   int64_t stride) {
    std::vector<float> out(rows * stride, sentinel());
    for (int64_t r = 0; r < rows; ++r)
      std::copy(v.begin() + r * cols, v.begin() + (r + 1) * cols,
                out.begin() + r * stride);
    return out;
  };
  std::vector<float> lhs = padded(p.lhs, p.m, p.k, p.k + 5);
  std::vector<float> rhs = padded(p.rhs, p.k, p.n, p.n + 3);
  std::vector<float> out(p.m * (p.n + 2), sentinel());
  LaunchArgs args = good();
  args.lhs.data = lhs.data();
  args.lhs.rowStride = p.k + 5;
  args.rhs.data = rhs.data();
  args.rhs.rowStride = p.n + 3;
  args.out.data = out.data();
  args.out.rowStride = p.n + 2;
  auto status = kernel->launch(args);
  ASSERT_TRUE(status.ok()) << status.error();
  for (int64_t r = 0; r < p.m; ++r) {
    for (int64_t c = 0; c < p.n; ++c)
      ASSERT_EQ(bitsOf(out[r * (p.n + 2) + c]), bitsOf(reference[r * p.n + c]))
          << r << ", " << c;
    for (int64_t c = p.n; c < p.n + 2; ++c)
      ASSERT_EQ(bitsOf(out[r * (p.n + 2) + c]), kSentinelBits)
          << "padding (" << r << ", " << c << ") was written";
  }
}

TEST_F(RuntimeApi, EmptyDimensionsNeedNoBuffers) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData()));
  // M = 0 and N = 0: nothing to read or write, null buffers are fine.
  LaunchArgs args = good();
  args.lhs = TensorRef::f32(static_cast<float *>(nullptr), 0, 11);
  args.out = TensorRef::f32(static_cast<float *>(nullptr), 0, 9);
  auto status = kernel->launch(args);
  ASSERT_TRUE(status.ok()) << status.error();
  args = good();
  args.rhs = TensorRef::f32(static_cast<float *>(nullptr), 11, 0);
  args.out = TensorRef::f32(static_cast<float *>(nullptr), 7, 0);
  status = kernel->launch(args);
  ASSERT_TRUE(status.ok()) << status.error();
  // K = 0: the product is all zeros.
  args = good();
  args.lhs = TensorRef::f32(static_cast<float *>(nullptr), 7, 0);
  args.rhs = TensorRef::f32(static_cast<float *>(nullptr), 0, 9);
  std::fill(problem->out.begin(), problem->out.end(), sentinel());
  status = kernel->launch(args);
  ASSERT_TRUE(status.ok()) << status.error();
  for (int64_t i = 0; i < 7 * 9; ++i)
    ASSERT_EQ(bitsOf(problem->out[i]), 0u) << i;
  expectRuntimeUsable();
}

TEST_F(RuntimeApi, AccumulatorRangeIsChecked) {
  // K * samples * 15 * 64 must stay below 2^31: K = 40000 with 64 samples
  // does not.
  ASSERT_NO_FATAL_FAILURE(
      prepare(GemmSpec::backwardData(DType::F32, 64), 2, 3, 5));
  std::vector<float> lhs(2 * 40000, 0.5f), rhs(40000 * 3, 0.5f);
  LaunchArgs bad = good();
  bad.lhs = TensorRef::f32(lhs.data(), 2, 40000);
  bad.rhs = TensorRef::f32(rhs.data(), 40000, 3);
  expectLaunchRejected(bad, {"K = 40000", "64 samples", "int32"});
}

//===----------------------------------------------------------------------===//
// Buffers, dtypes and devices
//===----------------------------------------------------------------------===//

TEST_F(RuntimeApi, NullBuffersOfNonEmptyTensors) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData()));
  LaunchArgs bad = good();
  bad.lhs.data = nullptr;
  expectLaunchRejected(bad, {"lhs", "null data"});
  bad = good();
  bad.rhs.data = nullptr;
  expectLaunchRejected(bad, {"rhs", "null data"});
  bad = good();
  bad.out.data = nullptr;
  expectLaunchRejected(bad, {"out", "null data"});
}

TEST_F(RuntimeApi, DTypeDiffersFromSpec) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData()));
  std::vector<uint16_t> bf16(withSlack(7 * 11), 0x3F80);
  std::vector<uint8_t> packed(withSlack(11 * 9), 0x11);
  LaunchArgs bad = good();
  bad.lhs = TensorRef::bf16(bf16.data(), 7, 11);
  expectLaunchRejected(bad, {"lhs", "dtype bf16", "f32"});
  bad = good();
  bad.rhs = TensorRef::packed4(packed.data(), 11, 9);
  expectLaunchRejected(bad, {"rhs", "dtype packed4", "f32"});
  bad = good();
  bad.out = TensorRef::bf16(bf16.data(), 7, 9);
  expectLaunchRejected(bad, {"out", "dtype bf16", "f32"});
}

TEST_F(RuntimeApi, FloatOperandForPackedKernel) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData(DType::Packed4)));
  std::vector<float> f32(withSlack(7 * 11), 0.5f);
  LaunchArgs bad = good();
  bad.lhs = TensorRef::f32(f32.data(), 7, 11);
  expectLaunchRejected(bad, {"lhs", "dtype f32", "packed4"});
}

TEST_F(RuntimeApi, DeviceMemoryOnHostKernel) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData()));
  LaunchArgs bad = good();
  bad.lhs.device = lq::Device::CUDA;
  expectLaunchRejected(bad, {"lhs", "host memory"});
  bad = good();
  bad.rhs.device = lq::Device::CUDA;
  expectLaunchRejected(bad, {"rhs", "host memory"});
  bad = good();
  bad.out.device = lq::Device::CUDA;
  expectLaunchRejected(bad, {"out", "host memory"});
}

TEST_F(RuntimeApi, MissingOrShortBias) {
  GemmSpec spec = GemmSpec::forward();
  spec.bias = true;
  ASSERT_NO_FATAL_FAILURE(prepare(spec));
  LaunchArgs bad = good();
  bad.bias = nullptr;
  expectLaunchRejected(bad, {"bias", "9 values", "none"});
  bad = good();
  bad.biasLength = 8;
  expectLaunchRejected(bad, {"bias", "9 values", "got 8"});
  bad = good();
  bad.biasLength = 0;
  expectLaunchRejected(bad, {"bias", "9 values", "got 0"});
  bad = good();
  bad.biasLength = 10;
  expectLaunchRejected(bad, {"bias", "9 values", "got 10"});
}

TEST_F(RuntimeApi, BiasForAKernelWithoutBias) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::forward()));
  std::vector<float> bias(9, 1.0f);
  LaunchArgs bad = good();
  bad.bias = bias.data();
  bad.biasLength = 9;
  expectLaunchRejected(bad, {"bias", "without a bias"});
}

TEST_F(RuntimeApi, PackedOperandScalesMustBeFiniteAndNotNegative) {
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData(DType::Packed4)));
  LaunchArgs bad = good();
  bad.lhsScale = std::nanf("");
  expectLaunchRejected(bad, {"lhs", "scale", "finite"});
  bad = good();
  bad.rhsScale = -1.0f;
  expectLaunchRejected(bad, {"rhs", "scale", ">= 0"});
}

TEST_F(RuntimeApi, PackedSamplesMustStackAlongRows) {
  // A packed SMP left operand holds its 4 samples one after another: 4 * 7
  // rows.
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData(DType::Packed4, 4)));
  LaunchArgs bad = good();
  bad.lhs.rows = 4 * 7 + 1;
  expectLaunchRejected(bad, {"lhs", "29 rows", "not a multiple of 4"});
  bad = good();
  bad.lhs.rows = 7; // one sample only
  expectLaunchRejected(bad, {"lhs", "not a multiple of 4"});
}

//===----------------------------------------------------------------------===//
// Specs
//===----------------------------------------------------------------------===//

// CUDA kernels compile anywhere (PTX generation needs no GPU); launching
// host memory on them is an error, with or without a GPU.
TEST(RuntimeApiSpec, CudaTargetsCompileAndRejectHostMemory) {
  for (lq::Target target : {lq::Target::CudaSm80, lq::Target::CudaSm90a}) {
    GemmSpec spec = GemmSpec::backwardData();
    spec.target = target;
    SCOPED_TRACE(spec.describe());
    auto kernel = lq::Runtime::get().compile(spec);
    ASSERT_TRUE(kernel.ok()) << kernel.error();
    std::vector<float> a(4 * 8, 0.5f), b(8 * 6, 0.25f), c(4 * 6);
    LaunchArgs args;
    args.lhs = TensorRef::f32(a.data(), 4, 8);
    args.rhs = TensorRef::f32(b.data(), 8, 6);
    args.out = TensorRef::f32(c.data(), 4, 6);
    // Without a GPU: no CUDA driver or device; with one: not device memory.
    EXPECT_TRUE(failsWith(kernel->launch(args), {"CUDA"}));
  }
  expectRuntimeUsable();
}

TEST(RuntimeApiSpec, SmpSampleCount) {
  for (unsigned samples : {0u, 3u, 6u, 48u, 65u, 128u}) {
    expectCompileRejected(
        GemmSpec::backwardData(DType::F32, samples),
        {"power of two", "[1, 64]", "got " + std::to_string(samples)});
  }
}

TEST(RuntimeApiSpec, SmpNeedsLuqLhs) {
  GemmSpec spec = GemmSpec::forward();
  spec.samples = 2;
  expectCompileRejected(spec, {"SMP", "log4"});
}

TEST(RuntimeApiSpec, Log4TimesLog4) {
  GemmSpec spec = GemmSpec::backwardData();
  spec.rhs.format = Format::Log4;
  expectCompileRejected(spec, {"at most one", "log4"});
}

TEST(RuntimeApiSpec, HindsightNeedsFloatLuqLhs) {
  GemmSpec spec = GemmSpec::forward();
  spec.hindsight = true;
  expectCompileRejected(spec, {"in-hindsight", "log4"});
  spec = GemmSpec::backwardData(DType::Packed4);
  spec.hindsight = true;
  expectCompileRejected(spec, {"in-hindsight", "float"});
}

TEST(RuntimeApiSpec, PackedOutput) {
  GemmSpec spec = GemmSpec::backwardData();
  spec.output = DType::Packed4;
  expectCompileRejected(spec, {"output", "f32 or bf16"});
}

//===----------------------------------------------------------------------===//
// quantize()
//===----------------------------------------------------------------------===//

class RuntimeApiQuantize : public ::testing::Test {
protected:
  RuntimeApiQuantize() : x(withSlack(4 * 6), 0.5f), packed(withSlack(4 * 6)) {
    args.input = TensorRef::f32(x.data(), 4, 6);
    args.output = TensorRef::packed4(packed.data(), 4, 6);
    args.format = Format::Log4;
  }
  std::vector<float> x;
  std::vector<uint8_t> packed;
  lq::QuantizeArgs args;
};

TEST_F(RuntimeApiQuantize, OutputShapeMismatch) {
  lq::QuantizeArgs bad = args;
  bad.output = TensorRef::packed4(packed.data(), 4, 7);
  expectQuantizeRejected(bad, {"output", "4x7", "4x6"});
  bad.output = TensorRef::packed4(packed.data(), 3, 6);
  expectQuantizeRejected(bad, {"output", "3x6", "4x6"});
}

TEST_F(RuntimeApiQuantize, PackedInput) {
  lq::QuantizeArgs bad = args;
  bad.input = TensorRef::packed4(packed.data(), 4, 6);
  expectQuantizeRejected(bad, {"input", "f32 or bf16"});
}

TEST_F(RuntimeApiQuantize, OutputMustBePacked) {
  std::vector<float> out(withSlack(4 * 6));
  lq::QuantizeArgs bad = args;
  bad.output = TensorRef::f32(out.data(), 4, 6);
  expectQuantizeRejected(bad, {"output", "dtype f32", "packed4"});
}

TEST_F(RuntimeApiQuantize, MaxEstimateOnSawb) {
  for (Format format : {Format::SInt4, Format::UInt4}) {
    lq::QuantizeArgs bad = args;
    bad.format = format;
    bad.maxEstimate = 1.0f;
    expectQuantizeRejected(bad, {"max estimate", "LUQ"});
  }
}

TEST_F(RuntimeApiQuantize, TensorChecks) {
  lq::QuantizeArgs bad = args;
  bad.input.data = nullptr;
  expectQuantizeRejected(bad, {"input", "null data"});
  bad = args;
  bad.output.data = nullptr;
  expectQuantizeRejected(bad, {"output", "null data"});
  bad = args;
  bad.input.rows = -4;
  expectQuantizeRejected(bad, {"input", "negative"});
  bad = args;
  bad.input.rowStride = 5;
  expectQuantizeRejected(bad, {"input", "row stride 5"});
  bad = args;
  bad.output.rowStride = 2;
  expectQuantizeRejected(bad, {"output", "row stride 2", "(3)"});
  bad = args;
  bad.input.device = lq::Device::CUDA;
  expectQuantizeRejected(bad, {"input", "output", "one device", "CUDA"});
  bad = args;
  bad.output.device = lq::Device::CUDA;
  expectQuantizeRejected(bad, {"input", "output", "one device", "CUDA"});
}

//===----------------------------------------------------------------------===//
// Inputs the runtime must reject too. The calls run in child processes: an
// input that crashes the runtime fails its test, not the test binary.
//===----------------------------------------------------------------------===//

/// Sizes whose byte count does not fit in 64 bits cannot describe a buffer:
/// multiplied out in int64 they wrap around, and the launch reads or
/// allocates from the wrapped value.
TEST_F(RuntimeApi, ShapesWhoseSizeOverflowsAreRejected) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ASSERT_NO_FATAL_FAILURE(prepare(GemmSpec::backwardData()));
  const int64_t huge = int64_t(1) << 62;
  LaunchArgs rows = good();
  rows.lhs.rows = huge;
  rows.out.rows = huge;
  expectRejectedInChild([&] { return kernel->launch(rows); }, "lhs");
  LaunchArgs stride = good();
  stride.lhs.rowStride = huge;
  expectRejectedInChild([&] { return kernel->launch(stride); }, "lhs");

  std::vector<float> x(64, 1.0f);
  std::vector<uint8_t> packed(64);
  lq::QuantizeArgs q;
  q.input = TensorRef::f32(x.data(), huge, 4);
  q.output = TensorRef::packed4(packed.data(), huge, 4);
  expectRejectedInChild([&] { return lq::Runtime::get().quantize(q); },
                        "input");
  expectRuntimeUsable();
}

/// Formats, dtypes and targets are C++ enums: a value outside them (from a
/// binding or a cast) must be rejected, not compiled into some kernel.
TEST(RuntimeApiSpec, UnknownEnumValuesAreRejected) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto compileWith = [](auto edit) {
    return [edit] {
      GemmSpec spec = GemmSpec::backwardData();
      edit(spec);
      return lq::Runtime::get().compile(spec);
    };
  };
  expectRejectedInChild(
      compileWith([](GemmSpec &s) { s.lhs.format = static_cast<Format>(7); }),
      "format");
  expectRejectedInChild(
      compileWith([](GemmSpec &s) { s.rhs.dtype = static_cast<DType>(9); }),
      "dtype");
  expectRejectedInChild(
      compileWith([](GemmSpec &s) { s.output = static_cast<DType>(9); }),
      "output");
  expectRejectedInChild(
      compileWith([](GemmSpec &s) { s.target = static_cast<lq::Target>(5); }),
      "target");

  std::vector<float> x(4 * 6, 0.5f);
  std::vector<uint8_t> packed(4 * 3);
  lq::QuantizeArgs q;
  q.input = TensorRef::f32(x.data(), 4, 6);
  q.output = TensorRef::packed4(packed.data(), 4, 6);
  q.format = static_cast<Format>(5);
  expectRejectedInChild([&] { return lq::Runtime::get().quantize(q); },
                        "format");
  q.format = Format::Log4;
  q.input.dtype = static_cast<DType>(9);
  expectRejectedInChild([&] { return lq::Runtime::get().quantize(q); },
                        "input");
  expectRuntimeUsable();
  expectQuantizeUsable();
}

} // namespace

// Every key the JIT makes names the build of lq's compiler, so that a disk
// cache written by another build (same version string, other lowering)
// misses instead of serving its objects.
TEST(RuntimeApiSpec, CacheKeysNameTheCompilerBuild) {
  std::string identity = lq::compilerIdentity();
  ASSERT_EQ(identity.size(), 64u);
  EXPECT_EQ(identity.find_first_not_of("0123456789abcdef"), std::string::npos);
  std::vector<std::pair<llvm::StringRef, llvm::StringRef>> fields = {
      {"kernel", "forward"}, {"ir", "func.func @f()"}};
  EXPECT_EQ(lq::makeCompilerCacheKey(fields),
            lq::makeCompilerCacheKey(fields, identity));
  std::string other = identity;
  other[0] = other[0] == '0' ? '1' : '0';
  EXPECT_NE(lq::makeCompilerCacheKey(fields, other),
            lq::makeCompilerCacheKey(fields, identity));
}

//===----------------------------------------------------------------------===//
// Random launches
//===----------------------------------------------------------------------===//

namespace {

/// Random problems of random specs, each launched as is (with padded row
/// strides: the bits of the contiguous launch) and with one thing broken
/// (an error, and the output left alone). Nothing may crash.
enum class Breakage {
  None, NullLhs, NullRhs, NullOut, OutAliasesLhs, OutAliasesRhs, NegativeRows,
  ShortStride, HugeK, OverflowingShape, MismatchedK, WrongDType, Count
};

TEST(RuntimeApiProperty, RandomLaunchesAreErrorsOrExact) {
  std::mt19937 rng(2024);
  const std::vector<GemmSpec> specs = {
      GemmSpec::forward(), GemmSpec::backwardData(DType::F32, 2),
      GemmSpec::weightGrad(DType::F32, 1, /*unsignedInput=*/true),
      GemmSpec::forward(DType::Packed4),
      GemmSpec::backwardData(DType::Packed4, 4)};
  auto dim = [&] {
    const int64_t dims[] = {0, 1, 2, 7, 13, 33};
    return dims[std::uniform_int_distribution<int>(0, 5)(rng)];
  };
  for (const GemmSpec &spec : specs) {
    auto kernel = lq::Runtime::get().compile(spec);
    ASSERT_TRUE(kernel.ok()) << kernel.error();
    for (int trial = 0; trial < 24; ++trial) {
      int64_t m = dim(), n = dim(), k = dim();
      Problem p(spec, m, n, k, uint32_t(trial));
      SCOPED_TRACE(spec.describe() + " " + std::to_string(m) + "x" +
                   std::to_string(n) + "x" + std::to_string(k));
      auto ref = kernel->launch(p.args);
      ASSERT_TRUE(ref.ok()) << ref.error();
      std::vector<float> expected(p.out.begin(), p.out.begin() + m * n);

      // The same operands at a padded row stride, into a padded output.
      auto padded = [&](const TensorRef &t, int64_t pad, auto &storage) {
        using Elem = typename std::decay_t<decltype(storage)>::value_type;
        int64_t stride = t.rowStride + pad;
        storage.assign(size_t(std::max<int64_t>(t.rows, 1) * stride) + 16,
                       Elem(0));
        const Elem *src = static_cast<const Elem *>(t.data);
        for (int64_t r = 0; r < t.rows; ++r)
          std::copy(src + r * t.rowStride, src + r * t.rowStride + t.rowStride,
                    storage.begin() + r * stride);
        TensorRef copy = t;
        copy.data = storage.data();
        copy.rowStride = stride;
        return copy;
      };
      std::vector<float> lhsF, rhsF, outF;
      std::vector<uint8_t> lhsP, rhsP;
      LaunchArgs args = p.args;
      int64_t pad = std::uniform_int_distribution<int64_t>(0, 5)(rng);
      args.lhs = spec.lhs.dtype == DType::Packed4 ? padded(p.args.lhs, pad, lhsP)
                                                   : padded(p.args.lhs, pad, lhsF);
      args.rhs = spec.rhs.dtype == DType::Packed4 ? padded(p.args.rhs, pad, rhsP)
                                                   : padded(p.args.rhs, pad, rhsF);
      outF.assign(size_t(std::max<int64_t>(m, 1) * (n + pad)) + 16, sentinel());
      args.out = TensorRef::f32(outF.data(), m, n);
      args.out.rowStride = n + pad;
      auto st = kernel->launch(args);
      ASSERT_TRUE(st.ok()) << st.error();
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < n; ++c)
          ASSERT_EQ(bitsOf(outF[r * (n + pad) + c]), bitsOf(expected[r * n + c]))
              << "(" << r << ", " << c << ")";

      auto breakage = Breakage(std::uniform_int_distribution<int>(
          1, int(Breakage::Count) - 1)(rng));
      // An alias of an empty operand is no alias, and the output would be
      // written into a buffer too small for it: break the output instead.
      auto empty = [](const TensorRef &t) { return t.rows == 0 || t.cols == 0; };
      if ((breakage == Breakage::OutAliasesLhs && empty(p.args.lhs)) ||
          (breakage == Breakage::OutAliasesRhs && empty(p.args.rhs)))
        breakage = Breakage::NullOut;
      LaunchArgs bad = p.args;
      switch (breakage) {
      case Breakage::NullLhs: bad.lhs.data = nullptr; break;
      case Breakage::NullRhs: bad.rhs.data = nullptr; break;
      case Breakage::NullOut: bad.out.data = nullptr; break;
      case Breakage::OutAliasesLhs:
        bad.out.data = const_cast<void *>(bad.lhs.data);
        break;
      case Breakage::OutAliasesRhs:
        bad.out.data = const_cast<void *>(bad.rhs.data);
        break;
      case Breakage::NegativeRows: bad.lhs.rows = -1 - bad.lhs.rows; break;
      case Breakage::ShortStride: bad.rhs.rowStride = bad.rhs.cols / 4 - 1; break;
      case Breakage::HugeK:
        // Both operands agree on a K whose products overflow int32 sums
        // (and K * samples * 960 overflows nothing).
        bad.lhs.rows = bad.lhs.cols = bad.lhs.rowStride = int64_t(1) << 22;
        bad.rhs.rows = bad.rhs.cols = bad.rhs.rowStride = int64_t(1) << 22;
        bad.out.rows = bad.out.cols = bad.out.rowStride = int64_t(1) << 22;
        break;
      case Breakage::OverflowingShape:
        bad.lhs.rows = bad.lhs.cols = bad.lhs.rowStride = int64_t(1) << 40;
        break;
      case Breakage::MismatchedK:
        bad.rhs.rows += 1;
        bad.rhs.cols += 1;
        bad.rhs.rowStride += 1;
        break;
      case Breakage::WrongDType:
        bad.out.dtype = DType::BF16;
        break;
      case Breakage::None:
      case Breakage::Count:
        break;
      }
      // Breaking an empty tensor may leave a valid launch (a null pointer
      // of no elements, aliases of nothing): then it must give the bits.
      std::fill(p.out.begin(), p.out.end(), sentinel());
      auto result = kernel->launch(bad);
      if (result.ok()) {
        bool empty = m == 0 || n == 0 || k == 0 ||
                     breakage == Breakage::ShortStride;
        EXPECT_TRUE(empty) << "breakage " << int(breakage) << " was accepted";
        continue;
      }
      for (size_t i = 0; i < p.out.size(); ++i)
        ASSERT_EQ(bitsOf(p.out[i]), kSentinelBits)
            << "a rejected launch (" << result.error() << ") wrote out[" << i
            << "]";
    }
  }
}

} // namespace

namespace {

TEST(RuntimeApiProperty, ReductionTooLongForTheProductIsAnError) {
  // K = 2^54: K * 960 wraps int64 (a negative product passed the bound and
  // the launch then tried to allocate 2^54 bytes of codes).
  auto kernel = lq::Runtime::get().compile(GemmSpec::forward());
  ASSERT_TRUE(kernel.ok()) << kernel.error();
  std::vector<float> buffer(64);
  const int64_t k = int64_t(1) << 54;
  LaunchArgs args;
  args.lhs = TensorRef::f32(buffer.data(), 1, k);
  args.rhs = TensorRef::f32(buffer.data() + 16, 1, k);
  args.out = TensorRef::f32(buffer.data() + 32, 1, 1);
  EXPECT_TRUE(failsWith(kernel->launch(args),
                        {"K = 18014398509481984", "int32 accumulator"}));
}

} // namespace

// parallelFor: every index once, in contiguous ranges, at least `grain`
// items a thread; small counts on the calling thread.
TEST(RuntimeParallelFor, CoversEveryIndexOnce) {
  lq::Runtime &rt = lq::Runtime::get();
  for (int64_t count : {int64_t(0), int64_t(1), int64_t(7), int64_t(65535),
                        int64_t(1) << 20})
    for (int64_t grain : {int64_t(0), int64_t(1), int64_t(4096),
                          int64_t(1) << 30}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(count));
      std::atomic<int> ranges{0};
      rt.parallelFor(count, grain, [&](int64_t begin, int64_t end) {
        EXPECT_LE(0, begin);
        EXPECT_LT(begin, end);
        EXPECT_LE(end, count);
        ranges.fetch_add(1);
        for (int64_t i = begin; i < end; ++i)
          seen[size_t(i)].fetch_add(1);
      });
      for (int64_t i = 0; i < count; ++i)
        ASSERT_EQ(seen[size_t(i)].load(), 1)
            << "index " << i << " of " << count << ", grain " << grain;
      EXPECT_LE(ranges.load(), int(rt.threads()));
      if (count > 0 && grain >= count) {
        EXPECT_EQ(ranges.load(), 1);
      }
    }
}

TEST(RuntimeParallelFor, BelowTheGrainRunsOnTheCallingThread) {
  std::thread::id caller = std::this_thread::get_id(), ran;
  lq::Runtime::get().parallelFor(100, 1000, [&](int64_t, int64_t) {
    ran = std::this_thread::get_id();
  });
  EXPECT_EQ(ran, caller);
}
