//===- QuantizeMatmulsAnalysis.cpp - the GEMMs of a linalg step -----------===//
//
// Reads a training step written in linalg on tensors: which contractions
// are GEMMs, their roles, their layers and the gradients they share. Builds
// nothing; lq-quantize-matmuls rewrites what this finds.
//
//===----------------------------------------------------------------------===//

#include "QuantizeMatmulsAnalysis.h"
#include "StreamIds.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/STLExtras.h"

using namespace mlir;
using namespace lq;
using namespace lq::transforms;

//===----------------------------------------------------------------------===//
// Matching one GEMM
//===----------------------------------------------------------------------===//

namespace {

bool isQuantizableFloat(Type t) { return t.isF32() || t.isBF16() || t.isF16(); }

/// The operand and result types of a GEMM lq.matmul can compute.
bool hasGemmTypes(Value a, Value b, Value init) {
  auto type = [&](Value v) { return cast<RankedTensorType>(v.getType()); };
  return type(a).getRank() == 2 && type(b).getRank() == 2 &&
         type(init).getRank() == 2 &&
         isQuantizableFloat(type(a).getElementType()) &&
         isQuantizableFloat(type(b).getElementType()) &&
         (type(init).getElementType().isF32() ||
          type(init).getElementType().isBF16());
}

/// The loop dimensions that index each result of `map` (~0u for a result
/// that is not a plain dimension).
SmallVector<unsigned> dimsOf(AffineMap map) {
  SmallVector<unsigned> out;
  for (AffineExpr e : map.getResults()) {
    auto d = dyn_cast<AffineDimExpr>(e);
    out.push_back(d ? d.getPosition() : ~0u);
  }
  return out;
}

/// Sets the transpose flags of `g` from the indexing maps of its op, whose
/// row, column and reduction dimensions are `dims`.
LogicalResult matchIndexing(Gemm &g, const linalg::ContractionDimensions &dims,
                            std::string &why) {
  unsigned m = dims.m[0], n = dims.n[0], k = dims.k[0];
  SmallVector<AffineMap> maps = g.op.getIndexingMapsArray();
  SmallVector<unsigned> am = dimsOf(maps[0]), bm = dimsOf(maps[1]),
                        cm = dimsOf(maps[2]);
  if (cm != SmallVector<unsigned>{m, n}) {
    why = "must write its result row-major, indexed (row, column)";
    return failure();
  }
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
  return success();
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
  Value a = op.getDpsInputOperand(0)->get(),
        b = op.getDpsInputOperand(1)->get();
  Value init = op.getDpsInitOperand(0)->get();
  // A float init that is not zero is the first thing to say, whatever the
  // shapes; other element types are the type check's to report.
  Type initElement = cast<ShapedType>(init.getType()).getElementType();
  if (!isZeroFilled(init) && isa<FloatType>(initElement)) {
    why = "accumulates into an init that is not zero-filled; only C = A B is "
          "quantized";
    return failure();
  }
  if (!hasGemmTypes(a, b, init)) {
    why = "must take 2-D tensors of f32, bf16 or f16 and produce a 2-D tensor "
          "of f32 or bf16";
    return failure();
  }
  if (dims->m.size() != 1 || dims->n.size() != 1 || dims->k.size() != 1) {
    why = "must have one row, one column and one reduction dimension";
    return failure();
  }
  Gemm g{op, a, b};
  if (failed(matchIndexing(g, *dims, why)))
    return failure();
  return g;
}

} // namespace

std::string lq::transforms::whyNotGemm(linalg::LinalgOp op) {
  std::string why;
  (void)matchGemm(op, why);
  return why;
}

bool lq::transforms::isZeroFilled(Value init) {
  if (matchPattern(init, m_AnyZeroFloat()))
    return true;
  auto fill = init.getDefiningOp<linalg::FillOp>();
  return fill && matchPattern(fill.value(), m_AnyZeroFloat());
}

bool lq::transforms::isNonNegative(Value v) {
  if (auto slice = v.getDefiningOp<tensor::ExtractSliceOp>())
    return isNonNegative(slice.getSource());
  if (auto collapse = v.getDefiningOp<tensor::CollapseShapeOp>())
    return isNonNegative(collapse.getSrc());
  if (auto expand = v.getDefiningOp<tensor::ExpandShapeOp>())
    return isNonNegative(expand.getSrc());
  if (auto mm = v.getDefiningOp<MatmulOp>())
    return mm.getRelu();
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

//===----------------------------------------------------------------------===//
// Batched contractions
//===----------------------------------------------------------------------===//

SmallVector<linalg::LinalgOp>
lq::transforms::findBatchedGemms(func::FuncOp fn,
                                 const DenseSet<Operation *> &ignore) {
  SmallVector<linalg::LinalgOp> batched;
  fn.walk([&](linalg::LinalgOp op) {
    if (ignore.contains(op) || !op->hasAttr(kRoleAttr) || !op.hasPureTensorSemantics() ||
        op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
        !linalg::isaContractionOpInterface(op))
      return;
    FailureOr<linalg::ContractionDimensions> dims =
        linalg::inferContractionDims(op);
    if (succeeded(dims) && !dims->batch.empty())
      batched.push_back(op);
  });
  return batched;
}

FailureOr<BatchedGemm>
lq::transforms::analyzeBatchedGemm(linalg::LinalgOp op) {
  linalg::ContractionDimensions dims = *linalg::inferContractionDims(op);
  if (dims.batch.size() != 1)
    return op->emitError("has lq.role but has more than one batch "
                         "dimension; only one is split into 2-D GEMMs");
  unsigned batchDim = dims.batch[0];
  BatchedGemm batched{op, op.getStaticLoopRanges()[batchDim]};
  if (ShapedType::isDynamic(batched.count))
    return op->emitError("has lq.role but its batch size is dynamic; the "
                         "batch is split into one GEMM per element, so it "
                         "must be static");
  // Each slice gets a fresh zero init, so a non-zero one must be caught
  // here rather than by the 2-D match.
  if (!isZeroFilled(op.getDpsInitOperand(0)->get()))
    return op->emitError("has lq.role but accumulates into an init that "
                         "is not zero-filled; only C = A B is quantized");

  // The slice's maps: the batch result dropped from each operand's map,
  // and the batch dimension from the iteration space.
  llvm::SmallBitVector batchOnly(op.getNumLoops());
  batchOnly.set(batchDim);
  AffineExpr batchExpr = getAffineDimExpr(batchDim, op.getContext());
  SmallVector<unsigned> positions;
  for (AffineMap map : op.getIndexingMapsArray()) {
    // A batch dimension indexes every operand, by its definition.
    unsigned pos = *map.getResultPosition(batchExpr);
    positions.push_back(pos);
    batched.maps.push_back(compressDims(map.dropResult(pos), batchOnly));
  }
  batched.lhsPos = positions[0];
  batched.rhsPos = positions[1];
  batched.resultPos = positions[2];
  batched.iterators = op.getIteratorTypesArray();
  batched.iterators.erase(batched.iterators.begin() + batchDim);
  return batched;
}

//===----------------------------------------------------------------------===//
// Roles
//===----------------------------------------------------------------------===//

namespace {

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

/// The 2-D GEMMs of `fn` with the roles they are marked with; an error for
/// a malformed lq.role or a marked contraction that is no such GEMM.
LogicalResult collectGemms(func::FuncOp fn, const DenseSet<Operation *> &ignore,
                           SmallVectorImpl<Gemm> &gemms) {
  bool ok = true;
  fn.walk([&](linalg::LinalgOp op) {
    if (ignore.contains(op))
      return;
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
  return success(ok);
}

/// Finds the gradient of each marked backward GEMM: the left operand of
/// dx = dy W; for dW, the operand contracted over its rows that is also a
/// backward-data gradient, else the left one (dW = dy^T x).
LogicalResult findMarkedGradients(MutableArrayRef<Gemm> gemms) {
  bool ok = true;
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
  return success(ok);
}

/// Three unmarked GEMMs that read as one layer's y = x W, dx = dy W and
/// dW = dy^T x.
struct Triple {
  Gemm *forward, *data, *wgrad;
  Value grad;
};

/// The layer whose gradient `dy` is the left operand of `data` (dx = dy W),
/// if the graph holds exactly one: exactly one other GEMM contracts the
/// rows of dy (dW = dy^T x), and exactly one further GEMM, earlier in the
/// same block, has W on the right and produces a tensor of dy's shape
/// (y = x W; a bf16 graph may keep y in f32 and dy in bf16). The equations alone are symmetric under swapping x and dy
/// (y = x W^T, dx = dy W, dW = dy^T x read as dy' = x, W' = W^T), so the
/// forward GEMM must come first.
std::optional<Triple> findTriple(MutableArrayRef<Gemm> gemms, Value dy,
                                 Gemm *data) {
  SmallVector<Gemm *> wgrads, forwards;
  for (Gemm &g : gemms) {
    if (g.role || &g == data)
      continue;
    if (g.contractsRowsOf(dy))
      wgrads.push_back(&g);
    else if (g.b == data->b &&
             cast<ShapedType>(g.op->getResult(0).getType()).getShape() ==
                 cast<ShapedType>(dy.getType()).getShape())
      forwards.push_back(&g);
  }
  if (wgrads.size() != 1 || forwards.size() != 1)
    return std::nullopt;
  Operation *fwd = forwards.front()->op;
  auto precedes = [&](Operation *later) {
    return fwd->getBlock() == later->getBlock() && fwd->isBeforeInBlock(later);
  };
  if (!precedes(data->op) || !precedes(wgrads.front()->op))
    return std::nullopt;
  return Triple{forwards.front(), data, wgrads.front(), dy};
}

/// Gives unmarked GEMMs the roles of the layers they form. A gradient dy is
/// the untransposed left operand of exactly one unmarked GEMM (dx = dy W);
/// a GEMM claimed by two layers is ambiguous and left alone.
void inferRoles(MutableArrayRef<Gemm> gemms) {
  SmallVector<Triple> triples;
  llvm::MapVector<Value, SmallVector<Gemm *>> dataCands;
  for (Gemm &g : gemms)
    if (!g.role && !g.aT)
      dataCands[g.a].push_back(&g);
  for (auto &[dy, datas] : dataCands)
    if (datas.size() == 1)
      if (std::optional<Triple> t = findTriple(gemms, dy, datas.front()))
        triples.push_back(*t);
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
}

} // namespace

LogicalResult
lq::transforms::classifyGemms(func::FuncOp fn, bool strict,
                              const DenseSet<Operation *> &ignore,
                              SmallVectorImpl<Gemm> &gemms) {
  if (failed(collectGemms(fn, ignore, gemms)) ||
      failed(findMarkedGradients(gemms)))
    return failure();
  inferRoles(gemms);
  if (!strict)
    return success();
  bool ok = true;
  for (Gemm &g : gemms)
    if (!g.role) {
      g.op->emitError("cannot infer the training role of this GEMM; mark "
                      "it with lq.role");
      ok = false;
    }
  return success(ok);
}

//===----------------------------------------------------------------------===//
// Layers and gradients
//===----------------------------------------------------------------------===//

QuantizationPlan::QuantizationPlan(
    MutableArrayRef<Gemm> gemms, const DenseMap<Operation *, unsigned> &batchOf,
    bool keepFirst, bool keepLast)
    : gemms(gemms), keepFirst(keepFirst), keepLast(keepLast) {
  LayerMap layerOfWeight, layerOfInput;
  numberLayers(batchOf, layerOfWeight, layerOfInput);
  groupGradients(layerOfWeight, layerOfInput);
  for (auto &entry : groups)
    if (!isKept(entry.second.layer))
      quantized.push_back(&entry.second);
  llvm::stable_sort(quantized, [&](GradGroup *x, GradGroup *y) {
    auto key = [&](GradGroup *g) {
      return std::make_pair(g->layer.value_or(numLayers), g->order);
    };
    return key(x) < key(y);
  });
}

/// Numbers the forward GEMMs in program order, known by their input and
/// weight.
void QuantizationPlan::numberLayers(
    const DenseMap<Operation *, unsigned> &batchOf, LayerMap &layerOfWeight,
    LayerMap &layerOfInput) {
  DenseMap<unsigned, unsigned> layerOfBatched;
  for (Gemm &g : gemms)
    if (g.role == GemmRole::forward) {
      unsigned layer = numLayers;
      if (auto batch = batchOf.find(g.op); batch != batchOf.end())
        layer =
            layerOfBatched.try_emplace(batch->second, numLayers).first->second;
      if (layer == numLayers)
        ++numLayers;
      layerOfWeight.try_emplace(g.b, layer);
      layerOfInput.try_emplace(g.a, layer);
      layerOf[&g] = layer;
    }
}

/// Groups the backward GEMMs by gradient; a group belongs to the layer
/// whose weight (dx = dy W) or input (dW = dy^T x) it reads.
void QuantizationPlan::groupGradients(const LayerMap &layerOfWeight,
                                      const LayerMap &layerOfInput) {
  for (auto [index, g] : llvm::enumerate(gemms)) {
    if (g.role != GemmRole::backward_data && g.role != GemmRole::weight_grad)
      continue;
    auto [it, inserted] = groups.try_emplace(g.grad);
    GradGroup &group = it->second;
    if (inserted)
      group.order = index;
    group.gemms.push_back(&g);
    Value other = g.grad == g.a ? g.b : g.a;
    const LayerMap &byOperand =
        g.role == GemmRole::backward_data ? layerOfWeight : layerOfInput;
    auto layer = byOperand.find(other);
    if (!group.layer && layer != byOperand.end())
      group.layer = layer->second;
  }
}

bool QuantizationPlan::isKept(std::optional<unsigned> layer) const {
  return layer && ((keepFirst && *layer == 0) ||
                   (keepLast && *layer + 1 == numLayers));
}

bool QuantizationPlan::empty() const {
  return quantized.empty() && llvm::none_of(gemms, [&](const Gemm &g) {
           return g.role == GemmRole::forward && !keeps(g);
         });
}

void lq::transforms::assignStreams(func::FuncOp fn,
                                   ArrayRef<GradGroup *> gradients) {
  StreamIds streams;
  fn.walk([&](QuantizeOp q) {
    if (q.getSeed())
      streams.reserve(q.getStream());
  });
  fn.walk([&](LinearGradOp op) {
    if (std::optional<uint64_t> s = op.getStream())
      streams.reserve(*s);
  });
  for (GradGroup *group : gradients)
    group->stream = int64_t(streams.next());
}
