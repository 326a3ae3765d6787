//===- LowerToLinalg.cpp - reference lowering of lq to linalg -------------===//
//
// Every lq op becomes linalg/tensor/arith on tensors computing exactly the
// numerics: quantized tensors are tensor<MxNxi8> holding one 4-bit code per
// byte, quantizers are elementwise linalg.generic ops built from
// NumericsBuilder, and the GEMM accumulates decoded codes in i32.
//
//===----------------------------------------------------------------------===//

#include "lq/Conversion/NumericsBuilder.h"
#include "lq/Dialect/LqDialect.h"
#include "lq/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Func/Transforms/FuncConversions.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/Transforms/DialectConversion.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace lq {
#define GEN_PASS_DEF_LQLOWERTOLINALG
#include "lq/Dialect/LqPasses.h.inc"
} // namespace lq

using namespace mlir;
using namespace lq;

namespace {

using BodyFn = function_ref<void(NumericsBuilder &, ValueRange)>;

constexpr uint32_t kQuietNaNBits = 0x7FC00000u;
using utils::IteratorType;

/// Builds a linalg.generic whose body is written with a NumericsBuilder.
linalg::GenericOp buildGeneric(OpBuilder &b, Location loc,
                               TypeRange resultTypes, ValueRange inputs,
                               ValueRange outputs, ArrayRef<AffineMap> maps,
                               ArrayRef<IteratorType> iterators, BodyFn body) {
  return linalg::GenericOp::create(
      b, loc, resultTypes, inputs, outputs, maps, iterators,
      [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
        ImplicitLocOpBuilder ib(nestedLoc, nested);
        NumericsBuilder nb(ib);
        body(nb, args);
      });
}

/// An uninitialized tensor with the shape of `like` and element `elemType`.
Value emptyLike(OpBuilder &b, Location loc, Value like, Type elemType) {
  return tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, like),
                                 elemType);
}

/// An uninitialized tensor of `sizes`.
Value emptyOfSizes(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                   Type elemType) {
  return tensor::EmptyOp::create(b, loc, sizes, elemType);
}

/// A rank-0 tensor holding `init`.
Value scalarTensor(OpBuilder &b, Location loc, Value init) {
  Value empty = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{},
                                        init.getType());
  return linalg::FillOp::create(b, loc, init, empty).getResult(0);
}

Value extractScalar(OpBuilder &b, Location loc, Value tensor0d) {
  return tensor::ExtractOp::create(b, loc, tensor0d, ValueRange{});
}

/// An f32 view of an element of an f32/bf16/f16 input (widening is exact).
Value toF32(ImplicitLocOpBuilder &b, Value v) {
  if (v.getType().isF32())
    return v;
  return arith::ExtFOp::create(b, b.getF32Type(), v);
}

/// Reduces a 2-D tensor to scalars. `inits` are the initial accumulator
/// values; `body(nb, element, accumulators)` yields the new accumulators.
SmallVector<Value>
reduceAll(OpBuilder &b, Location loc, Value input, ValueRange inits,
          function_ref<SmallVector<Value>(NumericsBuilder &, Value, ValueRange)>
              body) {
  MLIRContext *ctx = b.getContext();
  SmallVector<Value> outs;
  SmallVector<Type> types;
  for (Value init : inits) {
    outs.push_back(scalarTensor(b, loc, init));
    types.push_back(outs.back().getType());
  }
  SmallVector<AffineMap> maps{AffineMap::getMultiDimIdentityMap(2, ctx)};
  maps.append(inits.size(), AffineMap::get(2, 0, {}, ctx));
  auto generic = buildGeneric(
      b, loc, types, input, outs, maps,
      {IteratorType::reduction, IteratorType::reduction},
      [&](NumericsBuilder &nb, ValueRange args) {
        SmallVector<Value> next = body(nb, args[0], args.drop_front());
        linalg::YieldOp::create(nb.builder(), next);
      });
  SmallVector<Value> results;
  for (Value r : generic.getResults())
    results.push_back(extractScalar(b, loc, r));
  return results;
}

struct MaxAbs {
  Value maxBits;   // i32 bits of max |x| over the finite elements
  Value nonfinite; // i1: some element is NaN or Inf
};

/// max |x| over the finite elements and the non-finite flag, in one pass of
/// unsigned integer maxima over magnitude bits (NaN and Inf sort above every
/// finite magnitude).
MaxAbs computeMaxAbs(OpBuilder &b, Location loc, Value input) {
  ImplicitLocOpBuilder ib(loc, b);
  NumericsBuilder top(ib);
  SmallVector<Value> maxima = reduceAll(
      b, loc, input, {top.i32(0), top.i32(0)},
      [](NumericsBuilder &nb, Value x, ValueRange acc) {
        ImplicitLocOpBuilder &eb = nb.builder();
        Value bits = nb.absBits(toF32(eb, x));
        Value finite = arith::SelectOp::create(eb, nb.isNonfiniteBits(bits),
                                               nb.i32(0), bits);
        return SmallVector<Value>{arith::MaxUIOp::create(eb, finite, acc[0]),
                                  arith::MaxUIOp::create(eb, bits, acc[1])};
      });
  return {maxima[0], top.isNonfiniteBits(maxima[1])};
}

Value indexToI64(ImplicitLocOpBuilder &b, Value index) {
  return arith::IndexCastUIOp::create(b, b.getI64Type(), index);
}

//===----------------------------------------------------------------------===//
// Patterns
//===----------------------------------------------------------------------===//

struct MaxAbsLowering : OpConversionPattern<MaxAbsOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(MaxAbsOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MaxAbs maxAbs = computeMaxAbs(rewriter, loc, adaptor.getInput());
    ImplicitLocOpBuilder ib(loc, rewriter);
    Value max = arith::BitcastOp::create(ib, ib.getF32Type(), maxAbs.maxBits);
    rewriter.replaceOp(op, {max, maxAbs.nonfinite});
    return success();
  }
};

struct SawbClipLowering : OpConversionPattern<SawbClipOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(SawbClipOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    ImplicitLocOpBuilder ib(loc, rewriter);
    NumericsBuilder nb(ib);
    Type f64 = ib.getF64Type();
    Value zero64 = arith::ConstantFloatOp::create(ib, ib.getF64Type(),
                                                  APFloat(0.0));
    // One pass for the f64 moments and the max magnitude.
    SmallVector<Value> sums = reduceAll(
        rewriter, loc, input, {zero64, zero64, nb.i32(0)},
        [&](NumericsBuilder &body, Value x, ValueRange acc) {
          ImplicitLocOpBuilder &eb = body.builder();
          Value x32 = toF32(eb, x);
          Value d = arith::ExtFOp::create(eb, f64, x32);
          Value sq = arith::AddFOp::create(eb, acc[0],
                                           arith::MulFOp::create(eb, d, d));
          Value ab = arith::AddFOp::create(eb, acc[1],
                                           math::AbsFOp::create(eb, d));
          Value bits = body.absBits(x32);
          Value finite = arith::SelectOp::create(
              eb, body.isNonfiniteBits(bits), body.i32(0), bits);
          Value mx = arith::MaxUIOp::create(eb, finite, acc[2]);
          return SmallVector<Value>{sq, ab, mx};
        });

    Value rows = tensor::DimOp::create(ib, input, 0);
    Value cols = tensor::DimOp::create(ib, input, 1);
    Value count = arith::UIToFPOp::create(
        ib, f64, indexToI64(ib, arith::MulIOp::create(ib, rows, cols)));
    auto c64 = [&](double v) {
      return arith::ConstantFloatOp::create(ib, ib.getF64Type(), APFloat(v));
    };
    Value meanSq = arith::DivFOp::create(ib, sums[0], count);
    Value meanAbs = arith::DivFOp::create(ib, sums[1], count);
    Value clip64 = arith::SubFOp::create(
        ib, arith::MulFOp::create(ib, c64(12.1), math::SqrtOp::create(ib, meanSq)),
        arith::MulFOp::create(ib, c64(12.2), meanAbs));
    Value clip = arith::TruncFOp::create(ib, ib.getF32Type(), clip64);

    // Squares of f32 values cannot overflow an f64 sum, so the sum is
    // non-finite exactly when an element is.
    Value inf = nb.f32(std::numeric_limits<float>::infinity());
    Value nonfinite = arith::CmpFOp::create(
        ib, arith::CmpFPredicate::UGE, sums[0],
        arith::ConstantFloatOp::create(
            ib, ib.getF64Type(),
            APFloat(std::numeric_limits<double>::infinity())));
    Value max = arith::BitcastOp::create(ib, ib.getF32Type(), sums[2]);
    // Fall back to max |x| when the moment estimate is unusable.
    Value notPositive =
        arith::CmpFOp::create(ib, arith::CmpFPredicate::ULE, clip, nb.f32(0));
    Value isInf =
        arith::CmpFOp::create(ib, arith::CmpFPredicate::OEQ, clip, inf);
    Value aboveMax =
        arith::CmpFOp::create(ib, arith::CmpFPredicate::OGT, clip, max);
    Value fallback = arith::OrIOp::create(
        ib, arith::OrIOp::create(ib, notPositive, isInf), aboveMax);
    clip = arith::SelectOp::create(ib, fallback, max, clip);
    clip = arith::SelectOp::create(ib, nonfinite, nb.f32FromBits(kQuietNaNBits),
                                   clip);
    rewriter.replaceOp(op, clip);
    return success();
  }
};

struct QuantizeLowering : OpConversionPattern<QuantizeOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(QuantizeOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    QTensorType qType = op.getResult().getType();
    Format format = getFormat(qType.getFormat());
    ImplicitLocOpBuilder ib(loc, rewriter);
    NumericsBuilder nb(ib);

    // A NaN or Inf range (a broken in-hindsight estimate or SAWB clip) is
    // reported like a non-finite input; a tiny or negative one just gives
    // zero codes.
    Value range = adaptor.getRange();
    Value nonfinite = arith::OrIOp::create(
        ib, computeMaxAbs(rewriter, loc, input).nonfinite,
        nb.isNonfiniteBits(nb.absBits(range)));
    Value zeroAll = arith::OrIOp::create(
        ib, nonfinite,
        arith::XOrIOp::create(ib, nb.isUsableRange(range),
                              arith::ConstantIntOp::create(ib, 1, 1)));
    float levels = format == Format::Log4    ? 64.0f
                   : format == Format::SInt4 ? 7.0f
                                             : 15.0f;
    Value inv = arith::DivFOp::create(ib, nb.f32(levels), range);
    Value scale = arith::SelectOp::create(
        ib, zeroAll, nb.f32(0.0f),
        arith::DivFOp::create(ib, range, nb.f32(levels)));

    Value cols = indexToI64(ib, tensor::DimOp::create(ib, input, 1));
    Value seed = adaptor.getSeed();
    Value stream = nb.i32(int32_t(op.getStream()));
    Value sample = nb.i32(int32_t(op.getSample()));
    MLIRContext *ctx = rewriter.getContext();
    auto id2 = AffineMap::getMultiDimIdentityMap(2, ctx);
    Value init = emptyLike(rewriter, loc, input, ib.getI8Type());
    auto codes = buildGeneric(
        rewriter, loc, init.getType(), input, init, {id2, id2},
        {IteratorType::parallel, IteratorType::parallel},
        [&](NumericsBuilder &body, ValueRange args) {
          ImplicitLocOpBuilder &eb = body.builder();
          Value x = toF32(eb, args[0]);
          Value code;
          if (format == Format::Log4) {
            Value i = indexToI64(eb, linalg::IndexOp::create(eb, 0));
            Value j = indexToI64(eb, linalg::IndexOp::create(eb, 1));
            Value index = arith::AddIOp::create(
                eb, arith::MulIOp::create(eb, i, cols), j);
            code = body.luqCode(x, inv,
                                body.uniform(seed, stream, sample, index));
          } else {
            code = body.sawbCode(x, inv, format == Format::UInt4);
          }
          code = arith::SelectOp::create(eb, zeroAll, body.i8(0), code);
          linalg::YieldOp::create(eb, ValueRange{code});
        });

    Value overflow = nb.i32(0);
    if (format == Format::Log4) {
      Value count = reduceAll(rewriter, loc, input, {nb.i32(0)},
                              [&](NumericsBuilder &body, Value x,
                                  ValueRange acc) {
                                ImplicitLocOpBuilder &eb = body.builder();
                                Value over = arith::ExtUIOp::create(
                                    eb, eb.getI32Type(),
                                    body.luqOverflows(toF32(eb, x), inv));
                                return SmallVector<Value>{
                                    arith::AddIOp::create(eb, acc[0], over)};
                              })[0];
      overflow = arith::SelectOp::create(ib, zeroAll, nb.i32(0), count);
    }
    rewriter.replaceOp(op, {codes.getResult(0), scale, nonfinite, overflow});
    return success();
  }
};

struct DequantizeLowering : OpConversionPattern<DequantizeOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(DequantizeOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Format format = getFormat(op.getInput().getType().getFormat());
    Value codes = adaptor.getInput();
    Value scale = adaptor.getScale();
    auto id2 = AffineMap::getMultiDimIdentityMap(2, rewriter.getContext());
    Value init = emptyLike(rewriter, loc, codes, rewriter.getF32Type());
    auto generic = buildGeneric(
        rewriter, loc, op.getType(), codes, init, {id2, id2},
        {IteratorType::parallel, IteratorType::parallel},
        [&](NumericsBuilder &body, ValueRange args) {
          ImplicitLocOpBuilder &eb = body.builder();
          Value v = arith::SIToFPOp::create(eb, eb.getF32Type(),
                                            body.decode(args[0], format));
          linalg::YieldOp::create(
              eb, ValueRange{arith::MulFOp::create(eb, v, scale)});
        });
    rewriter.replaceOp(op, generic.getResult(0));
    return success();
  }
};

/// An uninitialized tensor of `type`; `sizes` gives each dimension as an
/// index value, used where `type` has a dynamic dimension.
Value emptyOfType(OpBuilder &b, Location loc, RankedTensorType type,
                  ArrayRef<Value> sizes) {
  SmallVector<OpFoldResult> mixed;
  for (auto [dim, size] : llvm::zip_equal(type.getShape(), sizes))
    mixed.push_back(ShapedType::isDynamic(dim) ? OpFoldResult(size)
                                               : b.getIndexAttr(dim));
  return emptyOfSizes(b, loc, mixed, type.getElementType());
}

struct PackLowering : OpConversionPattern<PackOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(PackOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value codes = adaptor.getInput();
    ImplicitLocOpBuilder ib(loc, rewriter);
    Value rows = tensor::DimOp::create(ib, codes, 0);
    Value cols = tensor::DimOp::create(ib, codes, 1);
    Value one = arith::ConstantIndexOp::create(ib, 1);
    Value two = arith::ConstantIndexOp::create(ib, 2);
    Value bytesPerRow = arith::DivUIOp::create(
        ib, arith::AddIOp::create(ib, cols, one), two);
    Value lastCol = arith::SubIOp::create(ib, cols, one);
    RankedTensorType type = op.getType();
    Value init = emptyOfType(rewriter, loc, type, {rows, bytesPerRow});
    auto id2 = AffineMap::getMultiDimIdentityMap(2, rewriter.getContext());
    auto generic = buildGeneric(
        rewriter, loc, type, ValueRange{}, init, {id2},
        {IteratorType::parallel, IteratorType::parallel},
        [&](NumericsBuilder &body, ValueRange) {
          ImplicitLocOpBuilder &eb = body.builder();
          Value i = linalg::IndexOp::create(eb, 0);
          Value j = linalg::IndexOp::create(eb, 1);
          Value even = arith::MulIOp::create(eb, j, two);
          Value odd = arith::AddIOp::create(eb, even, one);
          // The odd nibble past the end of a row is padding: read a valid
          // element and replace it by zero.
          Value inRow = arith::CmpIOp::create(eb, arith::CmpIPredicate::ult,
                                              odd, cols);
          Value oddClamped = arith::MinUIOp::create(eb, odd, lastCol);
          Value lo = tensor::ExtractOp::create(eb, codes, ValueRange{i, even});
          Value hi = arith::SelectOp::create(
              eb, inRow,
              tensor::ExtractOp::create(eb, codes, ValueRange{i, oddClamped}),
              body.i8(0));
          Value byte = arith::OrIOp::create(
              eb, arith::AndIOp::create(eb, lo, body.i8(0xF)),
              arith::ShLIOp::create(eb, hi, body.i8(4)));
          linalg::YieldOp::create(eb, ValueRange{byte});
        });
    rewriter.replaceOp(op, generic.getResult(0));
    return success();
  }
};

struct UnpackLowering : OpConversionPattern<UnpackOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(UnpackOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value bytes = adaptor.getInput();
    ImplicitLocOpBuilder ib(loc, rewriter);
    auto type = cast<RankedTensorType>(getTypeConverter()->convertType(
        op.getResult().getType()));
    Value rows = tensor::DimOp::create(ib, bytes, 0);
    Value two = arith::ConstantIndexOp::create(ib, 2);
    Value init = emptyOfType(rewriter, loc, type, {rows, Value()});
    auto id2 = AffineMap::getMultiDimIdentityMap(2, rewriter.getContext());
    auto generic = buildGeneric(
        rewriter, loc, type, ValueRange{}, init, {id2},
        {IteratorType::parallel, IteratorType::parallel},
        [&](NumericsBuilder &body, ValueRange) {
          ImplicitLocOpBuilder &eb = body.builder();
          Value i = linalg::IndexOp::create(eb, 0);
          Value j = linalg::IndexOp::create(eb, 1);
          Value byte = tensor::ExtractOp::create(
              eb, bytes, ValueRange{i, arith::DivUIOp::create(eb, j, two)});
          Value isOdd = arith::CmpIOp::create(
              eb, arith::CmpIPredicate::ne, arith::RemUIOp::create(eb, j, two),
              arith::ConstantIndexOp::create(eb, 0));
          Value code = arith::SelectOp::create(
              eb, isOdd, arith::ShRUIOp::create(eb, byte, body.i8(4)),
              arith::AndIOp::create(eb, byte, body.i8(0xF)));
          linalg::YieldOp::create(eb, ValueRange{code});
        });
    rewriter.replaceOp(op, generic.getResult(0));
    return success();
  }
};

struct MatmulLowering : OpConversionPattern<MatmulOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(MatmulOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *ctx = rewriter.getContext();
    ImplicitLocOpBuilder ib(loc, rewriter);
    NumericsBuilder nb(ib);
    Format lhsFormat = getFormat(op.getLhsType().getFormat());
    Format rhsFormat = getFormat(op.getRhsType().getFormat());
    bool tl = op.getTransposeLhs(), tr = op.getTransposeRhs();
    ValueRange samples = adaptor.getLhs();
    Value rhs = adaptor.getRhs();

    OpFoldResult m = tensor::getMixedSize(rewriter, loc, samples[0], tl ? 1 : 0);
    OpFoldResult n = tensor::getMixedSize(rewriter, loc, rhs, tr ? 0 : 1);
    Value acc = linalg::FillOp::create(
                    ib, nb.i32(0), emptyOfSizes(rewriter, loc, {m, n},
                                                ib.getI32Type()))
                    .getResult(0);

    // Loops (m, n, k): a[m, k] * b[k, n] with the transposes in the maps.
    AffineExpr d0, d1, d2;
    bindDims(ctx, d0, d1, d2);
    AffineMap aMap = AffineMap::get(3, 0, tl ? ArrayRef<AffineExpr>{d2, d0}
                                             : ArrayRef<AffineExpr>{d0, d2},
                                    ctx);
    AffineMap bMap = AffineMap::get(3, 0, tr ? ArrayRef<AffineExpr>{d1, d2}
                                             : ArrayRef<AffineExpr>{d2, d1},
                                    ctx);
    AffineMap cMap = AffineMap::get(3, 0, {d0, d1}, ctx);
    // SMP samples accumulate into the same exact int32 sum.
    for (Value a : samples) {
      acc = buildGeneric(rewriter, loc, acc.getType(), {a, rhs}, acc,
                         {aMap, bMap, cMap},
                         {IteratorType::parallel, IteratorType::parallel,
                          IteratorType::reduction},
                         [&](NumericsBuilder &body, ValueRange args) {
                           ImplicitLocOpBuilder &eb = body.builder();
                           Value prod = arith::MulIOp::create(
                               eb, body.decode(args[0], lhsFormat),
                               body.decode(args[1], rhsFormat));
                           linalg::YieldOp::create(
                               eb, ValueRange{arith::AddIOp::create(
                                       eb, args[2], prod)});
                         })
                .getResult(0);
    }

    Value scale =
        arith::MulFOp::create(ib, adaptor.getLhsScale(), adaptor.getRhsScale());
    if (samples.size() > 1)
      scale = arith::MulFOp::create(ib, scale,
                                    nb.f32(1.0f / float(samples.size())));

    auto resultType = cast<RankedTensorType>(op.getType());
    Type outElem = resultType.getElementType();
    Value bias = adaptor.getBias();
    bool relu = op.getRelu();
    auto id2 = AffineMap::getMultiDimIdentityMap(2, ctx);
    SmallVector<Value> inputs{acc};
    SmallVector<AffineMap> maps{id2};
    if (bias) {
      inputs.push_back(bias);
      maps.push_back(AffineMap::get(2, 0, {getAffineDimExpr(1, ctx)}, ctx));
    }
    maps.push_back(id2);
    Value init = emptyOfSizes(rewriter, loc, {m, n}, outElem);
    auto epilogue = buildGeneric(
        rewriter, loc, resultType, inputs, init, maps,
        {IteratorType::parallel, IteratorType::parallel},
        [&](NumericsBuilder &body, ValueRange args) {
          ImplicitLocOpBuilder &eb = body.builder();
          Value v = arith::MulFOp::create(
              eb, arith::SIToFPOp::create(eb, eb.getF32Type(), args[0]), scale);
          if (bias)
            v = arith::AddFOp::create(eb, v, args[1]);
          if (relu)
            v = arith::MaximumFOp::create(eb, v, body.f32(0.0f));
          if (outElem.isBF16())
            v = arith::TruncFOp::create(eb, outElem, v);
          linalg::YieldOp::create(eb, ValueRange{v});
        });
    rewriter.replaceOp(op, epilogue.getResult(0));
    return success();
  }
};

struct LqLowerToLinalgPass
    : lq::impl::LqLowerToLinalgBase<LqLowerToLinalgPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    if (failed(assignLinearGradStreams(module)))
      return signalPassFailure();
    RewritePatternSet expand(ctx);
    populateExpandLinearPatterns(expand);
    if (failed(applyPatternsGreedily(module, std::move(expand))))
      return signalPassFailure();

    TypeConverter converter;
    converter.addConversion([](Type t) { return t; });
    converter.addConversion([](QTensorType t) -> Type {
      return RankedTensorType::get(t.getShape(),
                                   IntegerType::get(t.getContext(), 8));
    });

    ConversionTarget target(*ctx);
    target.addIllegalDialect<LqDialect>();
    target.addLegalDialect<arith::ArithDialect, linalg::LinalgDialect,
                           math::MathDialect, tensor::TensorDialect>();
    target.addDynamicallyLegalOp<func::FuncOp>([&](func::FuncOp fn) {
      return converter.isSignatureLegal(fn.getFunctionType()) &&
             converter.isLegal(&fn.getBody());
    });
    target.addDynamicallyLegalOp<func::ReturnOp, func::CallOp>(
        [&](Operation *op) { return converter.isLegal(op); });
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });

    RewritePatternSet patterns(ctx);
    patterns.add<MaxAbsLowering, SawbClipLowering, QuantizeLowering,
                 DequantizeLowering, PackLowering, UnpackLowering,
                 MatmulLowering>(converter, ctx);
    populateFunctionOpInterfaceTypeConversionPattern<func::FuncOp>(patterns,
                                                                   converter);
    populateReturnOpTypeConversionPattern(patterns, converter);
    populateCallOpTypeConversionPattern(patterns, converter);
    if (failed(applyPartialConversion(module, target, std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
