//===- LqOps.cpp - lq operations: verifiers and canonicalization ----------===//

#include "lq/Dialect/LqDialect.h"
#include "lq/Numerics/Sawb.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace lq;

#define GET_OP_CLASSES
#include "lq/Dialect/LqOps.cpp.inc"

namespace {

/// Two dimensions agree when equal or when either is dynamic.
bool dimsCompatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

std::string dimToString(int64_t dim) {
  return ShapedType::isDynamic(dim) ? "?" : std::to_string(dim);
}

/// Checks that `shape` is compatible with [rows, cols]; `what` names it.
LogicalResult verifyMatrixShape(Operation *op, StringRef what,
                                ArrayRef<int64_t> shape, int64_t rows,
                                int64_t cols) {
  if (dimsCompatible(shape[0], rows) && dimsCompatible(shape[1], cols))
    return success();
  return op->emitOpError() << what << " must be " << dimToString(rows) << "x"
                           << dimToString(cols) << ", got "
                           << dimToString(shape[0]) << "x"
                           << dimToString(shape[1]);
}

/// Philox counter words are 32 bits: stream and sample ids must fit.
LogicalResult verifyCounterWord(Operation *op, StringRef name, int64_t value) {
  if (value < 0 || value > int64_t(UINT32_MAX))
    return op->emitOpError()
           << name << " must be in [0, 2^32), got " << value;
  return success();
}

LogicalResult verifySmpCount(Operation *op, int64_t count) {
  if (count < 1 || count > int64_t(kMaxSmpSamples) ||
      !llvm::isPowerOf2_64(count))
    return op->emitOpError() << "SMP sample count must be a power of two in [1, "
                             << kMaxSmpSamples << "], got " << count;
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// QuantizeOp
//===----------------------------------------------------------------------===//

LogicalResult QuantizeOp::verify() {
  QTensorType resultType = getResult().getType();
  ArrayRef<int64_t> inShape = getInput().getType().getShape();
  if (failed(verifyMatrixShape(*this, "result shape", resultType.getShape(),
                               inShape[0], inShape[1])))
    return failure();
  if (resultType.isLog4()) {
    if (!getSeed())
      return emitOpError("LUQ (!lq.log4) quantization needs a seed");
    return success(succeeded(verifyCounterWord(*this, "stream", getStream())) &&
                   succeeded(verifyCounterWord(*this, "sample", getSample())));
  }
  if (getSeed())
    return emitOpError("SAWB (int4) quantization is deterministic and takes no "
                       "seed");
  if (getStream() != 0 || getSample() != 0)
    return emitOpError("stream and sample apply only to LUQ (!lq.log4)");
  if (getHindsight())
    return emitOpError("in-hindsight scaling applies only to LUQ (!lq.log4)");
  return success();
}

namespace {

/// What quantize(dequantize(q, step), clip) gives, where q and step come from
/// a SAWB quantize with the same clip and format. Requantizing a code's
/// value gives the code back for every finite clip (the values are within a
/// few ulps of integers; the unit test NumericsSawb.RequantizeGivesCodesBack
/// checks clips across the f32 mantissas), so the codes are always q. The scale and flag are
/// the producer's only when its input is finite: after a NaN input the
/// producer has zero codes, scale 0 and `nonfinite`, while the requantize
/// sees zeros and a finite clip and reports clip / 7 and no flag. So there
/// is a fold only when the clip settles that case:
///
/// * the clip is `lq.sawb_clip` of the producer's input: a non-finite input
///   makes it NaN, and both quantizers report zero codes, scale 0 and the
///   flag; the results are the producer's;
/// * the clip is a constant: the numerics core quantizes each possible
///   dequantized value (every code times the step, and the zeros of a
///   non-finite input), which must give the code back with one scale and
///   flag for all of them; those are the results.
struct SawbRequantizeResults {
  float scale;
  bool nonfinite;
};

std::optional<SawbRequantizeResults> constantClipRequantize(float clip,
                                                            bool isSigned) {
  namespace num = lq::numerics;
  num::SawbKind kind =
      isSigned ? num::SawbKind::Signed : num::SawbKind::Unsigned;
  num::Format format = num::sawbFormat(kind);
  float anyValue = 0.0f;
  int8_t code = 0;
  num::SawbResult producer =
      num::sawbEncode(num::MatrixView::f32(&anyValue, 1, 1), clip, kind, &code);
  std::optional<SawbRequantizeResults> results;
  for (int q = isSigned ? -7 : 0; q <= (isSigned ? 7 : 15); ++q) {
    // value * step as lq.dequantize computes it: one f32 multiply.
    float value = float(num::codeValue(format, int8_t(q))) * producer.step;
    num::SawbResult again =
        num::sawbEncode(num::MatrixView::f32(&value, 1, 1), clip, kind, &code);
    // A zero step leaves only zero codes to dequantize.
    int8_t expected = producer.step == 0.0f ? 0 : int8_t(q);
    if (again.status != num::Status::Ok || code != expected)
      return std::nullopt;
    if (results && (llvm::bit_cast<uint32_t>(results->scale) !=
                        llvm::bit_cast<uint32_t>(again.step) ||
                    results->nonfinite != again.nonfinite))
      return std::nullopt;
    results = SawbRequantizeResults{again.step, again.nonfinite};
  }
  return results;
}

/// quantize(dequantize(q, step), clip) -> q when the results are provably
/// equal (see SawbRequantizeResults). LUQ has no such identity: 64 / m is
/// rounded, and stochastic rounding then sees a value one ulp off a power
/// of two.
struct FoldSawbRequantize : OpRewritePattern<QuantizeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(QuantizeOp op,
                                PatternRewriter &rewriter) const override {
    QTensorType type = op.getResult().getType();
    if (type.isLog4())
      return failure();
    auto dequant = op.getInput().getDefiningOp<DequantizeOp>();
    if (!dequant)
      return failure();
    auto producer = dequant.getInput().getDefiningOp<QuantizeOp>();
    if (!producer || producer.getScale() != dequant.getScale() ||
        producer.getRange() != op.getRange() ||
        producer.getResult().getType() != type)
      return failure();
    Location loc = op.getLoc();
    auto clipOp = op.getRange().getDefiningOp<SawbClipOp>();
    if (clipOp && clipOp.getInput() == producer.getInput()) {
      Value noOverflow = arith::ConstantIntOp::create(rewriter, loc, 0, 32);
      rewriter.replaceOp(op, {producer.getResult(), producer.getScale(),
                              producer.getNonfinite(), noOverflow});
      return success();
    }
    FloatAttr clipAttr;
    if (!matchPattern(op.getRange(), m_Constant(&clipAttr)))
      return failure();
    std::optional<SawbRequantizeResults> results = constantClipRequantize(
        clipAttr.getValue().convertToFloat(),
        getFormat(type.getFormat()) == Format::SInt4);
    if (!results)
      return failure();
    Value noOverflow = arith::ConstantIntOp::create(rewriter, loc, 0, 32);
    Value scale = arith::ConstantFloatOp::create(
        rewriter, loc, rewriter.getF32Type(), APFloat(results->scale));
    Value nonfinite =
        arith::ConstantIntOp::create(rewriter, loc, results->nonfinite, 1);
    rewriter.replaceOp(op,
                       {producer.getResult(), scale, nonfinite, noOverflow});
    return success();
  }
};

} // namespace

void QuantizeOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                             MLIRContext *context) {
  results.add<FoldSawbRequantize>(context);
}

//===----------------------------------------------------------------------===//
// DequantizeOp
//===----------------------------------------------------------------------===//

LogicalResult DequantizeOp::verify() {
  ArrayRef<int64_t> inShape = getInput().getType().getShape();
  return verifyMatrixShape(*this, "result shape",
                           getResult().getType().getShape(), inShape[0],
                           inShape[1]);
}

//===----------------------------------------------------------------------===//
// PackOp / UnpackOp
//===----------------------------------------------------------------------===//

namespace {

/// Bytes per packed row of `cols` codes.
int64_t packedCols(int64_t cols) {
  return ShapedType::isDynamic(cols) ? cols : (cols + 1) / 2;
}

LogicalResult verifyPacking(Operation *op, ArrayRef<int64_t> codes,
                            ArrayRef<int64_t> bytes) {
  return verifyMatrixShape(op, "packed shape", bytes, codes[0],
                           packedCols(codes[1]));
}

} // namespace

LogicalResult PackOp::verify() {
  return verifyPacking(*this, getInput().getType().getShape(),
                       getResult().getType().getShape());
}

LogicalResult UnpackOp::verify() {
  ArrayRef<int64_t> codes = getResult().getType().getShape();
  if (ShapedType::isDynamic(codes[1]))
    return emitOpError("result column count must be static: odd and even "
                       "counts pack to the same number of bytes");
  return verifyPacking(*this, codes, getInput().getType().getShape());
}

OpFoldResult UnpackOp::fold(FoldAdaptor) {
  // unpack(pack(q)) is q when the types agree: packing loses nothing.
  if (auto pack = getInput().getDefiningOp<PackOp>())
    if (pack.getInput().getType() == getType())
      return pack.getInput();
  return {};
}

//===----------------------------------------------------------------------===//
// MatmulOp
//===----------------------------------------------------------------------===//

namespace {

LogicalResult verifyRole(MatmulOp op, GemmRole role) {
  bool lhsLog = op.getLhsType().isLog4();
  bool rhsLog = op.getRhsType().isLog4();
  if (role == GemmRole::forward) {
    if (lhsLog || rhsLog)
      return op.emitOpError("forward GEMM operands must be int4 (SAWB), not "
                            "!lq.log4");
    return success();
  }
  if (!lhsLog || rhsLog)
    return op.emitOpError() << stringifyGemmRole(role)
                            << " GEMM needs a !lq.log4 gradient on the left "
                               "and an int4 operand on the right";
  return success();
}

} // namespace

LogicalResult MatmulOp::verify() {
  if (getLhs().empty())
    return emitOpError("needs at least one left operand");
  if (failed(verifySmpCount(*this, getNumSamples())))
    return failure();
  QTensorType lhsType = getLhsType();
  for (Value sample : getLhs())
    if (sample.getType() != lhsType)
      return emitOpError("SMP samples of the left operand must all have type ")
             << lhsType;
  if (getNumSamples() > 1 && !lhsType.isLog4())
    return emitOpError("SMP samples apply to a LUQ (!lq.log4) left operand");
  QTensorType rhsType = getRhsType();
  if (lhsType.isLog4() && rhsType.isLog4())
    return emitOpError("at most one operand may be !lq.log4: the exact int32 "
                       "accumulation bound assumes |a * b| <= 15 * 64");

  ArrayRef<int64_t> a = lhsType.getShape(), b = rhsType.getShape();
  int64_t m = getTransposeLhs() ? a[1] : a[0];
  int64_t k = getTransposeLhs() ? a[0] : a[1];
  int64_t kb = getTransposeRhs() ? b[1] : b[0];
  int64_t n = getTransposeRhs() ? b[0] : b[1];
  if (!dimsCompatible(k, kb))
    return emitOpError() << "reduction dimensions differ: " << dimToString(k)
                         << " (left) vs " << dimToString(kb) << " (right)";
  // K * samples * kMaxCodeProduct >= 2^31, without computing the product:
  // a huge static K would overflow it.
  if (!ShapedType::isDynamic(k) &&
      k > ((int64_t(1) << 31) - 1) /
              (int64_t(getNumSamples()) * kMaxCodeProduct))
    return emitOpError() << "K = " << k << " with " << getNumSamples()
                         << " samples can overflow the exact int32 accumulator";
  if (failed(verifyMatrixShape(*this, "result shape",
                               getResult().getType().getShape(), m, n)))
    return failure();
  if (Value bias = getBias()) {
    int64_t biasLen = cast<RankedTensorType>(bias.getType()).getDimSize(0);
    if (!dimsCompatible(biasLen, n))
      return emitOpError() << "bias must have " << dimToString(n)
                           << " elements, got " << dimToString(biasLen);
  }
  if (std::optional<GemmRole> role = getRole())
    return verifyRole(*this, *role);
  return success();
}

//===----------------------------------------------------------------------===//
// LinearOp / LinearGradOp
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::verify() {
  ArrayRef<int64_t> x = getInput().getType().getShape();
  ArrayRef<int64_t> w = getWeight().getType().getShape();
  if (!dimsCompatible(x[1], w[1]))
    return emitOpError() << "input features differ: input has "
                         << dimToString(x[1]) << ", weight has "
                         << dimToString(w[1]);
  if (Value bias = getBias()) {
    int64_t biasLen = cast<RankedTensorType>(bias.getType()).getDimSize(0);
    if (!dimsCompatible(biasLen, w[0]))
      return emitOpError() << "bias must have " << dimToString(w[0])
                           << " elements, got " << dimToString(biasLen);
  }
  return verifyMatrixShape(*this, "result shape",
                           getResult().getType().getShape(), x[0], w[0]);
}

LogicalResult LinearGradOp::verify() {
  ArrayRef<int64_t> x = getInput().getType().getShape();
  ArrayRef<int64_t> w = getWeight().getType().getShape();
  ArrayRef<int64_t> dy = getGrad().getType().getShape();
  if (!dimsCompatible(x[1], w[1]))
    return emitOpError() << "input features differ: input has "
                         << dimToString(x[1]) << ", weight has "
                         << dimToString(w[1]);
  if (failed(verifyMatrixShape(*this, "gradient shape", dy, x[0], w[0])) ||
      failed(verifyMatrixShape(*this, "input gradient shape",
                               getInputGrad().getType().getShape(), x[0],
                               x[1])) ||
      failed(verifyMatrixShape(*this, "weight gradient shape",
                               getWeightGrad().getType().getShape(), w[0],
                               w[1])) ||
      failed(verifySmpCount(*this, getSmp())))
    return failure();
  if (std::optional<int64_t> stream = getStream())
    return verifyCounterWord(*this, "stream", *stream);
  return success();
}
