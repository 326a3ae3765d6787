//===- Checks.cpp - launch checks and quantizer rules of every runtime ----===//

#include "lq/Runtime/Checks.h"

#include "lq/Numerics/Sawb.h"

#include <cmath>
#include <limits>

using namespace lq;
using namespace lq::runtime;

//===----------------------------------------------------------------------===//
// Launch arguments
//===----------------------------------------------------------------------===//

Status lq::runtime::checkTensor(const char *name, const TensorRef &t,
                                DType dtype, Device device) {
  // Every launch checks three tensors: messages are made only on failure.
  auto fail = [&](const std::string &why) {
    return Error{std::string(name) + ": " + why};
  };
  if (t.device != device)
    return fail(device == Device::CPU
                    ? "host kernels need host memory"
                    : "CUDA kernels need device memory (Device::CUDA)");
  if (t.dtype != dtype)
    return fail(std::string("dtype ") + dtypeName(t.dtype) +
                " does not match the kernel's " + dtypeName(dtype));
  if (t.rows < 0 || t.cols < 0)
    return fail("negative shape");
  int64_t minStride = dtype == DType::Packed4 ? (t.cols + 1) / 2 : t.cols;
  if (t.rowStride < minStride)
    return fail("row stride " + std::to_string(t.rowStride) +
                " is smaller than a row (" + std::to_string(minStride) + ")");
  if (t.rows > 0 && t.cols > 0 && t.data == nullptr)
    return fail("null data for a non-empty tensor");
  // Workspaces hold up to 64 SMP samples of codes of a tensor: its bytes
  // times 64 must fit, with room to spare.
  int64_t bytes;
  if (__builtin_mul_overflow(t.rows, t.rowStride, &bytes) ||
      __builtin_mul_overflow(bytes, int64_t(elementBytes(dtype)) * 64, &bytes))
    return fail("shape " + std::to_string(t.rows) + "x" +
                std::to_string(t.cols) + " with row stride " +
                std::to_string(t.rowStride) + " is too large");
  return Done{};
}

std::string lq::runtime::shapeString(int64_t r, int64_t c) {
  return std::to_string(r) + "x" + std::to_string(c);
}

namespace {

/// Scales of packed operands multiply every output: they must be finite and
/// not negative.
Status checkScale(const char *name, float scale) {
  if (std::isfinite(scale) && scale >= 0.0f)
    return Done{};
  return Error{std::string(name) +
               ": the scale of a packed operand must be finite and >= 0, got " +
               std::to_string(scale)};
}

/// The bytes a checked tensor spans, [begin, end); empty for no elements.
struct ByteRange {
  uintptr_t begin = 0, end = 0;
};

ByteRange byteRange(const TensorRef &t) {
  if (t.rows == 0 || t.cols == 0)
    return {};
  int64_t rowBytes = t.dtype == DType::Packed4 ? (t.cols + 1) / 2 : t.cols;
  // checkTensor bounds rows * rowStride * 64 elements: no overflow.
  int64_t span = ((t.rows - 1) * t.rowStride + rowBytes) *
                 int64_t(elementBytes(t.dtype));
  uintptr_t begin = reinterpret_cast<uintptr_t>(t.data);
  return {begin, begin + uintptr_t(span)};
}

bool overlap(ByteRange a, ByteRange b) {
  return a.begin < a.end && b.begin < b.end && a.begin < b.end &&
         b.begin < a.end;
}

/// Outputs are written while inputs are still read (packed operands are
/// read during the GEMM, quantizers read rows while others are written):
/// an output that shares memory with an input would change the result.
Status checkNoOverlap(const char *outName, const TensorRef &out,
                      const char *inName, ByteRange in) {
  if (overlap(byteRange(out), in))
    return Error{std::string(outName) + ": overlaps " + inName +
                 " (outputs must not share memory with inputs)"};
  return Done{};
}

} // namespace

Result<GemmProblem> lq::runtime::checkGemmLaunch(const GemmSpec &s,
                                                 const LaunchArgs &args,
                                                 Device device) {
  using R = Result<GemmProblem>;
  unsigned samples = s.samples;
  LQ_TRY(checkTensor("lhs", args.lhs, s.lhs.dtype, device));
  LQ_TRY(checkTensor("rhs", args.rhs, s.rhs.dtype, device));
  LQ_TRY(checkTensor("out", args.out, s.output, device));

  // Stored shapes: lhs [M, K] or [K, M] (samples stacked along rows when
  // packed), rhs [K, N] or [N, K].
  int64_t lhsRows = args.lhs.rows;
  if (s.lhs.dtype == DType::Packed4) {
    if (lhsRows % samples != 0)
      return R::failure("lhs: packed SMP samples are stacked along rows: " +
                        std::to_string(lhsRows) +
                        " rows is not a multiple of " +
                        std::to_string(samples));
    lhsRows /= samples;
  }
  GemmProblem p;
  p.lhsRows = lhsRows;
  p.m = s.lhs.transposed ? args.lhs.cols : lhsRows;
  p.k = s.lhs.transposed ? lhsRows : args.lhs.cols;
  int64_t kb = s.rhs.transposed ? args.rhs.cols : args.rhs.rows;
  p.n = s.rhs.transposed ? args.rhs.rows : args.rhs.cols;
  if (p.k != kb)
    return R::failure("reduction dimensions differ: lhs gives K = " +
                      std::to_string(p.k) +
                      ", rhs gives K = " + std::to_string(kb));
  if (args.out.rows != p.m || args.out.cols != p.n)
    return R::failure("out: shape " + shapeString(args.out.rows, args.out.cols) +
                      " does not match the product's " + shapeString(p.m, p.n));
  if (!s.bias && args.bias != nullptr)
    return R::failure("bias: given, but the kernel was compiled without a bias");
  if (s.bias && (args.bias == nullptr || args.biasLength != p.n))
    return R::failure(
        "bias: the kernel needs " + std::to_string(p.n) + " values, got " +
        (args.bias ? std::to_string(args.biasLength) : std::string("none")));
  // K * samples * kMaxCodeProduct >= 2^31, compared without the product:
  // K can be large enough for it to overflow.
  if (p.k > ((int64_t(1) << 31) - 1) / (int64_t(samples) * kMaxCodeProduct))
    return R::failure("K = " + std::to_string(p.k) + " with " +
                      std::to_string(samples) +
                      " samples can overflow the exact int32 accumulator");
  // Host launches only: the host runtime reads packed operands while it
  // writes rows of the output. (The CUDA launcher's planning runs on
  // fabricated device addresses in its tests and checks allocations itself.)
  if (device == Device::CPU) {
    LQ_TRY(checkNoOverlap("out", args.out, "lhs", byteRange(args.lhs)));
    LQ_TRY(checkNoOverlap("out", args.out, "rhs", byteRange(args.rhs)));
  }
  if (device == Device::CPU && args.bias) {
    uintptr_t bias = reinterpret_cast<uintptr_t>(args.bias);
    LQ_TRY(checkNoOverlap("out", args.out, "bias",
                          {bias, bias + uintptr_t(p.n) * sizeof(float)}));
  }
  // An empty output reads nothing, not even the scales.
  if (p.m > 0 && p.n > 0) {
    if (s.lhs.dtype == DType::Packed4)
      LQ_TRY(checkScale("lhs", args.lhsScale));
    if (s.rhs.dtype == DType::Packed4)
      LQ_TRY(checkScale("rhs", args.rhsScale));
  }
  return p;
}

Status lq::runtime::checkQuantize(const QuantizeArgs &args, Device device) {
  if (args.input.dtype != DType::F32 && args.input.dtype != DType::BF16)
    return Error{"input: quantize takes f32 or bf16 values"};
  if (!knownFormat(args.format))
    return Error{"unknown format"};
  if (args.maxEstimate && args.format != Format::Log4)
    return Error{"a max estimate applies to LUQ (log4) only"};
  LQ_TRY(checkTensor("input", args.input, args.input.dtype, device));
  LQ_TRY(checkTensor("output", args.output, DType::Packed4, device));
  if (args.output.rows != args.input.rows ||
      args.output.cols != args.input.cols)
    return Error{"output: shape " +
                 shapeString(args.output.rows, args.output.cols) +
                 " differs from the input's " +
                 shapeString(args.input.rows, args.input.cols)};
  if (device == Device::CPU)
    LQ_TRY(checkNoOverlap("output", args.output, "input",
                          byteRange(args.input)));
  return Done{};
}

//===----------------------------------------------------------------------===//
// Quantizer parameters
//===----------------------------------------------------------------------===//

bool lq::runtime::usableRange(float m) {
  return m >= kMinRange && m < std::numeric_limits<float>::infinity();
}

OperandQuantizer lq::runtime::luqQuantizer(float m, bool nonfinite) {
  OperandQuantizer q;
  q.range = m;
  q.nonfinite = nonfinite;
  q.zero = nonfinite || !usableRange(m);
  q.inv = 64.0f / m;
  q.scale = q.zero ? 0.0f : m / 64.0f;
  return q;
}

OperandQuantizer lq::runtime::sawbQuantizer(float clip, bool nonfinite,
                                            Format format) {
  OperandQuantizer q;
  float levels = format == Format::SInt4 ? 7.0f : 15.0f;
  q.range = clip;
  q.nonfinite = nonfinite;
  q.zero = nonfinite || !usableRange(clip);
  q.inv = levels / clip;
  q.scale = q.zero ? 0.0f : clip / levels;
  return q;
}

float lq::runtime::sawbClipFromSums(double sumSquares, double sumMagnitudes,
                                    int64_t count, float maxFinite,
                                    bool nonfinite) {
  if (nonfinite)
    return std::numeric_limits<float>::quiet_NaN();
  if (count == 0)
    return 0.0f;
  return numerics::sawbClipFromMoments(sumSquares, sumMagnitudes,
                                       double(count), maxFinite);
}
