//===- GpuGemm.cpp - the fused GEMM kernel of a generated GPU module -------===//
//
// Per CTA tile and k-step: copy the raw operand tiles into a shared-memory
// stage (plain loads, cp.async or TMA), convert the stage to int8 (or int4)
// tiles (LUQ, SAWB or packed-code decoding), multiply on the tensor cores
// (GemmSm80.cpp, GemmSm90a.cpp); then the epilogue.
//
//===----------------------------------------------------------------------===//

#include "GpuModuleBuilder.h"

using namespace mlir;
using namespace lq;

namespace lq::cudagen {

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

void GpuModuleBuilder::storeGroup(GemmState &g, const Side &side, Value tile,
                                  Value r, Value c4, ArrayRef<Value> vals) {
  if (g.int4) {
    // Four consecutive k: two whole bytes, low nibble first.
    Value half = c32(0);
    for (int64_t i = 0; i < 4; ++i)
      half = arith::OrIOp::create(
          b, half,
          arith::ShLIOp::create(b, arith::ExtUIOp::create(b, i32(), vals[i]),
                                c32(4 * i)));
    store(arith::TruncIOp::create(b, i16(), half),
          gep(tile, i8(), add(mul(r, c32(kTileRowBytes)), divu(c4, c32(2)))));
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
      storeGroup(g, side, tile, r, c4, vals);
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

void GpuModuleBuilder::setupGemm(GemmState &g, const GemmSpec &spec,
                                 const abi::GemmTile &tile, Copy copy,
                                 const GemmArgs &args) {
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
  g.M = args.m;
  g.N = args.n;
  g.K = args.k;
  g.inv[0] = args.invA;
  g.inv[1] = args.invB;
  g.zero[0] = ne(land(args.zero, c32(1)), c32(0));
  g.zero[1] = ne(land(args.zero, c32(2)), c32(0));
  g.seed = args.seed;
  g.stream = args.stream;
  g.tmap[0] = args.tmapA;
  g.tmap[1] = args.tmapB;

  g.smem = smem();
  g.t = tid();
  g.leader = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, g.t, c32(0));
  g.warp = arith::ShRUIOp::create(b, g.t, c32(5));
  g.lane = land(g.t, c32(31));
  if (chip == Target::CudaSm80)
    layoutWarpsSm80(g);
  g.mn0[0] = mul(ctaY(), c32(tile.bm));
  g.mn0[1] = mul(ctaX(), c32(tile.bn));
  g.mn0w[0] = mul(ext64(ctaY()), c64(tile.bm));
  g.mn0w[1] = mul(ext64(ctaX()), c64(tile.bn));
  g.storedRows[0] = g.sides[0].kContig ? g.M : g.K;
  g.storedCols[0] = g.sides[0].kContig ? g.K : g.M;
  g.storedRows[1] = g.sides[1].kContig ? g.N : g.K;
  g.storedCols[1] = g.sides[1].kContig ? g.K : g.N;
  g.kTiles = divu(add(g.K, c32(tile.bk - 1)), c32(tile.bk));
  g.total = mul(g.kTiles, c32(spec.samples));
}

void GpuModuleBuilder::initBarriers(GemmState &g) {
  g.mbar = staticShared("lq_mbar", i64(), kMaxStages);
  ifThen(g.leader, [&] {
    for (int64_t s = 0; s < g.stages; ++s)
      NVVM::MBarrierInitOp::create(b, gep(g.mbar, i64(), c32(s)), c32(1),
                                   Value());
    NVVM::FenceMbarrierInitOp::create(b);
  });
  barrier();
}

void GpuModuleBuilder::issueStage(GemmState &g, Value it) {
  Value stage = remu(it, c32(g.stages));
  if (g.copy != Copy::Tma) {
    copyStage(g, g.sides[0], it, stage);
    copyStage(g, g.sides[1], it, stage);
    return;
  }
  int64_t stageTx = g.sides[0].stageBytes() + g.sides[1].stageBytes();
  ifThen(g.leader, [&] {
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
}

SmallVector<Value> GpuModuleBuilder::mainLoop(GemmState &g, ValueRange init) {
  bool vec = g.copy == Copy::Vec;
  size_t accCount = init.size() - (g.spec->hindsight ? 2 : 0);
  for (int64_t p = 0; p + 1 < g.stages; ++p) {
    ifThen(slt(c32(p), g.total), [&] { issueStage(g, c32(p)); });
    if (vec)
      NVVM::CpAsyncCommitGroupOp::create(b);
  }
  SmallVector<Value> result = loop(
      c32(0), g.total, c32(1), init, [&](Value it, ValueRange carried) {
        Value nextIt = add(it, c32(g.stages - 1));
        ifThen(slt(nextIt, g.total), [&] { issueStage(g, nextIt); });
        Value stage = remu(it, c32(g.stages));
        if (vec) {
          NVVM::CpAsyncCommitGroupOp::create(b);
          NVVM::CpAsyncWaitGroupOp::create(b, g.stages - 1);
        }
        if (g.copy == Copy::Tma) {
          // Stage `stage` completes its (it / stages)-th phase when both
          // boxes have landed.
          Value phase = land(divu(it, c32(g.stages)), c32(1));
          NVVM::MBarrierTryWaitParityOp::create(
              b, gep(g.mbar, i64(), stage), phase, c32(1000000));
        }
        barrier();
        Value sample = divu(it, g.kTiles);
        Value k0 = mul(remu(it, g.kTiles), c32(g.tile.bk));
        SmallVector<Value> stats(carried.drop_front(accCount));
        stats = convertStage(g, g.sides[0], stage, sample, k0, stats);
        convertStage(g, g.sides[1], stage, sample, k0, {});
        if (chip == Target::CudaSm90a)
          // The tensor cores read shared memory through the async proxy.
          NVVM::FenceProxyOp::create(
              b, NVVM::ProxyKindAttr::get(&ctx, NVVM::ProxyKind::async_shared),
              NVVM::SharedSpaceAttr::get(&ctx, NVVM::SharedSpace::shared_cta));
        barrier();
        SmallVector<Value> next = mmaStep(g, carried.take_front(accCount));
        next.append(stats);
        return next;
      });
  if (vec)
    NVVM::CpAsyncWaitGroupOp::create(b, 0);
  return result;
}

void GpuModuleBuilder::storeOutputs(GemmState &g,
                                    ArrayRef<AccElement> elements,
                                    const GemmArgs &args) {
  const GemmSpec &spec = *g.spec;
  NumericsBuilder nb(b);
  Type outType = spec.bf16Output() ? i16() : f32();
  for (const AccElement &e : elements) {
    Value m = add(g.mn0[0], e.row), n = add(g.mn0[1], e.col);
    ifThen(land(ult(m, g.M), ult(n, g.N)), [&] {
      Value mw = add(g.mn0w[0], ext64(e.row)), nw = add(g.mn0w[1], ext64(e.col));
      Value acc = LLVM::ExtractValueOp::create(b, e.block, e.field);
      Value bias =
          spec.bias ? load(f32(), gep(args.bias, f32(), nw)) : Value();
      Value v = nb.epilogue(acc, args.scale, bias, spec.relu,
                            spec.bf16Output());
      store(v, gep(args.c, outType, add(mul(mw, args.ldc), nw)));
    });
  }
}

void GpuModuleBuilder::addBlock(GemmState &g, SmallVector<AccElement> &out,
                                Value block, Value row0, Value col0,
                                int64_t firstField) {
  Value grp = arith::ShRUIOp::create(b, g.lane, c32(2));
  Value tig = land(g.lane, c32(3));
  for (int64_t i = 0; i < 4; ++i)
    out.push_back({block, firstField + i,
                   add(add(row0, grp), c32(i >= 2 ? 8 : 0)),
                   add(add(col0, mul(tig, c32(2))), c32(i & 1))});
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
  setupGemm(g, spec, tile, copy, args);
  if (copy == Copy::Tma)
    initBarriers(g);
  SmallVector<Value> acc = zeroAccumulators(g);
  SmallVector<Value> init(acc);
  if (spec.hindsight)
    init.append({c32(0), c32(0)});
  SmallVector<Value> result = mainLoop(g, init);
  if (spec.hindsight)
    flushCounters(args.counters, result[acc.size()], result[acc.size() + 1]);
  result.resize(acc.size());
  storeOutputs(g, accElements(g, result), args);
  endKernel();
}

Value GpuModuleBuilder::tileAddress(GemmState &g, Value mn, Value k) {
  return chip == Target::CudaSm80 ? tileAddressSm80(mn, k)
                                  : tileAddressSm90a(mn, k);
}

SmallVector<Value> GpuModuleBuilder::zeroAccumulators(GemmState &g) {
  // One 4-register struct per 16 x 8 block (mma.sync), or the whole wgmma
  // fragment of the warpgroup.
  if (chip == Target::CudaSm80) {
    Type type = LLVM::LLVMStructType::getLiteral(
        &ctx, {i32(), i32(), i32(), i32()});
    return SmallVector<Value>(g.mTiles * g.nTiles,
                              LLVM::ZeroOp::create(b, type));
  }
  SmallVector<Type> fields(g.tile.bn / 2, i32());
  return {LLVM::ZeroOp::create(
      b, LLVM::LLVMStructType::getLiteral(&ctx, fields))};
}

SmallVector<Value> GpuModuleBuilder::mmaStep(GemmState &g, ValueRange acc) {
  return chip == Target::CudaSm80 ? mmaStepSm80(g, acc)
                                  : mmaStepSm90a(g, acc);
}

SmallVector<GpuModuleBuilder::AccElement>
GpuModuleBuilder::accElements(GemmState &g, ValueRange acc) {
  return chip == Target::CudaSm80 ? accElementsSm80(g, acc)
                                  : accElementsSm90a(g, acc);
}

} // namespace lq::cudagen
