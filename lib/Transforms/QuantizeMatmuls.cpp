//===- QuantizeMatmuls.cpp - linalg training GEMMs to lq ops --------------===//
//
// Takes a training step written in linalg on tensors (the form that
// framework lowerings produce) and replaces its forward, backward-data and
// weight-gradient GEMMs with the quantizers and GEMMs that lq-expand-linear
// produces for lq.linear / lq.linear_grad. What to replace is found by
// QuantizeMatmulsAnalysis; this file builds the ops.
//
//===----------------------------------------------------------------------===//

#include "QuantizeMatmulsAnalysis.h"
#include "QuantizeMatmulsNormalize.h"

#include "lq/Dialect/LqDialect.h"
#include "lq/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Dominance.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"

namespace lq {
#define GEN_PASS_DEF_LQQUANTIZEMATMULS
#include "lq/Dialect/LqPasses.h.inc"
} // namespace lq

using namespace mlir;
using namespace lq;
using namespace lq::transforms;

namespace {

constexpr StringLiteral kSeedAttr = "lq.seed";
constexpr StringLiteral kEstimateAttr = "lq.max_estimate";
constexpr StringLiteral kGradMaxAttr = "lq.grad_max";

/// Places the builder right after the definition of `v`, so that what it
/// builds dominates every use of `v`.
void setInsertionAfterDef(OpBuilder &b, Value v) {
  if (auto arg = dyn_cast<BlockArgument>(v))
    b.setInsertionPointToStart(arg.getOwner());
  else
    b.setInsertionPointAfter(v.getDefiningOp());
}

/// Erases a contraction whose uses are replaced, and the fill, reshapes
/// and views of its operands that nothing else reads.
void eraseContraction(linalg::LinalgOp op) {
  SmallVector<Value> operands(op->getOperands());
  op->erase();
  for (Value operand : operands)
    eraseDeadViews(operand);
}

/// The rank-reducing slices of tensors along a batch dimension. Each
/// (tensor, batch position) is sliced once, so that the dx and dW GEMMs of
/// one batch element read the same gradient slice and share its LUQ
/// quantization.
class BatchSlices {
public:
  explicit BatchSlices(MLIRContext *ctx) : ctx(ctx) {}

  /// The `count` slices of `v` along dimension `pos`, made right after the
  /// definition of `v`.
  SmallVector<Value> get(Value v, unsigned pos, int64_t count) {
    auto [it, inserted] = slices.try_emplace({v, pos});
    if (inserted)
      it->second = make(v, pos, count);
    return it->second;
  }

private:
  SmallVector<Value> make(Value v, unsigned pos, int64_t count) {
    OpBuilder b(ctx);
    setInsertionAfterDef(b, v);
    Location loc = v.getLoc();
    auto type = cast<RankedTensorType>(v.getType());
    int64_t rank = type.getRank();
    SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, v);
    SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
    sizes[pos] = b.getIndexAttr(1);
    SmallVector<int64_t> shape(type.getShape());
    shape.erase(shape.begin() + pos);
    auto sliceType = RankedTensorType::get(shape, type.getElementType());
    SmallVector<Value> out;
    for (int64_t i = 0; i < count; ++i) {
      offsets[pos] = b.getIndexAttr(i);
      out.push_back(tensor::ExtractSliceOp::create(b, loc, sliceType, v,
                                                   offsets, sizes, strides));
    }
    return out;
  }

  MLIRContext *ctx;
  DenseMap<std::pair<Value, unsigned>, SmallVector<Value>> slices;
};

struct Quantized {
  SmallVector<Value> codes; // one per SMP sample for LUQ
  Value scale;
};

/// The operands of the lq.matmul that computes a GEMM.
struct MatmulOperands {
  Quantized lhs, rhs;
  bool transposeLhs = false, transposeRhs = false;
  /// The lq.matmul computes the transpose of the GEMM's result.
  bool transposeResult = false;
};

struct LqQuantizeMatmulsPass
    : lq::impl::LqQuantizeMatmulsBase<LqQuantizeMatmulsPass> {
  using Base::Base;

  void runOnOperation() override;

private:
  LogicalResult runOnFunction(func::FuncOp fn);
  LogicalResult refuseIfUsed(func::FuncOp fn, const Twine &what);
  LogicalResult refuseIfNotCalled(func::FuncOp fn);
  void updateCallers(func::FuncOp fn);
  void remarkUnquantized(func::FuncOp fn, ArrayRef<Gemm> gemms,
                         const QuantizationPlan &plan);
  LogicalResult splitBatched(func::FuncOp fn);
  void splitBatchedGemm(const BatchedGemm &batched, unsigned index,
                        BatchSlices &slices);
  FailureOr<Value> getSeed(func::FuncOp fn);
  FailureOr<Value> getEstimate(func::FuncOp fn, int64_t stream);
  Quantized quantizeSawb(Value x, bool isUnsigned);
  LogicalResult quantizeGradients(func::FuncOp fn,
                                  ArrayRef<GradGroup *> gradients);
  Value quantizeLuq(Value dy, Value seed, Value estimate, int64_t stream);
  MatmulOperands quantizeOperands(const Gemm &g);
  void rewriteGemm(Gemm &g);
  LogicalResult returnGradMaxes(func::FuncOp fn);

  DenseMap<std::pair<Value, int>, Quantized> sawbCache;
  /// The LUQ quantization of each gradient, shared by its backward GEMMs.
  DenseMap<Value, Quantized> luq;
  /// In hindsight mode, this step's max |dy| of each gradient's stream.
  SmallVector<std::pair<Value, int64_t>> gradMaxes;
  /// For each 2-D contraction that splitBatched made, the index of the
  /// batched op it is a slice of.
  DenseMap<Operation *, unsigned> batchOf;
  /// What normalizeGemms rewrote, kept until the function is settled.
  DenseSet<Operation *> originals;
  /// The contractions replaced by lq ops (or split into slices).
  DenseSet<Operation *> quantized;
  /// The op as written of each GEMM that normalizeGemms rewrote.
  DenseMap<Operation *, Operation *> writtenAs;
};

//===----------------------------------------------------------------------===//
// Callers
//===----------------------------------------------------------------------===//

/// The pass can give a function new arguments only when nothing in the
/// module refers to it: it cannot make up the values a call would pass.
LogicalResult LqQuantizeMatmulsPass::refuseIfUsed(func::FuncOp fn,
                                                  const Twine &what) {
  std::optional<SymbolTable::UseRange> uses =
      SymbolTable::getSymbolUses(fn, getOperation());
  if (!uses || uses->empty())
    return success();
  Operation *user = uses->begin()->getUser();
  InFlightDiagnostic diag = user->emitError();
  diag << "refers to @" << fn.getSymName()
       << ", which lq-quantize-matmuls gives a new argument, " << what
       << ", that this use does not pass; declare that argument in @"
       << fn.getSymName() << " and pass it here";
  diag.attachNote(fn.getLoc()) << "@" << fn.getSymName() << " is here";
  return failure();
}

/// The pass can give a function new results only where every reference
/// to it is a func.call, which updateCallers can grow.
LogicalResult LqQuantizeMatmulsPass::refuseIfNotCalled(func::FuncOp fn) {
  std::optional<SymbolTable::UseRange> uses =
      SymbolTable::getSymbolUses(fn, getOperation());
  if (!uses)
    return success();
  for (SymbolTable::SymbolUse use : *uses) {
    if (isa<func::CallOp>(use.getUser()))
      continue;
    InFlightDiagnostic diag = use.getUser()->emitError();
    diag << "refers to @" << fn.getSymName()
         << ", whose results lq-quantize-matmuls extends with each "
            "gradient's max |dy| (hindsight); only func.call references "
            "can be updated";
    diag.attachNote(fn.getLoc()) << "@" << fn.getSymName() << " is here";
    return failure();
  }
  return success();
}

/// Calls of `fn`, whose results grew, get the new results too (unused),
/// and keep their attributes.
void LqQuantizeMatmulsPass::updateCallers(func::FuncOp fn) {
  std::optional<SymbolTable::UseRange> uses =
      SymbolTable::getSymbolUses(fn, getOperation());
  if (!uses)
    return;
  SmallVector<func::CallOp> calls;
  for (SymbolTable::SymbolUse use : *uses)
    if (auto call = dyn_cast<func::CallOp>(use.getUser()))
      calls.push_back(call);
  for (func::CallOp call : calls) {
    OpBuilder b(call);
    auto grown = func::CallOp::create(b, call.getLoc(), fn, call.getOperands());
    grown->setDiscardableAttrs(call->getDiscardableAttrDictionary());
    grown.setNoInline(call.getNoInline());
    grown.setArgAttrsAttr(call.getArgAttrsAttr());
    if (ArrayAttr resAttrs = call.getResAttrsAttr()) {
      SmallVector<Attribute> grownAttrs(resAttrs.begin(), resAttrs.end());
      grownAttrs.resize(grown.getNumResults(), b.getDictionaryAttr({}));
      grown.setResAttrsAttr(b.getArrayAttr(grownAttrs));
    }
    for (auto [old, now] : llvm::zip(call.getResults(), grown.getResults()))
      old.replaceAllUsesWith(now);
    call->erase();
  }
}

//===----------------------------------------------------------------------===//
// Batched contractions
//===----------------------------------------------------------------------===//

/// Rewrites each batched contraction that has lq.role into one 2-D
/// contraction per batch element, on rank-reducing tensor.extract_slice
/// slices of its operands, with the same lq.role, and reassembles the
/// result with tensor.insert_slice. The 2-D code then quantizes every slice
/// as it quantizes any GEMM. Splitting, rather than collapsing the batch
/// into the rows of one [B*M, K] GEMM, is correct for every batched GEMM:
/// collapsing needs a weight shared by all batch elements, which
/// linalg.batch_matmul does not have, and in the backward GEMMs each batch
/// element's gradient is a separate tensor that gets its own LUQ range and
/// Philox stream, as separate layers' gradients do.
LogicalResult LqQuantizeMatmulsPass::splitBatched(func::FuncOp fn) {
  SmallVector<linalg::LinalgOp> batched = findBatchedGemms(fn, originals);
  BatchSlices slices(&getContext());
  for (auto [index, op] : llvm::enumerate(batched)) {
    FailureOr<BatchedGemm> split = analyzeBatchedGemm(op);
    if (failed(split))
      return failure();
    splitBatchedGemm(*split, index, slices);
  }
  // The batched ops are erased only at the end, so that no op made here
  // reuses the address of a value that keys `slices`.
  for (linalg::LinalgOp op : batched) {
    quantized.insert(op);
    eraseContraction(op);
  }
  return success();
}

/// Replaces the uses of `batched.op`, the `index`th batched contraction,
/// with the insertion of its slices' products into its result.
void LqQuantizeMatmulsPass::splitBatchedGemm(const BatchedGemm &batched,
                                             unsigned index,
                                             BatchSlices &slices) {
  linalg::LinalgOp op = batched.op;
  int64_t count = batched.count;
  SmallVector<Value> lhsSlices =
      slices.get(op.getDpsInputOperand(0)->get(), batched.lhsPos, count);
  SmallVector<Value> rhsSlices =
      slices.get(op.getDpsInputOperand(1)->get(), batched.rhsPos, count);

  OpBuilder b(op);
  Location loc = op.getLoc();
  Value init = op.getDpsInitOperand(0)->get();
  auto initType = cast<RankedTensorType>(init.getType());
  Type elementType = initType.getElementType();
  unsigned resultPos = batched.resultPos;
  int64_t rank = initType.getRank();
  // The slices overwrite every element, so they are inserted into the
  // tensor that the zero fill writes (or the zero constant itself), and
  // the slice inits reuse the fill's zero.
  Value result = init, zero;
  if (auto fill = init.getDefiningOp<linalg::FillOp>()) {
    result = fill.getOutputs()[0];
    zero = fill.value();
  } else {
    zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(elementType));
  }
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, init);
  sizes[resultPos] = b.getIndexAttr(1);
  SmallVector<OpFoldResult> sliceSizes(sizes);
  sliceSizes.erase(sliceSizes.begin() + resultPos);
  SmallVector<int64_t> sliceShape(initType.getShape());
  sliceShape.erase(sliceShape.begin() + resultPos);
  auto sliceType = RankedTensorType::get(sliceShape, elementType);
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
  SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
  for (int64_t i = 0; i < count; ++i) {
    Value sliceInit =
        linalg::FillOp::create(
            b, loc, ValueRange{zero},
            ValueRange{tensor::EmptyOp::create(b, loc, sliceSizes,
                                               elementType)})
            .getResult(0);
    auto gemm = linalg::GenericOp::create(
        b, loc, TypeRange{sliceType}, ValueRange{lhsSlices[i], rhsSlices[i]},
        ValueRange{sliceInit}, batched.maps, batched.iterators);
    IRMapping mapping;
    op->getRegion(0).cloneInto(&gemm.getRegion(), mapping);
    gemm->setAttr(kRoleAttr, op->getAttr(kRoleAttr));
    batchOf[gemm] = index;
    offsets[resultPos] = b.getIndexAttr(i);
    result = tensor::InsertSliceOp::create(b, loc, gemm.getResult(0), result,
                                           offsets, sizes, strides);
  }
  op->getResult(0).replaceAllUsesWith(result);
}

//===----------------------------------------------------------------------===//
// Arguments and results
//===----------------------------------------------------------------------===//

FailureOr<Value> LqQuantizeMatmulsPass::getSeed(func::FuncOp fn) {
  Value seed;
  for (BlockArgument arg : fn.getArguments()) {
    if (!fn.getArgAttr(arg.getArgNumber(), kSeedAttr))
      continue;
    if (seed)
      return fn.emitError("more than one argument is marked lq.seed");
    if (!arg.getType().isInteger(64))
      return fn.emitError("the lq.seed argument must be i64");
    seed = arg;
  }
  if (seed)
    return seed;
  // Callers must pass a fresh seed every step; it becomes the last argument.
  if (failed(refuseIfUsed(fn, "i64 {lq.seed}")))
    return failure();
  OpBuilder b(&getContext());
  unsigned index = fn.getNumArguments();
  if (failed(fn.insertArgument(
          index, b.getI64Type(),
          b.getDictionaryAttr(b.getNamedAttr(kSeedAttr, b.getUnitAttr())),
          fn.getLoc())))
    return failure();
  return Value(fn.getArgument(index));
}

FailureOr<Value> LqQuantizeMatmulsPass::getEstimate(func::FuncOp fn,
                                                    int64_t stream) {
  for (BlockArgument arg : fn.getArguments()) {
    auto mark =
        fn.getArgAttrOfType<IntegerAttr>(arg.getArgNumber(), kEstimateAttr);
    if (!mark || mark.getInt() != stream)
      continue;
    if (!arg.getType().isF32())
      return fn.emitError("the lq.max_estimate argument of stream ")
             << stream << " must be f32";
    return Value(arg);
  }
  if (failed(refuseIfUsed(fn, "f32 {lq.max_estimate = " + Twine(stream) +
                                  "}")))
    return failure();
  OpBuilder b(&getContext());
  unsigned index = fn.getNumArguments();
  if (failed(fn.insertArgument(
          index, b.getF32Type(),
          b.getDictionaryAttr(b.getNamedAttr(
              kEstimateAttr, b.getI64IntegerAttr(stream))),
          fn.getLoc())))
    return failure();
  return Value(fn.getArgument(index));
}

/// In hindsight mode this step's max |dy| is the caller's next estimate:
/// each is appended to the results, marked with its stream.
LogicalResult LqQuantizeMatmulsPass::returnGradMaxes(func::FuncOp fn) {
  if (gradMaxes.empty())
    return success();
  if (failed(refuseIfNotCalled(fn)))
    return failure();
  DominanceInfo dom(fn);
  SmallVector<func::ReturnOp> returns;
  fn.walk([&](func::ReturnOp r) { returns.push_back(r); });
  for (auto [max, stream] : gradMaxes)
    for (func::ReturnOp r : returns)
      if (!dom.properlyDominates(max, r)) {
        max.getDefiningOp()->emitError(
            "in hindsight mode the gradient's max must be returned, but it "
            "is not computed on every path to this return")
                .attachNote(r.getLoc())
            << "return here";
        return failure();
      }
  for (auto [max, stream] : gradMaxes) {
    OpBuilder b(&getContext());
    unsigned index = fn.getNumResults();
    if (failed(fn.insertResult(
            index, b.getF32Type(),
            b.getDictionaryAttr(b.getNamedAttr(
                kGradMaxAttr, b.getI64IntegerAttr(stream))))))
      return failure();
    for (func::ReturnOp r : returns)
      r.getOperandsMutable().append(max);
  }
  updateCallers(fn);
  return success();
}

//===----------------------------------------------------------------------===//
// Quantizers and GEMMs
//===----------------------------------------------------------------------===//

Quantized LqQuantizeMatmulsPass::quantizeSawb(Value x, bool isUnsigned) {
  auto [it, inserted] = sawbCache.try_emplace({x, int(isUnsigned)});
  if (!inserted)
    return it->second;
  OpBuilder b(&getContext());
  setInsertionAfterDef(b, x);
  Location loc = x.getLoc();
  auto xType = cast<RankedTensorType>(x.getType());
  MLIRContext *ctx = &getContext();
  Type format = isUnsigned ? Type(UInt4Type::get(ctx)) : SInt4Type::get(ctx);
  auto qType = QTensorType::get(ctx, xType.getShape(), format);
  Value clip = SawbClipOp::create(b, loc, b.getF32Type(), x);
  auto q = QuantizeOp::create(b, loc, qType, b.getF32Type(), b.getI1Type(),
                              b.getI32Type(), x, clip, /*seed=*/Value());
  it->second = {{q.getResult()}, q.getScale()};
  return it->second;
}

/// One LUQ quantization of each gradient per SMP sample, shared by its
/// backward GEMMs so that dx and dW see the same sample.
LogicalResult
LqQuantizeMatmulsPass::quantizeGradients(func::FuncOp fn,
                                         ArrayRef<GradGroup *> gradients) {
  Value seed;
  if (!gradients.empty()) {
    FailureOr<Value> s = getSeed(fn);
    if (failed(s))
      return failure();
    seed = *s;
  }
  for (GradGroup *group : gradients) {
    Value estimate;
    if (hindsight) {
      FailureOr<Value> e = getEstimate(fn, group->stream);
      if (failed(e))
        return failure();
      estimate = *e;
    }
    Value max = quantizeLuq(group->gemms.front()->grad, seed, estimate,
                            group->stream);
    if (hindsight)
      gradMaxes.push_back({max, group->stream});
  }
  return success();
}

/// The LUQ samples of `dy`, scaled by `estimate` when there is one, else
/// by this step's max; records them in `luq` and returns that max.
Value LqQuantizeMatmulsPass::quantizeLuq(Value dy, Value seed, Value estimate,
                                         int64_t stream) {
  MLIRContext *ctx = &getContext();
  OpBuilder b(ctx);
  setInsertionAfterDef(b, dy);
  Location loc = dy.getLoc();
  auto dyType = cast<RankedTensorType>(dy.getType());
  Type f32 = b.getF32Type(), i1 = b.getI1Type(), i32 = b.getI32Type();
  auto maxAbs = MaxAbsOp::create(b, loc, f32, i1, dy);
  Value range = estimate ? estimate : maxAbs.getMax();
  auto gType = QTensorType::get(ctx, dyType.getShape(), Log4Type::get(ctx));
  Quantized q;
  for (unsigned s = 0; s < smp; ++s) {
    auto sample = QuantizeOp::create(b, loc, gType, f32, i1, i32, dy, range,
                                     seed, stream, s,
                                     /*hindsight=*/bool(estimate));
    if (s == 0)
      q.scale = sample.getScale();
    q.codes.push_back(sample.getResult());
  }
  luq[dy] = q;
  return maxAbs.getMax();
}

/// Quantizes the operands of `g`: SAWB for x and W, the gradient's shared
/// LUQ samples for dy, which the kernels take on the left.
MatmulOperands LqQuantizeMatmulsPass::quantizeOperands(const Gemm &g) {
  // The operands as they are now: a GEMM rewritten before this one may
  // have replaced one (h = x W1 feeding y = h W2), so `g.a` and `g.b` are
  // only compared, never read. The gradient's samples are keyed by the
  // value it had when they were made.
  linalg::LinalgOp op = g.op;
  Value a = op.getDpsInputOperand(0)->get(),
        b = op.getDpsInputOperand(1)->get();
  MatmulOperands m;
  m.transposeLhs = g.aT;
  m.transposeRhs = g.bT;
  if (g.role == GemmRole::forward) {
    m.lhs = quantizeSawb(a, isNonNegative(a));
    m.rhs = quantizeSawb(b, false);
  } else if (g.role == GemmRole::backward_data) {
    m.lhs = luq[g.grad];
    m.rhs = quantizeSawb(b, false);
  } else if (g.grad == g.a) {
    m.lhs = luq[g.grad];
    m.rhs = quantizeSawb(b, isNonNegative(b));
  } else {
    // x^T dy is (dy^T x)^T: the gradient goes on the left, where the
    // kernels take the log4 operand, and the product is transposed.
    m.lhs = luq[g.grad];
    m.rhs = quantizeSawb(a, isNonNegative(a));
    m.transposeLhs = true;
    m.transposeRhs = !g.aT;
    m.transposeResult = true;
  }
  return m;
}

/// Replaces `g` with an lq.matmul of its quantized operands.
void LqQuantizeMatmulsPass::rewriteGemm(Gemm &g) {
  Location loc = g.op.getLoc();
  auto resultType = cast<RankedTensorType>(g.op->getResult(0).getType());
  auto role = GemmRoleAttr::get(&getContext(), *g.role);
  MatmulOperands m = quantizeOperands(g);
  OpBuilder b(g.op);
  Type mmType = resultType;
  if (m.transposeResult)
    mmType = RankedTensorType::get(
        {resultType.getDimSize(1), resultType.getDimSize(0)},
        resultType.getElementType());
  Value result = MatmulOp::create(b, loc, mmType, m.lhs.codes, m.lhs.scale,
                                  m.rhs.codes[0], m.rhs.scale,
                                  /*bias=*/Value(), m.transposeLhs,
                                  m.transposeRhs, /*relu=*/false, role);
  if (m.transposeResult)
    result = linalg::TransposeOp::create(b, loc, result,
                                         g.op.getDpsInitOperand(0)->get(),
                                         ArrayRef<int64_t>{1, 0})
                 ->getResult(0);
  g.op->getResult(0).replaceAllUsesWith(result);
  quantized.insert(g.op);
  eraseContraction(g.op);
}

//===----------------------------------------------------------------------===//
// Driver
//===----------------------------------------------------------------------===//

/// Says, at each GEMM that keeps its precision, which it is and why.
void LqQuantizeMatmulsPass::remarkUnquantized(func::FuncOp fn,
                                              ArrayRef<Gemm> gemms,
                                              const QuantizationPlan &plan) {
  DenseMap<Operation *, const Gemm *> byOp;
  for (const Gemm &g : gemms)
    byOp[g.op] = &g;
  fn.walk([&](linalg::LinalgOp op) {
    if (originals.contains(op) || quantized.contains(op) ||
        !op.hasPureTensorSemantics() || op.getNumDpsInputs() != 2 ||
        !linalg::isaContractionOpInterface(op))
      return;
    // Said at the op as written, which settling the rewrite puts back.
    Operation *written = writtenAs.lookup(op);
    InFlightDiagnostic remark = (written ? written : op.getOperation())
                                    ->emitRemark("GEMM stays in high precision: ");
    const Gemm *g = byOp.lookup(op);
    if (!g) {
      remark << "it " << whyNotGemm(op);
      FailureOr<linalg::ContractionDimensions> dims =
          linalg::inferContractionDims(op);
      if (!op->hasAttr(kRoleAttr) && succeeded(dims) && !dims->batch.empty())
        remark << " (a batched contraction is split into 2-D GEMMs only "
                  "when it has lq.role)";
      return;
    }
    if (!g->role) {
      remark << "its training role is neither marked (lq.role) nor "
                "inferred: no gradient is the untransposed left operand of "
                "exactly one GEMM and contracted over its rows by exactly "
                "one other, with a forward GEMM before both reading the "
                "same weight";
      return;
    }
    std::optional<unsigned> layer = plan.layer(*g);
    if (g->role == GemmRole::forward && layer && keepFirst && *layer == 0)
      remark << "it is layer 0, the first, which keep-first keeps";
    else if (g->role == GemmRole::forward && layer)
      remark << "it is layer " << *layer << ", the last, which keep-last "
                                            "keeps";
    else
      remark << "its gradient belongs to a layer kept by keep-first or "
                "keep-last";
  });
}

LogicalResult LqQuantizeMatmulsPass::runOnFunction(func::FuncOp fn) {
  sawbCache.clear();
  luq.clear();
  gradMaxes.clear();
  batchOf.clear();
  originals.clear();
  quantized.clear();
  SmallVector<NormalizedGemm> normalized = normalizeGemms(fn);
  writtenAs.clear();
  for (const NormalizedGemm &n : normalized) {
    writtenAs[n.gemm] = n.original;
    originals.insert(n.original);
    if (n.summedBatch)
      originals.insert(n.summedBatch);
  }
  SmallVector<Gemm> gemms;
  if (failed(splitBatched(fn)) ||
      failed(classifyGemms(fn, strict, originals, gemms)))
    return failure();
  QuantizationPlan plan(gemms, batchOf, keepFirst, keepLast);
  if (!plan.empty()) {
    assignStreams(fn, plan.gradients());
    if (failed(quantizeGradients(fn, plan.gradients())))
      return failure();
    for (Gemm &g : gemms) {
      if (!g.role)
        continue;
      bool quantize = g.role == GemmRole::forward ? !plan.keeps(g)
                                                  : luq.count(g.grad) != 0;
      if (quantize)
        rewriteGemm(g);
    }
    if (failed(returnGradMaxes(fn)))
      return failure();
  }
  remarkUnquantized(fn, gemms, plan);
  settleNormalizedGemms(normalized, quantized);
  fuseEpilogues(fn);
  return success();
}

void LqQuantizeMatmulsPass::runOnOperation() {
  if (smp < 1 || smp > 64 || !llvm::isPowerOf2_32(smp)) {
    getOperation().emitError()
        << "smp must be a power of two between 1 and 64, got "
        << unsigned(smp);
    return signalPassFailure();
  }
  SmallVector<func::FuncOp> functions(getOperation().getOps<func::FuncOp>());
  for (func::FuncOp fn : functions)
    if (!fn.isExternal() && failed(runOnFunction(fn)))
      return signalPassFailure();
}

} // namespace
