//===- KernelModuleBuilder.h - the CPU stage builder ------------*- C++ -*-===//
//
// Private to lib/Conversion/Cpu: the builder of a module of x86-64 stage
// functions, whose stages are defined by area in CpuQuantStages.cpp
// (statistics, quantization, lq_pack4), CpuPanels.cpp (micro-kernel
// panels) and CpuMicroKernels.cpp (dot products and epilogue).
//
//===----------------------------------------------------------------------===//

#ifndef LQ_LIB_CONVERSION_CPU_KERNELMODULEBUILDER_H
#define LQ_LIB_CONVERSION_CPU_KERNELMODULEBUILDER_H

#include "lq/Conversion/Cpu/CpuKernels.h"
#include "lq/Spec/CpuAbi.h"
#include "lq/Conversion/NumericsBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace lq::cpu_stages {

using namespace mlir;

// A stage's arguments by the names of its signature in CpuAbi.h: a field
// per parameter, bound in the table's order.
#define LQ_CPU_ARG_FIELD(name, kind) Value name;
#define LQ_CPU_BIND_ARG(name, kind) to.name = args[next++];
#define LQ_CPU_ARGS(Struct, PARAMS)                                            \
  struct Struct {                                                              \
    PARAMS(LQ_CPU_ARG_FIELD)                                                   \
  };                                                                           \
  inline void bindArgs(ValueRange args, Struct &to) {                                 \
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


/// Which operand the micro-kernel reads as unsigned bytes, and the offset
/// that puts its values there.
struct ByteOperands {
  bool lhsUnsigned = false;
  int64_t offset = 0;
};

/// The byte operands of `spec`'s micro-kernel (the exactness note in
/// CpuPanels.cpp).
ByteOperands byteOperands(const GemmSpec &spec);

const char *storageName(DType storage);
MemRefType memref1d(Type element);

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
  /// A GEMM operand's logical shape (rows x cols of A, or K x N of B) and
  /// its last row and column, which clamp checked reads.
  struct OperandBounds {
    Value rows, cols, lastRow, lastCol;
  };
  /// The value at logical (r, c) of `op` stored at `src` (transposed
  /// storage swaps the indices). Checked reads clamp the indices into the
  /// operand and give 0 outside it, the panels' zero padding; interior
  /// blocks skip that work.
  Value operandValue(const OperandSpec &op, Value src, Value r, Value c,
                     const OperandBounds &bounds, Value rowStride,
                     bool checked);
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
  /// `aBase`, B's of each of the tile's column blocks from `bBases` (past
  /// the headers), over `kQuads` quads.
  struct MicroKernelPanels {
    Value panelA, panelB;
    SmallVector<Value, 4> bBases;
    Value kQuads, aBase;
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
  void buildWideTile(const GemmArgs &args, Value tile, Value mb, Value t,
                     Value wideTiles);
  SmallVector<Value> tileDotProducts(const GemmArgs &args, Value mb,
                                     Value nblock, int64_t blocks);
  void epilogueBlock(const GemmArgs &args, Value tile, Value mb, Value nblock,
                     ArrayRef<Value> acc);
  void prefetchOutput(Value out, Value ldc, Value m, Value n, int64_t blocks);
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


} // namespace lq::cpu_stages

#endif // LQ_LIB_CONVERSION_CPU_KERNELMODULEBUILDER_H
