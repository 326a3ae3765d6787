//===- GpuKernels.cpp - generated CUDA kernels of a quantized GEMM --------===//

#include "lq/Conversion/Gpu/GpuKernels.h"
#include "lq/Conversion/NumericsBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

using namespace mlir;
using namespace lq;
namespace abi = lq::gpu;

namespace {

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
struct FillArgs {
  LQ_GPU_FILL_PARAMS(LQ_GPU_ARG_FIELD)
};

void bindArgs(ValueRange args, StatsArgs &to) {
  size_t next = 0;
  LQ_GPU_STATS_PARAMS(LQ_GPU_BIND_ARG)
}
void bindArgs(ValueRange args, QuantArgs &to) {
  size_t next = 0;
  LQ_GPU_QUANT_PARAMS(LQ_GPU_BIND_ARG)
}
void bindArgs(ValueRange args, GemmArgs &to) {
  size_t next = 0;
  LQ_GPU_GEMM_PARAMS(LQ_GPU_BIND_ARG)
  if (next < args.size()) {
    LQ_GPU_GEMM_TMA_PARAMS(LQ_GPU_BIND_ARG)
  }
}
void bindArgs(ValueRange args, FillArgs &to) {
  size_t next = 0;
  LQ_GPU_FILL_PARAMS(LQ_GPU_BIND_ARG)
}
#undef LQ_GPU_BIND_ARG
#undef LQ_GPU_ARG_FIELD

} // namespace

const char *lq::gpuPtxFeatures(Target chip) {
  // PTX 8.0 is the first ISA with wgmma (sm_90a); one ISA for both keeps
  // the cache key and the toolchain requirement simple.
  (void)chip;
  return "+ptx80";
}

namespace {

/// Bytes of an element of `storage` times two (packed codes are half a
/// byte).
int64_t halfBytes(DType storage) {
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

Side makeSide(const OperandSpec &op, bool isA, int64_t tileMN,
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
bool int4Path(const GemmSpec &spec) {
  return spec.target == Target::CudaSm80 && spec.lhs.format != Format::Log4 &&
         spec.rhs.format != Format::Log4 && !spec.lhs.transposed &&
         spec.rhs.transposed;
}

constexpr int64_t kMaxStages = 4;

int64_t stagesFor(const GemmSpec &spec) {
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
  void buildQuantize(const OperandSpec &op, bool lhs);
  /// How operand tiles reach shared memory.
  enum class Copy { Any, Vec, Tma };
  void buildGemm(const GemmSpec &spec, const abi::GemmTile &tile,
                 Copy copy, const std::string &name);
  void buildFill(const GemmSpec &spec);

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
  /// Warp-wide reduction of an i32 (unsigned max or add).
  Value warpReduce(Value v, bool isMax);
  /// Adds the hindsight/quantizer counters of this thread with one atomic
  /// per warp.
  void flushCounters(Value counters, Value overflow, Value maxBits);

  /// The GEMM kernel's pieces.
  struct GemmState;
  void copyStage(GemmState &g, const Side &side, Value it, Value stage);
  SmallVector<Value> convertStage(GemmState &g, const Side &side, Value stage,
                                  Value sample, Value k0, ValueRange stats);
  Value tileAddress(GemmState &g, Value mn, Value k);
  SmallVector<Value> mmaStep(GemmState &g, ValueRange acc);

  MLIRContext &ctx;
  Target chip;
  Location loc;
  OwningOpRef<ModuleOp> module;
  ImplicitLocOpBuilder b;
  mlir::gpu::GPUModuleOp gpuModule;
};

Value GpuModuleBuilder::staticShared(StringRef name, Type element,
                                     int64_t count) {
  if (!gpuModule.lookupSymbol(name)) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(gpuModule.getBody());
    LLVM::GlobalOp::create(b, LLVM::LLVMArrayType::get(element, count),
                           /*isConstant=*/false, LLVM::Linkage::Internal, name,
                           Attribute(), /*alignment=*/16, /*addrSpace=*/3);
  }
  return LLVM::AddressOfOp::create(b, ptrS(), name);
}

Type GpuModuleBuilder::paramType(abi::ParamKind kind) {
  switch (kind) {
  case abi::ParamKind::Ptr:
    return ptrG();
  case abi::ParamKind::I64:
    return i64();
  case abi::ParamKind::I32:
    return i32();
  case abi::ParamKind::F32:
    return f32();
  case abi::ParamKind::TensorMap:
    // Its address in the parameter space (lq-gpu-kernel-params).
    return ptrGeneric();
  }
  llvm_unreachable("unknown parameter kind");
}

ValueRange GpuModuleBuilder::beginKernel(StringRef name, abi::KernelKind kind,
                                         int64_t threads, int64_t blocks) {
  b.setInsertionPointToEnd(gpuModule.getBody());
  SmallVector<Type> types;
  SmallVector<int32_t> tensorMaps;
  for (const abi::ParamInfo &param : abi::signature(kind)) {
    if (param.kind == abi::ParamKind::TensorMap)
      tensorMaps.push_back(int32_t(types.size()));
    types.push_back(paramType(param.kind));
  }
  auto fn = mlir::gpu::GPUFuncOp::create(b, name, b.getFunctionType(types, {}));
  fn->setAttr(mlir::gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  fn.setKnownBlockSizeAttr(
      b.getDenseI32ArrayAttr({int32_t(threads), 1, 1}));
  // The occupancy each kernel is designed for bounds its registers: the
  // GEMMs need one resident block (then ptxas never trades spills for
  // occupancy they do not need); the memory-bound kernels need several.
  fn->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(),
              b.getI32IntegerAttr(int32_t(blocks)));
  b.setInsertionPointToStart(&fn.getBody().front());
  if (!tensorMaps.empty())
    tensorMapsByValue(tensorMaps);
  return fn.getArguments();
}

void GpuModuleBuilder::tensorMapsByValue(ArrayRef<int32_t> indices) {
  // A map in global memory would need fence.proxy.tensormap::generic.acquire
  // before its first use (the launch's copy is a generic-proxy write); the
  // parameter space is read by the TMA unit directly.
  Operation *fn = b.getInsertionBlock()->getParentOp();
  fn->setAttr(kTensorMapArgsAttr, b.getDenseI32ArrayAttr(indices));
}

Value GpuModuleBuilder::widenBf16(Value bits) {
  Value wide = arith::ShLIOp::create(
      b, arith::ExtUIOp::create(b, i32(), bits), c32(16));
  return arith::BitcastOp::create(b, f32(), wide);
}

Value GpuModuleBuilder::loadFloat(DType storage, Value base,
                                  Value index) {
  if (storage == DType::F32)
    return load(f32(), gep(base, f32(), index));
  return widenBf16(load(i16(), gep(base, i16(), index)));
}

std::array<Value, 4> GpuModuleBuilder::groupUniforms(NumericsBuilder &nb,
                                                     Value seed, Value stream,
                                                     Value sample, Value idx0) {
  Value block = arith::ShRUIOp::create(b, idx0, c64(2));
  Value offset = arith::TruncIOp::create(b, i32(), land(idx0, c64(3)));
  std::array<Value, 4> first = nb.philoxBlock(seed, stream, sample, block);
  // The group straddles two blocks unless it starts on a block boundary.
  auto second = scf::IfOp::create(
      b, ne(offset, c32(0)),
      [&](OpBuilder &, Location) {
        std::array<Value, 4> next =
            nb.philoxBlock(seed, stream, sample, add(block, c64(1)));
        scf::YieldOp::create(b, ValueRange(next));
      },
      [&](OpBuilder &, Location) {
        scf::YieldOp::create(b, ValueRange(first));
      });
  Value words[8] = {first[0], first[1], first[2], first[3],
                    second.getResult(0), second.getResult(1),
                    second.getResult(2), second.getResult(3)};
  std::array<Value, 4> uniforms;
  for (int64_t i = 0; i < 4; ++i) {
    // Element i draws word (offset + i) of the two blocks.
    Value word = words[i + 3];
    for (int64_t j = 2; j >= 0; --j)
      word = select(arith::CmpIOp::create(b, arith::CmpIPredicate::eq, offset,
                                          c32(j)),
                    words[i + j], word);
    uniforms[i] = nb.wordToUniform(word);
  }
  return uniforms;
}

Value GpuModuleBuilder::warpReduce(Value v, bool isMax) {
  Value all = c32(-1), clamp = c32(31);
  for (int64_t offset = 16; offset >= 1; offset /= 2) {
    Value other = NVVM::ShflOp::create(b, i32(), all, v, c32(offset), clamp,
                                       NVVM::ShflKind::bfly, UnitAttr());
    v = isMax ? Value(arith::MaxUIOp::create(b, v, other)) : add(v, other);
  }
  return v;
}

void GpuModuleBuilder::flushCounters(Value counters, Value overflow,
                                     Value maxBits) {
  Value over = warpReduce(overflow, /*isMax=*/false);
  Value bits = warpReduce(maxBits, /*isMax=*/true);
  Value lane = land(tid(), c32(31));
  ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::eq, lane, c32(0)),
         [&] {
    ifThen(ne(over, c32(0)), [&] {
      LLVM::AtomicRMWOp::create(
        b, LLVM::AtomicBinOp::add,
        gep(counters, i32(),
            c32(offsetof(abi::QuantCounters, overflow) / sizeof(uint32_t))),
        over, LLVM::AtomicOrdering::monotonic);
    });
    LLVM::AtomicRMWOp::create(
        b, LLVM::AtomicBinOp::umax,
        gep(counters, i32(),
            c32(offsetof(abi::QuantCounters, maxAnyBits) / sizeof(uint32_t))),
        bits, LLVM::AtomicOrdering::monotonic);
  });
}

//===----------------------------------------------------------------------===//
// Statistics
//===----------------------------------------------------------------------===//

void GpuModuleBuilder::buildStats(const OperandSpec &op, bool lhs) {
  StatsArgs args;
  beginKernel(abi::statsKernel(lhs), abi::KernelKind::Stats,
              abi::kStatsThreads, /*blocks=*/4, args);
  Value in = args.in, rows = args.rows, cols = args.cols,
        stride = args.rowStride, stats = args.stats;
  bool moments = op.format != Format::Log4;
  NumericsBuilder nb(b);
  Value t = tid(), t64 = ext64(t);
  Value zeroF = arith::ConstantFloatOp::create(b, b.getF64Type(),
                                               APFloat(0.0));
  SmallVector<Value> init = {c32(0), c32(0)};
  if (moments)
    init.append({zeroF, zeroF});

  SmallVector<Value> acc = loop(
      ext64(ctaX()), rows, ext64(gridX()), init,
      [&](Value r, ValueRange a) {
        Value base = mul(r, stride);
        return loop(t64, cols, c64(abi::kStatsThreads), a,
                    [&](Value c, ValueRange a) -> SmallVector<Value> {
          Value x = loadFloat(op.dtype, in, add(base, c));
          Value bits = nb.absBits(x);
          Value finite = select(nb.isNonfiniteBits(bits), c32(0), bits);
          SmallVector<Value> next = {arith::MaxUIOp::create(b, a[0], finite),
                                     arith::MaxUIOp::create(b, a[1], bits)};
          if (moments) {
            Value d = arith::ExtFOp::create(b, f64(), x);
            next.push_back(
                arith::AddFOp::create(b, a[2], arith::MulFOp::create(b, d, d)));
            // |d| by clearing the sign bit: the NVVM lowering would send
            // math.absf to libdevice.
            Value magnitude = arith::BitcastOp::create(
                b, f64(),
                land(arith::BitcastOp::create(b, i64(), d),
                     c64(0x7FFFFFFFFFFFFFFFLL)));
            next.push_back(arith::AddFOp::create(b, a[3], magnitude));
          }
          return next;
        });
      });

  // Tree reduction in shared memory: a fixed order, so the per-block sums
  // depend only on the shape.
  constexpr int64_t n = abi::kStatsThreads;
  Value bitsSmem = staticShared("lq_stats_bits", i32(), 2 * n);
  Value sumSmem = moments ? staticShared("lq_stats_sums", f64(), 2 * n) : Value();
  auto slot = [&](Value base, Type type, int64_t part, Value index) {
    return gep(base, type, add(index, c32(part * n)));
  };
  for (int64_t p = 0; p < 2; ++p) {
    store(acc[p], slot(bitsSmem, i32(), p, t));
    if (moments)
      store(acc[2 + p], slot(sumSmem, f64(), p, t));
  }
  barrier();
  for (int64_t half = n / 2; half >= 1; half /= 2) {
    ifThen(ult(t, c32(half)), [&] {
      Value other = add(t, c32(half));
      for (int64_t p = 0; p < 2; ++p) {
        Value mine = slot(bitsSmem, i32(), p, t);
        store(arith::MaxUIOp::create(
                  b, load(i32(), mine),
                  load(i32(), slot(bitsSmem, i32(), p, other))),
              mine);
        if (moments) {
          Value s = slot(sumSmem, f64(), p, t);
          store(arith::AddFOp::create(
                    b, load(f64(), s),
                    load(f64(), slot(sumSmem, f64(), p, other))),
                s);
        }
      }
    });
    barrier();
  }
  ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::eq, t, c32(0)), [&] {
    // Slot p of the reduction is the header's maxFiniteBits (0) or
    // maxAnyBits (1), and the partial's sumSquares (0) or sumMagnitudes (1).
    constexpr int64_t word = sizeof(uint32_t), dword = sizeof(double);
    const int64_t maxima[2] = {
        offsetof(abi::StatsHeader, maxFiniteBits) / word,
        offsetof(abi::StatsHeader, maxAnyBits) / word};
    const int64_t sums[2] = {offsetof(abi::StatsPartial, sumSquares) / dword,
                             offsetof(abi::StatsPartial, sumMagnitudes) / dword};
    for (int64_t p = 0; p < 2; ++p)
      LLVM::AtomicRMWOp::create(b, LLVM::AtomicBinOp::umax,
                                gep(stats, i32(), c32(maxima[p])),
                                load(i32(), slot(bitsSmem, i32(), p, t)),
                                LLVM::AtomicOrdering::monotonic);
    if (moments) {
      // This block's partial, after the header.
      Value partial = gep(
          stats, i8(),
          add(c64(sizeof(abi::StatsHeader)),
              mul(ext64(ctaX()), c64(sizeof(abi::StatsPartial)))));
      for (int64_t p = 0; p < 2; ++p)
        store(load(f64(), slot(sumSmem, f64(), p, t)),
              gep(partial, f64(), c32(sums[p])));
    }
  });
  endKernel();
}

//===----------------------------------------------------------------------===//
// Quantization to packed storage
//===----------------------------------------------------------------------===//

void GpuModuleBuilder::buildQuantize(const OperandSpec &op, bool lhs) {
  QuantArgs args;
  beginKernel(abi::quantKernel(lhs), abi::KernelKind::Quant,
              abi::kQuantThreads, /*blocks=*/8, args);
  Value in = args.in, rows = args.rows, cols = args.cols,
        stride = args.rowStride, out = args.out, outStride = args.outStride,
        inv = args.inv, seed = args.seed, stream = args.stream,
        sample = args.sample, zero = ne(args.zero, c32(0)),
        counters = args.counters;
  bool luq = op.format == Format::Log4;
  NumericsBuilder nb(b);
  Value c0 = mul(add(mul(ext64(ctaX()), c64(abi::kQuantThreads)), ext64(tid())),
                 c64(4));
  Value lastCol = sub(cols, c64(1));
  Value notZero = arith::XOrIOp::create(b, zero,
                                        arith::ConstantIntOp::create(b, 1, 1));
  Value gridY = NVVM::GridDimYOp::create(b, i32());
  // Rows in a grid-stride loop: the grid's y extent is capped, tensors are
  // not. Every thread of a block runs the same rows, so all reach the warp
  // reduction.
  SmallVector<Value> totals = loop(
      ext64(ctaY()), rows, ext64(gridY), ValueRange{c32(0), c32(0)},
      [&](Value r, ValueRange acc) -> SmallVector<Value> {
        Value idx0 = add(mul(r, cols), c0);
        std::array<Value, 4> u;
        if (luq)
          u = groupUniforms(nb, seed, stream, sample, idx0);
        Value overflow = acc[0], maxBits = acc[1];
        Value codes[4];
        for (int64_t i = 0; i < 4; ++i) {
          Value c = add(c0, c64(i));
          // Lanes past the row read its last element and discard it.
          Value x = loadFloat(
              op.dtype, in,
              add(mul(r, stride), arith::MinUIOp::create(b, c, lastCol)));
          Value code = luq ? nb.luqCode(x, inv, u[i])
                           : nb.sawbCode(x, inv, op.format == Format::UInt4);
          Value counted = land(ult(c, cols), notZero);
          codes[i] =
              select(counted, code, arith::ConstantIntOp::create(b, 0, 8));
          if (luq)
            overflow = add(overflow,
                           arith::ExtUIOp::create(
                               b, i32(), land(counted, nb.luqOverflows(x, inv))));
          maxBits = arith::MaxUIOp::create(
              b, maxBits, select(counted, nb.absBits(x), c32(0)));
        }
        Value rowOut = gep(out, i8(), mul(r, outStride));
        Value byteIndex = arith::ShRUIOp::create(b, c0, c64(1));
        for (int64_t half = 0; half < 2; ++half) {
          Value byte = arith::OrIOp::create(
              b, codes[2 * half],
              arith::ShLIOp::create(b, codes[2 * half + 1],
                                    arith::ConstantIntOp::create(b, 4, 8)));
          ifThen(ult(add(c0, c64(2 * half)), cols), [&] {
            store(byte, gep(rowOut, i8(), add(byteIndex, c64(half))));
          });
        }
        return {overflow, maxBits};
      });
  flushCounters(counters, totals[0], totals[1]);
  endKernel();
}

//===----------------------------------------------------------------------===//
// The GEMM
//===----------------------------------------------------------------------===//

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
  /// TMA: the operands' tensor maps (generic pointers) and the stages'
  /// mbarriers.
  Value tmap[2], mbar;
  /// The tiles hold 4-bit codes for mma.sync s4/u4 (int4Path).
  bool int4 = false;
  /// mma.sync: warps along M and N, accumulator tiles per warp.
  int64_t warpsN = 0, mTiles = 0, nTiles = 0;
};

} // namespace

std::vector<abi::GemmTile> lq::gpuGemmTiles(const GemmSpec &spec) {
  int64_t stages = stagesFor(spec);
  int64_t bk = int4Path(spec) ? kBK4 : kBK;
  std::vector<abi::GemmTile> tiles;
  for (int64_t size : {64, 128}) {
    abi::GemmTile t;
    t.bm = t.bn = int(size);
    t.bk = int(bk);
    t.stages = int(stages);
    // sm_80: 2 x 2 warps of 32 x 32 or 2 x 4 warps of 64 x 32; sm_90a: one
    // warpgroup per 64 rows.
    t.threads = spec.target == Target::CudaSm80 ? (size == 64 ? 128 : 256)
                                           : int(size / 64 * 128);
    Side a = makeSide(spec.lhs, true, size, bk),
         bs = makeSide(spec.rhs, false, size, bk);
    int64_t tileBytes =
        spec.target == Target::CudaSm80 ? size * kTileRowBytes : size * kBK;
    t.smemBytes = stages * (a.stageBytes() + bs.stageBytes()) + 2 * tileBytes;
    tiles.push_back(t);
  }
  return tiles;
}

namespace {

void GpuModuleBuilder::copyStage(GemmState &g, const Side &side, Value it,
                                 Value stage) {
  int si = side.isA ? 0 : 1;
  int64_t threads = g.tile.threads;
  Value sample = divu(it, g.kTiles);
  Value kTile = remu(it, g.kTiles);
  // The tile's origin in stored coordinates: 32-bit for the TMA
  // coordinates and the bounds checks, 64-bit for byte offsets (a column
  // index times the element size passes 2^32 from 2^29 f32 columns).
  Value k0 = mul(kTile, c32(g.tile.bk));
  Value k0w = mul(ext64(kTile), c64(g.tile.bk));
  Value row0 = side.kContig ? g.mn0[si] : k0;
  Value col0 = side.kContig ? k0 : g.mn0[si];
  Value row0w = side.kContig ? g.mn0w[si] : k0w;
  Value col0w = side.kContig ? k0w : g.mn0w[si];
  Value base = g.ptr[si];
  bool packed = side.op->dtype == DType::Packed4;
  bool stacked = packed && side.isA && g.spec->samples > 1;
  if (stacked)
    // Packed SMP samples are stacked along the stored rows.
    base = gep(base, i8(),
               mul(mul(ext64(sample), ext64(g.storedRows[si])), g.ld[si]));
  int64_t hb = halfBytes(side.op->dtype);
  Value dstStage = gep(g.smem, i8(),
                       add(c32(g.stageBase[si]),
                           mul(stage, c32(side.stageBytes()))));
  Value rowsValid = g.storedRows[si];

  if (g.copy == Copy::Tma) {
    // One thread issues the bulk copy of the whole box; the tensor map
    // zero-fills what lies outside the operand. Coordinates are {inner,
    // outer}: elements (bytes for packed codes) and stored rows, below
    // 2^31 (the launcher checks the stacked rows).
    Value rows = row0;
    if (stacked)
      rows = add(rows, mul(sample, g.storedRows[si]));
    Value inner = packed ? divu(col0, c32(2)) : col0;
    Value barrier = gep(g.mbar, i64(), stage);
    NVVM::CpAsyncBulkTensorGlobalToSharedClusterOp::create(
        b,
        LLVM::AddrSpaceCastOp::create(
            b, LLVM::LLVMPointerType::get(&ctx, 7), dstStage),
        g.tmap[si], ValueRange{inner, rows}, barrier, ValueRange{}, Value(),
        Value(), NVVM::TMALoadMode::TILE, /*isCTAOnly=*/false,
        NVVM::CTAGroupKindAttr(), Value());
    return;
  }

  if (g.copy == Copy::Vec) {
    // 16-byte chunks; the bytes past the stored row are zero-filled.
    int64_t perRow = side.rowBytes() / 16;
    int64_t chunks = side.sr * perRow;
    Value colsBytes = divu(add(mul(ext64(g.storedCols[si]), c64(hb)), c64(1)),
                           c64(2));
    Value ldBytes =
        packed ? g.ld[si] : mul(g.ld[si], c64(std::max<int64_t>(1, hb / 2)));
    Value col0Bytes = divu(mul(col0w, c64(hb)), c64(2));
    for (int64_t j = 0; j < chunks; j += threads) {
      Value chunk = add(g.t, c32(j));
      auto body = [&] {
        Value r = divu(chunk, c32(perRow));
        Value cb = mul(ext64(remu(chunk, c32(perRow))), c64(16));
        Value gcb = add(col0Bytes, cb);
        Value left = arith::MaxSIOp::create(
            b, arith::MinSIOp::create(b, sub(colsBytes, gcb), c64(16)), c64(0));
        Value bytes = arith::TruncIOp::create(
            b, i32(), select(ult(add(row0, r), rowsValid), left, c64(0)));
        Value src =
            gep(base, i8(),
                select(ne(bytes, c32(0)),
                       add(mul(add(row0w, ext64(r)), ldBytes), gcb), c64(0)));
        Value dst = gep(dstStage, i8(),
                        add(mul(r, c32(side.rowBytes())),
                            arith::TruncIOp::create(b, i32(), cb)));
        NVVM::CpAsyncOp::create(b, dst, src, 16,
                                NVVM::LoadCacheModifierKind::CG, bytes);
      };
      if (j + threads > chunks)
        ifThen(ult(chunk, c32(chunks)), body);
      else
        body();
    }
    return;
  }

  // Unaligned layouts: one element (one byte of packed codes) per load.
  Type unit = hb == 8 ? f32() : hb == 4 ? i16() : i8();
  int64_t perRow = packed ? side.rowBytes() : side.sc;
  int64_t units = side.sr * perRow;
  Value colUnits = packed ? divu(add(g.storedCols[si], c32(1)), c32(2))
                          : g.storedCols[si];
  Value col0Units = packed ? divu(col0, c32(2)) : col0;
  Value col0UnitsW = packed ? divu(col0w, c64(2)) : col0w;
  // A loop, not unrolled: each load is waited for before its store, and
  // an unrolled run of them would hold every loaded value in registers.
  loop(g.t, c32(units), c32(threads), ValueRange{},
       [&](Value u, ValueRange) -> SmallVector<Value> {
    Value r = divu(u, c32(perRow));
    Value cu = remu(u, c32(perRow));
    Value valid = land(ult(add(row0, r), rowsValid),
                       ult(add(col0Units, cu), colUnits));
    Value offset = select(valid,
                          add(mul(add(row0w, ext64(r)), g.ld[si]),
                              add(col0UnitsW, ext64(cu))),
                          c64(0));
    Value v = load(unit, gep(base, unit, offset));
    Value zeroV = unit.isF32()
                      ? Value(arith::ConstantFloatOp::create(
                            b, b.getF32Type(), APFloat(0.0f)))
                      : Value(arith::ConstantIntOp::create(
                            b, 0, unit.getIntOrFloatBitWidth()));
    store(select(valid, v, zeroV), gep(dstStage, unit, u));
    return {};
  });
}

Value GpuModuleBuilder::tileAddress(GemmState &g, Value mn, Value k) {
  if (chip == Target::CudaSm80)
    return add(mul(mn, c32(kTileRowBytes)), k);
  // wgmma without swizzle: 8 x 16-byte core matrices, K groups adjacent.
  Value core = add(mul(divu(mn, c32(8)), c32(kBK / 16)), divu(k, c32(16)));
  return add(add(mul(core, c32(kCoreBytes)), mul(remu(mn, c32(8)), c32(16))),
             remu(k, c32(16)));
}

SmallVector<Value> GpuModuleBuilder::convertStage(GemmState &g,
                                                  const Side &side,
                                                  Value stage, Value sample,
                                                  Value k0, ValueRange stats) {
  int si = side.isA ? 0 : 1;
  int64_t threads = g.tile.threads;
  int64_t groupsPerRow = side.sc / 4;
  int64_t groups = side.sr * groupsPerRow;
  Value row0 = side.kContig ? g.mn0[si] : k0;
  Value col0 = side.kContig ? k0 : g.mn0[si];
  Value stageBase = gep(g.smem, i8(),
                        add(c32(g.stageBase[si]),
                            mul(stage, c32(side.stageBytes()))));
  Value tile = gep(g.smem, i8(), c32(g.tileBase[si]));
  // The in-kernel statistics of hindsight mode come from the first column
  // tile only, so that each element is counted once.
  bool counting = side.isA && g.spec->hindsight;
  Value countHere;
  if (counting)
    // Whether an element overflows does not depend on the sample: count
    // the first one (the launcher scales the count by the samples).
    countHere = land(arith::CmpIOp::create(b, arith::CmpIPredicate::eq, ctaX(),
                                           c32(0)),
                     arith::CmpIOp::create(b, arith::CmpIPredicate::eq, sample,
                                           c32(0)));
  NumericsBuilder nb(b);
  SmallVector<Value> st(stats);
  Value zero8 = arith::ConstantIntOp::create(b, 0, 8);

  for (int64_t j = 0; j < groups; j += threads) {
    Value grp = add(g.t, c32(j));
    auto body = [&]() -> SmallVector<Value> {
      Value r = divu(grp, c32(groupsPerRow));
      Value c4 = mul(remu(grp, c32(groupsPerRow)), c32(4));
      Value gr = add(row0, r), gc = add(col0, c4);
      Value rowValid = ult(gr, g.storedRows[si]);
      std::array<Value, 4> u;
      if (side.isFloat() && side.luq())
        u = groupUniforms(nb, g.seed, g.stream, sample,
                          add(mul(ext64(gr), ext64(g.storedCols[si])),
                              ext64(gc)));
      Value vals[4];
      SmallVector<Value> next(st);
      for (int64_t i = 0; i < 4; ++i) {
        Value valid = land(rowValid, ult(add(gc, c32(i)), g.storedCols[si]));
        Value elem = add(mul(r, c32(side.sc)), add(c4, c32(i)));
        Value code;
        if (side.op->dtype == DType::F32 ||
            side.op->dtype == DType::BF16) {
          Value x = side.op->dtype == DType::F32
                        ? load(f32(), gep(stageBase, f32(), elem))
                        : widenBf16(load(i16(), gep(stageBase, i16(), elem)));
          if (side.luq()) {
            code = nb.luqCode(x, g.inv[si], u[i]);
            if (counting) {
              Value counted = land(land(countHere, valid),
                                   arith::XOrIOp::create(
                                       b, g.zero[si],
                                       arith::ConstantIntOp::create(b, 1, 1)));
              next[0] = add(next[0],
                            arith::ExtUIOp::create(
                                b, i32(),
                                land(counted, nb.luqOverflows(x, g.inv[si]))));
              next[1] = arith::MaxUIOp::create(
                  b, next[1], select(counted, nb.absBits(x), c32(0)));
            }
          } else {
            code = nb.sawbCode(x, g.inv[si], side.op->format == Format::UInt4);
          }
        } else {
          Value byte = load(i8(), gep(stageBase, i8(),
                                      arith::ShRUIOp::create(b, elem, c32(1))));
          code = i % 2 ? Value(arith::ShRUIOp::create(
                             b, byte, arith::ConstantIntOp::create(b, 4, 8)))
                       : Value(land(byte, arith::ConstantIntOp::create(b, 15, 8)));
        }
        // int4 tiles keep the code nibble itself (two's complement for
        // sint4): it is the s4/u4 operand.
        Value v = g.int4 ? land(code, arith::ConstantIntOp::create(b, 15, 8))
                         : arith::TruncIOp::create(
                               b, i8(), nb.decode(code, side.op->format))
                               .getResult();
        Value keep = valid;
        if (side.isFloat())
          keep = land(keep, arith::XOrIOp::create(
                                b, g.zero[si],
                                arith::ConstantIntOp::create(b, 1, 1)));
        vals[i] = select(keep, v, zero8);
      }
      if (g.int4) {
        // Four consecutive k: two whole bytes, low nibble first.
        Value half = c32(0);
        for (int64_t i = 0; i < 4; ++i)
          half = arith::OrIOp::create(
              b, half,
              arith::ShLIOp::create(b, arith::ExtUIOp::create(b, i32(), vals[i]),
                                    c32(4 * i)));
        store(arith::TruncIOp::create(b, i16(), half),
              gep(tile, i8(), add(mul(r, c32(kTileRowBytes)),
                                  divu(c4, c32(2)))));
      } else if (side.kContig) {
        // Four consecutive k of one row: one 32-bit store.
        Value word = c32(0);
        for (int64_t i = 0; i < 4; ++i)
          word = arith::OrIOp::create(
              b, word,
              arith::ShLIOp::create(b, arith::ExtUIOp::create(b, i32(), vals[i]),
                                    c32(8 * i)));
        store(word, gep(tile, i8(), tileAddress(g, r, c4)));
      } else {
        for (int64_t i = 0; i < 4; ++i)
          store(vals[i], gep(tile, i8(), tileAddress(g, add(c4, c32(i)), r)));
      }
      return next;
    };
    if (j + threads > groups) {
      auto op = scf::IfOp::create(b, st.empty() ? TypeRange{} : TypeRange(ValueRange(st)),
                                  ult(grp, c32(groups)), /*withElse=*/true);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(&op.getThenRegion().front());
        scf::YieldOp::create(b, body());
        b.setInsertionPointToStart(&op.getElseRegion().front());
        scf::YieldOp::create(b, st);
      }
      st.assign(op.getResults().begin(), op.getResults().end());
    } else {
      st = body();
    }
  }
  return st;
}

SmallVector<Value> GpuModuleBuilder::mmaStep(GemmState &g, ValueRange acc) {
  Value tileA = gep(g.smem, i8(), c32(g.tileBase[0]));
  Value tileB = gep(g.smem, i8(), c32(g.tileBase[1]));
  SmallVector<Value> next;
  if (chip == Target::CudaSm80) {
    Value grp = arith::ShRUIOp::create(b, g.lane, c32(2));
    Value tig = land(g.lane, c32(3));
    Value wm = divu(g.warp, c32(g.warpsN)), wn = remu(g.warp, c32(g.warpsN));
    int64_t wtm = g.mTiles * 16, wtn = g.nTiles * 8;
    auto lds = [&](Value tile, Value row, int64_t k) {
      return load(i32(), gep(tile, i8(),
                             add(mul(row, c32(kTileRowBytes)),
                                 add(mul(tig, c32(4)), c32(k)))));
    };
    SmallVector<std::array<Value, 4>> a(g.mTiles);
    SmallVector<std::array<Value, 2>> bf(g.nTiles);
    for (int64_t mt = 0; mt < g.mTiles; ++mt) {
      Value row = add(add(mul(wm, c32(wtm)), c32(mt * 16)), grp);
      Value row8 = add(row, c32(8));
      a[mt] = {lds(tileA, row, 0), lds(tileA, row8, 0), lds(tileA, row, 16),
               lds(tileA, row8, 16)};
    }
    for (int64_t nt = 0; nt < g.nTiles; ++nt) {
      Value row = add(add(mul(wn, c32(wtn)), c32(nt * 8)), grp);
      bf[nt] = {lds(tileB, row, 0), lds(tileB, row, 16)};
    }
    Type accType = LLVM::LLVMStructType::getLiteral(
        &ctx, {i32(), i32(), i32(), i32()});
    NVVM::MMATypes types[2] = {NVVM::MMATypes::s8, NVVM::MMATypes::s8};
    if (g.int4)
      for (int s = 0; s < 2; ++s)
        types[s] = g.sides[s].op->format == Format::UInt4 ? NVVM::MMATypes::u4
                                                          : NVVM::MMATypes::s4;
    for (int64_t mt = 0; mt < g.mTiles; ++mt)
      for (int64_t nt = 0; nt < g.nTiles; ++nt) {
        Value c = acc[mt * g.nTiles + nt];
        SmallVector<Value> cs;
        for (int64_t i = 0; i < 4; ++i)
          cs.push_back(LLVM::ExtractValueOp::create(b, c, i));
        next.push_back(NVVM::MmaOp::create(
            b, accType, ValueRange(a[mt]), ValueRange(bf[nt]), cs,
            ArrayRef<int64_t>{16, 8, g.int4 ? 64 : 32}, std::nullopt,
            NVVM::MMAIntOverflow::satfinite,
            std::array<NVVM::MMATypes, 2>{types[0], types[1]},
            std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                           NVVM::MMALayout::col}));
      }
    return next;
  }

  // sm_90a: each warpgroup multiplies its 64 rows of A by all of B.
  auto descriptor = [&](Value tile, Value byteOffset) {
    Value addr = LLVM::PtrToIntOp::create(b, i64(),
                                          gep(tile, i8(), byteOffset));
    // Matrix descriptor, no swizzle: start address, leading byte offset (K
    // direction: adjacent core matrices) and stride byte offset (M/N
    // direction: the next 8 rows), each in 16-byte units.
    Value start = arith::ShRUIOp::create(b, land(addr, c64(0x3FFFF)), c64(4));
    int64_t lbo = kCoreBytes >> 4, sbo = (kBK / 16) * kCoreBytes >> 4;
    return arith::OrIOp::create(b, start, c64((lbo << 16) | (sbo << 32)));
  };
  Value wg = divu(g.t, c32(128));
  Value descA = descriptor(tileA, mul(wg, c32(64 * kBK)));
  Value descB = descriptor(tileB, c32(0));
  NVVM::WgmmaFenceAlignedOp::create(b);
  Value d = NVVM::WgmmaMmaAsyncOp::create(
      b, acc[0].getType(), acc[0], descA, descB,
      NVVM::MMAShapeAttr::get(&ctx, 64, g.tile.bn, kBK),
      NVVM::WGMMATypes::s8, NVVM::WGMMATypes::s8, NVVM::WGMMATypes::s32,
      NVVM::WGMMAScaleOut::one, NVVM::WGMMAScaleIn::one,
      NVVM::WGMMAScaleIn::one, NVVM::MMALayout::row, NVVM::MMALayout::col,
      NVVM::MMAIntOverflowAttr());
  NVVM::WgmmaGroupSyncAlignedOp::create(b);
  NVVM::WgmmaWaitGroupSyncOp::create(b, b.getI64IntegerAttr(0));
  next.push_back(d);
  return next;
}

void GpuModuleBuilder::buildGemm(const GemmSpec &spec,
                                 const abi::GemmTile &tile, Copy copy,
                                 const std::string &name) {
  GemmArgs args;
  beginKernel(name,
              copy == Copy::Tma ? abi::KernelKind::GemmTma
                                : abi::KernelKind::Gemm,
              tile.threads, /*blocks=*/1, args);
  GemmState g;
  g.spec = &spec;
  g.tile = tile;
  g.copy = copy;
  g.int4 = int4Path(spec);
  g.sides[0] = makeSide(spec.lhs, true, tile.bm, tile.bk);
  g.sides[1] = makeSide(spec.rhs, false, tile.bn, tile.bk);
  g.stages = tile.stages;
  int64_t tileBytes[2];
  for (int s = 0; s < 2; ++s)
    tileBytes[s] = (s ? tile.bn : tile.bm) *
                   (chip == Target::CudaSm80 ? kTileRowBytes : kBK);
  g.stageBase[0] = 0;
  g.stageBase[1] = g.stages * g.sides[0].stageBytes();
  g.tileBase[0] = g.stageBase[1] + g.stages * g.sides[1].stageBytes();
  g.tileBase[1] = g.tileBase[0] + tileBytes[0];

  g.ptr[0] = args.a;
  g.ld[0] = args.lda;
  g.ptr[1] = args.b;
  g.ld[1] = args.ldb;
  Value C = args.c, ldc = args.ldc, biasPtr = args.bias;
  g.M = args.m;
  g.N = args.n;
  g.K = args.k;
  g.inv[0] = args.invA;
  g.inv[1] = args.invB;
  Value scale = args.scale;
  g.zero[0] = ne(land(args.zero, c32(1)), c32(0));
  g.zero[1] = ne(land(args.zero, c32(2)), c32(0));
  g.seed = args.seed;
  g.stream = args.stream;
  Value counters = args.counters;

  g.smem = smem();
  g.t = tid();
  Value leader = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, g.t,
                                       c32(0));
  if (copy == Copy::Tma) {
    g.tmap[0] = args.tmapA;
    g.tmap[1] = args.tmapB;
    g.mbar = staticShared("lq_mbar", i64(), kMaxStages);
    ifThen(leader, [&] {
      for (int64_t s = 0; s < g.stages; ++s)
        NVVM::MBarrierInitOp::create(b, gep(g.mbar, i64(), c32(s)), c32(1),
                                     Value());
      NVVM::FenceMbarrierInitOp::create(b);
    });
    barrier();
  }
  g.warp = arith::ShRUIOp::create(b, g.t, c32(5));
  g.lane = land(g.t, c32(31));
  if (chip == Target::CudaSm80) {
    g.warpsN = tile.bn == 64 ? 2 : 4;
    int64_t warpsM = tile.threads / 32 / g.warpsN;
    g.mTiles = tile.bm / warpsM / 16;
    g.nTiles = tile.bn / g.warpsN / 8;
  }
  Value m0 = mul(ctaY(), c32(tile.bm)), n0 = mul(ctaX(), c32(tile.bn));
  g.mn0[0] = m0;
  g.mn0[1] = n0;
  g.mn0w[0] = mul(ext64(ctaY()), c64(tile.bm));
  g.mn0w[1] = mul(ext64(ctaX()), c64(tile.bn));
  g.storedRows[0] = g.sides[0].kContig ? g.M : g.K;
  g.storedCols[0] = g.sides[0].kContig ? g.K : g.M;
  g.storedRows[1] = g.sides[1].kContig ? g.N : g.K;
  g.storedCols[1] = g.sides[1].kContig ? g.K : g.N;
  g.kTiles = divu(add(g.K, c32(tile.bk - 1)), c32(tile.bk));
  Value total = mul(g.kTiles, c32(spec.samples));

  // Accumulators: one 4-register struct per 16 x 8 block (mma.sync), or
  // the whole wgmma fragment.
  SmallVector<Value> acc;
  if (chip == Target::CudaSm80) {
    Type type = LLVM::LLVMStructType::getLiteral(
        &ctx, {i32(), i32(), i32(), i32()});
    Value zeroAcc = LLVM::ZeroOp::create(b, type);
    acc.assign(g.mTiles * g.nTiles, zeroAcc);
  } else {
    SmallVector<Type> fields(tile.bn / 2, i32());
    acc.push_back(LLVM::ZeroOp::create(
        b, LLVM::LLVMStructType::getLiteral(&ctx, fields)));
  }
  bool counting = spec.hindsight;
  SmallVector<Value> init(acc);
  if (counting)
    init.append({c32(0), c32(0)});

  bool vec = copy == Copy::Vec;
  int64_t stageTx = g.sides[0].stageBytes() + g.sides[1].stageBytes();
  auto issue = [&](Value it) {
    Value stage = remu(it, c32(g.stages));
    if (copy != Copy::Tma) {
      copyStage(g, g.sides[0], it, stage);
      copyStage(g, g.sides[1], it, stage);
      return;
    }
    ifThen(leader, [&] {
      // The stage was last read by ordinary loads (the conversion), before
      // the barrier that precedes this; order them before the async writes.
      NVVM::FenceProxyOp::create(
          b, NVVM::ProxyKindAttr::get(&ctx, NVVM::ProxyKind::async_shared),
          NVVM::SharedSpaceAttr::get(&ctx, NVVM::SharedSpace::shared_cta));
      NVVM::MBarrierArriveExpectTxOp::create(
          b, Type(), gep(g.mbar, i64(), stage), c32(stageTx),
          NVVM::MemScopeKind::CTA, /*relaxed=*/false, Value());
      copyStage(g, g.sides[0], it, stage);
      copyStage(g, g.sides[1], it, stage);
    });
  };
  for (int64_t p = 0; p + 1 < g.stages; ++p) {
    ifThen(slt(c32(p), total), [&] { issue(c32(p)); });
    if (vec)
      NVVM::CpAsyncCommitGroupOp::create(b);
  }
  SmallVector<Value> result = loop(
      c32(0), total, c32(1), init, [&](Value it, ValueRange carried) {
        Value nextIt = add(it, c32(g.stages - 1));
        ifThen(slt(nextIt, total), [&] { issue(nextIt); });
        Value stage = remu(it, c32(g.stages));
        if (vec) {
          NVVM::CpAsyncCommitGroupOp::create(b);
          NVVM::CpAsyncWaitGroupOp::create(b, g.stages - 1);
        }
        if (copy == Copy::Tma) {
          // Stage `stage` completes its (it / stages)-th phase when both
          // boxes have landed.
          Value phase = land(divu(it, c32(g.stages)), c32(1));
          NVVM::MBarrierTryWaitParityOp::create(
              b, gep(g.mbar, i64(), stage), phase, c32(1000000));
        }
        barrier();
        Value sample = divu(it, g.kTiles);
        Value k0 = mul(remu(it, g.kTiles), c32(tile.bk));
        SmallVector<Value> stats(carried.drop_front(acc.size()));
        stats = convertStage(g, g.sides[0], stage, sample, k0, stats);
        convertStage(g, g.sides[1], stage, sample, k0, {});
        if (chip == Target::CudaSm90a)
          // The tensor cores read shared memory through the async proxy.
          NVVM::FenceProxyOp::create(
              b, NVVM::ProxyKindAttr::get(&ctx, NVVM::ProxyKind::async_shared),
              NVVM::SharedSpaceAttr::get(&ctx, NVVM::SharedSpace::shared_cta));
        barrier();
        SmallVector<Value> next =
            mmaStep(g, carried.take_front(acc.size()));
        next.append(stats);
        return next;
      });
  if (vec)
    NVVM::CpAsyncWaitGroupOp::create(b, 0);
  if (counting)
    flushCounters(counters, result[acc.size()], result[acc.size() + 1]);

  // Epilogue.
  Value grp = arith::ShRUIOp::create(b, g.lane, c32(2));
  Value tig = land(g.lane, c32(3));
  struct Reg {
    Value block;
    int64_t field;
    Value row, col;
  };
  SmallVector<Reg> regs;
  auto addBlock = [&](Value block, Value row0, Value col0, int64_t first) {
    for (int64_t i = 0; i < 4; ++i)
      regs.push_back({block, first + i,
                      add(add(row0, grp), c32(i >= 2 ? 8 : 0)),
                      add(add(col0, mul(tig, c32(2))), c32(i & 1))});
  };
  if (chip == Target::CudaSm80) {
    Value wm = divu(g.warp, c32(g.warpsN)), wn = remu(g.warp, c32(g.warpsN));
    for (int64_t mt = 0; mt < g.mTiles; ++mt)
      for (int64_t nt = 0; nt < g.nTiles; ++nt)
        addBlock(result[mt * g.nTiles + nt],
                 add(mul(wm, c32(g.mTiles * 16)), c32(mt * 16)),
                 add(mul(wn, c32(g.nTiles * 8)), c32(nt * 8)), 0);
  } else {
    // Warp w of the CTA holds rows 16 w .. 16 w + 15 of the wgmma result.
    Value row0 = mul(g.warp, c32(16));
    for (int64_t j = 0; j < tile.bn / 8; ++j)
      addBlock(result[0], row0, c32(j * 8), j * 4);
  }
  NumericsBuilder nb(b);
  Type outType = spec.bf16Output() ? i16() : f32();
  for (const Reg &reg : regs) {
    Value m = add(m0, reg.row), n = add(n0, reg.col);
    ifThen(land(ult(m, g.M), ult(n, g.N)), [&] {
      Value mw = add(g.mn0w[0], ext64(reg.row)),
            nw = add(g.mn0w[1], ext64(reg.col));
      Value accValue = LLVM::ExtractValueOp::create(b, reg.block, reg.field);
      Value bias = spec.bias ? load(f32(), gep(biasPtr, f32(), nw)) : Value();
      Value v = nb.epilogue(accValue, scale, bias, spec.relu,
                               spec.bf16Output());
      store(v, gep(C, outType, add(mul(mw, ldc), nw)));
    });
  }
  endKernel();
}

void GpuModuleBuilder::buildFill(const GemmSpec &spec) {
  FillArgs args;
  beginKernel(abi::kFillKernel, abi::KernelKind::Fill, abi::kFillThreads,
              /*blocks=*/8, args);
  Value C = args.c, ldc = args.ldc, biasPtr = args.bias, M = args.m,
        N = args.n;
  Value t = tid();
  Value m = add(mul(ctaY(), c32(16)), divu(t, c32(16)));
  Value n = add(mul(ctaX(), c32(16)), remu(t, c32(16)));
  Value mw = add(mul(ext64(ctaY()), c64(16)), ext64(divu(t, c32(16))));
  Value nw = add(mul(ext64(ctaX()), c64(16)), ext64(remu(t, c32(16))));
  NumericsBuilder nb(b);
  Type outType = spec.bf16Output() ? i16() : f32();
  ifThen(land(ult(m, M), ult(n, N)), [&] {
    Value bias = spec.bias ? load(f32(), gep(biasPtr, f32(), nw)) : Value();
    // All-zero codes: the exact sum is 0 and the scale 0.
    Value v = nb.epilogue(c32(0),
                          arith::ConstantFloatOp::create(b, b.getF32Type(),
                                                         APFloat(0.0f)),
                          bias, spec.relu, spec.bf16Output());
    store(v, gep(C, outType, add(mul(mw, ldc), nw)));
  });
  endKernel();
}

} // namespace

OwningOpRef<ModuleOp> lq::buildGpuGemmKernels(MLIRContext &ctx,
                                              const GemmSpec &spec,
                                              const KernelFilter &only) {
  auto wanted = [&](StringRef name) { return !only || only(name); };
  GpuModuleBuilder builder(ctx, spec.target);
  const OperandSpec *ops[2] = {&spec.lhs, &spec.rhs};
  for (int s = 0; s < 2; ++s) {
    if (ops[s]->dtype == DType::Packed4)
      continue;
    if (wanted(abi::statsKernel(s == 0)))
      builder.buildStats(*ops[s], s == 0);
    if (wanted(abi::quantKernel(s == 0)))
      builder.buildQuantize(*ops[s], s == 0);
  }
  // A float LUQ left operand may also be quantized once to packed codes
  // (lq_quant_lhs) and read by a packed variant: Philox per element once
  // instead of once per column tile.
  bool packedVariant = spec.lhs.format == Format::Log4 &&
                       spec.lhs.dtype != DType::Packed4;
  GemmSpec packedLhs = spec;
  packedLhs.lhs.dtype = DType::Packed4;
  packedLhs.hindsight = false;
  using Copy = GpuModuleBuilder::Copy;
  bool tma = spec.target == Target::CudaSm90a;
  auto gemm = [&](const GemmSpec &s, const abi::GemmTile &tile, Copy copy,
                  const std::string &name) {
    if (wanted(name))
      builder.buildGemm(s, tile, copy, name);
  };
  for (const abi::GemmTile &tile : gpuGemmTiles(spec)) {
    gemm(spec, tile, Copy::Any, abi::gemmKernel(tile, false));
    gemm(spec, tile, Copy::Vec, abi::gemmKernel(tile, true));
    if (tma)
      gemm(spec, tile, Copy::Tma, abi::gemmTmaKernel(tile));
    // Its smaller stages fit the tile's shared memory.
    if (packedVariant) {
      gemm(packedLhs, tile, Copy::Vec,
           abi::gemmKernel(tile, true, /*packedLhs=*/true));
      if (tma)
        gemm(packedLhs, tile, Copy::Tma,
             abi::gemmTmaKernel(tile, /*packedLhs=*/true));
    }
  }
  if (spec.hindsight && wanted(abi::kFillKernel))
    builder.buildFill(spec);
  return builder.take();
}

OwningOpRef<ModuleOp> lq::buildGpuQuantizeKernels(MLIRContext &ctx,
                                                  const OperandSpec &op,
                                                  Target chip,
                                                  const KernelFilter &only) {
  GpuModuleBuilder builder(ctx, chip);
  if (!only || only(abi::statsKernel(true)))
    builder.buildStats(op, true);
  if (!only || only(abi::quantKernel(true)))
    builder.buildQuantize(op, true);
  return builder.take();
}
