//===- GemmSm90aWs.cpp - the persistent warp-specialized int8 GEMM --------===//
//
// lq_gemm_ws_<bm>x<bn> multiplies int8 codes that lq_quant8_<side> wrote
// K-contiguous (GpuAbi.h). Nothing is converted in the kernel, so the
// tensor cores never wait for warps doing integer work:
//
//   warpgroup 0   gives up registers (setmaxnreg 40); one thread walks the
//                 CTA's output tiles and, per k-step, waits until ring stage
//                 s is empty, then loads the A and B boxes into it with TMA
//                 (128-byte swizzle), completing on the stage's full barrier
//   warpgroups 1, 2  take the registers (setmaxnreg 232); each owns 64 rows
//                 of the tile: per k-step it waits for stage s to be full,
//                 issues four wgmma m64n<bn>k32 s8 from swizzled descriptors,
//                 commits them and waits until only this group is in flight
//                 (wait_group 1): the previous step's stage is then read and
//                 is released to the producer (the empty barrier counts the
//                 256 consumer threads). After a tile's last step the
//                 epilogue (scale, bias, ReLU, output type) stores from
//                 registers while the producer already fills the ring with
//                 the next tile's steps.
//
// The grid is persistent: CTA i takes tiles i, i + grid, ... in an order
// that walks kWsGroupRows row tiles per column tile, so the B tiles a group
// shares and its A tiles stay in L2. SMP samples of A (stacked along the
// A codes' rows) are more k-steps of the same sums: exact int32, as the
// contract requires.
//
//===----------------------------------------------------------------------===//

#include "GpuModuleBuilder.h"

#include "lq/Conversion/Gpu/WgmmaDescriptor.h"

using namespace mlir;
using namespace lq;

namespace lq::cudagen {

namespace {

/// Registers of the producer warpgroup and of the consumers after
/// setmaxnreg: 128 x 40 + 256 x 232 = 64 K, the multiprocessor's file.
constexpr int64_t kProducerRegisters = 40;
constexpr int64_t kConsumerRegisters = 232;
constexpr int64_t kConsumerThreads = 256;
/// Bytes of one swizzle row (kWsBK codes) and of a 128-byte swizzle atom.
constexpr int64_t kSwizzleRow = abi::kWsBK;
constexpr int64_t kAtomBytes = 8 * kSwizzleRow;
/// K per wgmma: 32 int8 codes, 32 bytes of a swizzle row.
constexpr int64_t kWgmmaK = 32;

/// The descriptor of a K-major int8 tile stored as TMA writes it with
/// 128-byte swizzle: rows of kWsBK bytes, 8-row atoms of 1024 bytes one
/// after the other (the stride byte offset); the leading byte offset is
/// not used by swizzled K-major layouts (encoded as 1). The k-th 32-byte
/// slice of the swizzle row starts kWgmmaK * k bytes further.
constexpr WgmmaDescriptor kSwizzledTile = {
    /*startAddress=*/0, /*leadingByteOffset=*/16,
    /*strideByteOffset=*/kAtomBytes, /*baseOffset=*/0, WgmmaSwizzle::B128};
static_assert(kSwizzledTile.valid(), "the tile's offsets fit the fields");

} // namespace

void GpuModuleBuilder::buildGemmWs(const GemmSpec &spec,
                                   const abi::WsTile &tile) {
  GemmWsArgs args;
  beginKernel(abi::gemmWsKernel(tile), abi::KernelKind::GemmWs,
              abi::kWsThreads, /*blocks=*/1, args);
  // setmaxnreg needs the block size bounded (.maxntid) and one resident
  // block: ptxas then caps the entry at 65536 / 384 registers.
  b.getInsertionBlock()->getParentOp()->setAttr(
      NVVM::NVVMDialect::getMaxntidAttrName(),
      b.getDenseI32ArrayAttr({abi::kWsThreads, 1, 1}));

  int64_t stageBytes = int64_t(tile.bm + tile.bn) * kSwizzleRow;
  int64_t bBytes = int64_t(tile.bn) * kSwizzleRow;
  // The dynamic shared memory's base rounded up to a swizzle atom.
  Value raw = smem();
  Value rawAddr = LLVM::PtrToIntOp::create(b, i32(), raw);
  Value pad = land(sub(c32(abi::kWsAlign), land(rawAddr, c32(abi::kWsAlign - 1))),
                   c32(abi::kWsAlign - 1));
  Value ring = gep(raw, i8(), pad);
  Value full = staticShared("lq_ws_full", i64(), tile.stages);
  Value empty = staticShared("lq_ws_empty", i64(), tile.stages);
  Value t = tid();
  ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::eq, t, c32(0)), [&] {
    for (int64_t s = 0; s < tile.stages; ++s) {
      NVVM::MBarrierInitOp::create(b, gep(full, i64(), c32(s)), c32(1),
                                   Value());
      NVVM::MBarrierInitOp::create(b, gep(empty, i64(), c32(s)),
                                   c32(kConsumerThreads), Value());
    }
    NVVM::FenceMbarrierInitOp::create(b);
  });
  barrier();

  WsLoop w;
  w.tile = tile;
  w.ring = ring;
  w.full = full;
  w.empty = empty;
  w.stageBytes = stageBytes;
  w.aOffset = 0;
  w.bOffset = stageBytes - bBytes;
  w.M = args.m;
  w.N = args.n;
  w.kTiles = divu(add(args.k, c32(abi::kWsBK - 1)), c32(abi::kWsBK));
  w.iters = mul(w.kTiles, args.samples);
  w.tilesM = divu(add(args.m, c32(tile.bm - 1)), c32(tile.bm));
  w.tilesN = divu(add(args.n, c32(tile.bn - 1)), c32(tile.bn));
  w.tiles = mul(w.tilesM, w.tilesN);

  Value warpgroup = divu(t, c32(128));
  auto roles = scf::IfOp::create(
      b, arith::CmpIOp::create(b, arith::CmpIPredicate::eq, warpgroup, c32(0)),
      /*withElseRegion=*/true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&roles.getThenRegion().front());
    NVVM::SetMaxRegisterOp::create(b, kProducerRegisters,
                                   NVVM::SetMaxRegisterAction::decrease);
    ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::eq, t, c32(0)),
           [&] { produce(w, args); });
    b.setInsertionPointToStart(&roles.getElseRegion().front());
    NVVM::SetMaxRegisterOp::create(b, kConsumerRegisters,
                                   NVVM::SetMaxRegisterAction::increase);
    consume(w, spec, args, sub(t, c32(128)));
  }
  endKernel();
}

GpuModuleBuilder::WsOrigin GpuModuleBuilder::wsTileOrigin(const WsLoop &w,
                                                          Value tileIndex) {
  // Groups of kWsGroupRows row tiles: consecutive tiles walk down a
  // group's rows, then to its next column. In 64 bits: the origins reach
  // global addresses.
  Value t = ext64(tileIndex);
  Value tilesM = ext64(w.tilesM), tilesN = ext64(w.tilesN);
  Value span = mul(c64(abi::kWsGroupRows), tilesN);
  Value group = divu(t, span);
  Value firstRow = mul(group, c64(abi::kWsGroupRows));
  Value rows = arith::MinUIOp::create(b, sub(tilesM, firstRow),
                                      c64(abi::kWsGroupRows));
  Value within = remu(t, span);
  WsOrigin o;
  o.m0w = mul(add(firstRow, remu(within, rows)), c64(w.tile.bm));
  o.n0w = mul(divu(within, rows), c64(w.tile.bn));
  // Below m and n, which are 32-bit: the bounds checks and TMA coordinates.
  o.m0 = arith::TruncIOp::create(b, i32(), o.m0w);
  o.n0 = arith::TruncIOp::create(b, i32(), o.n0w);
  return o;
}

void GpuModuleBuilder::produce(const WsLoop &w, const GemmWsArgs &args) {
  int64_t tx = w.stageBytes;
  loop(ctaX(), w.tiles, gridX(), ValueRange{c32(0)},
       [&](Value tileIndex, ValueRange carried) -> SmallVector<Value> {
    WsOrigin origin = wsTileOrigin(w, tileIndex);
    Value m0 = origin.m0, n0 = origin.n0;
    return loop(c32(0), w.iters, c32(1), carried,
                [&](Value it, ValueRange step) -> SmallVector<Value> {
      Value stage = remu(step[0], c32(w.tile.stages));
      Value phase = land(divu(step[0], c32(w.tile.stages)), c32(1));
      // Parity phase ^ 1: the first pass over the ring finds every stage
      // empty (the phase before an mbarrier's first counts as complete).
      NVVM::MBarrierTryWaitParityOp::create(
          b, gep(w.empty, i64(), stage),
          arith::XOrIOp::create(b, phase, c32(1)), c32(1000000));
      Value fullBar = gep(w.full, i64(), stage);
      NVVM::MBarrierArriveExpectTxOp::create(b, Type(), fullBar, c32(tx),
                                             NVVM::MemScopeKind::CTA,
                                             /*relaxed=*/false, Value());
      Value sample = divu(it, w.kTiles);
      Value k0 = mul(remu(it, w.kTiles), c32(abi::kWsBK));
      Value base = gep(w.ring, i8(), mul(stage, c32(w.stageBytes)));
      auto copy = [&](Value map, int64_t offset, Value row) {
        NVVM::CpAsyncBulkTensorGlobalToSharedClusterOp::create(
            b,
            LLVM::AddrSpaceCastOp::create(
                b, LLVM::LLVMPointerType::get(&ctx, 7),
                gep(base, i8(), c32(offset))),
            map, ValueRange{k0, row}, fullBar, ValueRange{}, Value(), Value(),
            NVVM::TMALoadMode::TILE, /*isCTAOnly=*/false,
            NVVM::CTAGroupKindAttr(), Value());
      };
      // Sample s of A starts at row s * m of the stacked codes; the rows of
      // a partial tile past m belong to the next sample and only reach
      // accumulator rows that the epilogue does not store.
      copy(args.tmapA, w.aOffset, add(mul(sample, w.M), m0));
      copy(args.tmapB, w.bOffset, n0);
      return {add(step[0], c32(1))};
    });
  });
}

void GpuModuleBuilder::consume(const WsLoop &w, const GemmSpec &spec,
                               const GemmWsArgs &args, Value ct) {
  Value consumer = divu(ct, c32(128));
  Value warp = divu(ct, c32(32));
  Value lane = land(ct, c32(31));
  SmallVector<Type> fields(w.tile.bn / 2, i32());
  Type accType = LLVM::LLVMStructType::getLiteral(&ctx, fields);
  auto descriptor = [&](Value stageBase, Value byteOffset) {
    Value addr = LLVM::PtrToIntOp::create(b, i64(),
                                          gep(stageBase, i8(), byteOffset));
    Value start = arith::ShRUIOp::create(
        b, land(addr, c64(WgmmaDescriptor::kStartMask)),
        c64(WgmmaDescriptor::kStartShift));
    return arith::OrIOp::create(b, start, c64(kSwizzledTile.encode()));
  };
  auto release = [&](Value step) {
    Value stage = remu(step, c32(w.tile.stages));
    NVVM::MBarrierArriveOp::create(
        b, Type(), gep(w.empty, i64(), stage), Value(),
        NVVM::MemScopeKindAttr::get(&ctx, NVVM::MemScopeKind::CTA));
  };
  // One k-step: wait for the stage, four wgmma, one group left in flight,
  // the previous step's stage released. A tile's first step starts its
  // sums with scale-d = 0 instead of zeroed registers: a register written
  // between wgmma.fence and the wgmma reading it would break the fence's
  // contract.
  auto kStep = [&](Value first, Value it, Value acc, bool tileStart) {
    Value step = add(first, it);
    Value stage = remu(step, c32(w.tile.stages));
    Value phase = land(divu(step, c32(w.tile.stages)), c32(1));
    NVVM::MBarrierTryWaitParityOp::create(b, gep(w.full, i64(), stage), phase,
                                          c32(1000000));
    Value base = gep(w.ring, i8(), mul(stage, c32(w.stageBytes)));
    Value tileA = gep(base, i8(), c32(w.aOffset));
    Value tileB = gep(base, i8(), c32(w.bOffset));
    Value rowsA = mul(consumer, c32(64 * kSwizzleRow));
    NVVM::WgmmaFenceAlignedOp::create(b);
    for (int64_t k = 0; k < abi::kWsBK / kWgmmaK; ++k)
      acc = NVVM::WgmmaMmaAsyncOp::create(
          b, accType, acc, descriptor(tileA, add(rowsA, c32(k * kWgmmaK))),
          descriptor(tileB, c32(k * kWgmmaK)),
          NVVM::MMAShapeAttr::get(&ctx, 64, w.tile.bn, kWgmmaK),
          NVVM::WGMMATypes::s8, NVVM::WGMMATypes::s8, NVVM::WGMMATypes::s32,
          tileStart && k == 0 ? NVVM::WGMMAScaleOut::zero
                              : NVVM::WGMMAScaleOut::one,
          NVVM::WGMMAScaleIn::one, NVVM::WGMMAScaleIn::one,
          NVVM::MMALayout::row, NVVM::MMALayout::col,
          NVVM::MMAIntOverflowAttr());
    NVVM::WgmmaGroupSyncAlignedOp::create(b);
    NVVM::WgmmaWaitGroupSyncOp::create(b, b.getI64IntegerAttr(1));
    if (!tileStart)
      release(sub(step, c32(1)));
    return acc;
  };
  // Every tile has at least one k-step: the launcher runs this kernel
  // with K >= 1 and samples >= 1 (GpuAbi.h).
  loop(ctaX(), w.tiles, gridX(), ValueRange{c32(0)},
       [&](Value tileIndex, ValueRange carried) -> SmallVector<Value> {
    WsOrigin origin = wsTileOrigin(w, tileIndex);
    Value first = carried[0];
    Value acc = kStep(first, c32(0), LLVM::UndefOp::create(b, accType), true);
    acc = loop(c32(1), w.iters, c32(1), ValueRange{acc},
               [&](Value it, ValueRange a) -> SmallVector<Value> {
      return {kStep(first, it, a[0], false)};
    })[0];
    NVVM::WgmmaWaitGroupSyncOp::create(b, b.getI64IntegerAttr(0));
    Value last = add(first, w.iters);
    release(sub(last, c32(1)));
    storeWsTile(w, spec, args, acc, origin, warp, lane);
    return {last};
  });
}

void GpuModuleBuilder::storeWsTile(const WsLoop &w, const GemmSpec &spec,
                                   const GemmWsArgs &args, Value acc,
                                   const WsOrigin &origin, Value warp,
                                   Value lane) {
  // The epilogue of the fused GEMMs over this tile's origin: consumer warp
  // w holds rows 16 w .. 16 w + 15, in 16 x 8 blocks along N.
  GemmState g;
  g.spec = &spec;
  g.lane = lane;
  g.M = w.M;
  g.N = w.N;
  g.mn0[0] = origin.m0;
  g.mn0[1] = origin.n0;
  g.mn0w[0] = origin.m0w;
  g.mn0w[1] = origin.n0w;
  GemmArgs out;
  out.c = args.c;
  out.ldc = args.ldc;
  out.bias = args.bias;
  out.scale = args.scale;
  SmallVector<AccElement> elements;
  Value row0 = mul(warp, c32(16));
  for (int64_t j = 0; j < w.tile.bn / 8; ++j)
    addBlock(g, elements, acc, row0, c32(j * 8), j * 4);
  storeOutputs(g, elements, out);
}

} // namespace lq::cudagen
