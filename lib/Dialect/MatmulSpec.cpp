//===- MatmulSpec.cpp - the kernel spec of an lq.matmul -------------------===//

#include "lq/Dialect/MatmulSpec.h"

using namespace mlir;
using namespace lq;

namespace {

/// How `operand` (the `side` operand of `op`) reaches a fused kernel.
FailureOr<OperandSpec> readOperand(MatmulOp op, Value operand, bool transposed,
                                   StringRef side, StringRef device) {
  OperandSpec spec;
  spec.format = getFormat(cast<QTensorType>(operand.getType()).getFormat());
  spec.transposed = transposed;
  if (auto quantize = operand.getDefiningOp<QuantizeOp>()) {
    Type element = quantize.getInput().getType().getElementType();
    if (!element.isF32() && !element.isBF16()) {
      std::string name;
      llvm::raw_string_ostream(name) << element;
      return op.emitError() << side << " operand: " << name
                            << " inputs have no " << device
                            << " kernel yet; use f32 or bf16";
    }
    spec.dtype = element.isBF16() ? DType::BF16 : DType::F32;
    return spec;
  }
  if (operand.getDefiningOp<UnpackOp>()) {
    spec.dtype = DType::Packed4;
    return spec;
  }
  return op.emitError() << side
                        << " operand must come from lq.quantize or lq.unpack "
                           "to be fused into a "
                        << device << " kernel";
}

} // namespace

FailureOr<GemmSpec> lq::readMatmulSpec(MatmulOp op, StringRef device) {
  FailureOr<OperandSpec> lhs = readOperand(
      op, op.getLhs().front(), op.getTransposeLhs(), "left", device);
  if (failed(lhs))
    return failure();
  FailureOr<OperandSpec> rhs =
      readOperand(op, op.getRhs(), op.getTransposeRhs(), "right", device);
  if (failed(rhs))
    return failure();
  GemmSpec spec;
  spec.lhs = *lhs;
  spec.rhs = *rhs;
  spec.samples = op.getNumSamples();
  if (auto quantize = op.getLhs().front().getDefiningOp<QuantizeOp>())
    spec.hindsight = quantize.getHindsight();
  spec.bias = bool(op.getBias());
  spec.relu = op.getRelu();
  spec.output = cast<RankedTensorType>(op.getType()).getElementType().isBF16()
                    ? DType::BF16
                    : DType::F32;
  return spec;
}
