//===- QuantizeMatmulsNormalize.cpp - frontend GEMMs as 2-D GEMMs ---------===//
//
// Frontends write a layer's GEMMs with transposes as linalg.transpose,
// weights broadcast over a batch, sums over the batch, and 3-D activations.
// This file rewrites them into the 2-D GEMMs that the analysis reads, beside
// the originals, and settles the rewrite once the pass knows what it
// quantized: a GEMM left in high precision goes back to what was written.
//
//===----------------------------------------------------------------------===//

#include "QuantizeMatmulsNormalize.h"
#include "QuantizeMatmulsAnalysis.h"

#include "lq/Dialect/LqDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Dominance.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/STLExtras.h"

using namespace mlir;
using namespace lq;
using namespace lq::transforms;

namespace {

//===----------------------------------------------------------------------===//
// Views
//===----------------------------------------------------------------------===//

/// A tensor that `v` reads element by element: v[i] = source[map(i)].
struct ViewSource {
  Value source;
  AffineMap viewToSource;
};

/// Whether `op` is a linalg.generic that copies its one input, permuted
/// or broadcast, into an identity-indexed init.
bool isCopyGeneric(linalg::GenericOp op) {
  if (op.getNumDpsInputs() != 1 || op.getNumDpsInits() != 1 ||
      op.getNumParallelLoops() != op.getNumLoops() ||
      !op.hasPureTensorSemantics())
    return false;
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();
  if (!maps[1].isIdentity() || !maps[0].isProjectedPermutation())
    return false;
  auto yield = cast<linalg::YieldOp>(op.getBody()->getTerminator());
  return yield.getValues()[0] == op.getBody()->getArgument(0);
}

std::optional<ViewSource> viewSource(Value v) {
  MLIRContext *ctx = v.getContext();
  if (auto t = v.getDefiningOp<linalg::TransposeOp>()) {
    // Result dimension i is input dimension perm[i].
    ArrayRef<int64_t> perm = t.getPermutation();
    SmallVector<AffineExpr> exprs(perm.size());
    for (auto [i, p] : llvm::enumerate(perm))
      exprs[p] = getAffineDimExpr(i, ctx);
    return ViewSource{t.getInput(), AffineMap::get(perm.size(), 0, exprs, ctx)};
  }
  if (auto bc = v.getDefiningOp<linalg::BroadcastOp>()) {
    int64_t rank = cast<ShapedType>(bc.getInit().getType()).getRank();
    SmallVector<AffineExpr> exprs;
    for (int64_t i = 0; i < rank; ++i)
      if (!llvm::is_contained(bc.getDimensions(), i))
        exprs.push_back(getAffineDimExpr(i, ctx));
    return ViewSource{bc.getInput(), AffineMap::get(rank, 0, exprs, ctx)};
  }
  if (auto g = v.getDefiningOp<linalg::GenericOp>(); g && isCopyGeneric(g))
    return ViewSource{g.getDpsInputOperand(0)->get(),
                      g.getIndexingMapsArray()[0]};
  return std::nullopt;
}

/// Follows `v` through views to the tensor it reads, composing `map`
/// (loops to `v`'s indices) into loops to that tensor's indices.
bool foldViews(Value &v, AffineMap &map) {
  bool folded = false;
  while (std::optional<ViewSource> view = viewSource(v)) {
    map = view->viewToSource.compose(map);
    v = view->source;
    folded = true;
  }
  return folded;
}

/// The key of a reshape or view for merging equal ones: same op, operands
/// (the init of a view only when it is not an empty tensor), properties
/// and result type.
bool sameView(Operation *a, Operation *b) {
  if (a->getName() != b->getName() ||
      a->getResultTypes() != b->getResultTypes() ||
      a->getRawDictionaryAttrs() != b->getRawDictionaryAttrs() ||
      a->getPropertiesAsAttribute() != b->getPropertiesAsAttribute() ||
      a->getNumOperands() != b->getNumOperands())
    return false;
  bool isView = isa<linalg::TransposeOp, linalg::BroadcastOp>(a);
  for (auto [x, y] : llvm::zip(a->getOperands(), b->getOperands())) {
    if (x == y)
      continue;
    if (!isView || !x.getDefiningOp<tensor::EmptyOp>() ||
        !y.getDefiningOp<tensor::EmptyOp>())
      return false;
  }
  return true;
}

/// Merges equal reshapes and views of one tensor (what CSE does, here so
/// that the pass sees a frontend's repeated reshapes as one value).
void mergeEqualViews(func::FuncOp fn) {
  DominanceInfo dom(fn);
  SmallVector<Operation *> views;
  fn.walk([&](Operation *op) {
    if (isa<tensor::CollapseShapeOp, tensor::ExpandShapeOp,
            linalg::TransposeOp, linalg::BroadcastOp>(op))
      views.push_back(op);
  });
  DenseSet<Operation *> merged;
  for (auto [i, first] : llvm::enumerate(views)) {
    if (merged.contains(first))
      continue;
    for (Operation *later : llvm::drop_begin(views, i + 1))
      if (!merged.contains(later) && sameView(first, later) &&
          dom.properlyDominates(first, later)) {
        later->getResult(0).replaceAllUsesWith(first->getResult(0));
        merged.insert(later);
      }
  }
  for (Operation *op : merged) {
    SmallVector<Value> operands(op->getOperands());
    op->erase();
    for (Value operand : operands)
      eraseDeadViews(operand);
  }
}

//===----------------------------------------------------------------------===//
// Contractions
//===----------------------------------------------------------------------===//

/// A contraction to rebuild: its operands after views, the maps that index
/// them, and where its body and init come from.
struct Contraction {
  Operation *original;
  Operation *summedBatch = nullptr;
  Operation *body; // the op whose region is the multiply-add
  SmallVector<Value> inputs;
  Value init;
  SmallVector<AffineMap> maps;
  SmallVector<utils::IteratorType> iterators;
  bool changed = false;
};

bool isTwoInputContraction(linalg::LinalgOp op) {
  return op.hasPureTensorSemantics() && op.getNumDpsInputs() == 2 &&
         op.getNumDpsInits() == 1 && linalg::isaContractionOpInterface(op);
}

Contraction contractionOf(linalg::LinalgOp op) {
  Contraction c{op, nullptr, op};
  for (OpOperand *in : op.getDpsInputOperands())
    c.inputs.push_back(in->get());
  c.init = op.getDpsInitOperand(0)->get();
  c.maps = op.getIndexingMapsArray();
  c.iterators = op.getIteratorTypesArray();
  return c;
}

/// `sum` as the sum over one dimension of a batched contraction that
/// nothing else reads: one contraction with that dimension reduced too.
std::optional<Contraction> batchSumOf(linalg::LinalgOp sum) {
  if (!sum.hasPureTensorSemantics() || sum.getNumDpsInputs() != 1 ||
      sum.getNumDpsInits() != 1 || sum.getNumReductionLoops() != 1 ||
      !isZeroFilled(sum.getDpsInitOperand(0)->get()))
    return std::nullopt;
  Block *block = sum.getBlock();
  auto yield = cast<linalg::YieldOp>(block->getTerminator());
  auto add = yield.getValues()[0].getDefiningOp<arith::AddFOp>();
  if (!add || block->getOperations().size() != 2 ||
      !llvm::is_contained(add->getOperands(), block->getArgument(0)) ||
      !llvm::is_contained(add->getOperands(), block->getArgument(1)))
    return std::nullopt;
  auto batched = sum.getDpsInputOperand(0)->get().getDefiningOp<linalg::LinalgOp>();
  if (!batched || !isTwoInputContraction(batched) ||
      !batched->getResult(0).hasOneUse() ||
      !isZeroFilled(batched.getDpsInitOperand(0)->get()))
    return std::nullopt;
  AffineMap in = sum.getIndexingMapsArray()[0];
  AffineMap out = sum.getIndexingMapsArray()[1];
  if (!in.isPermutation())
    return std::nullopt;
  Contraction c = contractionOf(batched);
  // loops of the batched op -> its result -> the sum's loops -> its result.
  AffineMap batchedOut = c.maps[2];
  c.maps[2] = out.compose(inversePermutation(in)).compose(batchedOut);
  unsigned reduced = *llvm::find_if(
      llvm::seq(sum.getNumLoops()), [&](unsigned l) {
        return sum.getIteratorTypesArray()[l] == utils::IteratorType::reduction;
      });
  unsigned resultDim = *in.getResultPosition(getAffineDimExpr(reduced, in.getContext()));
  auto loop = dyn_cast<AffineDimExpr>(batchedOut.getResult(resultDim));
  // Only a batch dimension (one that indexes both operands) becomes a
  // reduction; a sum over rows or columns is no GEMM.
  if (!loop || !c.maps[0].isFunctionOfDim(loop.getPosition()) ||
      !c.maps[1].isFunctionOfDim(loop.getPosition()))
    return std::nullopt;
  c.iterators[loop.getPosition()] = utils::IteratorType::reduction;
  c.original = sum;
  c.summedBatch = batched;
  c.init = sum.getDpsInitOperand(0)->get();
  c.changed = true;
  return c;
}

/// The row (M), column (N), reduction (K) and batch dimensions of `c`'s
/// loops; none when an operand is not indexed by plain distinct loops.
struct Groups {
  enum Kind { M, N, K, Batch };
  SmallVector<Kind> kindOf;
};

std::optional<Groups> groupsOf(const Contraction &c) {
  for (AffineMap map : c.maps)
    if (!map.isProjectedPermutation(/*allowZeroInResults=*/false))
      return std::nullopt;
  Groups g;
  for (unsigned l = 0; l < c.iterators.size(); ++l) {
    bool a = c.maps[0].isFunctionOfDim(l), b = c.maps[1].isFunctionOfDim(l),
         r = c.maps[2].isFunctionOfDim(l);
    if (a && b && r)
      g.kindOf.push_back(Groups::Batch);
    else if (a && r && !b)
      g.kindOf.push_back(Groups::M);
    else if (b && r && !a)
      g.kindOf.push_back(Groups::N);
    else if (a && b && !r)
      g.kindOf.push_back(Groups::K);
    else
      return std::nullopt;
  }
  return g;
}

/// The operand's dimensions split into its two groups, in order; none when
/// a group is not contiguous.
std::optional<std::pair<SmallVector<unsigned>, SmallVector<unsigned>>>
twoRuns(AffineMap map, const Groups &g) {
  SmallVector<SmallVector<unsigned>> runs;
  std::optional<Groups::Kind> last;
  for (AffineExpr e : map.getResults()) {
    unsigned l = cast<AffineDimExpr>(e).getPosition();
    if (last != g.kindOf[l])
      runs.emplace_back();
    last = g.kindOf[l];
    runs.back().push_back(l);
  }
  if (runs.size() != 2)
    return std::nullopt;
  return std::make_pair(runs[0], runs[1]);
}

ReassociationIndices range(unsigned begin, unsigned end) {
  return llvm::to_vector(llvm::seq<int64_t>(begin, end));
}

class Normalizer {
public:
  explicit Normalizer(func::FuncOp fn) : b(fn.getContext()), dom(fn) {}
  std::optional<NormalizedGemm> rebuild(Contraction &c);

private:
  std::optional<NormalizedGemm> flatten(Contraction &c, const Groups &g);
  linalg::GenericOp build(Contraction &c, ValueRange inputs, Value init,
                          ArrayRef<AffineMap> maps,
                          ArrayRef<utils::IteratorType> iterators);
  Value collapse(Value v, unsigned split, Operation *at);
  Value zeroInit(Value init, unsigned split);

  OpBuilder b;
  DominanceInfo dom;
  DenseMap<std::pair<Value, unsigned>, Value> collapsed;
};

linalg::GenericOp Normalizer::build(Contraction &c, ValueRange inputs,
                                    Value init, ArrayRef<AffineMap> maps,
                                    ArrayRef<utils::IteratorType> iterators) {
  b.setInsertionPoint(c.original);
  auto gemm = linalg::GenericOp::create(b, c.original->getLoc(),
                                        TypeRange{init.getType()}, inputs,
                                        ValueRange{init}, maps, iterators);
  IRMapping mapping;
  c.body->getRegion(0).cloneInto(&gemm.getRegion(), mapping);
  Attribute role = c.original->getAttr(kRoleAttr);
  if (!role && c.summedBatch)
    role = c.summedBatch->getAttr(kRoleAttr);
  if (role)
    gemm->setAttr(kRoleAttr, role);
  return gemm;
}

/// `v` [d0..d(r-1)] collapsed to 2-D: [d0..d(split-1)] x [d(split)..],
/// for a GEMM at `at`: an equal tensor.collapse_shape that is there
/// already, else one made right after `v` (so that it serves every GEMM).
Value Normalizer::collapse(Value v, unsigned split, Operation *at) {
  auto rank = unsigned(cast<RankedTensorType>(v.getType()).getRank());
  if (rank == 2 && split == 1)
    return v;
  SmallVector<ReassociationIndices> groups = {range(0, split),
                                              range(split, rank)};
  for (Operation *user : v.getUsers())
    if (auto existing = dyn_cast<tensor::CollapseShapeOp>(user);
        existing && existing.getSrc() == v &&
        existing.getReassociationIndices() == groups &&
        dom.properlyDominates(existing.getOperation(), at))
      return existing;
  Value &slot = collapsed[{v, split}];
  if (!slot) {
    OpBuilder::InsertionGuard guard(b);
    if (auto arg = dyn_cast<BlockArgument>(v))
      b.setInsertionPointToStart(arg.getOwner());
    else
      b.setInsertionPointAfter(v.getDefiningOp());
    slot = tensor::CollapseShapeOp::create(b, v.getLoc(), v, groups);
  }
  return slot;
}

/// The tensor whose sizes `init` has, read without keeping its fill alive.
Value shapeSource(Value init) {
  if (auto fill = init.getDefiningOp<linalg::FillOp>())
    return fill.getOutputs()[0];
  return init;
}

/// A zero-filled 2-D init of `init`'s elements, collapsed at `split`.
Value Normalizer::zeroInit(Value init, unsigned split) {
  auto rank = unsigned(cast<RankedTensorType>(init.getType()).getRank());
  if (rank == 2 && split == 1)
    return init;
  Value zero, base = init;
  if (auto fill = init.getDefiningOp<linalg::FillOp>()) {
    zero = fill.value();
    base = fill.getOutputs()[0];
  } else {
    Type elementType = cast<RankedTensorType>(init.getType()).getElementType();
    zero = arith::ConstantOp::create(b, init.getLoc(),
                                     b.getZeroAttr(elementType));
  }
  Value shaped = tensor::CollapseShapeOp::create(
      b, init.getLoc(), base, {range(0, split), range(split, rank)});
  return linalg::FillOp::create(b, init.getLoc(), zero, shaped).getResult(0);
}

std::optional<NormalizedGemm> Normalizer::rebuild(Contraction &c) {
  // Operands are read now, not when the contraction was found: an earlier
  // rebuild may have replaced one (a GEMM reading another's result).
  auto operandsOf = [](Operation *op) {
    return cast<linalg::LinalgOp>(op).getDpsInputs();
  };
  c.inputs = operandsOf(c.summedBatch ? c.summedBatch : c.original);
  c.init = cast<linalg::LinalgOp>(c.original).getDpsInitOperand(0)->get();
  for (auto [v, map] : llvm::zip(c.inputs, c.maps))
    c.changed |= foldViews(v, map);
  std::optional<Groups> g = groupsOf(c);
  if (!g)
    return std::nullopt;
  bool batched = llvm::is_contained(g->kindOf, Groups::Batch);
  bool twoD = c.maps[0].getNumResults() == 2 &&
              c.maps[1].getNumResults() == 2 && c.maps[2].getNumResults() == 2;
  if (!batched && !twoD && isZeroFilled(c.init))
    if (std::optional<NormalizedGemm> n = flatten(c, *g))
      return n;
  if (!c.changed)
    return std::nullopt;
  linalg::GenericOp gemm = build(c, c.inputs, c.init, c.maps, c.iterators);
  return NormalizedGemm{c.original, c.summedBatch, gemm, gemm.getResult(0)};
}

/// `c` with several row, column or reduction dimensions as one 2-D GEMM on
/// collapsed operands, when each group is contiguous, in one order, in
/// every operand, and the result lists rows before columns.
std::optional<NormalizedGemm> Normalizer::flatten(Contraction &c,
                                                  const Groups &g) {
  auto a = twoRuns(c.maps[0], g), bRuns = twoRuns(c.maps[1], g),
       r = twoRuns(c.maps[2], g);
  if (!a || !bRuns || !r || g.kindOf[r->first.front()] != Groups::M)
    return std::nullopt;
  bool aT = g.kindOf[a->first.front()] == Groups::K;
  bool bT = g.kindOf[bRuns->first.front()] == Groups::N;
  const auto &aM = aT ? a->second : a->first, &aK = aT ? a->first : a->second;
  const auto &bK = bT ? bRuns->second : bRuns->first,
             &bN = bT ? bRuns->first : bRuns->second;
  if (aM != r->first || bN != r->second || aK != bK)
    return std::nullopt;

  b.setInsertionPoint(c.original);
  Value lhs = collapse(c.inputs[0], a->first.size(), c.original);
  Value rhs = collapse(c.inputs[1], bRuns->first.size(), c.original);
  Value init = zeroInit(c.init, r->first.size());
  MLIRContext *ctx = b.getContext();
  AffineExpr m = getAffineDimExpr(0, ctx), n = getAffineDimExpr(1, ctx),
             k = getAffineDimExpr(2, ctx);
  auto map = [&](AffineExpr x, AffineExpr y) {
    return AffineMap::get(3, 0, {x, y}, ctx);
  };
  SmallVector<AffineMap> maps = {aT ? map(k, m) : map(m, k),
                                 bT ? map(n, k) : map(k, n), map(m, n)};
  SmallVector<utils::IteratorType> iterators = {
      utils::IteratorType::parallel, utils::IteratorType::parallel,
      utils::IteratorType::reduction};
  linalg::GenericOp gemm = build(c, {lhs, rhs}, init, maps, iterators);
  auto resultRank = unsigned(cast<RankedTensorType>(c.init.getType()).getRank());
  unsigned split = r->first.size();
  if (resultRank == 2 && split == 1)
    return NormalizedGemm{c.original, c.summedBatch, gemm, gemm.getResult(0)};
  Value result = tensor::ExpandShapeOp::create(
      b, c.original->getLoc(), c.init.getType(), gemm.getResult(0),
      {range(0, split), range(split, resultRank)},
      tensor::getMixedSizes(b, c.original->getLoc(), shapeSource(c.init)));
  return NormalizedGemm{c.original, c.summedBatch, gemm, result};
}

} // namespace

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

SmallVector<NormalizedGemm> lq::transforms::normalizeGemms(func::FuncOp fn) {
  mergeEqualViews(fn);
  // Sums over a batch first: the batched contraction they read is then
  // rebuilt as part of the sum, not on its own.
  DenseMap<Operation *, Contraction> sums;
  DenseSet<Operation *> summed;
  fn.walk([&](linalg::LinalgOp op) {
    if (std::optional<Contraction> c = batchSumOf(op)) {
      summed.insert(c->summedBatch);
      sums.try_emplace(op, *c);
    }
  });
  SmallVector<Contraction> found;
  fn.walk([&](linalg::LinalgOp op) {
    if (auto sum = sums.find(op); sum != sums.end())
      found.push_back(sum->second);
    else if (isTwoInputContraction(op) && !summed.contains(op))
      found.push_back(contractionOf(op));
  });
  Normalizer normalizer(fn);
  SmallVector<NormalizedGemm> normalized;
  for (Contraction &c : found)
    if (std::optional<NormalizedGemm> n = normalizer.rebuild(c)) {
      c.original->getResult(0).replaceAllUsesWith(n->replacement);
      normalized.push_back(*n);
    }
  mergeEqualViews(fn);
  return normalized;
}

/// Erases `op`, which nothing reads, and the views it leaves unread.
static void eraseWithViews(Operation *op) {
  SmallVector<Value> operands(op->getOperands());
  op->erase();
  for (Value operand : operands)
    eraseDeadViews(operand);
}

void lq::transforms::settleNormalizedGemms(
    ArrayRef<NormalizedGemm> normalized,
    const DenseSet<Operation *> &quantized) {
  for (const NormalizedGemm &n : normalized) {
    if (quantized.contains(n.gemm)) {
      // The GEMM is an lq.matmul now; what was written is unread.
      eraseWithViews(n.original);
      if (n.summedBatch)
        eraseWithViews(n.summedBatch);
      continue;
    }
    // What the pass built for the GEMM's users sits right after the new
    // GEMM, before the original: the original takes the GEMM's place.
    n.original->moveBefore(n.gemm);
    if (n.summedBatch)
      n.summedBatch->moveBefore(n.original);
    Value replacement = n.replacement;
    replacement.replaceAllUsesWith(n.original->getResult(0));
    Operation *gemm = n.gemm;
    if (n.replacement != gemm->getResult(0))
      eraseDeadViews(n.replacement);
    eraseWithViews(gemm);
  }
}

void lq::transforms::eraseDeadViews(Value v) {
  Operation *op = v.getDefiningOp();
  if (!op || !op->use_empty())
    return;
  auto generic = dyn_cast<linalg::GenericOp>(op);
  if (!isa<tensor::CollapseShapeOp, tensor::ExpandShapeOp, tensor::EmptyOp,
           linalg::TransposeOp, linalg::BroadcastOp, linalg::FillOp>(op) &&
      !(generic && isCopyGeneric(generic)))
    return;
  eraseWithViews(op);
}

//===----------------------------------------------------------------------===//
// Epilogues
//===----------------------------------------------------------------------===//

namespace {

/// Whether `v` is max(x, 0) or max(0, x) of `x`, maximumf or maxnumf.
bool isReluOf(Value v, Value x) {
  Operation *max = v.getDefiningOp();
  if (!isa_and_nonnull<arith::MaximumFOp, arith::MaxNumFOp>(max))
    return false;
  Value l = max->getOperand(0), r = max->getOperand(1);
  return (l == x && matchPattern(r, m_AnyZeroFloat())) ||
         (r == x && matchPattern(l, m_AnyZeroFloat()));
}

/// An elementwise f32 linalg.generic over identity-indexed tensors.
bool isElementwise(linalg::GenericOp op, unsigned inputs) {
  return op.hasPureTensorSemantics() && op.getNumDpsInputs() == inputs &&
         op.getNumDpsInits() == 1 && op.getNumResults() == 1 &&
         op.getNumParallelLoops() == op.getNumLoops() &&
         op.getIndexingMapsArray().back().isIdentity() &&
         cast<RankedTensorType>(op.getResult(0).getType())
             .getElementType()
             .isF32();
}

struct BiasAdd {
  linalg::GenericOp op;
  Value bias;
  bool relu = false;
};

/// `op` as y + bias[column], optionally followed by ReLU, where y is `in`.
std::optional<BiasAdd> matchBiasAdd(Operation *user, Value in) {
  auto op = dyn_cast<linalg::GenericOp>(user);
  if (!op || !isElementwise(op, 2))
    return std::nullopt;
  unsigned yPos = op.getDpsInputOperand(0)->get() == in ? 0 : 1;
  Value bias = op.getDpsInputOperand(1 - yPos)->get();
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();
  unsigned rank = op.getNumLoops();
  auto biasType = dyn_cast<RankedTensorType>(bias.getType());
  AffineMap column = AffineMap::get(
      rank, 0, getAffineDimExpr(rank - 1, op.getContext()));
  if (op.getDpsInputOperand(yPos)->get() != in || !maps[yPos].isIdentity() ||
      maps[1 - yPos] != column || !biasType || biasType.getRank() != 1 ||
      !biasType.getElementType().isF32())
    return std::nullopt;
  Block *body = op.getBody();
  Value y = body->getArgument(yPos), b = body->getArgument(1 - yPos);
  auto yield = cast<linalg::YieldOp>(body->getTerminator());
  Value out = yield.getValues()[0];
  BiasAdd match{op, bias};
  if (Operation *def = out.getDefiningOp(); def && !isa<arith::AddFOp>(def)) {
    if (def->getNumOperands() != 2)
      return std::nullopt;
    Value sum = def->getOperand(matchPattern(def->getOperand(0),
                                             m_AnyZeroFloat()) ? 1 : 0);
    if (!isReluOf(out, sum))
      return std::nullopt;
    match.relu = true;
    out = sum;
  }
  auto add = out.getDefiningOp<arith::AddFOp>();
  if (!add || !((add.getLhs() == y && add.getRhs() == b) ||
                (add.getLhs() == b && add.getRhs() == y)) ||
      body->getOperations().size() != (match.relu ? 3u : 2u))
    return std::nullopt;
  return match;
}

/// Whether `user` is an elementwise ReLU of `in`.
bool isRelu(Operation *user, Value in) {
  auto op = dyn_cast<linalg::GenericOp>(user);
  if (!op || !isElementwise(op, 1) || op.getDpsInputOperand(0)->get() != in ||
      !op.getIndexingMapsArray()[0].isIdentity())
    return false;
  Block *body = op.getBody();
  auto yield = cast<linalg::YieldOp>(body->getTerminator());
  return body->getOperations().size() == 2 &&
         isReluOf(yield.getValues()[0], body->getArgument(0));
}

Operation *singleUser(Value v) {
  return v.hasOneUse() ? *v.getUsers().begin() : nullptr;
}

/// Folds the bias add and ReLU that follow `mm` into its epilogue.
void fuseEpilogue(MatmulOp mm) {
  Value y = mm.getResult();
  Operation *user = singleUser(y);
  auto expand = dyn_cast_or_null<tensor::ExpandShapeOp>(user);
  if (expand) {
    // Only rows may be split: the bias indexes the last dimension.
    if (expand.getReassociationIndices().back().size() != 1)
      return;
    y = expand.getResult();
    user = singleUser(y);
  }
  std::optional<BiasAdd> add = user ? matchBiasAdd(user, y) : std::nullopt;
  if (!add)
    return;
  Operation *last = add->op;
  if (!add->relu)
    if (Operation *next = singleUser(add->op.getResult(0));
        next && isRelu(next, add->op.getResult(0))) {
      add->relu = true;
      last = next;
    }
  OpBuilder b(last);
  Value fused = MatmulOp::create(
      b, mm.getLoc(), mm.getType(), mm.getLhs(), mm.getLhsScale(), mm.getRhs(),
      mm.getRhsScale(), add->bias, mm.getTransposeLhs(), mm.getTransposeRhs(),
      add->relu, mm.getRoleAttr());
  if (expand) {
    IRMapping mapping;
    mapping.map(mm.getResult(), fused);
    fused = b.clone(*expand, mapping)->getResult(0);
  }
  last->getResult(0).replaceAllUsesWith(fused);
  // Users first, so that each op is unread when it goes.
  SmallVector<Operation *> dead = {last};
  if (last != add->op)
    dead.push_back(add->op);
  if (expand)
    dead.push_back(expand);
  dead.push_back(mm);
  SmallVector<Value> inits;
  for (Operation *op : dead) {
    if (auto generic = dyn_cast<linalg::GenericOp>(op))
      inits.push_back(generic.getDpsInitOperand(0)->get());
    op->erase();
  }
  for (Value init : inits)
    eraseDeadViews(init);
}

} // namespace

void lq::transforms::fuseEpilogues(func::FuncOp fn) {
  SmallVector<MatmulOp> forwards;
  fn.walk([&](MatmulOp mm) {
    if (mm.getRole() == GemmRole::forward && !mm.getBias() && !mm.getRelu() &&
        mm.getType().getElementType().isF32())
      forwards.push_back(mm);
  });
  for (MatmulOp mm : forwards)
    fuseEpilogue(mm);
}
