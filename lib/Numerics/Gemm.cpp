//===- Gemm.cpp - Exact quantized GEMM ------------------------------------===//

#include "lq/Numerics/Gemm.h"

#include "lq/Numerics/Luq.h"
#include "lq/Numerics/Pack.h"

#include <cmath>
#include <vector>

namespace lq::numerics {

namespace {

// Element counts of the buffers a GEMM touches.
struct GemmSizes {
  size_t lhsSample; // m * k codes per LHS sample
  size_t lhs;       // all samples
  size_t rhs;       // k * n
  size_t out;       // m * n
};

// The stored (not logical) extent of an operand.
struct StoredShape {
  size_t rows;
  size_t cols;
};

StoredShape storedLhs(const GemmShape &shape, bool transposed) {
  return transposed ? StoredShape{shape.k, shape.m}
                    : StoredShape{shape.m, shape.k};
}

StoredShape storedRhs(const GemmShape &shape, bool transposed) {
  return transposed ? StoredShape{shape.n, shape.k}
                    : StoredShape{shape.k, shape.n};
}

bool accumulatorIsExact(size_t k, uint32_t samples) {
  int64_t maxTermCount = (kAccumulatorLimit - 1) / kMaxProductMagnitude;
  return k <= uint64_t(maxTermCount) / samples;
}

// Everything about a GEMM that can be checked without reading the codes.
Status checkProblem(const GemmShape &shape, Format lhsFormat, Format rhsFormat,
                    const GemmOptions &options, GemmSizes &sizes) {
  if (!isValidSampleCount(options.lhsSamples))
    return Status::InvalidSampleCount;
  if (lhsFormat == Format::Log4 && rhsFormat == Format::Log4)
    return Status::Log4TimesLog4;
  if (!accumulatorIsExact(shape.k, options.lhsSamples))
    return Status::AccumulatorRange;
  if (!multiplyFits(shape.m, shape.k, sizes.lhsSample) ||
      !multiplyFits(sizes.lhsSample, options.lhsSamples, sizes.lhs) ||
      !multiplyFits(shape.k, shape.n, sizes.rhs) ||
      !multiplyFits(shape.m, shape.n, sizes.out))
    return Status::InvalidShape;
  return Status::Ok;
}

Status checkBuffers(const void *lhs, const void *rhs,
                    const GemmOutput &output, const GemmSizes &sizes) {
  bool anyOutput = output.f32 || output.bf16 || output.accumulators;
  if ((sizes.lhs != 0 && !lhs) || (sizes.rhs != 0 && !rhs) ||
      (sizes.out != 0 && !anyOutput))
    return Status::NullPointer;
  return Status::Ok;
}

bool allCodesValid(Format format, const int8_t *codes, size_t count) {
  for (size_t i = 0; i < count; ++i)
    if (!isValidCode(format, codes[i]))
      return false;
  return true;
}

// The code integers of the LHS as [sample][m][k] and of the RHS as [n][k],
// so that the dot products below walk both contiguously.
std::vector<int32_t> lhsValues(const GemmShape &shape, const GemmOperand &lhs,
                               uint32_t samples) {
  std::vector<int32_t> values(samples * shape.m * shape.k);
  size_t perSample = shape.m * shape.k;
  for (uint32_t s = 0; s < samples; ++s) {
    const int8_t *codes = lhs.codes + s * perSample;
    for (size_t i = 0; i < shape.m; ++i)
      for (size_t p = 0; p < shape.k; ++p) {
        size_t stored = lhs.transposed ? p * shape.m + i : i * shape.k + p;
        values[s * perSample + i * shape.k + p] =
            codeValue(lhs.format, codes[stored]);
      }
  }
  return values;
}

std::vector<int32_t> rhsValues(const GemmShape &shape,
                               const GemmOperand &rhs) {
  std::vector<int32_t> values(shape.n * shape.k);
  for (size_t j = 0; j < shape.n; ++j)
    for (size_t p = 0; p < shape.k; ++p) {
      size_t stored = rhs.transposed ? j * shape.k + p : p * shape.n + j;
      values[j * shape.k + p] = codeValue(rhs.format, rhs.codes[stored]);
    }
  return values;
}

// acc[i, j]: int32 cannot overflow, checkProblem bounded every partial sum
// by K * samples * 960 < 2^31.
int32_t accumulate(const std::vector<int32_t> &lhs,
                   const std::vector<int32_t> &rhs, const GemmShape &shape,
                   uint32_t samples, size_t i, size_t j) {
  int32_t acc = 0;
  size_t perSample = shape.m * shape.k;
  for (uint32_t s = 0; s < samples; ++s) {
    const int32_t *row = lhs.data() + s * perSample + i * shape.k;
    const int32_t *col = rhs.data() + j * shape.k;
    for (size_t p = 0; p < shape.k; ++p)
      acc += row[p] * col[p];
  }
  return acc;
}

// The f32 epilogue, one rounding per step: scale, bias add, ReLU.
float epilogue(int32_t acc, float scale, const GemmOptions &options,
               size_t column) {
  float value = float(acc) * scale;
  if (options.bias)
    value = value + options.bias[column];
  // max(v, +0) that keeps NaN: a NaN bias must stay visible.
  if (options.relu && !(value > 0.0f) && !std::isnan(value))
    value = 0.0f;
  return value;
}

// Cannot fail once checkProblem and checkBuffers accepted the problem: the
// sizes fit and a non-empty operand has data.
std::vector<int8_t> unpackOperand(const PackedGemmOperand &operand,
                                  StoredShape stored, size_t samples) {
  std::vector<int8_t> codes(samples * stored.rows * stored.cols);
  size_t packedSample = stored.rows * packedRowBytes(stored.cols);
  size_t unpackedSample = stored.rows * stored.cols;
  for (size_t s = 0; s < samples; ++s)
    unpackCodes(operand.format, operand.data + s * packedSample, stored.rows,
                stored.cols, codes.data() + s * unpackedSample);
  return codes;
}

GemmResult failure(Status status) {
  GemmResult result;
  result.status = status;
  return result;
}

} // namespace

GemmResult quantizedGemm(const GemmShape &shape, const GemmOperand &lhs,
                         const GemmOperand &rhs, const GemmOptions &options,
                         const GemmOutput &output) {
  GemmSizes sizes;
  if (Status status =
          checkProblem(shape, lhs.format, rhs.format, options, sizes);
      status != Status::Ok)
    return failure(status);
  if (Status status =
          checkBuffers(lhs.codes, rhs.codes, output, sizes);
      status != Status::Ok)
    return failure(status);
  if (!allCodesValid(lhs.format, lhs.codes, sizes.lhs) ||
      !allCodesValid(rhs.format, rhs.codes, sizes.rhs))
    return failure(Status::InvalidCode);

  uint32_t samples = options.lhsSamples;
  GemmResult result;
  float productScale = lhs.scale * rhs.scale;
  result.scale = productScale * (1.0f / float(samples));
  std::vector<int32_t> a = lhsValues(shape, lhs, samples);
  std::vector<int32_t> b = rhsValues(shape, rhs);
  for (size_t i = 0; i < shape.m; ++i) {
    for (size_t j = 0; j < shape.n; ++j) {
      size_t at = i * shape.n + j;
      int32_t acc = accumulate(a, b, shape, samples, i, j);
      float value = epilogue(acc, result.scale, options, j);
      if (output.accumulators)
        output.accumulators[at] = acc;
      if (output.f32)
        output.f32[at] = value;
      if (output.bf16)
        output.bf16[at] = floatToBf16(value);
    }
  }
  return result;
}

GemmResult quantizedGemmPacked(const GemmShape &shape,
                               const PackedGemmOperand &lhs,
                               const PackedGemmOperand &rhs,
                               const GemmOptions &options,
                               const GemmOutput &output) {
  GemmSizes sizes;
  if (Status status =
          checkProblem(shape, lhs.format, rhs.format, options, sizes);
      status != Status::Ok)
    return failure(status);
  if (Status status = checkBuffers(lhs.data, rhs.data, output, sizes);
      status != Status::Ok)
    return failure(status);

  StoredShape lhsStored = storedLhs(shape, lhs.transposed);
  StoredShape rhsStored = storedRhs(shape, rhs.transposed);
  std::vector<int8_t> lhsCodes =
      unpackOperand(lhs, lhsStored, options.lhsSamples);
  std::vector<int8_t> rhsCodes = unpackOperand(rhs, rhsStored, 1);
  GemmOperand unpackedLhs{lhsCodes.data(), lhs.format, lhs.scale,
                          lhs.transposed};
  GemmOperand unpackedRhs{rhsCodes.data(), rhs.format, rhs.scale,
                          rhs.transposed};
  return quantizedGemm(shape, unpackedLhs, unpackedRhs, options, output);
}

} // namespace lq::numerics
