//===- QuantizeMatmulsAnalysis.h - the GEMMs of a linalg step ---*- C++ -*-===//
//
// Internal to lq-quantize-matmuls: what the pass reads of a function before
// it builds lq ops. It finds the GEMMs and their training roles (marked
// with lq.role or inferred from the graph), numbers the layers, and groups
// the backward GEMMs that read one gradient, which share one LUQ
// quantization on one Philox stream.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_LIB_TRANSFORMS_QUANTIZEMATMULSANALYSIS_H
#define LQ_LIB_TRANSFORMS_QUANTIZEMATMULSANALYSIS_H

#include "lq/Dialect/LqDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"

#include <optional>

namespace lq::transforms {

inline constexpr llvm::StringLiteral kRoleAttr = "lq.role";

/// A GEMM in normalized form: result = op(a) op(b), where op transposes the
/// operand when its flag is set.
struct Gemm {
  mlir::linalg::LinalgOp op;
  mlir::Value a, b;
  bool aT = false, bT = false;
  std::optional<GemmRole> role;
  /// For backward GEMMs, the gradient operand (a or b).
  mlir::Value grad;

  /// Whether `v` is an operand whose rows (the batch) are contracted, the
  /// gradient's position in dW = dy^T x.
  bool contractsRowsOf(mlir::Value v) const {
    return (a == v && aT) || (b == v && !bT);
  }
};

/// Whether `init` is a zero constant or a zero fill.
bool isZeroFilled(mlir::Value init);

/// True when every element of `v` is >= 0 because it is a ReLU: an
/// elementwise linalg.generic yielding max(_, 0), or a slice of one.
bool isNonNegative(mlir::Value v);

/// Why `op` is not a 2-D GEMM that lq.matmul computes ("is batched: ..."),
/// or an empty string when it is one.
std::string whyNotGemm(mlir::linalg::LinalgOp op);

/// A contraction with lq.role and one batch dimension, and the 2-D
/// contraction that each of its batch elements is.
struct BatchedGemm {
  mlir::linalg::LinalgOp op;
  int64_t count = 0;
  /// Where the batch dimension is in the left, right and result operands.
  unsigned lhsPos = 0, rhsPos = 0, resultPos = 0;
  /// The indexing maps and iterators of one batch element's contraction.
  llvm::SmallVector<mlir::AffineMap> maps;
  llvm::SmallVector<mlir::utils::IteratorType> iterators;
};

/// The batched contractions of `fn` that have lq.role, in program order,
/// but those in `ignore`.
llvm::SmallVector<mlir::linalg::LinalgOp>
findBatchedGemms(mlir::func::FuncOp fn,
                 const llvm::DenseSet<mlir::Operation *> &ignore);

/// How `op`, one of findBatchedGemms, splits; an error when it does not:
/// more than one batch dimension, a dynamic batch size or a non-zero init.
mlir::FailureOr<BatchedGemm> analyzeBatchedGemm(mlir::linalg::LinalgOp op);

/// Finds the 2-D GEMMs of `fn` in program order, but those in `ignore`,
/// and their roles: the lq.role of each, else the role inferred from the
/// graph, else none (with `strict`, an error).
mlir::LogicalResult
classifyGemms(mlir::func::FuncOp fn, bool strict,
              const llvm::DenseSet<mlir::Operation *> &ignore,
              llvm::SmallVectorImpl<Gemm> &gemms);

/// The backward GEMMs that read one gradient, and its quantization.
struct GradGroup {
  llvm::SmallVector<Gemm *> gemms;
  std::optional<unsigned> layer;
  unsigned order = 0; // position of the first GEMM, for layerless groups
  int64_t stream = 0;
};

/// Which classified GEMMs are quantized. Layers are the forward GEMMs in
/// program order; the slices of one batched forward GEMM are one layer, so
/// that keep-first / keep-last keep all of it. It points into `gemms`,
/// which must not move while it lives.
class QuantizationPlan {
public:
  /// `batchOf` maps each 2-D slice of a batched contraction to the index
  /// of that contraction.
  QuantizationPlan(llvm::MutableArrayRef<Gemm> gemms,
                   const llvm::DenseMap<mlir::Operation *, unsigned> &batchOf,
                   bool keepFirst, bool keepLast);
  QuantizationPlan(const QuantizationPlan &) = delete;
  QuantizationPlan &operator=(const QuantizationPlan &) = delete;

  /// The layer of the forward GEMM `g` and whether it is the last one.
  std::optional<unsigned> layer(const Gemm &g) const {
    auto it = layerOf.find(&g);
    return it == layerOf.end() ? std::nullopt : std::optional(it->second);
  }
  unsigned layers() const { return numLayers; }
  /// Whether the forward GEMM `g` keeps its precision.
  bool keeps(const Gemm &g) const { return isKept(layerOf.lookup(&g)); }
  /// Whether nothing at all is quantized.
  bool empty() const;
  /// The gradients to quantize, in layer order, then program order for
  /// those of no layer: the order their streams are handed out in.
  llvm::ArrayRef<GradGroup *> gradients() const { return quantized; }

private:
  using LayerMap = llvm::DenseMap<mlir::Value, unsigned>;
  void numberLayers(const llvm::DenseMap<mlir::Operation *, unsigned> &batchOf,
                    LayerMap &layerOfWeight, LayerMap &layerOfInput);
  void groupGradients(const LayerMap &layerOfWeight,
                      const LayerMap &layerOfInput);
  bool isKept(std::optional<unsigned> layer) const;

  llvm::MutableArrayRef<Gemm> gemms;
  bool keepFirst, keepLast;
  unsigned numLayers = 0;
  llvm::DenseMap<const Gemm *, unsigned> layerOf;
  llvm::MapVector<mlir::Value, GradGroup> groups;
  llvm::SmallVector<GradGroup *> quantized;
};

/// Gives each gradient its Philox stream: the smallest id not used
/// explicitly in `fn` (by seeded lq.quantize ops and lq.linear_grad ops),
/// in order, so that no two gradients share random numbers.
void assignStreams(mlir::func::FuncOp fn,
                   llvm::ArrayRef<GradGroup *> gradients);

} // namespace lq::transforms

#endif // LQ_LIB_TRANSFORMS_QUANTIZEMATMULSANALYSIS_H
