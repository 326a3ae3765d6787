//===- ExpandLinear.cpp - lq.linear / lq.linear_grad to GEMMs -------------===//
//
// Expands the training-level ops into the quantizers and the three GEMMs of
// paper Eqs. 1-3.
//
//===----------------------------------------------------------------------===//

#include "StreamIds.h"

#include "lq/Dialect/LqDialect.h"
#include "lq/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/DenseMap.h"

namespace lq {
#define GEN_PASS_DEF_LQEXPANDLINEAR
#include "lq/Dialect/LqPasses.h.inc"
} // namespace lq

using namespace mlir;
using namespace lq;

namespace {

struct Quantized {
  Value codes;
  Value scale;
  Value nonfinite;
  Value overflow;
};

/// SAWB clip and int4 quantization of a forward operand.
Quantized quantizeSawb(PatternRewriter &rewriter, Location loc, Value x,
                       bool isUnsigned) {
  auto xType = cast<RankedTensorType>(x.getType());
  MLIRContext *ctx = rewriter.getContext();
  Type format = isUnsigned ? Type(UInt4Type::get(ctx)) : SInt4Type::get(ctx);
  auto qType = QTensorType::get(ctx, xType.getShape(), format);
  Type f32 = rewriter.getF32Type();
  Value clip = SawbClipOp::create(rewriter, loc, f32, x);
  auto q = QuantizeOp::create(rewriter, loc, qType, f32, rewriter.getI1Type(),
                              rewriter.getI32Type(), x, clip, /*seed=*/Value());
  return {q.getResult(), q.getScale(), q.getNonfinite(), q.getOverflow()};
}

struct ExpandLinear : OpRewritePattern<LinearOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(LinearOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Quantized x =
        quantizeSawb(rewriter, loc, op.getInput(), op.getUnsignedInput());
    Quantized w = quantizeSawb(rewriter, loc, op.getWeight(), false);
    auto role = GemmRoleAttr::get(getContext(), GemmRole::forward);
    rewriter.replaceOpWithNewOp<MatmulOp>(
        op, op.getType(), ValueRange{x.codes}, x.scale, w.codes, w.scale,
        op.getBias(), /*transpose_lhs=*/false, /*transpose_rhs=*/true,
        /*relu=*/false, role);
    return success();
  }
};

struct ExpandLinearGrad : OpRewritePattern<LinearGradOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(LinearGradOp op,
                                PatternRewriter &rewriter) const override {
    std::optional<uint64_t> stream = op.getStream();
    if (!stream)
      return rewriter.notifyMatchFailure(op, "stream not assigned yet");
    Location loc = op.getLoc();
    MLIRContext *ctx = getContext();
    Value dy = op.getGrad();
    auto dyType = cast<RankedTensorType>(dy.getType());
    Type f32 = rewriter.getF32Type(), i1 = rewriter.getI1Type(),
         i32 = rewriter.getI32Type();

    // The scale of dy: its max, or the caller's in-hindsight estimate. The
    // max is computed either way: it is the next step's estimate input.
    auto maxAbs = MaxAbsOp::create(rewriter, loc, f32, i1, dy);
    Value estimate = op.getMaxEstimate();
    Value range = estimate ? estimate : maxAbs.getMax();

    // One LUQ sample per SMP draw; both GEMMs read these same codes.
    auto gType = QTensorType::get(ctx, dyType.getShape(), Log4Type::get(ctx));
    SmallVector<Value> samples;
    QuantizeOp first;
    for (uint64_t s = 0, e = op.getSmp(); s < e; ++s) {
      auto q = QuantizeOp::create(rewriter, loc, gType, f32, i1, i32, dy, range,
                                  op.getSeed(), *stream, s,
                                  /*hindsight=*/bool(estimate));
      if (!first)
        first = q;
      samples.push_back(q.getResult());
    }

    Quantized w = quantizeSawb(rewriter, loc, op.getWeight(), false);
    Quantized x =
        quantizeSawb(rewriter, loc, op.getInput(), op.getUnsignedInput());
    auto dx = MatmulOp::create(
        rewriter, loc, op.getInputGrad().getType(), samples, first.getScale(),
        w.codes, w.scale, /*bias=*/Value(), false, false, false,
        GemmRoleAttr::get(ctx, GemmRole::backward_data));
    auto dw = MatmulOp::create(
        rewriter, loc, op.getWeightGrad().getType(), samples, first.getScale(),
        x.codes, x.scale, /*bias=*/Value(), /*transpose_lhs=*/true, false,
        false, GemmRoleAttr::get(ctx, GemmRole::weight_grad));

    // Every sample sees the same scale, so the non-finite flag and the
    // hindsight overflow count of the first stand for all of them.
    rewriter.replaceOp(op, {dx.getResult(), dw.getResult(), maxAbs.getMax(),
                            first.getNonfinite(), first.getOverflow()});
    return success();
  }
};

struct LqExpandLinearPass
    : lq::impl::LqExpandLinearBase<LqExpandLinearPass> {
  void runOnOperation() override {
    if (failed(assignLinearGradStreams(getOperation())))
      return signalPassFailure();
    RewritePatternSet patterns(&getContext());
    populateExpandLinearPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

/// Assigns streams within one function-like region.
LogicalResult assignStreamsIn(Operation *scope) {
  SmallVector<LinearGradOp> unassigned;
  transforms::StreamIds streams;
  DenseMap<std::pair<uint64_t, Value>, LinearGradOp> owner;
  WalkResult result = scope->walk([&](LinearGradOp op) -> WalkResult {
    std::optional<uint64_t> stream = op.getStream();
    if (!stream) {
      unassigned.push_back(op);
      return WalkResult::advance();
    }
    streams.reserve(*stream);
    auto [it, inserted] = owner.try_emplace({*stream, op.getSeed()}, op);
    if (inserted)
      return WalkResult::advance();
    InFlightDiagnostic diag = op.emitError()
                              << "stream " << *stream
                              << " and this seed are already used by another "
                                 "lq.linear_grad: both layers would draw the "
                                 "same random numbers";
    diag.attachNote(it->second.getLoc()) << "first use here";
    return WalkResult::interrupt();
  });
  if (result.wasInterrupted())
    return failure();
  for (LinearGradOp op : unassigned)
    op.setStream(streams.next());
  return success();
}

} // namespace

void lq::populateExpandLinearPatterns(RewritePatternSet &patterns) {
  patterns.add<ExpandLinear, ExpandLinearGrad>(patterns.getContext());
}

LogicalResult lq::assignLinearGradStreams(Operation *root) {
  // Streams separate the layers of one program; functions are separate
  // programs, so each gets its own numbering.
  SmallVector<Operation *> scopes;
  root->walk([&](FunctionOpInterface fn) { scopes.push_back(fn); });
  if (scopes.empty())
    scopes.push_back(root);
  for (Operation *scope : scopes)
    if (failed(assignStreamsIn(scope)))
      return failure();
  return success();
}
