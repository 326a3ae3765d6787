//===- GemmSm90a.cpp - the GEMM's tensor-core part on sm_90a: wgmma -------===//
//
// One warpgroup per 64 rows of the CTA tile multiplies its rows of A by all
// of B with wgmma.mma_async m64nNk32 s8, both operands read from shared
// memory through matrix descriptors. The int8 tiles are stored without
// swizzle as 8 x 16-byte core matrices, the two core matrices of a row
// group's K step adjacent.
//
//===----------------------------------------------------------------------===//

#include "GpuModuleBuilder.h"

#include "lq/Conversion/Gpu/WgmmaDescriptor.h"

using namespace mlir;
using namespace lq;

namespace lq::cudagen {

namespace {

/// The descriptor of a no-swizzle K-major int8 tile as the conversion
/// writes it (tileAddressSm90a), without its start address: adjacent core
/// matrices along K are kCoreBytes apart (the leading byte offset); the
/// next 8 rows start after the row group's kBK / 16 core matrices (the
/// stride byte offset).
constexpr WgmmaDescriptor kTileDescriptor = {
    /*startAddress=*/0, /*leadingByteOffset=*/kCoreBytes,
    /*strideByteOffset=*/(kBK / 16) * kCoreBytes, /*baseOffset=*/0,
    WgmmaSwizzle::None};
static_assert(kTileDescriptor.valid(), "the tile's offsets fit the fields");

} // namespace

Value GpuModuleBuilder::tileAddressSm90a(Value mn, Value k) {
  Value core = add(mul(divu(mn, c32(8)), c32(kBK / 16)), divu(k, c32(16)));
  return add(add(mul(core, c32(kCoreBytes)), mul(remu(mn, c32(8)), c32(16))),
             remu(k, c32(16)));
}

SmallVector<Value> GpuModuleBuilder::mmaStepSm90a(GemmState &g,
                                                  ValueRange acc) {
  auto descriptor = [&](Value tile, Value byteOffset) {
    Value addr =
        LLVM::PtrToIntOp::create(b, i64(), gep(tile, i8(), byteOffset));
    Value start = arith::ShRUIOp::create(
        b, land(addr, c64(WgmmaDescriptor::kStartMask)),
        c64(WgmmaDescriptor::kStartShift));
    return arith::OrIOp::create(b, start, c64(kTileDescriptor.encode()));
  };
  Value tileA = gep(g.smem, i8(), c32(g.tileBase[0]));
  Value tileB = gep(g.smem, i8(), c32(g.tileBase[1]));
  Value wg = divu(g.t, c32(128));
  Value descA = descriptor(tileA, mul(wg, c32(64 * kBK)));
  Value descB = descriptor(tileB, c32(0));
  NVVM::WgmmaFenceAlignedOp::create(b);
  Value d = NVVM::WgmmaMmaAsyncOp::create(
      b, acc[0].getType(), acc[0], descA, descB,
      NVVM::MMAShapeAttr::get(&ctx, 64, g.tile.bn, kBK), NVVM::WGMMATypes::s8,
      NVVM::WGMMATypes::s8, NVVM::WGMMATypes::s32, NVVM::WGMMAScaleOut::one,
      NVVM::WGMMAScaleIn::one, NVVM::WGMMAScaleIn::one, NVVM::MMALayout::row,
      NVVM::MMALayout::col, NVVM::MMAIntOverflowAttr());
  NVVM::WgmmaGroupSyncAlignedOp::create(b);
  NVVM::WgmmaWaitGroupSyncOp::create(b, b.getI64IntegerAttr(0));
  return {d};
}

SmallVector<GpuModuleBuilder::AccElement>
GpuModuleBuilder::accElementsSm90a(GemmState &g, ValueRange acc) {
  // Warp w of the CTA holds rows 16 w .. 16 w + 15 of the wgmma result, in
  // 16 x 8 blocks along N.
  SmallVector<AccElement> elements;
  Value row0 = mul(g.warp, c32(16));
  for (int64_t j = 0; j < g.tile.bn / 8; ++j)
    addBlock(g, elements, acc[0], row0, c32(j * 8), j * 4);
  return elements;
}

} // namespace lq::cudagen
