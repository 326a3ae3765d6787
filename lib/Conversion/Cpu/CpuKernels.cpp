//===- CpuKernels.cpp - generated x86-64 kernels of a quantized GEMM ------===//

#include "lq/Conversion/Cpu/CpuKernels.h"
#include "lq/Spec/CpuAbi.h"
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
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;
using namespace lq;

namespace {

// A stage's arguments by the names of its signature in CpuAbi.h: a field
// per parameter, bound in the table's order.
#define LQ_CPU_ARG_FIELD(name, kind) Value name;
#define LQ_CPU_BIND_ARG(name, kind) to.name = args[next++];
#define LQ_CPU_ARGS(Struct, PARAMS)                                            \
  struct Struct {                                                              \
    PARAMS(LQ_CPU_ARG_FIELD)                                                   \
  };                                                                           \
  void bindArgs(ValueRange args, Struct &to) {                                 \
    size_t next = 0;                                                           \
    PARAMS(LQ_CPU_BIND_ARG)                                                    \
  }
LQ_CPU_ARGS(StatsArgs, LQ_CPU_STATS_PARAMS)
LQ_CPU_ARGS(QuantArgs, LQ_CPU_QUANT_PARAMS)
LQ_CPU_ARGS(Pack4Args, LQ_CPU_PACK4_PARAMS)
LQ_CPU_ARGS(PackAArgs, LQ_CPU_PACK_A_PARAMS)
LQ_CPU_ARGS(PackBArgs, LQ_CPU_PACK_B_PARAMS)
LQ_CPU_ARGS(GemmArgs, LQ_CPU_GEMM_PARAMS)
#undef LQ_CPU_ARGS
#undef LQ_CPU_BIND_ARG
#undef LQ_CPU_ARG_FIELD

} // namespace

namespace {

/// Lanes of the f32/i32 vectors: one AVX2 register.
constexpr int64_t kLanes = 8;
/// Lanes of the max and quantization passes, which have no f64 sums to
/// keep in kernel order: one AVX-512 register, or two AVX2 ones.
constexpr int64_t kWideLanes = 2 * kLanes;
/// Bytes lq_pack4 writes per vector step, from twice as many codes.
constexpr int64_t kPack4Bytes = 32;
/// f32 fields as the LUQ code reads them (docs/numerics.md section 2).
constexpr uint32_t kF32MantissaMask = 0x007FFFFFu;
constexpr uint32_t kF32OneBits = 0x3F800000u;
constexpr int64_t kF32ExponentBias = 127;
/// K quads whose vpmaddubsw results the AVX2 micro-kernel sums in i16
/// before widening them (the bound is in the exactness note below).
constexpr int64_t kAvx2QuadBlock = 16;

const char *storageName(DType storage) {
  switch (storage) {
  case DType::F32:
    return "f32";
  case DType::BF16:
    return "bf16";
  case DType::Packed4:
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
  KernelModuleBuilder(MLIRContext &ctx, const GemmSpec &spec,
                      const CpuKernelOptions &options, bool quantizeOnly)
      : ctx(ctx), spec(spec), options(options), quantizeOnly(quantizeOnly),
        loc(UnknownLoc::get(&ctx)), module(ModuleOp::create(loc)),
        b(loc, &ctx) {}

  OwningOpRef<ModuleOp> build();

private:
  /// Starts a public function with a C interface; the builder is left in
  /// its entry block.
  /// Starts stage `name` with the parameters `kinds` (CpuAbi.h), its
  /// memrefs of `elements` in order, and binds its arguments to `args`.
  template <typename Args, size_t N>
  void beginFunction(StringRef name, const cpu::ParamKind (&kinds)[N],
                     ArrayRef<Type> elements, Args &args) {
    bindArgs(beginFunction(name, ArrayRef<cpu::ParamKind>(kinds), elements),
             args);
  }
  ValueRange beginFunction(StringRef name, ArrayRef<cpu::ParamKind> kinds,
                           ArrayRef<Type> elements);
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

  Type storageType(const OperandSpec &op);
  /// Loads `lanes` elements of a float operand as f32; with a lane mask,
  /// the lanes outside it read 0.
  Value loadLanes(Value memref, Value offset, Value mask,
                  int64_t lanes = kLanes);
  Value reduce(vector::CombiningKind kind, Value v);

  /// One step over a vector of columns at `c`: `mask` is null for a full
  /// chunk and selects the valid lanes of the last, partial one.
  using ColumnStep =
      function_ref<SmallVector<Value>(Value c, Value mask, ValueRange acc)>;
  /// Runs `step` over the columns [begin, cols) of a row, `lanes` at a
  /// time, threading `init`.
  SmallVector<Value> columnLoop(Value begin, Value cols, ValueRange init,
                                ColumnStep step, int64_t lanes = kLanes);

  void buildMaxAbs(StringRef side, const OperandSpec &op);
  void buildMoments(StringRef side, const OperandSpec &op);
  void buildQuantize(StringRef side, const OperandSpec &op);
  /// Philox4x32-10 of counter blocks `blocks` (vectors of i64), one block
  /// per lane, as each vector's four words in lane order, each in the low
  /// half of an i64 lane (the high half is not defined).
  SmallVector<std::array<Value, 4>> philoxBlocks(Value seed, Value stream,
                                                 Value sample,
                                                 ArrayRef<Value> blocks);
  /// The words of kLanes Philox blocks, one per lane, transposed into
  /// element order: two vectors of 2 * kLanes elements' words (i32).
  std::array<Value, 2> elementOrder(const std::array<Value, 4> &words);
  /// The random word (i32) of each lane's element `element` (i64).
  Value laneWords(Value seed, Value stream, Value sample, Value element);
  /// What quantizing a vector of elements gives: codes (i8), the overflow
  /// count (i32, 0 or 1) and |x| bits (i32) of each lane.
  struct LaneCodes {
    Value codes, overflow, absBits;
  };
  LaneCodes luqLanes(Value x, Value inv, Value word);
  void buildPack4();
  /// The integer value (i32) of the code at (row, col) of a stored operand.
  Value loadCodeValue(const OperandSpec &op, Value src, Value row,
                      Value col, Value rowStride);
  /// scf.for over [lo, hi) with step 1 and no loop-carried values.
  void forEach(Value lo, Value hi, function_ref<void(Value)> body) {
    scf::ForOp::create(b, lo, hi, index(1), ValueRange{},
                       [&](OpBuilder &, Location, Value iv, ValueRange) {
                         body(iv);
                         scf::YieldOp::create(b);
                       });
  }
  /// scf.for over [lo, hi) with step 1, `body` mapping the iteration's
  /// values to the next's.
  scf::ForOp
  forLoop(Value lo, Value hi, ValueRange init,
          function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    return scf::ForOp::create(
        b, lo, hi, index(1), init,
        [&](OpBuilder &, Location, Value iv, ValueRange iter) {
          scf::YieldOp::create(b, body(iv, iter));
        });
  }
  /// The 32-bit panel word of four values (i32) as bytes, low K first,
  /// each plus `offset`.
  Value quadWord(ArrayRef<Value> values, int64_t offset);
  void buildPackA();
  void buildPackB();

  /// Where a tile's micro-kernel reads: A's words of one sample from
  /// `aBase`, B's from `bBase` (past the headers), over `kQuads` quads.
  struct MicroKernelPanels {
    Value panelA, panelB, bBase, kQuads, aBase;
  };
  /// One K quad's operands as byte vectors: `lhs` a row's word broadcast,
  /// `rhs` half a tile's columns.
  struct QuadOperands {
    SmallVector<Value> lhs, rhs;
    bool lhsUnsigned = false;
    /// (unsigned, signed) bytes of row r and half tile h.
    std::pair<Value, Value> pair(int64_t r, int64_t h) const {
      return lhsUnsigned ? std::make_pair(lhs[r], rhs[h])
                         : std::make_pair(rhs[h], lhs[r]);
    }
  };
  QuadOperands quadOperands(const MicroKernelPanels &p, Value q);
  SmallVector<Value> initialAccumulators(Value panelA, Value aBlock,
                                         Value panelB, Value bBlock);
  /// The tile's accumulators after the K quads of one sample.
  SmallVector<Value> vnniDotProducts(const MicroKernelPanels &p,
                                     ValueRange init);
  SmallVector<Value> vnni512DotProducts(const MicroKernelPanels &p,
                                        ValueRange init);
  SmallVector<Value> avx2DotProducts(const MicroKernelPanels &p,
                                     ValueRange init);
  void buildGemm();
  void buildEpilogue(Value out, Value ldc, Value m, Value n, Value rows,
                     Value cols, Value scale, Value bias, Value tile,
                     ArrayRef<Value> acc);
  Value epilogueValue(NumericsBuilder &nb, Value acc, Value scale, Value bias);

  MLIRContext &ctx;
  const GemmSpec &spec;
  CpuKernelOptions options;
  bool quantizeOnly;
  Location loc;
  OwningOpRef<ModuleOp> module;
  ImplicitLocOpBuilder b;
};

ValueRange KernelModuleBuilder::beginFunction(StringRef name,
                                              ArrayRef<cpu::ParamKind> kinds,
                                              ArrayRef<Type> elements) {
  SmallVector<Type> args;
  size_t memrefs = 0;
  for (cpu::ParamKind kind : kinds)
    switch (kind) {
    case cpu::ParamKind::Memref:
      args.push_back(memref1d(elements[memrefs++]));
      break;
    case cpu::ParamKind::Index:
      args.push_back(b.getIndexType());
      break;
    case cpu::ParamKind::I64:
      args.push_back(b.getI64Type());
      break;
    case cpu::ParamKind::I32:
      args.push_back(b.getI32Type());
      break;
    case cpu::ParamKind::F32:
      args.push_back(b.getF32Type());
      break;
    }
  assert(memrefs == elements.size() && "one element type per memref");
  b.setInsertionPointToEnd(module->getBody());
  auto fn = func::FuncOp::create(b, name, b.getFunctionType(args, {}));
  fn->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(), b.getUnitAttr());
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  return entry->getArguments();
}

Type KernelModuleBuilder::storageType(const OperandSpec &op) {
  switch (op.dtype) {
  case DType::F32:
    return b.getF32Type();
  case DType::BF16:
    // Raw bf16 bits: widening is a shift, and no bf16 arithmetic (with its
    // runtime library calls) reaches the backend.
    return b.getI16Type();
  case DType::Packed4:
    return b.getI8Type();
  }
  llvm_unreachable("unknown storage");
}

//===----------------------------------------------------------------------===//
// Statistics
//===----------------------------------------------------------------------===//

SmallVector<Value> KernelModuleBuilder::columnLoop(Value begin, Value cols,
                                                  ValueRange init,
                                                  ColumnStep step,
                                                  int64_t lanes) {
  Value vecEnd =
      addi(begin, roundDown(arith::SubIOp::create(b, cols, begin), lanes));
  auto full = scf::ForOp::create(
      b, begin, vecEnd, index(lanes), init,
      [&](OpBuilder &, Location, Value c, ValueRange acc) {
        scf::YieldOp::create(b, step(c, Value(), acc));
      });
  Value rest = arith::SubIOp::create(b, cols, vecEnd);
  Value hasTail =
      arith::CmpIOp::create(b, arith::CmpIPredicate::ne, rest, index(0));
  auto tail = scf::IfOp::create(
      b, hasTail,
      [&](OpBuilder &, Location) {
        Value mask = vector::CreateMaskOp::create(
            b, VectorType::get({lanes}, b.getI1Type()), ValueRange{rest});
        scf::YieldOp::create(b, step(vecEnd, mask, full.getResults()));
      },
      [&](OpBuilder &, Location) {
        scf::YieldOp::create(b, full.getResults());
      });
  return SmallVector<Value>(tail.getResults());
}

Value KernelModuleBuilder::loadLanes(Value memref, Value offset, Value mask,
                                     int64_t lanes) {
  Type element = cast<MemRefType>(memref.getType()).getElementType();
  auto type = VectorType::get({lanes}, element);
  Value v;
  if (!mask) {
    v = vector::LoadOp::create(b, type, memref, ValueRange{offset});
  } else {
    // Masked-off lanes read 0: no magnitude, no square, no overflow.
    Value zeros = arith::ConstantOp::create(
        b, DenseElementsAttr::get(type, b.getZeroAttr(element)));
    v = vector::MaskedLoadOp::create(b, type, memref, ValueRange{offset}, mask,
                                     zeros);
  }
  if (element.isF32())
    return v;
  auto wide = VectorType::get({lanes}, b.getI32Type());
  Value bits = arith::ShLIOp::create(
      b, arith::ExtUIOp::create(b, wide, v),
      arith::ConstantOp::create(
          b, DenseElementsAttr::get(wide, b.getI32IntegerAttr(16))));
  return arith::BitcastOp::create(
      b, VectorType::get({lanes}, b.getF32Type()), bits);
}

Value KernelModuleBuilder::reduce(vector::CombiningKind kind, Value v) {
  return vector::ReductionOp::create(b, kind, v);
}

// lq_maxabs_<side>(in, rows, cols, stride, r0, r1, out: [max finite |x| bits,
// max |x| bits])
void KernelModuleBuilder::buildMaxAbs(StringRef side,
                                      const OperandSpec &op) {
  Type i32 = b.getI32Type();
  StatsArgs args;
  beginFunction(("lq_maxabs_" + side).str(), cpu::kStatsKinds,
                {storageType(op), i32}, args);
  Value in = args.in, cols = args.cols, stride = args.rowStride;
  NumericsBuilder nb(b, kWideLanes);
  Value zero = nb.i32(0);
  auto rows = scf::ForOp::create(
      b, args.rowBegin, args.rowEnd, index(1), ValueRange{zero, zero},
      [&](OpBuilder &, Location, Value r, ValueRange acc) {
        Value base = muli(r, stride);
        auto step = [&](Value c, Value mask, ValueRange a) {
          Value bits =
              nb.absBits(loadLanes(in, addi(base, c), mask, kWideLanes));
          Value finite = arith::SelectOp::create(
              b, nb.isNonfiniteBits(bits), nb.i32(0), bits);
          return SmallVector<Value>{arith::MaxUIOp::create(b, a[0], finite),
                                    arith::MaxUIOp::create(b, a[1], bits)};
        };
        scf::YieldOp::create(
            b, columnLoop(index(0), cols, acc, step, kWideLanes));
      });
  for (int i = 0; i < 2; ++i)
    memref::StoreOp::create(
        b, reduce(vector::CombiningKind::MAXUI, rows.getResult(i)), args.out,
        ValueRange{index(i)});
  endFunction();
}

// lq_moments_<side>(in, rows, cols, stride, r0, r1, out: [sum x^2, sum |x|,
// max finite |x|, max |x|]) in f64, per lane then across lanes, so the
// result depends only on the row range.
void KernelModuleBuilder::buildMoments(StringRef side,
                                       const OperandSpec &op) {
  Type f64 = b.getF64Type();
  StatsArgs args;
  beginFunction(("lq_moments_" + side).str(), cpu::kStatsKinds,
                {storageType(op), f64}, args);
  Value in = args.in, cols = args.cols, stride = args.rowStride;
  auto wide = VectorType::get({kLanes}, f64);
  NumericsBuilder nb(b, kLanes);
  Value zeros = arith::ConstantOp::create(
      b, DenseElementsAttr::get(wide, b.getF64FloatAttr(0.0)));
  auto rows = scf::ForOp::create(
      b, args.rowBegin, args.rowEnd, index(1),
      ValueRange{zeros, zeros, nb.i32(0), nb.i32(0)},
      [&](OpBuilder &, Location, Value r, ValueRange acc) {
        Value base = muli(r, stride);
        scf::YieldOp::create(
            b, columnLoop(index(0), cols, acc,
                          [&](Value c, Value mask, ValueRange a) {
              Value x = loadLanes(in, addi(base, c), mask);
              Value d = arith::ExtFOp::create(b, wide, x);
              Value bits = nb.absBits(x);
              Value finite = arith::SelectOp::create(
                  b, nb.isNonfiniteBits(bits), nb.i32(0), bits);
              return SmallVector<Value>{
                  arith::AddFOp::create(b, a[0], arith::MulFOp::create(b, d, d)),
                  arith::AddFOp::create(b, a[1], math::AbsFOp::create(b, d)),
                  arith::MaxUIOp::create(b, a[2], finite),
                  arith::MaxUIOp::create(b, a[3], bits)};
            }));
      });
  Value out = args.out;
  for (int i = 0; i < 2; ++i)
    memref::StoreOp::create(b,
                            reduce(vector::CombiningKind::ADD, rows.getResult(i)),
                            out, ValueRange{index(i)});
  for (int i = 0; i < 2; ++i) {
    Value bits = reduce(vector::CombiningKind::MAXUI, rows.getResult(2 + i));
    Value asFloat = arith::ExtFOp::create(
        b, f64, Value(arith::BitcastOp::create(b, b.getF32Type(), bits)));
    memref::StoreOp::create(b, asFloat, out, ValueRange{index(2 + i)});
  }
  endFunction();
}

//===----------------------------------------------------------------------===//
// Quantization to codes
//===----------------------------------------------------------------------===//

// The same Philox4x32-10 as NumericsBuilder::philox (docs/numerics.md
// section 1), laid out for x86 vectors: without a 32-bit high multiply,
// 32-bit lanes widen every product to even and odd lanes and shuffle the
// halves back. Here each word lives in the low half of a 64-bit lane, so
// one unsigned 32x32->64 multiply (pmuludq) per product yields the high
// word by a shift and the low word in place. The high halves of the lanes
// carry garbage that is never read: multiplies see only the low 32 bits
// (the masks fold into pmuludq), xor and add never move bits downwards,
// and the words' readers take the low halves alone.
// The vectors' rounds are interleaved, round by round: their multiply
// chains are independent, and in program order they overlap in the
// out-of-order window instead of filling it one chain at a time.
SmallVector<std::array<Value, 4>>
KernelModuleBuilder::philoxBlocks(Value seed, Value stream, Value sample,
                                  ArrayRef<Value> blocks) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  constexpr int kRounds = 10;
  auto wide = cast<VectorType>(blocks.front().getType());
  auto splat64 = [&](uint64_t v) -> Value {
    return arith::ConstantOp::create(
        b, DenseElementsAttr::get(wide, b.getI64IntegerAttr(int64_t(v))));
  };
  auto toWide = [&](Value v) -> Value {
    if (v.getType() == wide)
      return v;
    return arith::ExtUIOp::create(b, wide, v);
  };
  Value low32 = splat64(0xFFFFFFFFu), shift = splat64(32);
  auto mulWide = [&](Value m, Value x) -> Value {
    return arith::MulIOp::create(b, m, arith::AndIOp::create(b, x, low32));
  };
  // The high word moved down by a shuffle, not a shift: on AVX-512 the
  // shift would share its port with the multiplies.
  auto halves = VectorType::get({2 * wide.getNumElements()}, b.getI32Type());
  SmallVector<int64_t> highWords;
  for (int64_t l = 0; l < wide.getNumElements(); ++l)
    highWords.append({2 * l + 1, 2 * l + 1});
  auto high = [&](Value p) -> Value {
    Value h = vector::BitCastOp::create(b, halves, p);
    return vector::BitCastOp::create(
        b, wide, vector::ShuffleOp::create(b, h, h, highWords));
  };
  Value m0 = splat64(kM0), m1 = splat64(kM1);
  Value w0 = splat64(kW0), w1 = splat64(kW1);
  Value seedWide = toWide(seed);
  Value k0 = seedWide, k1 = high(seedWide);
  SmallVector<std::array<Value, 4>> words;
  for (Value block : blocks)
    words.push_back({block, high(block), toWide(sample), toWide(stream)});
  for (int round = 0; round < kRounds; ++round) {
    if (round > 0) {
      k0 = arith::AddIOp::create(b, k0, w0);
      k1 = arith::AddIOp::create(b, k1, w1);
    }
    for (std::array<Value, 4> &c : words) {
      Value p0 = mulWide(m0, c[0]), p1 = mulWide(m1, c[2]);
      Value x0 = arith::XOrIOp::create(
          b, arith::XOrIOp::create(b, high(p1), c[1]), k0);
      Value x2 = arith::XOrIOp::create(
          b, arith::XOrIOp::create(b, high(p0), c[3]), k1);
      c = {x0, p1, x2, p0};
    }
  }
  return words;
}

/// Lane l of word w of a Philox block per lane is element 4 l + w of the
/// lanes' run of elements. Seen as i32 lanes, word w of block l is lane 2 l
/// of w's vector: two shuffles pair words 0 and 1 (2 and 3) block by block,
/// two more interleave the pairs, and each result holds the words of
/// 2 * kLanes consecutive elements in order.
std::array<Value, 2>
KernelModuleBuilder::elementOrder(const std::array<Value, 4> &w) {
  auto words = VectorType::get({2 * kLanes}, b.getI32Type());
  auto shuffle = [&](Value x, Value y, ArrayRef<int64_t> mask) {
    return vector::ShuffleOp::create(b, x, y, mask).getResult();
  };
  auto narrow = [&](Value v) -> Value {
    return vector::BitCastOp::create(b, words, v);
  };
  SmallVector<int64_t> pairs, low, high;
  for (int64_t l = 0; l < kLanes; ++l) {
    pairs.push_back(2 * l);
    pairs.push_back(2 * kLanes + 2 * l);
  }
  for (int64_t l = 0; l < kLanes; ++l)
    for (int64_t j : {2 * l, 2 * l + 1, 2 * kLanes + 2 * l, 2 * kLanes + 2 * l + 1})
      (l < kLanes / 2 ? low : high).push_back(j);
  Value w01 = shuffle(narrow(w[0]), narrow(w[1]), pairs);
  Value w23 = shuffle(narrow(w[2]), narrow(w[3]), pairs);
  return {shuffle(w01, w23, low), shuffle(w01, w23, high)};
}

Value KernelModuleBuilder::laneWords(Value seed, Value stream, Value sample,
                                     Value element) {
  auto wide = cast<VectorType>(element.getType());
  NumericsBuilder nb(b, wide.getNumElements());
  std::array<Value, 4> words = philoxBlocks(
      seed, stream, sample,
      {arith::ShRUIOp::create(b, element, nb.i64(2))})[0];
  Type narrow = nb.shaped(b.getI32Type());
  Value lane = arith::TruncIOp::create(
      b, narrow, arith::AndIOp::create(b, element, nb.i64(3)));
  Value word = arith::TruncIOp::create(b, narrow, words[3]);
  for (int w = 2; w >= 0; --w) {
    Value isLane =
        arith::CmpIOp::create(b, arith::CmpIPredicate::eq, lane, nb.i32(w));
    word = arith::SelectOp::create(
        b, isLane, arith::TruncIOp::create(b, narrow, words[w]), word);
  }
  return word;
}

// NumericsBuilder::luqCode's result, with the random comparisons of
// docs/numerics.md section 2 in fewer vector operations. U = word >> 8 is
// the uniform's integer, u = U 2^-24, and r = (E, M) the exponent field
// and the 23 mantissa bits of r.
//  - 1 <= r: f = M 2^-23, so u < f is U < 2 M, which for integers is
//    W < M with W = word >> 9 = floor(U / 2). W and M are below 2^23, so
//    the bits of r + 2^23 - 1 - W carry into the exponent field exactly
//    when W < M: its top bits are E + [u < f], and e = n + 1 + [u < f] is
//    that minus 126. min(e, 7) saturates n >= 6, r = +Inf included.
//  - r < 1: e = 1 when u < r (an f32 compare, both exact), so r == 0
//    gives 0.
// u < 1 <= r in the first case: e != 0 exactly where u < r, and only there
// is the sign bit set. (r is NaN only for a NaN x, whose tensor gets zero
// codes whatever the lanes hold.)
KernelModuleBuilder::LaneCodes
KernelModuleBuilder::luqLanes(Value x, Value inv, Value word) {
  auto type = cast<VectorType>(x.getType());
  NumericsBuilder nb(b, type.getNumElements());
  Type i32Type = nb.shaped(b.getI32Type());
  Value xBits = arith::BitcastOp::create(b, i32Type, x);
  Value r = nb.luqScaled(x, inv);
  Value rBits = arith::BitcastOp::create(b, i32Type, r);
  Value carried = arith::SubIOp::create(
      b, addi(rBits, nb.i32(int64_t(kF32MantissaMask) -
                            ((kF32ExponentBias - 1) << 23))),
      arith::ShRUIOp::create(b, word, nb.i32(9)));
  Value eNormal = arith::MinSIOp::create(
      b, arith::ShRSIOp::create(b, carried, nb.i32(23)), nb.i32(7));
  Value atLeastOne = arith::CmpIOp::create(b, arith::CmpIPredicate::uge,
                                           rBits, nb.i32(kF32OneBits));
  Value keep = arith::CmpFOp::create(b, arith::CmpFPredicate::OLT,
                                     nb.wordToUniform(word), r);
  // Where u < r, e is 1 below 1 and eNormal above; elsewhere the code is 0.
  Value e = arith::SelectOp::create(b, atLeastOne, eNormal, nb.i32(1));
  Value sign = arith::AndIOp::create(
      b, arith::ShRUIOp::create(b, xBits, nb.i32(28)), nb.i32(8));
  Value code = arith::SelectOp::create(
      b, keep, arith::OrIOp::create(b, e, sign), nb.i32(0));
  Value over = arith::ExtUIOp::create(b, i32Type, nb.luqOverflows(x, inv));
  return {arith::TruncIOp::create(b, nb.shaped(b.getI8Type()), code), over,
          nb.absBits(x)};
}

// lq_quant_<side>(in, rows, cols, stride, r0, r1, codes, inv, seed, stream,
// sample, stats: [overflow count, max |x| bits]). `codes` is row-major
// [rows, cols], one 4-bit code per byte. Vectors of 2 * kLanes elements:
// Philox's block transpose yields them (elementOrder), and AVX-512 takes
// them in one register.
void KernelModuleBuilder::buildQuantize(StringRef side,
                                        const OperandSpec &op) {
  constexpr int64_t lanes = kWideLanes;
  Type i32 = b.getI32Type(), i64 = b.getI64Type(), i8 = b.getI8Type();
  QuantArgs args;
  beginFunction(("lq_quant_" + side).str(), cpu::kQuantKinds,
                {storageType(op), i8, i32}, args);
  Value in = args.in, cols = args.cols, stride = args.rowStride,
        codes = args.codes;
  bool luq = op.format == Format::Log4;

  NumericsBuilder nb(b, lanes);
  auto splat = [&](Value scalar, int64_t n) -> Value {
    return vector::BroadcastOp::create(
        b, VectorType::get({n}, scalar.getType()), scalar);
  };
  Value inv = splat(args.inv, lanes);
  // Philox takes kLanes blocks or `lanes` elements at a time.
  Value seed = splat(args.seed, lanes), stream = splat(args.stream, lanes),
        sample = splat(args.sample, lanes);
  Value blockSeed = splat(args.seed, kLanes),
        blockStream = splat(args.stream, kLanes),
        blockSample = splat(args.sample, kLanes);
  SmallVector<int64_t> laneIds;
  for (int64_t lane = 0; lane < lanes; ++lane)
    laneIds.push_back(lane);
  Value laneOffsets = arith::ConstantOp::create(
      b, DenseElementsAttr::get(VectorType::get({lanes}, i64),
                                ArrayRef<int64_t>(laneIds)));

  // Quantizes the elements at column c given their random words (LUQ) and
  // accumulates the overflow count and the max magnitude bits.
  auto quantizeLanes = [&](Value base, Value element, Value c, Value mask,
                           Value word, ValueRange a) -> SmallVector<Value> {
    Value x = loadLanes(in, addi(base, c), mask, lanes);
    LaneCodes q;
    if (luq) {
      q = luqLanes(x, inv, word);
    } else {
      q = {nb.sawbCode(x, inv, op.format == Format::UInt4), nb.i32(0),
           nb.absBits(x)};
    }
    if (mask)
      vector::MaskedStoreOp::create(b, codes, ValueRange{element}, mask,
                                    q.codes);
    else
      vector::StoreOp::create(b, q.codes, codes, ValueRange{element});
    return {addi(a[0], q.overflow), arith::MaxUIOp::create(b, a[1], q.absBits)};
  };
  // One lane per element: each lane runs Philox for its own element.
  auto laneStep = [&](Value base, Value rowStart) {
    return [&, base, rowStart](Value c, Value mask, ValueRange a) {
      // The Philox index is the element's row-major index in [rows, cols],
      // whatever the storage stride.
      Value element = addi(rowStart, c);
      Value word;
      if (luq)
        word = laneWords(seed, stream, sample,
                         addi(splat(indexToI64(element), lanes), laneOffsets));
      return quantizeLanes(base, element, c, mask, word, a);
    };
  };

  Value zero = nb.i32(0);
  auto rows = scf::ForOp::create(
      b, args.rowBegin, args.rowEnd, index(1), ValueRange{zero, zero},
      [&](OpBuilder &, Location, Value r, ValueRange acc) {
        Value base = muli(r, stride);
        Value rowStart = muli(r, cols);
        if (!luq) {
          scf::YieldOp::create(b, columnLoop(index(0), cols, acc,
                                             laneStep(base, rowStart), lanes));
          return;
        }
        // A Philox round is a chain of multiplies whose latency, not its
        // throughput, bounds one group of kLanes blocks: a step runs
        // kGroups independent groups' rounds side by side.
        constexpr int64_t kGroups = 4, kGroupElements = 4 * kLanes;
        constexpr int64_t kStepElements = kGroupElements * kGroups;
        // Philox gives four words per counter block of four elements. Where
        // a row covers whole blocks, each lane computes one block and the
        // words are transposed into element order: a quarter of the work.
        Value misalign = arith::RemUIOp::create(b, rowStart, index(4));
        Value head = arith::MinUIOp::create(
            b, arith::RemUIOp::create(
                   b, arith::SubIOp::create(b, index(4), misalign), index(4)),
            cols);
        Value mainEnd =
            addi(head, roundDown(arith::SubIOp::create(b, cols, head),
                                 kStepElements));
        auto headStep = scf::IfOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::ne, head, index(0)),
            [&](OpBuilder &, Location) {
              Value mask = vector::CreateMaskOp::create(
                  b, VectorType::get({lanes}, b.getI1Type()), ValueRange{head});
              scf::YieldOp::create(
                  b, laneStep(base, rowStart)(index(0), mask, acc));
            },
            [&](OpBuilder &, Location) { scf::YieldOp::create(b, acc); });
        auto blocks = scf::ForOp::create(
            b, head, mainEnd, index(kStepElements), headStep.getResults(),
            [&](OpBuilder &, Location, Value c, ValueRange a) {
              Value firstBlock = arith::ShRUIOp::create(
                  b, splat(indexToI64(addi(rowStart, c)), kLanes),
                  arith::ConstantOp::create(
                      b, DenseElementsAttr::get(VectorType::get({kLanes}, i64),
                                                b.getI64IntegerAttr(2))));
              Value blockOffsets = vector::ExtractStridedSliceOp::create(
                  b, laneOffsets, ArrayRef<int64_t>{0},
                  ArrayRef<int64_t>{kLanes}, ArrayRef<int64_t>{1});
              SmallVector<Value> blocks;
              for (int64_t g = 0; g < kGroups; ++g) {
                Value block = addi(firstBlock, blockOffsets);
                if (g > 0)
                  block = addi(block, NumericsBuilder(b, kLanes).i64(g * kLanes));
                blocks.push_back(block);
              }
              SmallVector<std::array<Value, 4>> words =
                  philoxBlocks(blockSeed, blockStream, blockSample, blocks);
              SmallVector<Value> next(a);
              for (int64_t g = 0; g < kGroups; ++g) {
                std::array<Value, 2> ordered = elementOrder(words[g]);
                for (int64_t h = 0; h < 2; ++h) {
                  Value ch = addi(c, index(g * kGroupElements + h * lanes));
                  next = quantizeLanes(base, addi(rowStart, ch), ch, Value(),
                                       ordered[h], next);
                }
              }
              scf::YieldOp::create(b, next);
            });
        scf::YieldOp::create(b,
                             columnLoop(mainEnd, cols, blocks.getResults(),
                                        laneStep(base, rowStart), lanes));
      });
  memref::StoreOp::create(b, reduce(vector::CombiningKind::ADD,
                                    rows.getResult(0)),
                          args.stats, ValueRange{index(0)});
  memref::StoreOp::create(b, reduce(vector::CombiningKind::MAXUI,
                                    rows.getResult(1)),
                          args.stats, ValueRange{index(1)});
  endFunction();
}

// lq_pack4(codes, rows, cols, r0, r1, bytes, stride): the storage form, two
// codes per byte (low nibble first), each row padded to whole bytes with
// zero; rows of `bytes` are `stride` bytes apart. Whole runs of
// kPack4Bytes bytes go by vectors, the rest byte by byte.
void KernelModuleBuilder::buildPack4() {
  Type i8 = b.getI8Type(), i16 = b.getI16Type();
  Pack4Args args;
  beginFunction("lq_pack4", cpu::kPack4Kinds, {i8, i8}, args);
  Value codes = args.codes, cols = args.cols, bytes = args.bytes,
        stride = args.byteStride;
  Value rowBytes = ceilDiv(cols, 2);
  Value vectorBytes = roundDown(arith::DivUIOp::create(b, cols, index(2)),
                                kPack4Bytes);
  Value lastCol = arith::SubIOp::create(b, cols, index(1));
  NumericsBuilder nb(b), vnb(b, kPack4Bytes);
  auto pairs = VectorType::get({2 * kPack4Bytes}, i8);
  auto words = VectorType::get({kPack4Bytes}, i16);
  forEach(args.rowBegin, args.rowEnd, [&](Value r) {
    Value codeRow = muli(r, cols), byteRow = muli(r, stride);
    // A code pair read as an i16 is lo + 256 hi with both below 16: its
    // bits 4..7 are free for hi, so (w | w >> 4) truncated to a byte is
    // lo | hi << 4.
    scf::ForOp::create(
        b, index(0), vectorBytes, index(kPack4Bytes), ValueRange{},
        [&](OpBuilder &, Location, Value j, ValueRange) {
          Value w = vector::BitCastOp::create(
              b, words,
              vector::LoadOp::create(b, pairs, codes,
                                     ValueRange{addi(codeRow, addi(j, j))}));
          Value byte = arith::TruncIOp::create(
              b, VectorType::get({kPack4Bytes}, i8),
              arith::OrIOp::create(
                  b, w, arith::ShRUIOp::create(b, w, vnb.constant(
                                                         i16, b.getI16IntegerAttr(4)))));
          vector::StoreOp::create(b, byte, bytes, ValueRange{addi(byteRow, j)});
          scf::YieldOp::create(b);
        });
    forEach(vectorBytes, rowBytes, [&](Value j) {
      Value even = addi(codeRow, muli(j, index(2)));
      Value oddCol = addi(muli(j, index(2)), index(1));
      Value hasOdd =
          arith::CmpIOp::create(b, arith::CmpIPredicate::ult, oddCol, cols);
      Value odd = addi(codeRow, arith::MinUIOp::create(b, oddCol, lastCol));
      Value lo = memref::LoadOp::create(b, codes, ValueRange{even});
      Value hi = arith::SelectOp::create(
          b, hasOdd, memref::LoadOp::create(b, codes, ValueRange{odd}),
          nb.i8(0));
      Value byte = arith::OrIOp::create(
          b, lo, arith::ShLIOp::create(b, hi, nb.i8(4)));
      memref::StoreOp::create(b, byte, bytes, ValueRange{addi(byteRow, j)});
    });
  });
  endFunction();
}

//===----------------------------------------------------------------------===//
// Packing into micro-kernel panels
//===----------------------------------------------------------------------===//

// Exactness of the 8-bit micro-kernel. Every code value fits a byte: log4
// is 0 or +-2^(e-1) with |v| <= 64, sint4 is -8..7 (packed input may hold
// -8), uint4 is 0..15. vpdpbusd and vpmaddubsw multiply unsigned bytes by
// signed ones, so one operand u, never the log4 one (a spec has at most
// one), enters as u + o, with o = 8 for sint4 and o = 0 for uint4, and
//   sum_k a_k b_k = sum_k (u_k + o) s_k - o * sum_k s_k,
// where s is the other operand. Its sums (per row of A over K and the SMP
// samples, or per column of B over K) are taken exactly in i32 when s is
// packed, negated and scaled by o into the panel's header word, and start
// the accumulators. Bounds, with 0 <= u + o <= 15 and |s| <= 64, so
// |product| <= 960:
//  - vpmaddubsw adds two products into a saturating i16: at most 1920 <
//    2^15, never saturated. At most kAvx2QuadBlock = 16 of its results are
//    added in i16 (vpaddw, wrapping): at most 30720 < 2^15, never wrapped.
//    vpmaddwd by ones then widens adjacent i16 lanes into i32 exactly.
//  - vpdpbusd adds four products straight into i32 (unsaturated).
//  - No i32 sum overflows. Once the K steps before k are added, a lane
//    holds sum_{j<k} u_j s_j - o * sum_{j>=k} s_j (the correction starts
//    it), at most max(|u|, o) * sum |s| in magnitude: 8 * 64 * K * samples
//    with o = 8 (u in -8..7), 15 * 64 * K * samples with o = 0. The
//    contract bounds K * samples * 960 below 2^31.

/// Which operand the micro-kernel reads as unsigned bytes, and the offset
/// that puts its values there.
struct ByteOperands {
  bool lhsUnsigned = false;
  int64_t offset = 0;
};

ByteOperands byteOperands(const GemmSpec &spec) {
  auto offsetOf = [](const OperandSpec &op) {
    return op.format == Format::UInt4 ? 0 : 8;
  };
  // The log4 operand needs the signed side; else an operand that is
  // unsigned already needs no correction; else B takes the offset.
  bool lhsUnsigned = spec.rhs.format == Format::Log4 ||
                     (spec.lhs.format == Format::UInt4 &&
                      spec.rhs.format != Format::UInt4 &&
                      spec.lhs.format != Format::Log4);
  return {lhsUnsigned, offsetOf(lhsUnsigned ? spec.lhs : spec.rhs)};
}

Value KernelModuleBuilder::loadCodeValue(const OperandSpec &op, Value src,
                                         Value row, Value col,
                                         Value rowStride) {
  NumericsBuilder nb(b);
  Value code;
  if (op.dtype == DType::Packed4) {
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

Value KernelModuleBuilder::quadWord(ArrayRef<Value> values, int64_t offset) {
  NumericsBuilder nb(b);
  Value word;
  for (size_t j = 0; j < values.size(); ++j) {
    Value byte = arith::AndIOp::create(
        b, arith::AddIOp::create(b, values[j], nb.i32(offset)), nb.i32(0xFF));
    if (j != 0)
      byte = arith::ShLIOp::create(b, byte, nb.i32(8 * int64_t(j)));
    word = word ? arith::OrIOp::create(b, word, byte).getResult() : byte;
  }
  return word;
}

// lq_pack_a(src, M, K, S, rowStride, sampleStride, mb0, mb1, panel): for
// each block of kCpuTileRows rows, a header word per row, then for each
// SMP sample and K quad q a word per row holding the bytes of
// a[m, 4q .. 4q+3] (offset when A is the unsigned operand): what the
// micro-kernel broadcasts. When B takes the offset, a row's header is
// -offset * (its sum over K and the samples); else 0. `src` holds codes as
// stored (one per byte, or packed), [M, K] or transposed [K, M]; rows past
// M and the K pad are 0 before the offset.
void KernelModuleBuilder::buildPackA() {
  Type i8 = b.getI8Type(), i32 = b.getI32Type();
  PackAArgs args;
  beginFunction("lq_pack_a", cpu::kPackAKinds, {i8, i32}, args);
  Value src = args.src, M = args.m, K = args.k, S = args.samples,
        rowStride = args.rowStride, sampleStride = args.sampleStride,
        panel = args.panel;
  Value Kq = ceilDiv(K, kCpuKQuad);
  Value blockWords =
      muli(addi(muli(S, Kq), index(1)), index(kCpuTileRows));
  Value lastM = arith::SubIOp::create(b, M, index(1));
  Value lastK = arith::SubIOp::create(b, K, index(1));
  const OperandSpec &op = spec.lhs;
  ByteOperands bytes = byteOperands(spec);
  int64_t offset = bytes.lhsUnsigned ? bytes.offset : 0;
  int64_t correction = bytes.lhsUnsigned ? 0 : bytes.offset;
  NumericsBuilder nb(b);
  // Row sums on the stack at constant indices: LLVM keeps them in
  // registers.
  Value sums;
  if (correction)
    sums = memref::AllocaOp::create(b, MemRefType::get({kCpuTileRows}, i32));

  // The value at (m, k) of a sample. Checked reads clamp the indices into
  // the operand and zero the padding; interior blocks skip that work.
  auto value = [&](Value sampleSrc, Value m, Value k, bool checked) {
    Value mc = checked ? arith::MinUIOp::create(b, m, lastM).getResult() : m;
    Value kc = checked ? arith::MinUIOp::create(b, k, lastK).getResult() : k;
    Value v = op.transposed ? loadCodeValue(op, sampleSrc, kc, mc, rowStride)
                            : loadCodeValue(op, sampleSrc, mc, kc, rowStride);
    if (!checked)
      return v;
    Value inside = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, m, M),
        arith::CmpIOp::create(b, arith::CmpIPredicate::ult, k, K));
    return arith::SelectOp::create(b, inside, v, nb.i32(0)).getResult();
  };
  auto packQuads = [&](Value mb, Value s, Value sampleSrc, Value qBegin,
                       Value qEnd, bool checked) {
    forEach(qBegin, qEnd, [&](Value q) {
      Value k0 = muli(q, index(kCpuKQuad));
      Value base = addi(muli(mb, blockWords),
                        muli(addi(muli(s, Kq), addi(q, index(1))),
                             index(kCpuTileRows)));
      for (int64_t r = 0; r < kCpuTileRows; ++r) {
        Value m = addi(muli(mb, index(kCpuTileRows)), index(r));
        SmallVector<Value> values;
        for (int64_t j = 0; j < kCpuKQuad; ++j)
          values.push_back(value(sampleSrc, m, addi(k0, index(j)), checked));
        memref::StoreOp::create(b, quadWord(values, offset), panel,
                                ValueRange{addi(base, index(r))});
        if (!correction)
          continue;
        Value sum = memref::LoadOp::create(b, sums, ValueRange{index(r)});
        for (Value v : values)
          sum = addi(sum, v);
        memref::StoreOp::create(b, sum, sums, ValueRange{index(r)});
      }
    });
  };
  Value wholeQuads = arith::DivUIOp::create(b, K, index(kCpuKQuad));
  forEach(args.blockBegin, args.blockEnd, [&](Value mb) {
    if (correction)
      for (int64_t r = 0; r < kCpuTileRows; ++r)
        memref::StoreOp::create(b, nb.i32(0), sums, ValueRange{index(r)});
    Value rowsInside = arith::CmpIOp::create(
        b, arith::CmpIPredicate::ule,
        muli(addi(mb, index(1)), index(kCpuTileRows)), M);
    forEach(index(0), S, [&](Value s) {
      Value sampleSrc = memref::SubViewOp::create(
          b, src,
          ArrayRef<OpFoldResult>{OpFoldResult(muli(s, sampleStride))},
          ArrayRef<OpFoldResult>{OpFoldResult(sampleStride)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
      scf::IfOp::create(
          b, rowsInside,
          [&](OpBuilder &, Location) {
            packQuads(mb, s, sampleSrc, index(0), wholeQuads, false);
            packQuads(mb, s, sampleSrc, wholeQuads, Kq, true);
            scf::YieldOp::create(b);
          },
          [&](OpBuilder &, Location) {
            packQuads(mb, s, sampleSrc, index(0), Kq, true);
            scf::YieldOp::create(b);
          });
    });
    for (int64_t r = 0; r < kCpuTileRows; ++r) {
      Value header = nb.i32(0);
      if (correction)
        header = muli(memref::LoadOp::create(b, sums, ValueRange{index(r)}),
                      nb.i32(-correction));
      memref::StoreOp::create(b, header, panel,
                              ValueRange{addi(muli(mb, blockWords), index(r))});
    }
  });
  endFunction();
}

// lq_pack_b(src, K, N, rowStride, nb0, nb1, panel): for each block of
// kCpuTileCols columns, a header word per column, then for each K quad q a
// word per column holding the bytes of b[4q .. 4q+3, n] (offset when B is
// the unsigned operand): what the micro-kernel loads as vectors. When A
// takes the offset, a column's header is -offset * (its sum over K); else
// 0. Zero outside [K, N] before the offset. `src` is [K, N] or transposed
// [N, K].
void KernelModuleBuilder::buildPackB() {
  Type i8 = b.getI8Type(), i32 = b.getI32Type();
  PackBArgs args;
  beginFunction("lq_pack_b", cpu::kPackBKinds, {i8, i32}, args);
  Value src = args.src, K = args.k, N = args.n, rowStride = args.rowStride,
        panel = args.panel;
  Value Kq = ceilDiv(K, kCpuKQuad);
  Value blockWords = muli(addi(Kq, index(1)), index(kCpuTileCols));
  Value lastN = arith::SubIOp::create(b, N, index(1));
  Value lastK = arith::SubIOp::create(b, K, index(1));
  const OperandSpec &op = spec.rhs;
  ByteOperands bytes = byteOperands(spec);
  int64_t offset = bytes.lhsUnsigned ? 0 : bytes.offset;
  int64_t correction = bytes.lhsUnsigned ? bytes.offset : 0;
  NumericsBuilder nb(b);

  auto value = [&](Value k, Value n, bool checked) {
    Value nc = checked ? arith::MinUIOp::create(b, n, lastN).getResult() : n;
    Value kc = checked ? arith::MinUIOp::create(b, k, lastK).getResult() : k;
    Value v = op.transposed ? loadCodeValue(op, src, nc, kc, rowStride)
                            : loadCodeValue(op, src, kc, nc, rowStride);
    if (!checked)
      return v;
    Value inside = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::ult, k, K),
        arith::CmpIOp::create(b, arith::CmpIPredicate::ult, n, N));
    return arith::SelectOp::create(b, inside, v, nb.i32(0)).getResult();
  };
  auto packQuads = [&](Value nblock, Value qBegin, Value qEnd, bool checked) {
    Value header = muli(nblock, blockWords);
    forEach(qBegin, qEnd, [&](Value q) {
      Value k0 = muli(q, index(kCpuKQuad));
      Value base = addi(header, muli(addi(q, index(1)), index(kCpuTileCols)));
      // A loop, not unrolled: unrolled, LLVM spends seconds on the
      // transposed gathers for a stage that is a few percent of a launch.
      forEach(index(0), index(kCpuTileCols), [&](Value c) {
        Value n = addi(muli(nblock, index(kCpuTileCols)), c);
        SmallVector<Value> values;
        for (int64_t j = 0; j < kCpuKQuad; ++j)
          values.push_back(value(addi(k0, index(j)), n, checked));
        memref::StoreOp::create(b, quadWord(values, offset), panel,
                                ValueRange{addi(base, c)});
        if (!correction)
          return;
        // Column sums gather in the header, scaled when the block is done.
        Value sum = memref::LoadOp::create(b, panel, ValueRange{addi(header, c)});
        for (Value v : values)
          sum = addi(sum, v);
        memref::StoreOp::create(b, sum, panel, ValueRange{addi(header, c)});
      });
    });
  };
  Value wholeQuads = arith::DivUIOp::create(b, K, index(kCpuKQuad));
  forEach(args.blockBegin, args.blockEnd, [&](Value nblock) {
    Value header = muli(nblock, blockWords);
    for (int64_t c = 0; c < kCpuTileCols; ++c)
      memref::StoreOp::create(b, nb.i32(0), panel,
                              ValueRange{addi(header, index(c))});
    Value colsInside = arith::CmpIOp::create(
        b, arith::CmpIPredicate::ule,
        muli(addi(nblock, index(1)), index(kCpuTileCols)), N);
    scf::IfOp::create(
        b, colsInside,
        [&](OpBuilder &, Location) {
          packQuads(nblock, index(0), wholeQuads, false);
          packQuads(nblock, wholeQuads, Kq, true);
          scf::YieldOp::create(b);
        },
        [&](OpBuilder &, Location) {
          packQuads(nblock, index(0), Kq, true);
          scf::YieldOp::create(b);
        });
    if (correction)
      for (int64_t c = 0; c < kCpuTileCols; ++c) {
        Value at = addi(header, index(c));
        Value sum = memref::LoadOp::create(b, panel, ValueRange{at});
        memref::StoreOp::create(b, muli(sum, nb.i32(-correction)), panel,
                                ValueRange{at});
      }
  });
  endFunction();
}

//===----------------------------------------------------------------------===//
// GEMM micro-kernel and epilogue
//===----------------------------------------------------------------------===//

Value KernelModuleBuilder::epilogueValue(NumericsBuilder &nb, Value acc,
                                         Value scale, Value bias) {
  return nb.epilogue(acc, scale, bias, spec.relu, spec.bf16Output());
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

// lq_gemm(panelA, panelB, M, N, Kq, S, mb0, mb1, scale, bias, out, ldc,
// group): row blocks [mb0, mb1) times every column block, `group` row blocks
// at a time, so that their A panels stay in cache while every B panel
// streams past them once per group.
void KernelModuleBuilder::buildGemm() {
  Type i16 = b.getI16Type(), i32 = b.getI32Type(), f32 = b.getF32Type();
  Type outElem = spec.bf16Output() ? Type(i16) : f32;
  GemmArgs args;
  beginFunction("lq_gemm", cpu::kGemmKinds, {i32, i32, f32, outElem}, args);
  Value panelA = args.panelA, panelB = args.panelB, M = args.m, N = args.n,
        Kq = args.kQuads, S = args.samples, scale = args.scale,
        bias = args.bias, out = args.out, ldc = args.ldc, group = args.group;
  Value colBlocks = ceilDiv(N, kCpuTileCols);
  Value aBlockWords =
      muli(addi(muli(S, Kq), index(1)), index(kCpuTileRows));
  Value bBlockWords = muli(addi(Kq, index(1)), index(kCpuTileCols));
  // Edge tiles go through this stack copy; allocated once, outside the loops.
  Value tile = memref::AllocaOp::create(
      b, MemRefType::get({kCpuTileRows * kCpuTileCols}, b.getI32Type()));

  auto groups = scf::ForOp::create(b, args.blockBegin, args.blockEnd, group);
  b.setInsertionPointToStart(groups.getBody());
  Value groupEnd = arith::MinUIOp::create(
      b, addi(groups.getInductionVar(), group), args.blockEnd);
  forLoop(index(0), colBlocks, {}, [&](Value nblock, ValueRange) {
    forLoop(groups.getInductionVar(), groupEnd, {}, [&](Value mb, ValueRange) {
      Value aBlock = muli(mb, aBlockWords);
      Value bBlock = muli(nblock, bBlockWords);
      MicroKernelPanels panels{panelA, panelB,
                               addi(bBlock, index(kCpuTileCols)), Kq};
      auto samples = forLoop(
          index(0), S, initialAccumulators(panelA, aBlock, panelB, bBlock),
          [&](Value s, ValueRange acc) {
            panels.aBase = addi(aBlock, muli(addi(muli(s, Kq), index(1)),
                                             index(kCpuTileRows)));
            switch (options.dot) {
            case CpuDotProduct::Avx2:
              return avx2DotProducts(panels, acc);
            case CpuDotProduct::AvxVnni:
              return vnniDotProducts(panels, acc);
            case CpuDotProduct::Avx512Vnni:
              break;
            }
            return vnni512DotProducts(panels, acc);
          });
      SmallVector<Value> acc(samples.getResults());
      buildEpilogue(out, ldc, muli(mb, index(kCpuTileRows)),
                    muli(nblock, index(kCpuTileCols)), M, N, scale, bias, tile,
                    acc);
      return SmallVector<Value>{};
    });
    return SmallVector<Value>{};
  });
  b.setInsertionPointAfter(groups);
  endFunction();
}

// The accumulators of a tile start at the offset's correction (see the
// exactness note above): -offset * the row sums of A from its header, or
// -offset * the column sums of B from its header, or 0. With A offset
// there is one sample (SMP takes a log4 A), so B's sums are not scaled.
SmallVector<Value> KernelModuleBuilder::initialAccumulators(Value panelA,
                                                            Value aBlock,
                                                            Value panelB,
                                                            Value bBlock) {
  constexpr int64_t halves = kCpuTileCols / kLanes;
  auto accType = VectorType::get({kLanes}, b.getI32Type());
  ByteOperands bytes = byteOperands(spec);
  SmallVector<Value> acc;
  if (bytes.offset == 0) {
    Value zero = arith::ConstantOp::create(
        b, DenseElementsAttr::get(accType, b.getI32IntegerAttr(0)));
    return SmallVector<Value>(kCpuTileRows * halves, zero);
  }
  for (int64_t r = 0; r < kCpuTileRows; ++r)
    for (int64_t h = 0; h < halves; ++h) {
      if (bytes.lhsUnsigned) {
        acc.push_back(vector::LoadOp::create(
            b, accType, panelB, ValueRange{addi(bBlock, index(h * kLanes))}));
        continue;
      }
      Value rowSum =
          memref::LoadOp::create(b, panelA, ValueRange{addi(aBlock, index(r))});
      acc.push_back(vector::BroadcastOp::create(b, accType, rowSum));
    }
  return acc;
}

// The operands of K quad `q` of a tile as bytes: B's words of the tile's
// columns as vectors, A's word of row r broadcast to every lane, each pair
// ordered (unsigned, signed) as vpdpbusd and vpmaddubsw take them.
KernelModuleBuilder::QuadOperands
KernelModuleBuilder::quadOperands(const MicroKernelPanels &p, Value q) {
  constexpr int64_t halves = kCpuTileCols / kLanes;
  auto wordType = VectorType::get({kLanes}, b.getI32Type());
  auto byteType = VectorType::get({4 * kLanes}, b.getI8Type());
  bool lhsUnsigned = byteOperands(spec).lhsUnsigned;
  QuadOperands ops;
  Value bOffset = addi(p.bBase, muli(q, index(kCpuTileCols)));
  for (int64_t h = 0; h < halves; ++h)
    ops.rhs.push_back(vector::BitCastOp::create(
        b, byteType,
        vector::LoadOp::create(b, wordType, p.panelB,
                               ValueRange{addi(bOffset, index(h * kLanes))})));
  Value aOffset = addi(p.aBase, muli(q, index(kCpuTileRows)));
  for (int64_t r = 0; r < kCpuTileRows; ++r) {
    Value word =
        memref::LoadOp::create(b, p.panelA, ValueRange{addi(aOffset, index(r))});
    ops.lhs.push_back(vector::BitCastOp::create(
        b, byteType, vector::BroadcastOp::create(b, wordType, word)));
  }
  ops.lhsUnsigned = lhsUnsigned;
  return ops;
}

// AVX-VNNI: one 256-bit vpdpbusd per row and half tile and K quad,
// straight into the i32 accumulators.
SmallVector<Value>
KernelModuleBuilder::vnniDotProducts(const MicroKernelPanels &p,
                                     ValueRange init) {
  constexpr int64_t halves = kCpuTileCols / kLanes;
  auto accType = VectorType::get({kLanes}, b.getI32Type());
  StringAttr vpdpbusd = b.getStringAttr("llvm.x86.avx512.vpdpbusd.256");
  auto quads = forLoop(index(0), p.kQuads, init, [&](Value q, ValueRange acc) {
    QuadOperands ops = quadOperands(p, q);
    SmallVector<Value> next;
    for (int64_t r = 0; r < kCpuTileRows; ++r)
      for (int64_t h = 0; h < halves; ++h) {
        auto [u, s] = ops.pair(r, h);
        next.push_back(LLVM::CallIntrinsicOp::create(
                           b, accType, vpdpbusd,
                           ValueRange{acc[r * halves + h], u, s})
                           .getResult(0));
      }
    return next;
  });
  return SmallVector<Value>(quads.getResults());
}

// AVX-512 VNNI: one 512-bit vpdpbusd per row and K quad covers the tile's
// 16 columns. Even and odd quads go to two sets of accumulators, so that 12
// independent sums hide the instruction's latency as the 256-bit form's 12
// do; the sets are added at the end, and split into the halves the
// epilogue takes.
SmallVector<Value>
KernelModuleBuilder::vnni512DotProducts(const MicroKernelPanels &p,
                                        ValueRange init) {
  constexpr int64_t halves = kCpuTileCols / kLanes;
  static_assert(halves == 2, "a tile row is two halves of 8 lanes");
  auto rowType = VectorType::get({kCpuTileCols}, b.getI32Type());
  auto byteType = VectorType::get({4 * kCpuTileCols}, b.getI8Type());
  StringAttr vpdpbusd = b.getStringAttr("llvm.x86.avx512.vpdpbusd.512");
  bool lhsUnsigned = byteOperands(spec).lhsUnsigned;
  SmallVector<int64_t> whole, low, high;
  for (int64_t i = 0; i < kCpuTileCols; ++i) {
    whole.push_back(i);
    (i < kLanes ? low : high).push_back(i);
  }

  // Quad q added to the accumulators `sums` of the tile's rows.
  auto quad = [&](Value q, ValueRange sums) {
    Value bv = vector::BitCastOp::create(
        b, byteType,
        vector::LoadOp::create(
            b, rowType, p.panelB,
            ValueRange{addi(p.bBase, muli(q, index(kCpuTileCols)))}));
    Value aOffset = addi(p.aBase, muli(q, index(kCpuTileRows)));
    SmallVector<Value> next;
    for (int64_t r = 0; r < kCpuTileRows; ++r) {
      Value word = memref::LoadOp::create(b, p.panelA,
                                          ValueRange{addi(aOffset, index(r))});
      Value av = vector::BitCastOp::create(
          b, byteType, vector::BroadcastOp::create(b, rowType, word));
      next.push_back(LLVM::CallIntrinsicOp::create(
                         b, rowType, vpdpbusd,
                         ValueRange{sums[r], lhsUnsigned ? av : bv,
                                    lhsUnsigned ? bv : av})
                         .getResult(0));
    }
    return next;
  };
  SmallVector<Value> sums;
  for (int64_t r = 0; r < kCpuTileRows; ++r)
    sums.push_back(vector::ShuffleOp::create(b, init[r * halves],
                                             init[r * halves + 1], whole));
  Value zero = arith::ConstantOp::create(
      b, DenseElementsAttr::get(rowType, b.getI32IntegerAttr(0)));
  sums.append(kCpuTileRows, zero);
  auto pairs = forLoop(
      index(0), arith::DivUIOp::create(b, p.kQuads, index(2)), sums,
      [&](Value i, ValueRange acc) {
        Value q = muli(i, index(2));
        // The tile's B words (32 KiB at K = 2048) and the A words stream
        // through L1 next to each other; fetched kAhead quads early they
        // are there when the dot products need them. A prefetch past a
        // panel's end is harmless: it cannot fault.
        constexpr int64_t kAhead = 16;
        memref::PrefetchOp::create(
            b, p.panelB,
            ValueRange{addi(p.bBase, muli(addi(q, index(kAhead)),
                                          index(kCpuTileCols)))},
            /*isWrite=*/false, /*localityHint=*/3, /*isDataCache=*/true);
        memref::PrefetchOp::create(
            b, p.panelA,
            ValueRange{addi(p.aBase, muli(addi(q, index(kAhead)),
                                          index(kCpuTileRows)))},
            /*isWrite=*/false, /*localityHint=*/3, /*isDataCache=*/true);
        SmallVector<Value> next = quad(q, acc.take_front(kCpuTileRows));
        next.append(quad(addi(q, index(1)), acc.drop_front(kCpuTileRows)));
        return next;
      });
  // An odd last quad goes to the even set.
  Value oddCount = arith::CmpIOp::create(
      b, arith::CmpIPredicate::ne,
      arith::RemUIOp::create(b, p.kQuads, index(2)), index(0));
  auto last = scf::IfOp::create(
      b, oddCount,
      [&](OpBuilder &, Location) {
        ValueRange acc = pairs.getResults();
        SmallVector<Value> next =
            quad(arith::SubIOp::create(b, p.kQuads, index(1)),
                 acc.take_front(kCpuTileRows));
        next.append(acc.begin() + kCpuTileRows, acc.end());
        scf::YieldOp::create(b, next);
      },
      [&](OpBuilder &, Location) {
        scf::YieldOp::create(b, pairs.getResults());
      });
  SmallVector<Value> result;
  for (int64_t r = 0; r < kCpuTileRows; ++r) {
    Value row = addi(last.getResult(r), last.getResult(kCpuTileRows + r));
    result.push_back(vector::ShuffleOp::create(b, row, row, low));
    result.push_back(vector::ShuffleOp::create(b, row, row, high));
  }
  return result;
}

// AVX2: vpmaddubsw per row and half tile and K quad, summed in i16 over a
// block of at most kAvx2QuadBlock quads, then widened into the i32
// accumulators with one vpmaddwd by ones (bounds in the exactness note).
SmallVector<Value>
KernelModuleBuilder::avx2DotProducts(const MicroKernelPanels &p,
                                     ValueRange init) {
  constexpr int64_t halves = kCpuTileCols / kLanes;
  auto accType = VectorType::get({kLanes}, b.getI32Type());
  auto pairType = VectorType::get({2 * kLanes}, b.getI16Type());
  StringAttr pmaddubsw = b.getStringAttr("llvm.x86.avx2.pmadd.ub.sw");
  StringAttr pmaddwd = b.getStringAttr("llvm.x86.avx2.pmadd.wd");
  Value zero16 = arith::ConstantOp::create(
      b, DenseElementsAttr::get(pairType, b.getI16IntegerAttr(0)));
  Value ones16 = arith::ConstantOp::create(
      b, DenseElementsAttr::get(pairType, b.getI16IntegerAttr(1)));
  SmallVector<Value> zeros(kCpuTileRows * halves, zero16);
  auto blocks = scf::ForOp::create(
      b, index(0), p.kQuads, index(kAvx2QuadBlock), init,
      [&](OpBuilder &, Location, Value q0, ValueRange acc) {
        Value qEnd =
            arith::MinUIOp::create(b, addi(q0, index(kAvx2QuadBlock)), p.kQuads);
        auto quads = forLoop(q0, qEnd, zeros, [&](Value q, ValueRange acc16) {
          QuadOperands ops = quadOperands(p, q);
          SmallVector<Value> next;
          for (int64_t r = 0; r < kCpuTileRows; ++r)
            for (int64_t h = 0; h < halves; ++h) {
              auto [u, s] = ops.pair(r, h);
              Value pairs = LLVM::CallIntrinsicOp::create(
                                b, pairType, pmaddubsw, ValueRange{u, s})
                                .getResult(0);
              next.push_back(addi(acc16[r * halves + h], pairs));
            }
          return next;
        });
        SmallVector<Value> next;
        for (auto [sum32, sum16] : llvm::zip(acc, quads.getResults()))
          next.push_back(addi(sum32, LLVM::CallIntrinsicOp::create(
                                         b, accType, pmaddwd,
                                         ValueRange{sum16, ones16})
                                         .getResult(0)));
        scf::YieldOp::create(b, next);
      });
  return SmallVector<Value>(blocks.getResults());
}

OwningOpRef<ModuleOp> KernelModuleBuilder::build() {
  ctx.loadDialect<arith::ArithDialect, func::FuncDialect, LLVM::LLVMDialect,
                  math::MathDialect, memref::MemRefDialect, scf::SCFDialect,
                  vector::VectorDialect>();
  auto sideStages = [&](StringRef side, const OperandSpec &op) {
    if (op.dtype == DType::Packed4)
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

const char *lq::cpuDotProductName(CpuDotProduct dot) {
  switch (dot) {
  case CpuDotProduct::Avx2:
    return "avx2-vpmaddubsw";
  case CpuDotProduct::AvxVnni:
    return "avx-vnni";
  case CpuDotProduct::Avx512Vnni:
    return "avx512-vnni";
  }
  return "?";
}

std::optional<CpuDotProduct> lq::parseCpuDotProduct(std::string_view name) {
  for (CpuDotProduct dot : {CpuDotProduct::Avx2, CpuDotProduct::AvxVnni,
                            CpuDotProduct::Avx512Vnni})
    if (name == cpuDotProductName(dot))
      return dot;
  return std::nullopt;
}

std::string lq::describeCpuKernels(const GemmSpec &spec,
                                   const CpuKernelOptions &options) {
  auto side = [](const OperandSpec &op) {
    return std::string(formatName(op.format)) + ":" + storageName(op.dtype) +
           (op.transposed ? ":t" : ":n");
  };
  return "lhs=" + side(spec.lhs) + " rhs=" + side(spec.rhs) +
         " bias=" + (spec.bias ? "1" : "0") +
         " relu=" + (spec.relu ? "1" : "0") +
         " out=" + (spec.bf16Output() ? "bf16" : "f32") +
         " tile=" + std::to_string(kCpuTileRows) + "x" +
         std::to_string(kCpuTileCols) + " dot=" + cpuDotProductName(options.dot);
}

OwningOpRef<ModuleOp>
lq::buildCpuGemmKernels(MLIRContext &ctx, const GemmSpec &spec,
                        const CpuKernelOptions &options) {
  return KernelModuleBuilder(ctx, spec, options, /*quantizeOnly=*/false)
      .build();
}

OwningOpRef<ModuleOp> lq::buildCpuQuantizeKernels(MLIRContext &ctx,
                                                  const OperandSpec &op) {
  GemmSpec spec;
  spec.lhs = op;
  return KernelModuleBuilder(ctx, spec, CpuKernelOptions(),
                             /*quantizeOnly=*/true)
      .build();
}

LogicalResult lq::lowerCpuKernelsToLLVM(ModuleOp module) {
  PassManager pm(module->getContext());
  // One verification of the result instead of one after each of the
  // twelve passes: a third of this lowering's time in a cold compile.
  pm.enableVerifier(false);
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
  if (failed(pm.run(module)))
    return failure();
  return verify(module);
}
