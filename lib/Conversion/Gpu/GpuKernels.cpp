//===- GpuKernels.cpp - generated CUDA kernels of a quantized GEMM --------===//
//
// The module of a GEMM (or of a quantizer) and its memory-bound kernels:
// statistics, quantization to packed codes, the epilogue fill. The GEMM is
// in GpuGemm.cpp and the per-chip tensor-core files.
//
//===----------------------------------------------------------------------===//

#include "GpuModuleBuilder.h"

using namespace mlir;
using namespace lq;
using namespace lq::cudagen;

const char *lq::gpuPtxFeatures(Target chip) {
  // PTX 8.0 is the first ISA with wgmma (sm_90a); one ISA for both keeps
  // the cache key and the toolchain requirement simple.
  (void)chip;
  return "+ptx80";
}

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

namespace lq::cudagen {

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

void GpuModuleBuilder::buildQuantize(const OperandSpec &op, bool lhs,
                                     CodeLayout layout) {
  QuantArgs args;
  beginKernel(layout == CodeLayout::Packed ? abi::quantKernel(lhs)
                                           : abi::quant8Kernel(lhs),
              abi::KernelKind::Quant, abi::kQuantThreads, /*blocks=*/8, args);
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
        storeCodes(op, layout, codes, out, outStride, r, c0, cols);
        return {overflow, maxBits};
      });
  flushCounters(counters, totals[0], totals[1]);
  endKernel();
}

void GpuModuleBuilder::storeCodes(const OperandSpec &op, CodeLayout layout,
                                  ArrayRef<Value> codes, Value out,
                                  Value outStride, Value r, Value c0,
                                  Value cols) {
  if (layout == CodeLayout::Packed) {
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
    return;
  }
  NumericsBuilder nb(b);
  Value values[4];
  for (int64_t i = 0; i < 4; ++i)
    values[i] = arith::TruncIOp::create(b, i8(), nb.decode(codes[i], op.format));
  if (layout == CodeLayout::Int8) {
    // One 32-bit store from a group that starts inside the row: the pitch
    // is a multiple of 16 bytes at least the row rounded up, so the bytes
    // past the row (zero codes) are padding. Groups past the row (the grid
    // covers whole blocks of columns) store nothing: they would reach the
    // next row.
    Value word = c32(0);
    for (int64_t i = 0; i < 4; ++i)
      word = arith::OrIOp::create(
          b, word,
          arith::ShLIOp::create(b, arith::ExtUIOp::create(b, i32(), values[i]),
                                c32(8 * i)));
    ifThen(ult(c0, cols),
           [&] { store(word, gep(out, i8(), add(mul(r, outStride), c0))); });
    return;
  }
  // Transposed: element (r, c) as stored is code row c, column r.
  for (int64_t i = 0; i < 4; ++i) {
    Value c = add(c0, c64(i));
    ifThen(ult(c, cols),
           [&] { store(values[i], gep(out, i8(), add(mul(c, outStride), r))); });
  }
}

//===----------------------------------------------------------------------===//
// The epilogue fill of in-hindsight mode
//===----------------------------------------------------------------------===//

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

} // namespace lq::cudagen

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
  if (abi::hasInt8Gemm(spec)) {
    // The quantize-once placement for the tensor cores: both operands to
    // int8 codes, K-contiguous, then the persistent int8 GEMM.
    using Layout = GpuModuleBuilder::CodeLayout;
    for (int s = 0; s < 2; ++s) {
      bool kContig = s == 0 ? !ops[s]->transposed : ops[s]->transposed;
      if (wanted(abi::quant8Kernel(s == 0)))
        builder.buildQuantize(*ops[s], s == 0,
                              kContig ? Layout::Int8 : Layout::Int8Transposed);
    }
    for (const abi::WsTile &tile : abi::wsTiles())
      if (wanted(abi::gemmWsKernel(tile)))
        builder.buildGemmWs(spec, tile);
  }
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
