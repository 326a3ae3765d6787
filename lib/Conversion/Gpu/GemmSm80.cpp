//===- GemmSm80.cpp - the GEMM's tensor-core part on sm_80: mma.sync ------===//
//
// Warps tile the CTA tile 2 x 2 (64 x 64) or 2 x 4 (128 x 128); each holds
// 16 x 8 accumulator blocks of mma.sync m16n8k32 (s8) or m16n8k64 (s4/u4
// for the int4 forward GEMM), with fragments loaded from padded 48-byte
// tile rows (a fragment load's 8 rows x 4 words hit 32 distinct banks).
//
//===----------------------------------------------------------------------===//

#include "GpuModuleBuilder.h"

using namespace mlir;
using namespace lq;

namespace lq::cudagen {

void GpuModuleBuilder::layoutWarpsSm80(GemmState &g) {
  g.warpsN = g.tile.bn == 64 ? 2 : 4;
  int64_t warpsM = g.tile.threads / 32 / g.warpsN;
  g.mTiles = g.tile.bm / warpsM / 16;
  g.nTiles = g.tile.bn / g.warpsN / 8;
}

Value GpuModuleBuilder::tileAddressSm80(Value mn, Value k) {
  return add(mul(mn, c32(kTileRowBytes)), k);
}

SmallVector<Value> GpuModuleBuilder::mmaStepSm80(GemmState &g,
                                                 ValueRange acc) {
  Value tileA = gep(g.smem, i8(), c32(g.tileBase[0]));
  Value tileB = gep(g.smem, i8(), c32(g.tileBase[1]));
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
  Type accType =
      LLVM::LLVMStructType::getLiteral(&ctx, {i32(), i32(), i32(), i32()});
  NVVM::MMATypes types[2] = {NVVM::MMATypes::s8, NVVM::MMATypes::s8};
  if (g.int4)
    for (int s = 0; s < 2; ++s)
      types[s] = g.sides[s].op->format == Format::UInt4 ? NVVM::MMATypes::u4
                                                        : NVVM::MMATypes::s4;
  SmallVector<Value> next;
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

SmallVector<GpuModuleBuilder::AccElement>
GpuModuleBuilder::accElementsSm80(GemmState &g, ValueRange acc) {
  SmallVector<AccElement> elements;
  Value wm = divu(g.warp, c32(g.warpsN)), wn = remu(g.warp, c32(g.warpsN));
  for (int64_t mt = 0; mt < g.mTiles; ++mt)
    for (int64_t nt = 0; nt < g.nTiles; ++nt)
      addBlock(g, elements, acc[mt * g.nTiles + nt],
               add(mul(wm, c32(g.mTiles * 16)), c32(mt * 16)),
               add(mul(wn, c32(g.nTiles * 8)), c32(nt * 8)), 0);
  return elements;
}

} // namespace lq::cudagen
