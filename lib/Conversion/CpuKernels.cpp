//===- CpuKernels.cpp - generated x86-64 kernels of a quantized GEMM ------===//

#include "lq/Conversion/CpuKernels.h"
#include "lq/Conversion/NumericsBuilder.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVMPass.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVMPass.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;
using namespace lq;

namespace {

/// Lanes of the f32/i32 vectors: one AVX2 register.
constexpr int64_t kLanes = 8;

const char *formatName(Format format) {
  switch (format) {
  case Format::SInt4:
    return "sint4";
  case Format::UInt4:
    return "uint4";
  case Format::Log4:
    return "log4";
  }
  llvm_unreachable("unknown format");
}

const char *storageName(OperandStorage storage) {
  switch (storage) {
  case OperandStorage::F32:
    return "f32";
  case OperandStorage::BF16:
    return "bf16";
  case OperandStorage::Packed:
    return "packed";
  }
  llvm_unreachable("unknown storage");
}

MemRefType memref1d(Type element) {
  return MemRefType::get({ShapedType::kDynamic}, element);
}

/// Builds one module of stage functions.
class KernelModuleBuilder {
public:
  /// With `quantizeOnly`, the module quantizes the left operand of `spec`
  /// to packed storage instead of multiplying.
  KernelModuleBuilder(MLIRContext &ctx, const CpuGemmSpec &spec,
                      bool quantizeOnly)
      : ctx(ctx), spec(spec), quantizeOnly(quantizeOnly),
        loc(UnknownLoc::get(&ctx)), module(ModuleOp::create(loc)),
        b(loc, &ctx) {}

  OwningOpRef<ModuleOp> build();

private:
  /// Starts a public function with a C interface; the builder is left in
  /// its entry block.
  ValueRange beginFunction(StringRef name, ArrayRef<Type> args);
  void endFunction() { func::ReturnOp::create(b); }

  Value index(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value indexToI64(Value v) {
    return arith::IndexCastUIOp::create(b, b.getI64Type(), v);
  }
  Value muli(Value x, Value y) { return arith::MulIOp::create(b, x, y); }
  Value addi(Value x, Value y) { return arith::AddIOp::create(b, x, y); }
  Value ceilDiv(Value x, int64_t d) {
    return arith::DivUIOp::create(b, addi(x, index(d - 1)), index(d));
  }
  /// Largest multiple of `d` not above `x`.
  Value roundDown(Value x, int64_t d) {
    return arith::SubIOp::create(b, x, arith::RemUIOp::create(b, x, index(d)));
  }

  Type storageType(const CpuOperandSpec &op);
  /// Loads `width` (0: one) elements of a float operand as f32.
  Value loadF32(Value memref, Value offset, int64_t width);

  void buildMaxAbs(StringRef side, const CpuOperandSpec &op);
  void buildMoments(StringRef side, const CpuOperandSpec &op);
  void buildQuantize(StringRef side, const CpuOperandSpec &op);
  void buildPack4();
  /// The integer value (i32) of the code at (row, col) of a stored operand.
  Value loadCodeValue(const CpuOperandSpec &op, Value src, Value row,
                      Value col, Value rowStride);
  /// scf.for over [lo, hi) with step 1 and no loop-carried values.
  void forEach(Value lo, Value hi, function_ref<void(Value)> body) {
    scf::ForOp::create(b, lo, hi, index(1), ValueRange{},
                       [&](OpBuilder &, Location, Value iv, ValueRange) {
                         body(iv);
                         scf::YieldOp::create(b);
                       });
  }
  void buildPackA();
  void buildPackB();
  void buildGemm();
  void buildEpilogue(Value out, Value ldc, Value m, Value n, Value rows,
                     Value cols, Value scale, Value bias, Value tile,
                     ArrayRef<Value> acc);
  Value epilogueValue(NumericsBuilder &nb, Value acc, Value scale, Value bias);

  MLIRContext &ctx;
  const CpuGemmSpec &spec;
  bool quantizeOnly;
  Location loc;
  OwningOpRef<ModuleOp> module;
  ImplicitLocOpBuilder b;
};

ValueRange KernelModuleBuilder::beginFunction(StringRef name,
                                              ArrayRef<Type> args) {
  b.setInsertionPointToEnd(module->getBody());
  auto fn = func::FuncOp::create(b, name, b.getFunctionType(args, {}));
  fn->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(), b.getUnitAttr());
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  return entry->getArguments();
}

Type KernelModuleBuilder::storageType(const CpuOperandSpec &op) {
  switch (op.storage) {
  case OperandStorage::F32:
    return b.getF32Type();
  case OperandStorage::BF16:
    return b.getBF16Type();
  case OperandStorage::Packed:
    return b.getI8Type();
  }
  llvm_unreachable("unknown storage");
}

Value KernelModuleBuilder::loadF32(Value memref, Value offset, int64_t width) {
  Type element = cast<MemRefType>(memref.getType()).getElementType();
  Value v;
  if (width == 0)
    v = memref::LoadOp::create(b, memref, ValueRange{offset});
  else
    v = vector::LoadOp::create(b, VectorType::get({width}, element), memref,
                               ValueRange{offset});
  if (element.isF32())
    return v;
  Type f32 = b.getF32Type();
  return arith::ExtFOp::create(
      b, width == 0 ? f32 : Type(VectorType::get({width}, f32)), v);
}

//===----------------------------------------------------------------------===//
// Statistics
//===----------------------------------------------------------------------===//

// lq_maxabs_<side>(in, rows, cols, stride, r0, r1, out: [max finite |x| bits,
// max |x| bits])
void KernelModuleBuilder::buildMaxAbs(StringRef side,
                                      const CpuOperandSpec &op) {
  Type idx = b.getIndexType(), i32 = b.getI32Type();
  ValueRange args = beginFunction(
      ("lq_maxabs_" + side).str(),
      {memref1d(storageType(op)), idx, idx, idx, idx, idx, memref1d(i32)});
  Value in = args[0], cols = args[2], stride = args[3];
  Value vecEnd = roundDown(cols, kLanes);
  NumericsBuilder vnb(b, kLanes), snb(b);
  auto vzero = vnb.i32(0), szero = snb.i32(0);

  auto rows = scf::ForOp::create(
      b, args[4], args[5], index(1), ValueRange{vzero, vzero, szero, szero},
      [&](OpBuilder &, Location, Value r, ValueRange acc) {
        Value base = muli(r, stride);
        auto step = [&](NumericsBuilder &nb, Value x, ValueRange a) {
          Value bits = nb.absBits(x);
          Value finite = arith::SelectOp::create(b, nb.isNonfiniteBits(bits),
                                                 nb.i32(0), bits);
          return SmallVector<Value>{arith::MaxUIOp::create(b, a[0], finite),
                                    arith::MaxUIOp::create(b, a[1], bits)};
        };
        auto vec = scf::ForOp::create(
            b, index(0), vecEnd, index(kLanes), acc.take_front(2),
            [&](OpBuilder &, Location, Value c, ValueRange a) {
              scf::YieldOp::create(
                  b, step(vnb, loadF32(in, addi(base, c), kLanes), a));
            });
        auto tail = scf::ForOp::create(
            b, vecEnd, cols, index(1), acc.drop_front(2),
            [&](OpBuilder &, Location, Value c, ValueRange a) {
              scf::YieldOp::create(b,
                                   step(snb, loadF32(in, addi(base, c), 0), a));
            });
        SmallVector<Value> next(vec.getResults());
        next.append(tail.getResults().begin(), tail.getResults().end());
        scf::YieldOp::create(b, next);
      });
  for (int i = 0; i < 2; ++i) {
    Value lanes = vector::ReductionOp::create(b, vector::CombiningKind::MAXUI,
                                              rows.getResult(i));
    Value all = arith::MaxUIOp::create(b, lanes, rows.getResult(2 + i));
    memref::StoreOp::create(b, all, args[6], ValueRange{index(i)});
  }
  endFunction();
}

// lq_moments_<side>(in, rows, cols, stride, r0, r1, out: [sum x^2, sum |x|,
// max finite |x|, non-finite]) in f64, per lane then across lanes, so the
// result depends only on the row range.
void KernelModuleBuilder::buildMoments(StringRef side,
                                       const CpuOperandSpec &op) {
  Type idx = b.getIndexType(), f64 = b.getF64Type();
  ValueRange args = beginFunction(
      ("lq_moments_" + side).str(),
      {memref1d(storageType(op)), idx, idx, idx, idx, idx, memref1d(f64)});
  Value in = args[0], cols = args[2], stride = args[3];
  Value vecEnd = roundDown(cols, kLanes);
  auto zeros = [&](int64_t width) {
    Attribute zero = b.getF64FloatAttr(0.0);
    if (width == 0)
      return Value(arith::ConstantOp::create(b, cast<TypedAttr>(zero)));
    return Value(arith::ConstantOp::create(
        b, DenseElementsAttr::get(VectorType::get({width}, f64), zero)));
  };
  NumericsBuilder vnb(b, kLanes), snb(b);
  Value vz = zeros(kLanes), sz = zeros(0);

  auto step = [&](NumericsBuilder &nb, Value x, ValueRange a,
                  int64_t width) -> SmallVector<Value> {
    Type wide = width ? Type(VectorType::get({width}, f64)) : f64;
    Value d = arith::ExtFOp::create(b, wide, x);
    Value bits = nb.absBits(x);
    Value finite = arith::SelectOp::create(b, nb.isNonfiniteBits(bits),
                                           nb.i32(0), bits);
    return {arith::AddFOp::create(b, a[0], arith::MulFOp::create(b, d, d)),
            arith::AddFOp::create(b, a[1], math::AbsFOp::create(b, d)),
            arith::MaxUIOp::create(b, a[2], finite),
            arith::MaxUIOp::create(b, a[3], bits)};
  };
  auto rows = scf::ForOp::create(
      b, args[4], args[5], index(1),
      ValueRange{vz, vz, vnb.i32(0), vnb.i32(0), sz, sz, snb.i32(0),
                 snb.i32(0)},
      [&](OpBuilder &, Location, Value r, ValueRange acc) {
        Value base = muli(r, stride);
        auto vec = scf::ForOp::create(
            b, index(0), vecEnd, index(kLanes), acc.take_front(4),
            [&](OpBuilder &, Location, Value c, ValueRange a) {
              scf::YieldOp::create(
                  b, step(vnb, loadF32(in, addi(base, c), kLanes), a, kLanes));
            });
        auto tail = scf::ForOp::create(
            b, vecEnd, cols, index(1), acc.drop_front(4),
            [&](OpBuilder &, Location, Value c, ValueRange a) {
              scf::YieldOp::create(
                  b, step(snb, loadF32(in, addi(base, c), 0), a, 0));
            });
        SmallVector<Value> next(vec.getResults());
        next.append(tail.getResults().begin(), tail.getResults().end());
        scf::YieldOp::create(b, next);
      });
  Value out = args[6];
  for (int i = 0; i < 2; ++i) {
    Value lanes = vector::ReductionOp::create(b, vector::CombiningKind::ADD,
                                              rows.getResult(i));
    memref::StoreOp::create(
        b, arith::AddFOp::create(b, lanes, rows.getResult(4 + i)), out,
        ValueRange{index(i)});
  }
  for (int i = 0; i < 2; ++i) {
    Value lanes = vector::ReductionOp::create(b, vector::CombiningKind::MAXUI,
                                              rows.getResult(2 + i));
    Value bits = arith::MaxUIOp::create(b, lanes, rows.getResult(6 + i));
    Value asFloat = arith::ExtFOp::create(
        b, f64, Value(arith::BitcastOp::create(b, b.getF32Type(), bits)));
    memref::StoreOp::create(b, asFloat, out, ValueRange{index(2 + i)});
  }
  endFunction();
}

//===----------------------------------------------------------------------===//
// Quantization to integer code values
//===----------------------------------------------------------------------===//

// lq_quant_<side>(in, rows, cols, stride, r0, r1, codes, inv, seed, stream,
// sample, stats: [overflow count, max |x| bits]). `codes` is row-major
// [rows, cols], one 4-bit code per byte.
void KernelModuleBuilder::buildQuantize(StringRef side,
                                        const CpuOperandSpec &op) {
  Type idx = b.getIndexType(), i32 = b.getI32Type(), i64 = b.getI64Type(),
       i8 = b.getI8Type(), f32 = b.getF32Type();
  ValueRange args = beginFunction(
      ("lq_quant_" + side).str(),
      {memref1d(storageType(op)), idx, idx, idx, idx, idx, memref1d(i8), f32,
       i64, i32, i32, memref1d(i32)});
  Value in = args[0], cols = args[2], stride = args[3], vals = args[6];
  Value inv = args[7], seed = args[8], stream = args[9], sample = args[10];
  bool luq = op.format == Format::Log4;
  Value vecEnd = roundDown(cols, kLanes);

  auto splat = [&](Value scalar) -> Value {
    return vector::BroadcastOp::create(
        b, VectorType::get({kLanes}, scalar.getType()), scalar);
  };
  SmallVector<int64_t> laneIds;
  for (int64_t lane = 0; lane < kLanes; ++lane)
    laneIds.push_back(lane);
  Value laneOffsets = arith::ConstantOp::create(
      b, DenseElementsAttr::get(VectorType::get({kLanes}, i64),
                                ArrayRef<int64_t>(laneIds)));
  struct Params {
    Value inv, seed, stream, sample;
  } scalarParams{inv, seed, stream, sample},
      vectorParams{splat(inv), splat(seed), splat(stream), splat(sample)};

  // Quantizes one element (width 0) or kLanes elements at column c of row
  // r; the Philox index is the element's row-major index in [rows, cols].
  auto step = [&](NumericsBuilder &nb, Value r, Value c, ValueRange acc,
                  int64_t width) -> SmallVector<Value> {
    const Params &p = width ? vectorParams : scalarParams;
    Value x = loadF32(in, addi(muli(r, stride), c), width);
    Value element = addi(muli(r, cols), c);
    Value code, over = nb.i32(0);
    if (luq) {
      Value index = indexToI64(element);
      if (width)
        index = addi(splat(index), laneOffsets);
      code = nb.luqCode(x, p.inv, nb.uniform(p.seed, p.stream, p.sample, index));
      over = arith::ExtUIOp::create(b, nb.shaped(i32), nb.luqOverflows(x, p.inv));
    } else {
      code = nb.sawbCode(x, p.inv, op.format == Format::UInt4);
    }
    if (width)
      vector::StoreOp::create(b, code, vals, ValueRange{element});
    else
      memref::StoreOp::create(b, code, vals, ValueRange{element});
    return {arith::AddIOp::create(b, acc[0], over),
            arith::MaxUIOp::create(b, acc[1], nb.absBits(x))};
  };

  NumericsBuilder vnb(b, kLanes), snb(b);
  Value vz = vnb.i32(0), sz = snb.i32(0);
  auto rows = scf::ForOp::create(
      b, args[4], args[5], index(1), ValueRange{vz, vz, sz, sz},
      [&](OpBuilder &, Location, Value r, ValueRange acc) {
        auto vec = scf::ForOp::create(
            b, index(0), vecEnd, index(kLanes), acc.take_front(2),
            [&](OpBuilder &, Location, Value c, ValueRange a) {
              scf::YieldOp::create(b, step(vnb, r, c, a, kLanes));
            });
        auto tail = scf::ForOp::create(
            b, vecEnd, cols, index(1), acc.drop_front(2),
            [&](OpBuilder &, Location, Value c, ValueRange a) {
              scf::YieldOp::create(b, step(snb, r, c, a, 0));
            });
        SmallVector<Value> next(vec.getResults());
        next.append(tail.getResults().begin(), tail.getResults().end());
        scf::YieldOp::create(b, next);
      });
  Value overflow = arith::AddIOp::create(
      b,
      vector::ReductionOp::create(b, vector::CombiningKind::ADD,
                                  rows.getResult(0)),
      rows.getResult(2));
  Value maxBits = arith::MaxUIOp::create(
      b,
      vector::ReductionOp::create(b, vector::CombiningKind::MAXUI,
                                  rows.getResult(1)),
      rows.getResult(3));
  memref::StoreOp::create(b, overflow, args[11], ValueRange{index(0)});
  memref::StoreOp::create(b, maxBits, args[11], ValueRange{index(1)});
  endFunction();
}

// lq_pack4(codes, rows, cols, r0, r1, bytes, stride): the storage form, two
// codes per byte (low nibble first), each row padded to whole bytes with
// zero; rows of `bytes` are `stride` bytes apart.
void KernelModuleBuilder::buildPack4() {
  Type idx = b.getIndexType(), i8 = b.getI8Type();
  ValueRange args = beginFunction(
      "lq_pack4", {memref1d(i8), idx, idx, idx, idx, memref1d(i8), idx});
  Value codes = args[0], cols = args[2], bytes = args[5], stride = args[6];
  Value rowBytes = ceilDiv(cols, 2);
  Value lastCol = arith::SubIOp::create(b, cols, index(1));
  NumericsBuilder nb(b);
  forEach(args[3], args[4], [&](Value r) {
    forEach(index(0), rowBytes, [&](Value j) {
      Value even = addi(muli(r, cols), muli(j, index(2)));
      Value oddCol = addi(muli(j, index(2)), index(1));
      Value hasOdd =
          arith::CmpIOp::create(b, arith::CmpIPredicate::ult, oddCol, cols);
      Value odd = addi(muli(r, cols), arith::MinUIOp::create(b, oddCol, lastCol));
      Value lo = memref::LoadOp::create(b, codes, ValueRange{even});
      Value hi = arith::SelectOp::create(
          b, hasOdd, memref::LoadOp::create(b, codes, ValueRange{odd}),
          nb.i8(0));
      Value byte = arith::OrIOp::create(
          b, lo, arith::ShLIOp::create(b, hi, nb.i8(4)));
      memref::StoreOp::create(b, byte, bytes,
                              ValueRange{addi(muli(r, stride), j)});
    });
  });
  endFunction();
}

//===----------------------------------------------------------------------===//
// Packing into micro-kernel panels
//===----------------------------------------------------------------------===//

Value KernelModuleBuilder::loadCodeValue(const CpuOperandSpec &op, Value src,
                                         Value row, Value col,
                                         Value rowStride) {
  NumericsBuilder nb(b);
  Value code;
  if (op.storage == OperandStorage::Packed) {
    Value byte = memref::LoadOp::create(
        b, src,
        ValueRange{addi(muli(row, rowStride),
                        arith::DivUIOp::create(b, col, index(2)))});
    Value odd = arith::CmpIOp::create(b, arith::CmpIPredicate::ne,
                                      arith::RemUIOp::create(b, col, index(2)),
                                      index(0));
    code = arith::SelectOp::create(
        b, odd, arith::ShRUIOp::create(b, byte, nb.i8(4)),
        arith::AndIOp::create(b, byte, nb.i8(0xF)));
  } else {
    code = memref::LoadOp::create(b, src,
                                  ValueRange{addi(muli(row, rowStride), col)});
  }
  return nb.decode(code, op.format);
}

// lq_pack_a(src, M, K, S, rowStride, sampleStride, mb0, mb1, panel): for
// each block of kCpuTileRows rows, each SMP sample and each K pair p, the
// rows' (a[m, 2p], a[m, 2p+1]) as one i32 of two i16 -- what vpmaddwd
// multiplies with a column pair. `src` holds codes as stored (one per byte,
// or packed), [M, K] or transposed [K, M]; rows past M and the K pad are 0.
void KernelModuleBuilder::buildPackA() {
  Type idx = b.getIndexType(), i8 = b.getI8Type(), i32 = b.getI32Type();
  ValueRange args = beginFunction("lq_pack_a", {memref1d(i8), idx, idx, idx,
                                                idx, idx, idx, idx,
                                                memref1d(i32)});
  Value src = args[0], M = args[1], K = args[2], S = args[3],
        rowStride = args[4], sampleStride = args[5], panel = args[8];
  Value Kp = ceilDiv(K, 2);
  Value lastM = arith::SubIOp::create(b, M, index(1));
  Value lastK = arith::SubIOp::create(b, K, index(1));
  const CpuOperandSpec &op = spec.lhs;
  NumericsBuilder nb(b);

  auto value = [&](Value sample, Value m, Value k) {
    Value inside = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, m, M),
        arith::CmpIOp::create(b, arith::CmpIPredicate::ult, k, K));
    // Clamped indices keep the load in bounds; the select zeroes the pad.
    Value mc = arith::MinUIOp::create(b, m, lastM);
    Value kc = arith::MinUIOp::create(b, k, lastK);
    Value sampleSrc = memref::SubViewOp::create(
        b, src, ArrayRef<OpFoldResult>{OpFoldResult(muli(sample, sampleStride))},
        ArrayRef<OpFoldResult>{OpFoldResult(sampleStride)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
    Value v = op.transposed ? loadCodeValue(op, sampleSrc, kc, mc, rowStride)
                            : loadCodeValue(op, sampleSrc, mc, kc, rowStride);
    return arith::SelectOp::create(b, inside, v, nb.i32(0)).getResult();
  };
  forEach(args[6], args[7], [&](Value mb) {
    forEach(index(0), S, [&](Value s) {
      forEach(index(0), Kp, [&](Value p) {
        Value k0 = muli(p, index(2));
        Value k1 = addi(k0, index(1));
        for (int64_t r = 0; r < kCpuTileRows; ++r) {
          Value m = addi(muli(mb, index(kCpuTileRows)), index(r));
          Value lo = arith::AndIOp::create(b, value(s, m, k0), nb.i32(0xFFFF));
          Value hi = arith::ShLIOp::create(b, value(s, m, k1), nb.i32(16));
          Value slot = addi(muli(addi(muli(addi(muli(mb, S), s), Kp), p),
                                 index(kCpuTileRows)),
                            index(r));
          memref::StoreOp::create(b, arith::OrIOp::create(b, lo, hi), panel,
                                  ValueRange{slot});
        }
      });
    });
  });
  endFunction();
}

// lq_pack_b(src, K, N, rowStride, nb0, nb1, panel): for each block of
// kCpuTileCols columns and each K pair p, the pairs (b[2p, n], b[2p+1, n])
// of the block's columns as i16, zero outside [K, N]. `src` is [K, N] or
// transposed [N, K].
void KernelModuleBuilder::buildPackB() {
  Type idx = b.getIndexType(), i8 = b.getI8Type(), i16 = b.getI16Type();
  ValueRange args = beginFunction(
      "lq_pack_b", {memref1d(i8), idx, idx, idx, idx, idx, memref1d(i16)});
  Value src = args[0], K = args[1], N = args[2], rowStride = args[3],
        panel = args[6];
  Value Kp = ceilDiv(K, 2);
  Value lastN = arith::SubIOp::create(b, N, index(1));
  Value lastK = arith::SubIOp::create(b, K, index(1));
  const CpuOperandSpec &op = spec.rhs;
  Value zero = arith::ConstantIntOp::create(b, i16, 0);

  auto value = [&](Value k, Value n) {
    Value inside = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, k, K),
        arith::CmpIOp::create(b, arith::CmpIPredicate::ult, n, N));
    Value nc = arith::MinUIOp::create(b, n, lastN);
    Value kc = arith::MinUIOp::create(b, k, lastK);
    Value v = op.transposed ? loadCodeValue(op, src, nc, kc, rowStride)
                            : loadCodeValue(op, src, kc, nc, rowStride);
    v = arith::TruncIOp::create(b, i16, v);
    return arith::SelectOp::create(b, inside, v, zero).getResult();
  };
  forEach(args[4], args[5], [&](Value nblock) {
    forEach(index(0), Kp, [&](Value p) {
      Value k0 = muli(p, index(2));
      Value k1 = addi(k0, index(1));
      Value base = muli(addi(muli(nblock, Kp), p), index(kCpuTileCols * 2));
      for (int64_t c = 0; c < kCpuTileCols; ++c) {
        Value n = addi(muli(nblock, index(kCpuTileCols)), index(c));
        Value slot = addi(base, index(2 * c));
        memref::StoreOp::create(b, value(k0, n), panel, ValueRange{slot});
        memref::StoreOp::create(b, value(k1, n), panel,
                                ValueRange{addi(slot, index(1))});
      }
    });
  });
  endFunction();
}

//===----------------------------------------------------------------------===//
// GEMM micro-kernel and epilogue
//===----------------------------------------------------------------------===//

Value KernelModuleBuilder::epilogueValue(NumericsBuilder &nb, Value acc,
                                         Value scale, Value bias) {
  Value v = arith::MulFOp::create(
      b, arith::SIToFPOp::create(b, nb.shaped(b.getF32Type()), acc), scale);
  if (bias)
    v = arith::AddFOp::create(b, v, bias);
  if (spec.relu)
    v = arith::MaximumFOp::create(b, v, nb.f32(0.0f));
  if (spec.bf16Output)
    v = nb.toBf16(v);
  return v;
}

// Writes the accumulators of the tile at (m, n): whole tiles with vector
// stores, edge tiles element by element through a stack copy.
void KernelModuleBuilder::buildEpilogue(Value out, Value ldc, Value m,
                                        Value n, Value rows, Value cols,
                                        Value scale, Value bias, Value tile,
                                        ArrayRef<Value> acc) {
  constexpr int64_t halves = kCpuTileCols / kLanes;
  Value full = arith::AndIOp::create(
      b,
      arith::CmpIOp::create(b, arith::CmpIPredicate::ule,
                            addi(m, index(kCpuTileRows)), rows),
      arith::CmpIOp::create(b, arith::CmpIPredicate::ule,
                            addi(n, index(kCpuTileCols)), cols));
  auto ifOp = scf::IfOp::create(b, full, /*withElseRegion=*/true);

  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  {
    NumericsBuilder vnb(b, kLanes);
    Value vScale = vector::BroadcastOp::create(
        b, VectorType::get({kLanes}, b.getF32Type()), scale);
    for (int64_t h = 0; h < halves; ++h) {
      Value col = addi(n, index(h * kLanes));
      Value vBias;
      if (spec.bias)
        vBias = vector::LoadOp::create(
            b, VectorType::get({kLanes}, b.getF32Type()), bias,
            ValueRange{col});
      for (int64_t r = 0; r < kCpuTileRows; ++r) {
        Value v = epilogueValue(vnb, acc[r * halves + h], vScale, vBias);
        vector::StoreOp::create(b, v, out,
                                ValueRange{addi(muli(addi(m, index(r)), ldc),
                                                col)});
      }
    }
  }

  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  {
    for (int64_t r = 0; r < kCpuTileRows; ++r)
      for (int64_t h = 0; h < halves; ++h)
        vector::StoreOp::create(
            b, acc[r * halves + h], tile,
            ValueRange{index(r * kCpuTileCols + h * kLanes)});
    Value rowEnd = arith::MinUIOp::create(
        b, arith::SubIOp::create(b, rows, m), index(kCpuTileRows));
    Value colEnd = arith::MinUIOp::create(
        b, arith::SubIOp::create(b, cols, n), index(kCpuTileCols));
    NumericsBuilder snb(b);
    scf::ForOp::create(
        b, index(0), rowEnd, index(1), ValueRange{},
        [&](OpBuilder &, Location, Value r, ValueRange) {
          scf::ForOp::create(
              b, index(0), colEnd, index(1), ValueRange{},
              [&](OpBuilder &, Location, Value c, ValueRange) {
                Value a = memref::LoadOp::create(
                    b, tile,
                    ValueRange{addi(muli(r, index(kCpuTileCols)), c)});
                Value col = addi(n, c);
                Value sBias;
                if (spec.bias)
                  sBias = memref::LoadOp::create(b, bias, ValueRange{col});
                Value v = epilogueValue(snb, a, scale, sBias);
                memref::StoreOp::create(
                    b, v, out, ValueRange{addi(muli(addi(m, r), ldc), col)});
                scf::YieldOp::create(b);
              });
          scf::YieldOp::create(b);
        });
  }
  b.setInsertionPointAfter(ifOp);
}

// lq_gemm(panelA, panelB, M, N, Kp, S, mb0, mb1, scale, bias, out, ldc):
// row blocks [mb0, mb1) times every column block.
void KernelModuleBuilder::buildGemm() {
  Type idx = b.getIndexType(), i16 = b.getI16Type(), i32 = b.getI32Type(),
       f32 = b.getF32Type();
  Type outElem = spec.bf16Output ? b.getBF16Type() : f32;
  ValueRange args = beginFunction(
      "lq_gemm", {memref1d(i32), memref1d(i16), idx, idx, idx, idx, idx, idx,
                  f32, memref1d(f32), memref1d(outElem), idx});
  Value panelA = args[0], panelB = args[1], M = args[2], N = args[3],
        Kp = args[4], S = args[5], scale = args[8], bias = args[9],
        out = args[10], ldc = args[11];
  Value colBlocks = ceilDiv(N, kCpuTileCols);
  constexpr int64_t halves = kCpuTileCols / kLanes;
  // Edge tiles go through this stack copy; allocated once, outside the loops.
  Value tile = memref::AllocaOp::create(
      b, MemRefType::get({kCpuTileRows * kCpuTileCols}, b.getI32Type()));
  auto accType = VectorType::get({kLanes}, i32);
  auto pairType = VectorType::get({2 * kLanes}, i16);
  StringAttr pmaddwd = b.getStringAttr("llvm.x86.avx2.pmadd.wd");
  Value zeroAcc = arith::ConstantOp::create(
      b, DenseElementsAttr::get(accType, b.getI32IntegerAttr(0)));
  SmallVector<Value> zeros(kCpuTileRows * halves, zeroAcc);

  auto forLoop = [&](Value lo, Value hi, ValueRange init,
                     function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    return scf::ForOp::create(
        b, lo, hi, index(1), init,
        [&](OpBuilder &, Location, Value iv, ValueRange iter) {
          scf::YieldOp::create(b, body(iv, iter));
        });
  };
  forLoop(args[6], args[7], {}, [&](Value mb, ValueRange) {
    forLoop(index(0), colBlocks, {}, [&](Value nblock, ValueRange) {
      Value bBase = muli(muli(nblock, Kp), index(kCpuTileCols * 2));
      auto samples = forLoop(index(0), S, zeros, [&](Value s, ValueRange acc) {
        Value aBase =
            muli(muli(addi(muli(mb, S), s), Kp), index(kCpuTileRows));
        auto pairs = forLoop(index(0), Kp, acc, [&](Value p, ValueRange acc) {
          SmallVector<Value> bv;
          Value bOffset = addi(bBase, muli(p, index(kCpuTileCols * 2)));
          for (int64_t h = 0; h < halves; ++h)
            bv.push_back(vector::LoadOp::create(
                b, pairType, panelB,
                ValueRange{addi(bOffset, index(h * 2 * kLanes))}));
          Value aOffset = addi(aBase, muli(p, index(kCpuTileRows)));
          SmallVector<Value> next;
          for (int64_t r = 0; r < kCpuTileRows; ++r) {
            Value a = memref::LoadOp::create(b, panelA,
                                             ValueRange{addi(aOffset, index(r))});
            Value av = vector::BitCastOp::create(
                b, pairType, vector::BroadcastOp::create(b, accType, a));
            for (int64_t h = 0; h < halves; ++h) {
              Value prod = LLVM::CallIntrinsicOp::create(
                               b, accType, pmaddwd, ValueRange{av, bv[h]})
                               .getResult(0);
              next.push_back(
                  arith::AddIOp::create(b, acc[r * halves + h], prod));
            }
          }
          return next;
        });
        return SmallVector<Value>(pairs.getResults());
      });
      SmallVector<Value> acc(samples.getResults());
      buildEpilogue(out, ldc, muli(mb, index(kCpuTileRows)),
                    muli(nblock, index(kCpuTileCols)), M, N, scale, bias, tile,
                    acc);
      return SmallVector<Value>{};
    });
    return SmallVector<Value>{};
  });
  endFunction();
}

OwningOpRef<ModuleOp> KernelModuleBuilder::build() {
  ctx.loadDialect<arith::ArithDialect, func::FuncDialect, LLVM::LLVMDialect,
                  math::MathDialect, memref::MemRefDialect, scf::SCFDialect,
                  vector::VectorDialect>();
  auto sideStages = [&](StringRef side, const CpuOperandSpec &op) {
    if (op.storage == OperandStorage::Packed)
      return;
    if (op.format == Format::Log4)
      buildMaxAbs(side, op);
    else
      buildMoments(side, op);
    buildQuantize(side, op);
  };
  sideStages("lhs", spec.lhs);
  if (quantizeOnly) {
    buildPack4();
    return std::move(module);
  }
  sideStages("rhs", spec.rhs);
  buildPackA();
  buildPackB();
  buildGemm();
  return std::move(module);
}

} // namespace

std::string CpuGemmSpec::describe() const {
  auto side = [](const CpuOperandSpec &op) {
    return std::string(formatName(op.format)) + ":" + storageName(op.storage) +
           (op.transposed ? ":t" : ":n");
  };
  return "lhs=" + side(lhs) + " rhs=" + side(rhs) +
         " bias=" + (bias ? "1" : "0") + " relu=" + (relu ? "1" : "0") +
         " out=" + (bf16Output ? "bf16" : "f32") +
         " tile=" + std::to_string(kCpuTileRows) + "x" +
         std::to_string(kCpuTileCols);
}

OwningOpRef<ModuleOp> lq::buildCpuGemmKernels(MLIRContext &ctx,
                                              const CpuGemmSpec &spec) {
  return KernelModuleBuilder(ctx, spec, /*quantizeOnly=*/false).build();
}

OwningOpRef<ModuleOp> lq::buildCpuQuantizeKernels(MLIRContext &ctx,
                                                  const CpuOperandSpec &op) {
  CpuGemmSpec spec;
  spec.lhs = op;
  return KernelModuleBuilder(ctx, spec, /*quantizeOnly=*/true).build();
}

LogicalResult lq::lowerCpuKernelsToLLVM(ModuleOp module) {
  PassManager pm(module->getContext());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  return pm.run(module);
}
