//===- QuantizeMatmulsNormalize.h - frontend GEMMs as 2-D GEMMs -*- C++ -*-===//
//
// Internal to lq-quantize-matmuls: rewrites the forms in which frontends
// (torch-mlir, IREE's input pipelines, StableHLO-to-linalg) write the GEMMs
// of a training step into the 2-D GEMMs that QuantizeMatmulsAnalysis reads,
// tentatively: a GEMM that the pass then leaves in high precision is put
// back exactly as it was written.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_LIB_TRANSFORMS_QUANTIZEMATMULSNORMALIZE_H
#define LQ_LIB_TRANSFORMS_QUANTIZEMATMULSNORMALIZE_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "llvm/ADT/DenseSet.h"

namespace lq::transforms {

/// One contraction written as a 2-D GEMM. `original` (a contraction, or
/// the sum over a batch that reads one) is kept, unused, until the pass
/// knows whether `gemm` is quantized.
struct NormalizedGemm {
  mlir::Operation *original;
  /// The contraction `original` read, when it is a sum over its batch.
  mlir::Operation *summedBatch = nullptr;
  mlir::linalg::LinalgOp gemm;
  /// What replaced the uses of `original`: `gemm`'s result, or its
  /// expansion back to `original`'s shape.
  mlir::Value replacement;
};

/// Rewrites the contractions of `fn` into 2-D GEMMs where they are written
/// otherwise: operands read through linalg.transpose, a permuting or
/// broadcasting copy (linalg.generic) or linalg.broadcast have the view
/// folded into their indexing; a sum over the batch of a batched
/// contraction becomes one contraction over batch and rows; contractions
/// with several row, column or reduction dimensions, each contiguous in
/// the operands (3-D activations [batch, sequence, features] times a 2-D
/// weight), act on tensor.collapse_shape'd operands and their result is
/// expanded back. Equal reshapes and views of one tensor are merged first,
/// so that the GEMMs of one layer read the same values.
llvm::SmallVector<NormalizedGemm> normalizeGemms(mlir::func::FuncOp fn);

/// Settles the rewrites of normalizeGemms once the pass has quantized what
/// it could: `quantized` holds the GEMMs it replaced (and erased). The
/// originals of those are erased; every other GEMM is put back as it was.
void settleNormalizedGemms(
    llvm::ArrayRef<NormalizedGemm> normalized,
    const llvm::DenseSet<mlir::Operation *> &quantized);

/// Erases `v`'s defining op, and then its operands' recursively, while
/// each is a pure view, reshape, fill or empty tensor that nothing reads.
void eraseDeadViews(mlir::Value v);

/// Folds each forward lq.matmul whose result only feeds a bias add (a
/// linalg.generic adding a vector broadcast along rows, also after a
/// tensor.expand_shape of the rows) and then a ReLU into the lq.matmul
/// epilogue, which computes exactly that in f32.
void fuseEpilogues(mlir::func::FuncOp fn);

} // namespace lq::transforms

#endif // LQ_LIB_TRANSFORMS_QUANTIZEMATMULSNORMALIZE_H
