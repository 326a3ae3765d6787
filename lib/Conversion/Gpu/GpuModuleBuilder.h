//===- GpuModuleBuilder.h - the builder of generated CUDA kernels -*- C++ -*-===//
//
// Private to lib/Conversion/Gpu: the builder every kernel of a GPU module is
// generated with. GpuKernels.cpp holds the module and the memory-bound
// kernels (statistics, quantizers, epilogue fill), GpuGemm.cpp the fused
// GEMM's structure (staging, conversion to int8 tiles, the k-loop, the
// epilogue), and one file per tensor-core generation its layout and
// multiply: GemmSm80.cpp (mma.sync) and GemmSm90a.cpp (wgmma);
// GemmSm90aWs.cpp the persistent warp-specialized int8 GEMM of sm_90a.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_LIB_CONVERSION_GPU_GPUMODULEBUILDER_H
#define LQ_LIB_CONVERSION_GPU_GPUMODULEBUILDER_H

#include "lq/Conversion/Gpu/GpuKernels.h"
#include "lq/Conversion/NumericsBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <array>
#include <string>

namespace lq::cudagen {

using namespace mlir;
namespace abi = lq::cuda;

// A kernel's arguments by the names of its signature in GpuAbi.h: a field
// per parameter, bound in the table's order (bindArgs).
#define LQ_GPU_ARG_FIELD(name, kind) Value name;
#define LQ_GPU_BIND_ARG(name, kind) to.name = args[next++];
struct StatsArgs {
  LQ_GPU_STATS_PARAMS(LQ_GPU_ARG_FIELD)
};
struct QuantArgs {
  LQ_GPU_QUANT_PARAMS(LQ_GPU_ARG_FIELD)
};
struct GemmArgs {
  LQ_GPU_GEMM_PARAMS(LQ_GPU_ARG_FIELD)
  LQ_GPU_GEMM_TMA_PARAMS(LQ_GPU_ARG_FIELD)
};
struct GemmWsArgs {
  LQ_GPU_GEMM_WS_PARAMS(LQ_GPU_ARG_FIELD)
};
struct FillArgs {
  LQ_GPU_FILL_PARAMS(LQ_GPU_ARG_FIELD)
};

inline void bindArgs(ValueRange args, StatsArgs &to) {
  size_t next = 0;
  LQ_GPU_STATS_PARAMS(LQ_GPU_BIND_ARG)
}
inline void bindArgs(ValueRange args, QuantArgs &to) {
  size_t next = 0;
  LQ_GPU_QUANT_PARAMS(LQ_GPU_BIND_ARG)
}
inline void bindArgs(ValueRange args, GemmArgs &to) {
  size_t next = 0;
  LQ_GPU_GEMM_PARAMS(LQ_GPU_BIND_ARG)
  if (next < args.size()) {
    LQ_GPU_GEMM_TMA_PARAMS(LQ_GPU_BIND_ARG)
  }
}
inline void bindArgs(ValueRange args, GemmWsArgs &to) {
  size_t next = 0;
  LQ_GPU_GEMM_WS_PARAMS(LQ_GPU_BIND_ARG)
}
inline void bindArgs(ValueRange args, FillArgs &to) {
  size_t next = 0;
  LQ_GPU_FILL_PARAMS(LQ_GPU_BIND_ARG)
}
#undef LQ_GPU_BIND_ARG
#undef LQ_GPU_ARG_FIELD

/// Bytes of an element of `storage` times two (packed codes are half a
/// byte).
inline int64_t halfBytes(DType storage) {
  switch (storage) {
  case DType::F32:
    return 8;
  case DType::BF16:
    return 4;
  case DType::Packed4:
    return 1;
  }
  llvm_unreachable("unknown storage");
}

/// K per stage: one k32 step of s8 tensor-core MMA, or one k64 step of s4.
constexpr int64_t kBK = 32;
constexpr int64_t kBK4 = 64;
/// Tile rows of the mma.sync layout: 32 bytes of K (32 int8 or 64 int4
/// codes) plus 16 of padding, which puts the 8 rows x 4 words of a fragment
/// load in 32 distinct banks.
constexpr int64_t kTileRowBytes = 32 + 16;
/// A wgmma core matrix: 8 rows x 16 bytes, stored contiguously.
constexpr int64_t kCoreBytes = 128;

/// The stored side of a GEMM operand as the kernel sees it.
struct Side {
  const OperandSpec *op;
  bool isA;
  /// Stored with K contiguous: a non-transposed A [M, K] or a transposed
  /// B [N, K].
  bool kContig;
  int64_t tileMN;
  /// The staging tile: rows x contiguous elements, as stored.
  int64_t sr, sc;
  int64_t rowBytes() const { return sc * halfBytes(op->dtype) / 2; }
  int64_t stageBytes() const { return sr * rowBytes(); }
  bool isFloat() const { return op->dtype != DType::Packed4; }
  bool luq() const { return op->format == Format::Log4; }
};

inline Side makeSide(const OperandSpec &op, bool isA, int64_t tileMN,
                     int64_t bk) {
  Side s;
  s.op = &op;
  s.isA = isA;
  s.kContig = isA ? !op.transposed : op.transposed;
  s.tileMN = tileMN;
  s.sr = s.kContig ? tileMN : bk;
  s.sc = s.kContig ? bk : tileMN;
  return s;
}

/// Two SAWB int4 operands, both stored K-contiguous (the forward GEMM), on
/// sm_80: the tiles hold the 4-bit codes themselves and mma.sync multiplies
/// them as s4/u4, m16n8k64, twice the int8 rate. wgmma has no int4 form,
/// and on sm_90a mma.sync s4 is emulated, so Hopper widens to int8.
inline bool int4Path(const GemmSpec &spec) {
  return spec.target == Target::CudaSm80 && spec.lhs.format != Format::Log4 &&
         spec.rhs.format != Format::Log4 && !spec.lhs.transposed &&
         spec.rhs.transposed;
}

constexpr int64_t kMaxStages = 4;

inline int64_t stagesFor(const GemmSpec &spec) {
  bool anyF32 = spec.lhs.dtype == DType::F32 ||
                spec.rhs.dtype == DType::F32;
  // int4 stages hold twice the K: one fewer keeps f32 tiles in 163 KiB.
  int64_t stages = anyF32 ? 3 : kMaxStages;
  return int4Path(spec) ? stages - 1 : stages;
}

class GpuModuleBuilder {
public:
  GpuModuleBuilder(MLIRContext &ctx, Target chip)
      : ctx(ctx), chip(chip), loc(UnknownLoc::get(&ctx)),
        module(ModuleOp::create(loc)), b(loc, &ctx) {
    ctx.loadDialect<mlir::gpu::GPUDialect, NVVM::NVVMDialect, LLVM::LLVMDialect,
                    arith::ArithDialect, math::MathDialect, scf::SCFDialect>();
    module.get()->setAttr(mlir::gpu::GPUDialect::getContainerModuleAttrName(),
                          b.getUnitAttr());
    b.setInsertionPointToEnd(module->getBody());
    gpuModule = mlir::gpu::GPUModuleOp::create(b, "lq_kernels");
    // The GEMM's stages and tiles live in dynamic shared memory, sized at
    // launch (GemmTile::smemBytes).
    b.setInsertionPointToStart(gpuModule.getBody());
    LLVM::GlobalOp::create(b, LLVM::LLVMArrayType::get(b.getI8Type(), 0),
                           /*isConstant=*/false, LLVM::Linkage::External,
                           "lq_smem", Attribute(), /*alignment=*/128,
                           /*addrSpace=*/3);
  }

  OwningOpRef<ModuleOp> take() { return std::move(module); }

  void buildStats(const OperandSpec &op, bool lhs);
  /// Where a quantizer writes its codes: packed 4-bit storage (two per
  /// byte, rows as stored), or int8 values for the tensor cores,
  /// K-contiguous: rows as stored, or transposed.
  enum class CodeLayout { Packed, Int8, Int8Transposed };
  void buildQuantize(const OperandSpec &op, bool lhs,
                     CodeLayout layout = CodeLayout::Packed);
  /// How operand tiles reach shared memory.
  enum class Copy { Any, Vec, Tma };
  void buildGemm(const GemmSpec &spec, const abi::GemmTile &tile,
                 Copy copy, const std::string &name);
  void buildFill(const GemmSpec &spec);
  /// lq_gemm_ws_<tile> (GemmSm90aWs.cpp).
  void buildGemmWs(const GemmSpec &spec, const abi::WsTile &tile);

private:
  Type ptrG() { return LLVM::LLVMPointerType::get(&ctx, 1); }
  Type ptrS() { return LLVM::LLVMPointerType::get(&ctx, 3); }
  Type ptrGeneric() { return LLVM::LLVMPointerType::get(&ctx); }
  Type i8() { return b.getI8Type(); }
  Type i16() { return b.getI16Type(); }
  Type i32() { return b.getI32Type(); }
  Type i64() { return b.getI64Type(); }
  Type f32() { return b.getF32Type(); }
  Type f64() { return b.getF64Type(); }

  Value c32(int64_t v) { return arith::ConstantIntOp::create(b, v, 32); }
  Value c64(int64_t v) { return arith::ConstantIntOp::create(b, v, 64); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, x, y); }
  Value divu(Value x, Value y) { return arith::DivUIOp::create(b, x, y); }
  Value remu(Value x, Value y) { return arith::RemUIOp::create(b, x, y); }
  Value ult(Value x, Value y) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::ult, x, y);
  }
  Value slt(Value x, Value y) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::slt, x, y);
  }
  Value ne(Value x, Value y) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::ne, x, y);
  }
  Value land(Value x, Value y) { return arith::AndIOp::create(b, x, y); }
  Value select(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, c, x, y);
  }
  Value ext64(Value v) { return arith::ExtUIOp::create(b, i64(), v); }
  Value sext64(Value v) { return arith::ExtSIOp::create(b, i64(), v); }

  Value tid() { return NVVM::ThreadIdXOp::create(b, i32()); }
  Value ctaX() { return NVVM::BlockIdXOp::create(b, i32()); }
  Value ctaY() { return NVVM::BlockIdYOp::create(b, i32()); }
  Value gridX() { return NVVM::GridDimXOp::create(b, i32()); }
  void barrier() { NVVM::Barrier0Op::create(b); }

  Value gep(Value base, Type element, Value offset) {
    return LLVM::GEPOp::create(b, base.getType(), element, base,
                               ValueRange{offset});
  }
  Value load(Type type, Value ptr) { return LLVM::LoadOp::create(b, type, ptr); }
  void store(Value v, Value ptr) { LLVM::StoreOp::create(b, v, ptr); }

  /// The kernel's dynamic shared memory.
  Value smem() {
    return LLVM::AddressOfOp::create(b, ptrS(), "lq_smem");
  }
  /// A static shared array of `count` elements of `element`.
  Value staticShared(StringRef name, Type element, int64_t count);

  /// Starts `gpu.func @name kernel` with the signature of `kind` (GpuAbi.h)
  /// for `threads` threads per block, with registers for `blocks` resident
  /// blocks per multiprocessor, and binds its arguments to `args`.
  template <typename Args>
  void beginKernel(StringRef name, abi::KernelKind kind, int64_t threads,
                   int64_t blocks, Args &args) {
    bindArgs(beginKernel(name, kind, threads, blocks), args);
  }
  ValueRange beginKernel(StringRef name, abi::KernelKind kind,
                         int64_t threads, int64_t blocks);
  /// The IR type of a parameter of `kind`.
  Type paramType(abi::ParamKind kind);
  void endKernel() { mlir::gpu::ReturnOp::create(b); }
  /// Makes the arguments `indices` of the kernel being built CUtensorMaps
  /// passed by value (`.param .align 64 .b8 [128]`, CUDA's
  /// __grid_constant__): each argument is its map's address in the
  /// parameter space.
  void tensorMapsByValue(ArrayRef<int32_t> indices);

  void ifThen(Value cond, function_ref<void()> body) {
    auto op = scf::IfOp::create(b, cond, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&op.getThenRegion().front());
    body();
  }
  /// scf.for from `lo` to `hi` by `step` threading `init`.
  using LoopBody = function_ref<SmallVector<Value>(Value, ValueRange)>;
  SmallVector<Value> loop(Value lo, Value hi, Value step, ValueRange init,
                          LoopBody body) {
    auto op = scf::ForOp::create(
        b, lo, hi, step, init,
        [&](OpBuilder &, Location, Value iv, ValueRange args) {
          scf::YieldOp::create(b, body(iv, args));
        });
    return SmallVector<Value>(op.getResults());
  }

  /// The f32 value of element `index` of a float operand in global memory.
  Value loadFloat(DType storage, Value base, Value index);
  /// Widens bf16 bits (i16) to f32.
  Value widenBf16(Value bits);
  /// The four uniforms of the consecutive elements idx0..idx0+3 (i64):
  /// one Philox block when idx0 is a multiple of four, else two.
  std::array<Value, 4> groupUniforms(NumericsBuilder &nb, Value seed,
                                     Value stream, Value sample, Value idx0);
  /// Stores the four codes of stored row `r`, columns c0..c0+3 (i64) of a
  /// quantizer in `layout` (lanes at or past `cols` hold code 0).
  void storeCodes(const OperandSpec &op, CodeLayout layout,
                  ArrayRef<Value> codes, Value out, Value outStride, Value r,
                  Value c0, Value cols);
  /// Warp-wide reduction of an i32 (unsigned max or add).
  Value warpReduce(Value v, bool isMax);
  /// Adds the hindsight/quantizer counters of this thread with one atomic
  /// per warp.
  void flushCounters(Value counters, Value overflow, Value maxBits);

  /// The GEMM kernel's pieces (GpuGemm.cpp), in the order they run.
  struct GemmState;
  /// One int32 sum of the accumulators: where it is and which output
  /// element (row and column within the CTA tile) it belongs to.
  struct AccElement {
    Value block;
    int64_t field;
    Value row, col;
  };
  void setupGemm(GemmState &g, const GemmSpec &spec, const abi::GemmTile &tile,
                 Copy copy, const GemmArgs &args);
  /// The TMA variant: one mbarrier per stage, initialized by one thread.
  void initBarriers(GemmState &g);
  /// Starts the copies of k-step `it` into its stage.
  void issueStage(GemmState &g, Value it);
  /// The k-steps (every SMP sample's): the accumulators and, in
  /// in-hindsight mode, the counts of the left operand after them.
  SmallVector<Value> mainLoop(GemmState &g, ValueRange init);
  void copyStage(GemmState &g, const Side &side, Value it, Value stage);
  SmallVector<Value> convertStage(GemmState &g, const Side &side, Value stage,
                                  Value sample, Value k0, ValueRange stats);
  /// Stores the int8 (or int4) values of four consecutive stored elements
  /// of row `r` from column `c4` of the stage into the tensor-core tile.
  void storeGroup(GemmState &g, const Side &side, Value tile, Value r,
                  Value c4, ArrayRef<Value> vals);
  void storeOutputs(GemmState &g, ArrayRef<AccElement> elements,
                    const GemmArgs &args);

  /// lq_gemm_ws_*: what the producer and the consumers share. Both count
  /// the ring's steps from 0 across their tiles (stage = step % stages,
  /// phase = step / stages % 2).
  struct WsLoop {
    abi::WsTile tile;
    Value ring, full, empty;
    int64_t stageBytes = 0, aOffset = 0, bOffset = 0;
    Value M, N, kTiles, iters, tilesM, tilesN, tiles;
  };
  /// The first row and column of output tile `tileIndex` in the
  /// persistent order: 64-bit for addresses, 32-bit for the rest.
  struct WsOrigin {
    Value m0, n0, m0w, n0w;
  };
  WsOrigin wsTileOrigin(const WsLoop &w, Value tileIndex);
  void produce(const WsLoop &w, const GemmWsArgs &args);
  /// A consumer warpgroup's thread `ct` (0..255 over both).
  void consume(const WsLoop &w, const GemmSpec &spec, const GemmWsArgs &args,
               Value ct);
  void storeWsTile(const WsLoop &w, const GemmSpec &spec,
                   const GemmWsArgs &args, Value acc, const WsOrigin &origin,
                   Value warp, Value lane);

  // Per chip: the tensor-core layout of the tiles and accumulators and the
  // multiply (GemmSm80.cpp: mma.sync; GemmSm90a.cpp: wgmma).
  Value tileAddress(GemmState &g, Value mn, Value k);
  SmallVector<Value> zeroAccumulators(GemmState &g);
  SmallVector<Value> mmaStep(GemmState &g, ValueRange acc);
  SmallVector<AccElement> accElements(GemmState &g, ValueRange acc);
  void layoutWarpsSm80(GemmState &g);
  Value tileAddressSm80(Value mn, Value k);
  Value tileAddressSm90a(Value mn, Value k);
  SmallVector<Value> mmaStepSm80(GemmState &g, ValueRange acc);
  SmallVector<Value> mmaStepSm90a(GemmState &g, ValueRange acc);
  SmallVector<AccElement> accElementsSm80(GemmState &g, ValueRange acc);
  SmallVector<AccElement> accElementsSm90a(GemmState &g, ValueRange acc);
  /// The element (row, col) of each of the four sums of a 16 x 8 block at
  /// (row0, col0), as mma.sync and each warp's part of wgmma hold them.
  void addBlock(GemmState &g, SmallVector<AccElement> &out, Value block,
                Value row0, Value col0, int64_t firstField);

  MLIRContext &ctx;
  Target chip;
  Location loc;
  OwningOpRef<ModuleOp> module;
  ImplicitLocOpBuilder b;
  mlir::gpu::GPUModuleOp gpuModule;
};

struct GpuModuleBuilder::GemmState {
  const GemmSpec *spec;
  abi::GemmTile tile;
  Copy copy;
  Side sides[2];
  int64_t stages;
  /// Shared-memory byte offsets: staging stages of A and B, int8 tiles.
  int64_t stageBase[2], tileBase[2];
  // Per-launch values.
  Value ptr[2], ld[2], storedRows[2], storedCols[2];
  /// The CTA's first row of A / column of B: 32-bit for bounds checks,
  /// 64-bit for addresses.
  Value mn0[2], mn0w[2];
  Value M, N, K, inv[2], zero[2], seed, stream, kTiles;
  Value smem, t, warp, lane;
  /// Thread 0, which issues the TMA copies; all k-steps of all samples.
  Value leader, total;
  /// TMA: the operands' tensor maps (generic pointers) and the stages'
  /// mbarriers.
  Value tmap[2], mbar;
  /// The tiles hold 4-bit codes for mma.sync s4/u4 (int4Path).
  bool int4 = false;
  /// mma.sync: warps along M and N, accumulator tiles per warp.
  int64_t warpsN = 0, mTiles = 0, nTiles = 0;
};

} // namespace lq::cudagen

#endif // LQ_LIB_CONVERSION_GPU_GPUMODULEBUILDER_H
