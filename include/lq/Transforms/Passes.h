//===- Passes.h - lq passes -------------------------------------*- C++ -*-===//

#ifndef LQ_TRANSFORMS_PASSES_H
#define LQ_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Pass/Pass.h"

namespace lq {

#define GEN_PASS_DECL
#include "lq/Dialect/LqPasses.h.inc"

/// Patterns that rewrite lq.linear / lq.linear_grad into quantizers and
/// GEMMs. Streams must already be assigned (see assignLinearGradStreams).
void populateExpandLinearPatterns(mlir::RewritePatternSet &patterns);

/// Gives every lq.linear_grad under `root` without a `stream` the smallest
/// id not used explicitly in its function; fails (with a diagnostic) when
/// two layers share an explicit stream and the same seed value.
mlir::LogicalResult assignLinearGradStreams(mlir::Operation *root);

#define GEN_PASS_REGISTRATION
#include "lq/Dialect/LqPasses.h.inc"

} // namespace lq

#endif // LQ_TRANSFORMS_PASSES_H
