//===- LqOps.cpp - lq operations: verifiers and canonicalization ----------===//

#include "lq/Dialect/LqDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
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

/// quantize(dequantize(q, step), clip) -> q when q and step come from a SAWB
/// quantize with the same clip and format: codes times step times the
/// reciprocal scale are within a few ulps of the integer codes, so round to
/// nearest gives the same codes back. (LUQ has no such identity: 64 / m is
/// rounded, and stochastic rounding then sees a value one ulp off a power
/// of two.)
struct FoldSawbRequantize : OpRewritePattern<QuantizeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(QuantizeOp op,
                                PatternRewriter &rewriter) const override {
    if (op.getResult().getType().isLog4())
      return failure();
    auto dequant = op.getInput().getDefiningOp<DequantizeOp>();
    if (!dequant)
      return failure();
    auto producer = dequant.getInput().getDefiningOp<QuantizeOp>();
    if (!producer || producer.getScale() != dequant.getScale() ||
        producer.getRange() != op.getRange() ||
        producer.getResult().getType() != op.getResult().getType())
      return failure();
    Location loc = op.getLoc();
    Value noNonfinite = arith::ConstantIntOp::create(rewriter, loc, 0, 1);
    Value noOverflow = arith::ConstantIntOp::create(rewriter, loc, 0, 32);
    rewriter.replaceOp(op, {producer.getResult(), producer.getScale(),
                            noNonfinite, noOverflow});
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
  if (!ShapedType::isDynamic(k) &&
      k * int64_t(getNumSamples()) * kMaxCodeProduct >= (int64_t(1) << 31))
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
