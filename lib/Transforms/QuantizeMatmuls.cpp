//===- QuantizeMatmuls.cpp - linalg training GEMMs to lq ops --------------===//
//
// Takes a training step written in linalg on tensors (the form that
// framework lowerings produce) and replaces its forward, backward-data and
// weight-gradient GEMMs with the quantizers and GEMMs that lq-expand-linear
// produces for lq.linear / lq.linear_grad.
//
//===----------------------------------------------------------------------===//

#include "lq/Dialect/LqDialect.h"
#include "lq/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Dominance.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/STLExtras.h"

namespace lq {
#define GEN_PASS_DEF_LQQUANTIZEMATMULS
#include "lq/Dialect/LqPasses.h.inc"
} // namespace lq

using namespace mlir;
using namespace lq;

namespace {

constexpr StringLiteral kRoleAttr = "lq.role";
constexpr StringLiteral kSeedAttr = "lq.seed";
constexpr StringLiteral kEstimateAttr = "lq.max_estimate";
constexpr StringLiteral kGradMaxAttr = "lq.grad_max";

/// A GEMM in normalized form: result = op(a) op(b), where op transposes the
/// operand when its flag is set.
struct Gemm {
  linalg::LinalgOp op;
  Value a, b;
  bool aT = false, bT = false;
  std::optional<GemmRole> role;
  /// For backward GEMMs, the gradient operand (a or b).
  Value grad;

  /// Whether `v` is an operand whose rows (the batch) are contracted, the
  /// gradient's position in dW = dy^T x.
  bool contractsRowsOf(Value v) const {
    return (a == v && aT) || (b == v && !bT);
  }
};

bool isQuantizableFloat(Type t) { return t.isF32() || t.isBF16() || t.isF16(); }

bool isZeroFilled(Value init) {
  if (matchPattern(init, m_AnyZeroFloat()))
    return true;
  auto fill = init.getDefiningOp<linalg::FillOp>();
  return fill && matchPattern(fill.value(), m_AnyZeroFloat());
}

/// Matches `op` as C = op(a) op(b) on 2-D tensors; on failure, `why` says
/// what does not fit.
FailureOr<Gemm> matchGemm(linalg::LinalgOp op, std::string &why) {
  if (!op.hasPureTensorSemantics() || op.getNumDpsInputs() != 2 ||
      op.getNumDpsInits() != 1 || !linalg::isaContractionOpInterface(op)) {
    why = "is not a contraction of two tensors (a sum of products)";
    return failure();
  }
  FailureOr<linalg::ContractionDimensions> dims =
      linalg::inferContractionDims(op);
  if (failed(dims) || !dims->batch.empty()) {
    why = "is batched: lq.matmul multiplies 2-D matrices";
    return failure();
  }
  auto type = [&](Value v) { return cast<RankedTensorType>(v.getType()); };
  Value a = op.getDpsInputOperand(0)->get(), b = op.getDpsInputOperand(1)->get();
  Value init = op.getDpsInitOperand(0)->get();
  if (type(a).getRank() != 2 || type(b).getRank() != 2 ||
      type(init).getRank() != 2 ||
      !isQuantizableFloat(type(a).getElementType()) ||
      !isQuantizableFloat(type(b).getElementType()) ||
      !(type(init).getElementType().isF32() ||
        type(init).getElementType().isBF16())) {
    why = "must take 2-D tensors of f32, bf16 or f16 and produce a 2-D tensor "
          "of f32 or bf16";
    return failure();
  }
  if (dims->m.size() != 1 || dims->n.size() != 1 || dims->k.size() != 1) {
    why = "must have one row, one column and one reduction dimension";
    return failure();
  }
  unsigned m = dims->m[0], n = dims->n[0], k = dims->k[0];
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();
  auto dimsOf = [](AffineMap map) {
    SmallVector<unsigned> out;
    for (AffineExpr e : map.getResults()) {
      auto d = dyn_cast<AffineDimExpr>(e);
      out.push_back(d ? d.getPosition() : ~0u);
    }
    return out;
  };
  SmallVector<unsigned> am = dimsOf(maps[0]), bm = dimsOf(maps[1]),
                        cm = dimsOf(maps[2]);
  if (cm != SmallVector<unsigned>{m, n}) {
    why = "must write its result row-major, indexed (row, column)";
    return failure();
  }
  Gemm g{op, a, b};
  if (am == SmallVector<unsigned>{k, m})
    g.aT = true;
  else if (am != SmallVector<unsigned>{m, k}) {
    why = "must index its left operand (row, k) or (k, row)";
    return failure();
  }
  if (bm == SmallVector<unsigned>{n, k})
    g.bT = true;
  else if (bm != SmallVector<unsigned>{k, n}) {
    why = "must index its right operand (k, column) or (column, k)";
    return failure();
  }
  if (!isZeroFilled(init)) {
    why = "accumulates into an init that is not zero-filled; only C = A B is "
          "quantized";
    return failure();
  }
  return g;
}

/// Sets `role` to the role named by the `lq.role` attribute, if any; an
/// error when the attribute is malformed.
LogicalResult parseRole(Operation *op, std::optional<GemmRole> &role) {
  role.reset();
  Attribute attr = op->getAttr(kRoleAttr);
  if (!attr)
    return success();
  if (auto roleAttr = dyn_cast<GemmRoleAttr>(attr)) {
    role = roleAttr.getValue();
    return success();
  }
  if (auto name = dyn_cast<StringAttr>(attr)) {
    role = symbolizeGemmRole(name.getValue());
    if (role)
      return success();
    return op->emitError() << "unknown lq.role '" << name.getValue()
                           << "': expected forward, backward_data or "
                              "weight_grad";
  }
  return op->emitError("lq.role must be a string or #lq.role attribute");
}

/// True when every element of `v` is >= 0 because it is a ReLU: an
/// elementwise linalg.generic yielding max(_, 0), or a slice of one.
bool isNonNegative(Value v) {
  if (auto slice = v.getDefiningOp<tensor::ExtractSliceOp>())
    return isNonNegative(slice.getSource());
  auto generic = v.getDefiningOp<linalg::GenericOp>();
  if (!generic || generic.getNumResults() != 1 ||
      generic.getNumParallelLoops() != generic.getNumLoops())
    return false;
  auto yield = cast<linalg::YieldOp>(generic.getBody()->getTerminator());
  Operation *def = yield.getValues()[0].getDefiningOp();
  if (!isa_and_nonnull<arith::MaximumFOp, arith::MaxNumFOp>(def))
    return false;
  return llvm::any_of(def->getOperands(), [](Value operand) {
    return matchPattern(operand, m_AnyZeroFloat());
  });
}

/// Places the builder right after the definition of `v`, so that what it
/// builds dominates every use of `v`.
void setInsertionAfterDef(OpBuilder &b, Value v) {
  if (auto arg = dyn_cast<BlockArgument>(v))
    b.setInsertionPointToStart(arg.getOwner());
  else
    b.setInsertionPointAfter(v.getDefiningOp());
}

struct Quantized {
  SmallVector<Value> codes; // one per SMP sample for LUQ
  Value scale;
};

/// The backward GEMMs that read one gradient, and its quantization.
struct GradGroup {
  SmallVector<Gemm *> gemms;
  std::optional<unsigned> layer;
  unsigned order = 0; // position of the first GEMM, for layerless groups
  int64_t stream = 0;
};

struct LqQuantizeMatmulsPass
    : lq::impl::LqQuantizeMatmulsBase<LqQuantizeMatmulsPass> {
  using Base::Base;

  void runOnOperation() override;

private:
  LogicalResult splitBatched(func::FuncOp fn);
  LogicalResult classify(func::FuncOp fn, SmallVectorImpl<Gemm> &gemms);
  FailureOr<Value> getSeed(func::FuncOp fn);
  FailureOr<Value> getEstimate(func::FuncOp fn, int64_t stream);
  Quantized quantizeSawb(Value x, bool isUnsigned);

  DenseMap<std::pair<Value, int>, Quantized> sawbCache;
  /// For each 2-D contraction that splitBatched made, the index of the
  /// batched op it is a slice of.
  DenseMap<Operation *, unsigned> batchOf;
};

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
  SmallVector<linalg::LinalgOp> batched;
  fn.walk([&](linalg::LinalgOp op) {
    if (!op->hasAttr(kRoleAttr) || !op.hasPureTensorSemantics() ||
        op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
        !linalg::isaContractionOpInterface(op))
      return;
    FailureOr<linalg::ContractionDimensions> dims =
        linalg::inferContractionDims(op);
    if (succeeded(dims) && !dims->batch.empty())
      batched.push_back(op);
  });

  MLIRContext *ctx = &getContext();
  // The slices of each (tensor, batch position) are made once, so that the
  // dx and dW GEMMs of one batch element read the same gradient slice and
  // share its LUQ quantization.
  DenseMap<std::pair<Value, unsigned>, SmallVector<Value>> slices;
  auto sliceAll = [&](Value v, unsigned pos, int64_t count) {
    auto [it, inserted] = slices.try_emplace({v, pos});
    if (!inserted)
      return ArrayRef<Value>(it->second);
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
    for (int64_t i = 0; i < count; ++i) {
      offsets[pos] = b.getIndexAttr(i);
      it->second.push_back(tensor::ExtractSliceOp::create(
          b, loc, sliceType, v, offsets, sizes, strides));
    }
    return ArrayRef<Value>(it->second);
  };

  // The batched ops are erased only at the end, so that no op made here
  // reuses the address of a value that keys `slices`.
  SmallVector<Operation *> dead;
  for (auto [index, op] : llvm::enumerate(batched)) {
    linalg::ContractionDimensions dims = *linalg::inferContractionDims(op);
    if (dims.batch.size() != 1)
      return op->emitError("has lq.role but has more than one batch "
                           "dimension; only one is split into 2-D GEMMs");
    unsigned batchDim = dims.batch[0];
    int64_t count = op.getStaticLoopRanges()[batchDim];
    if (ShapedType::isDynamic(count))
      return op->emitError("has lq.role but its batch size is dynamic; the "
                           "batch is split into one GEMM per element, so it "
                           "must be static");
    Value init = op.getDpsInitOperand(0)->get();
    // Each slice gets a fresh zero init, so a non-zero one must be caught
    // here rather than by the 2-D match.
    if (!isZeroFilled(init))
      return op->emitError("has lq.role but accumulates into an init that "
                           "is not zero-filled; only C = A B is quantized");

    // The slice's maps: the batch result dropped from each operand's map,
    // and the batch dimension from the iteration space.
    llvm::SmallBitVector batchOnly(op.getNumLoops());
    batchOnly.set(batchDim);
    AffineExpr batchExpr = getAffineDimExpr(batchDim, ctx);
    SmallVector<AffineMap> maps;
    SmallVector<unsigned> positions;
    for (AffineMap map : op.getIndexingMapsArray()) {
      // A batch dimension indexes every operand, by its definition.
      unsigned pos = *map.getResultPosition(batchExpr);
      positions.push_back(pos);
      maps.push_back(compressDims(map.dropResult(pos), batchOnly));
    }
    SmallVector<utils::IteratorType> iterators =
        op.getIteratorTypesArray();
    iterators.erase(iterators.begin() + batchDim);

    Value lhs = op.getDpsInputOperand(0)->get();
    Value rhs = op.getDpsInputOperand(1)->get();
    ArrayRef<Value> lhsSlices = sliceAll(lhs, positions[0], count);
    ArrayRef<Value> rhsSlices = sliceAll(rhs, positions[1], count);

    OpBuilder b(op);
    Location loc = op.getLoc();
    auto initType = cast<RankedTensorType>(init.getType());
    Type elementType = initType.getElementType();
    unsigned resultPos = positions[2];
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
          ValueRange{sliceInit}, maps, iterators);
      IRMapping mapping;
      op->getRegion(0).cloneInto(&gemm.getRegion(), mapping);
      gemm->setAttr(kRoleAttr, op->getAttr(kRoleAttr));
      batchOf[gemm] = index;
      offsets[resultPos] = b.getIndexAttr(i);
      result = tensor::InsertSliceOp::create(b, loc, gemm.getResult(0), result,
                                             offsets, sizes, strides);
    }
    op->getResult(0).replaceAllUsesWith(result);
    dead.push_back(op);
  }
  for (Operation *op : dead) {
    Value init = cast<linalg::LinalgOp>(op).getDpsInitOperand(0)->get();
    op->erase();
    if (Operation *def = init.getDefiningOp();
        def && isa<linalg::FillOp>(def) && def->use_empty())
      def->erase();
  }
  return success();
}

LogicalResult LqQuantizeMatmulsPass::classify(func::FuncOp fn,
                                              SmallVectorImpl<Gemm> &gemms) {
  bool ok = true;
  fn.walk([&](linalg::LinalgOp op) {
    std::optional<GemmRole> role;
    if (failed(parseRole(op, role))) {
      ok = false;
      return;
    }
    std::string why;
    FailureOr<Gemm> gemm = matchGemm(op, why);
    if (failed(gemm)) {
      if (role) {
        op->emitError() << "has lq.role but " << why;
        ok = false;
      }
      return;
    }
    gemm->role = role;
    gemms.push_back(*gemm);
  });
  if (!ok)
    return failure();

  // Explicit backward GEMMs: the gradient is the left operand of
  // dx = dy W; for dW, the operand contracted over its rows that is also a
  // backward-data gradient, else the left one (dW = dy^T x).
  DenseSet<Value> dataGrads;
  for (Gemm &g : gemms) {
    if (g.role != GemmRole::backward_data)
      continue;
    if (g.aT) {
      g.op->emitError("backward_data GEMM needs the gradient as its left "
                      "operand, not transposed (dx = dy W)");
      ok = false;
    }
    g.grad = g.a;
    dataGrads.insert(g.a);
  }
  for (Gemm &g : gemms) {
    if (g.role != GemmRole::weight_grad)
      continue;
    if (g.contractsRowsOf(g.b) && dataGrads.contains(g.b) &&
        !(g.contractsRowsOf(g.a) && dataGrads.contains(g.a)))
      g.grad = g.b;
    else if (g.contractsRowsOf(g.a))
      g.grad = g.a;
    else if (g.contractsRowsOf(g.b))
      g.grad = g.b;
    else {
      g.op->emitError("weight_grad GEMM must contract the rows (the batch) of "
                      "the gradient: dW = dy^T x");
      ok = false;
    }
  }
  if (!ok)
    return failure();

  // Inference among unmarked GEMMs: dy is the untransposed left operand of
  // exactly one GEMM (dx = dy W) and has its rows contracted by exactly one
  // other (dW = dy^T x); exactly one further GEMM, earlier in the same
  // block, has W on the right and produces a tensor of dy's type
  // (y = x W). The equations alone are symmetric under swapping x and dy
  // (y = x W^T, dx = dy W, dW = dy^T x read as dy' = x, W' = W^T), so the
  // forward GEMM must come first. A GEMM claimed by two such triples is
  // ambiguous and left alone.
  struct Triple {
    Gemm *forward, *data, *wgrad;
    Value grad;
  };
  SmallVector<Triple> triples;
  llvm::MapVector<Value, SmallVector<Gemm *>> dataCands;
  for (Gemm &g : gemms)
    if (!g.role && !g.aT)
      dataCands[g.a].push_back(&g);
  for (auto &[dy, datas] : dataCands) {
    if (datas.size() != 1)
      continue;
    Gemm *data = datas.front();
    SmallVector<Gemm *> wgrads, forwards;
    for (Gemm &g : gemms) {
      if (g.role || &g == data)
        continue;
      if (g.contractsRowsOf(dy))
        wgrads.push_back(&g);
      else if (g.b == data->b && g.op->getResult(0).getType() == dy.getType())
        forwards.push_back(&g);
    }
    if (wgrads.size() != 1 || forwards.size() != 1)
      continue;
    Operation *fwd = forwards.front()->op;
    auto precedes = [&](Operation *later) {
      return fwd->getBlock() == later->getBlock() && fwd->isBeforeInBlock(later);
    };
    if (precedes(data->op) && precedes(wgrads.front()->op))
      triples.push_back({forwards.front(), data, wgrads.front(), dy});
  }
  DenseMap<Gemm *, unsigned> claims;
  for (Triple &t : triples)
    for (Gemm *g : {t.forward, t.data, t.wgrad})
      ++claims[g];
  for (Triple &t : triples) {
    if (claims[t.forward] > 1 || claims[t.data] > 1 || claims[t.wgrad] > 1)
      continue;
    t.forward->role = GemmRole::forward;
    t.data->role = GemmRole::backward_data;
    t.data->grad = t.grad;
    t.wgrad->role = GemmRole::weight_grad;
    t.wgrad->grad = t.grad;
  }

  if (strict)
    for (Gemm &g : gemms)
      if (!g.role) {
        g.op->emitError("cannot infer the training role of this GEMM; mark "
                        "it with lq.role");
        ok = false;
      }
  return success(ok);
}

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

void LqQuantizeMatmulsPass::runOnOperation() {
  func::FuncOp fn = getOperation();
  sawbCache.clear();
  batchOf.clear();
  if (smp < 1 || smp > 64 || !llvm::isPowerOf2_32(smp)) {
    fn.emitError() << "smp must be a power of two between 1 and 64, got "
                   << unsigned(smp);
    return signalPassFailure();
  }
  SmallVector<Gemm> gemms;
  if (failed(splitBatched(fn)) || failed(classify(fn, gemms)))
    return signalPassFailure();

  // Layers are the forward GEMMs in program order, known by their input
  // and weight; the slices of one batched forward GEMM are one layer, so
  // that keep-first / keep-last keep all of it.
  DenseMap<Value, unsigned> layerOfWeight, layerOfInput;
  DenseMap<Gemm *, unsigned> layerOf;
  DenseMap<unsigned, unsigned> layerOfBatched;
  unsigned numLayers = 0;
  for (Gemm &g : gemms)
    if (g.role == GemmRole::forward) {
      unsigned layer = numLayers;
      if (auto batch = batchOf.find(g.op); batch != batchOf.end())
        layer = layerOfBatched.try_emplace(batch->second, numLayers)
                    .first->second;
      if (layer == numLayers)
        ++numLayers;
      layerOfWeight.try_emplace(g.b, layer);
      layerOfInput.try_emplace(g.a, layer);
      layerOf[&g] = layer;
    }
  llvm::MapVector<Value, GradGroup> groups;
  for (auto [index, g] : llvm::enumerate(gemms)) {
    if (g.role != GemmRole::backward_data && g.role != GemmRole::weight_grad)
      continue;
    auto [it, inserted] = groups.try_emplace(g.grad);
    GradGroup &group = it->second;
    if (inserted)
      group.order = index;
    group.gemms.push_back(&g);
    Value other = g.grad == g.a ? g.b : g.a;
    auto &byOperand =
        g.role == GemmRole::backward_data ? layerOfWeight : layerOfInput;
    auto layer = byOperand.find(other);
    if (!group.layer && layer != byOperand.end())
      group.layer = layer->second;
  }
  auto isKept = [&](std::optional<unsigned> layer) {
    return layer && ((keepFirst && *layer == 0) ||
                     (keepLast && *layer + 1 == numLayers));
  };

  // Streams in layer order, skipping those the function's lq ops already
  // use, so that no two gradients share random numbers.
  SmallVector<GradGroup *> quantized;
  for (auto &entry : groups)
    if (!isKept(entry.second.layer))
      quantized.push_back(&entry.second);
  if (quantized.empty() &&
      llvm::none_of(gemms, [&](Gemm &g) {
        return g.role == GemmRole::forward && !isKept(layerOf[&g]);
      }))
    return;
  llvm::stable_sort(quantized, [&](GradGroup *x, GradGroup *y) {
    auto key = [&](GradGroup *g) {
      return std::make_pair(g->layer.value_or(numLayers), g->order);
    };
    return key(x) < key(y);
  });
  DenseSet<int64_t> used;
  fn.walk([&](QuantizeOp q) {
    if (q.getSeed())
      used.insert(q.getStream());
  });
  fn.walk([&](LinearGradOp op) {
    if (std::optional<uint64_t> s = op.getStream())
      used.insert(*s);
  });
  int64_t next = 0;
  for (GradGroup *group : quantized) {
    while (used.contains(next))
      ++next;
    group->stream = next++;
  }

  MLIRContext *ctx = &getContext();
  Value seed;
  if (!quantized.empty()) {
    FailureOr<Value> s = getSeed(fn);
    if (failed(s))
      return signalPassFailure();
    seed = *s;
  }

  // One LUQ quantization of each gradient per SMP sample, shared by its
  // backward GEMMs so that dx and dW see the same sample.
  DenseMap<Value, Quantized> luq;
  SmallVector<std::pair<Value, int64_t>> gradMaxes;
  for (GradGroup *group : quantized) {
    Value dy = group->gemms.front()->grad;
    Value estimate;
    if (hindsight) {
      FailureOr<Value> e = getEstimate(fn, group->stream);
      if (failed(e))
        return signalPassFailure();
      estimate = *e;
    }
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
                                       seed, group->stream, s,
                                       /*hindsight=*/bool(estimate));
      if (s == 0)
        q.scale = sample.getScale();
      q.codes.push_back(sample.getResult());
    }
    luq[dy] = q;
    if (hindsight)
      gradMaxes.push_back({maxAbs.getMax(), group->stream});
  }

  for (Gemm &g : gemms) {
    if (!g.role)
      continue;
    if (g.role == GemmRole::forward ? isKept(layerOf[&g])
                                    : !luq.count(g.grad))
      continue;
    Location loc = g.op.getLoc();
    auto resultType = cast<RankedTensorType>(g.op->getResult(0).getType());
    auto role = GemmRoleAttr::get(ctx, *g.role);
    Quantized lhs, rhs;
    bool transposeLhs = g.aT, transposeRhs = g.bT, transposeResult = false;
    if (g.role == GemmRole::forward) {
      lhs = quantizeSawb(g.a, isNonNegative(g.a));
      rhs = quantizeSawb(g.b, false);
    } else if (g.role == GemmRole::backward_data) {
      lhs = luq[g.grad];
      rhs = quantizeSawb(g.b, false);
    } else if (g.grad == g.a) {
      lhs = luq[g.grad];
      rhs = quantizeSawb(g.b, isNonNegative(g.b));
    } else {
      // x^T dy is (dy^T x)^T: the gradient goes on the left, where the
      // kernels take the log4 operand, and the product is transposed.
      lhs = luq[g.grad];
      rhs = quantizeSawb(g.a, isNonNegative(g.a));
      transposeLhs = true;
      transposeRhs = !g.aT;
      transposeResult = true;
    }
    OpBuilder b(g.op);
    Type mmType = resultType;
    if (transposeResult)
      mmType = RankedTensorType::get(
          {resultType.getDimSize(1), resultType.getDimSize(0)},
          resultType.getElementType());
    Value result =
        MatmulOp::create(b, loc, mmType, lhs.codes, lhs.scale, rhs.codes[0],
                         rhs.scale, /*bias=*/Value(), transposeLhs,
                         transposeRhs, /*relu=*/false, role);
    Value init = g.op.getDpsInitOperand(0)->get();
    if (transposeResult)
      result = linalg::TransposeOp::create(b, loc, result, init,
                                           ArrayRef<int64_t>{1, 0})
                   ->getResult(0);
    g.op->getResult(0).replaceAllUsesWith(result);
    g.op->erase();
    if (Operation *def = init.getDefiningOp();
        def && isa<linalg::FillOp>(def) && def->use_empty())
      def->erase();
  }

  if (gradMaxes.empty())
    return;
  // In hindsight mode this step's max |dy| is the caller's next estimate.
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
        return signalPassFailure();
      }
  for (auto [max, stream] : gradMaxes) {
    OpBuilder b(ctx);
    unsigned index = fn.getNumResults();
    if (failed(fn.insertResult(
            index, b.getF32Type(),
            b.getDictionaryAttr(b.getNamedAttr(
                kGradMaxAttr, b.getI64IntegerAttr(stream))))))
      return signalPassFailure();
    for (func::ReturnOp r : returns)
      r.getOperandsMutable().append(max);
  }
}

} // namespace
