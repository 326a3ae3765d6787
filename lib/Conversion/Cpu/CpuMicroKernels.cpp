//===- CpuMicroKernels.cpp - dot products and epilogue --------------------===//

#include "KernelModuleBuilder.h"

namespace lq::cpu_stages {

/// Accumulator words of a tile of one column block.
constexpr int64_t kTileWords = kCpuTileRows * kCpuTileCols;

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
// streams past them once per group. A tile covers cpuTileColBlocks
// adjacent column blocks; the blocks left over are tiles of one block.
void KernelModuleBuilder::buildGemm() {
  Type i16 = b.getI16Type(), i32 = b.getI32Type(), f32 = b.getF32Type();
  Type outElem = spec.bf16Output() ? Type(i16) : f32;
  GemmArgs args;
  beginFunction("lq_gemm", cpu::kGemmKinds, {i32, i32, f32, outElem}, args);
  int64_t wide = cpuTileColBlocks(options.dot);
  Value colBlocks = ceilDiv(args.n, kCpuTileCols);
  Value wideTiles = arith::DivUIOp::create(b, colBlocks, index(wide));
  Value colTiles =
      addi(wideTiles, arith::RemUIOp::create(b, colBlocks, index(wide)));
  // Edge tiles go through the first tile of this stack copy, a wide tile's
  // accumulators through the tiles after it; allocated once, outside the
  // loops.
  Value tile = memref::AllocaOp::create(
      b, MemRefType::get({(wide > 1 ? 1 + wide : 1) * kTileWords}, i32));

  auto groups =
      scf::ForOp::create(b, args.blockBegin, args.blockEnd, args.group);
  b.setInsertionPointToStart(groups.getBody());
  Value groupBegin = groups.getInductionVar();
  Value groupEnd = arith::MinUIOp::create(b, addi(groupBegin, args.group),
                                          args.blockEnd);
  forEach(index(0), colTiles, [&](Value t) {
    forEach(groupBegin, groupEnd, [&](Value mb) {
      if (wide == 1)
        return epilogueBlock(args, tile, mb, t,
                             tileDotProducts(args, mb, t, 1));
      buildWideTile(args, tile, mb, t, wideTiles);
    });
  });
  b.setInsertionPointAfter(groups);
  endFunction();
}

// Tile `t` along N of row block `mb` where tiles are wide: those below
// `wideTiles` cover cpuTileColBlocks column blocks, the others one. Both
// kinds leave their accumulators in `tile` for one epilogue loop over the
// blocks: a few stores and loads per tile, and one epilogue's code instead
// of one per block and kind (compile time).
void KernelModuleBuilder::buildWideTile(const GemmArgs &args, Value tile,
                                        Value mb, Value t, Value wideTiles) {
  int64_t wide = cpuTileColBlocks(options.dot);
  Value isWide =
      arith::CmpIOp::create(b, arith::CmpIPredicate::ult, t, wideTiles);
  Value leftover = arith::SubIOp::create(b, t, wideTiles);
  Value nblock =
      arith::SelectOp::create(b, isWide, muli(t, index(wide)),
                              addi(muli(wideTiles, index(wide)), leftover));
  auto kinds = scf::IfOp::create(b, isWide, /*withElseRegion=*/true);
  auto dotProducts = [&](Region &region, int64_t blocks) {
    b.setInsertionPointToStart(&region.front());
    SmallVector<Value> acc = tileDotProducts(args, mb, nblock, blocks);
    for (auto [i, v] : llvm::enumerate(acc))
      vector::StoreOp::create(b, v, tile,
                              ValueRange{index(kTileWords + i * kLanes)});
  };
  dotProducts(kinds.getThenRegion(), wide);
  dotProducts(kinds.getElseRegion(), 1);
  b.setInsertionPointAfter(kinds);

  auto accType = VectorType::get({kLanes}, b.getI32Type());
  Value blocks = arith::SelectOp::create(b, isWide, index(wide), index(1));
  forEach(index(0), blocks, [&](Value j) {
    Value base = muli(addi(j, index(1)), index(kTileWords));
    SmallVector<Value> acc;
    for (int64_t i = 0; i < kTileWords / kLanes; ++i)
      acc.push_back(vector::LoadOp::create(
          b, accType, tile, ValueRange{addi(base, index(i * kLanes))}));
    epilogueBlock(args, tile, mb, addi(nblock, j), acc);
  });
}

// The accumulators of the tile of row block `mb` and the `blocks` column
// blocks from `nblock`, after the dot products over every SMP sample.
SmallVector<Value> KernelModuleBuilder::tileDotProducts(const GemmArgs &args,
                                                        Value mb, Value nblock,
                                                        int64_t blocks) {
  Value Kq = args.kQuads, S = args.samples;
  Value aBlockWords = muli(addi(muli(S, Kq), index(1)), index(kCpuTileRows));
  Value bBlockWords = muli(addi(Kq, index(1)), index(kCpuTileCols));
  Value aBlock = muli(mb, aBlockWords);
  MicroKernelPanels panels{args.panelA, args.panelB, {}, Kq, Value()};
  SmallVector<Value> init;
  for (int64_t j = 0; j < blocks; ++j) {
    Value bBlock = muli(addi(nblock, index(j)), bBlockWords);
    panels.bBases.push_back(addi(bBlock, index(kCpuTileCols)));
    llvm::append_range(init, initialAccumulators(args.panelA, aBlock,
                                                 args.panelB, bBlock));
  }
  prefetchOutput(args.out, args.ldc, muli(mb, index(kCpuTileRows)),
                 muli(nblock, index(kCpuTileCols)), blocks);
  auto samples = forLoop(index(0), S, init, [&](Value s, ValueRange acc) {
    panels.aBase = addi(
        aBlock, muli(addi(muli(s, Kq), index(1)), index(kCpuTileRows)));
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
  return SmallVector<Value>(samples.getResults());
}

// The epilogue of column block `nblock` of row block `mb`'s tile.
void KernelModuleBuilder::epilogueBlock(const GemmArgs &args, Value tile,
                                        Value mb, Value nblock,
                                        ArrayRef<Value> acc) {
  buildEpilogue(args.out, args.ldc, muli(mb, index(kCpuTileRows)),
                muli(nblock, index(kCpuTileCols)), args.m, args.n, args.scale,
                args.bias, tile, acc);
}

// The output lines a tile will write, fetched for writing while its dot
// products run: a large output is not in cache, and without this every
// epilogue waits for its lines. The first element of each column block and
// the row's last element touch every line of a row. Rows past the output's
// end are fetched too: a prefetch cannot fault.
void KernelModuleBuilder::prefetchOutput(Value out, Value ldc, Value m,
                                         Value n, int64_t blocks) {
  SmallVector<int64_t> columns;
  for (int64_t j = 0; j < blocks; ++j)
    columns.push_back(j * kCpuTileCols);
  columns.push_back(blocks * kCpuTileCols - 1);
  for (int64_t r = 0; r < kCpuTileRows; ++r) {
    Value row = addi(muli(addi(m, index(r)), ldc), n);
    for (int64_t c : columns)
      memref::PrefetchOp::create(b, out, ValueRange{addi(row, index(c))},
                                 /*isWrite=*/true, /*localityHint=*/3,
                                 /*isDataCache=*/true);
  }
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
  Value bOffset = addi(p.bBases.front(), muli(q, index(kCpuTileCols)));
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

// AVX-512 VNNI: one 512-bit vpdpbusd per row, K quad and column block
// covers the block's 16 columns. A tile of two blocks (6 x 32) loads two B
// vectors and six A words per quad for 12 dot products, which the two
// vpdpbusd ports can run back to back, and its 12 sums are independent
// enough to hide the instruction's latency. A tile of one block puts even
// and odd quads into two sets of accumulators for the same 12 sums; the
// sets are added at the end. Each row's sums are split into the halves
// the epilogue takes.
SmallVector<Value>
KernelModuleBuilder::vnni512DotProducts(const MicroKernelPanels &p,
                                        ValueRange init) {
  constexpr int64_t halves = kCpuTileCols / kLanes;
  static_assert(halves == 2, "a tile row is two halves of 8 lanes");
  auto rowType = VectorType::get({kCpuTileCols}, b.getI32Type());
  auto byteType = VectorType::get({4 * kCpuTileCols}, b.getI8Type());
  StringAttr vpdpbusd = b.getStringAttr("llvm.x86.avx512.vpdpbusd.512");
  bool lhsUnsigned = byteOperands(spec).lhsUnsigned;
  int64_t blocks = int64_t(p.bBases.size());
  // Accumulators of one set: row r of block j at j * kCpuTileRows + r.
  int64_t width = blocks * kCpuTileRows;
  bool twoSets = blocks == 1;
  SmallVector<int64_t> whole, low, high;
  for (int64_t i = 0; i < kCpuTileCols; ++i) {
    whole.push_back(i);
    (i < kLanes ? low : high).push_back(i);
  }

  // Quad q added to one set of accumulators.
  auto quad = [&](Value q, ValueRange sums) {
    SmallVector<Value> bv;
    for (Value bBase : p.bBases)
      bv.push_back(vector::BitCastOp::create(
          b, byteType,
          vector::LoadOp::create(
              b, rowType, p.panelB,
              ValueRange{addi(bBase, muli(q, index(kCpuTileCols)))})));
    Value aOffset = addi(p.aBase, muli(q, index(kCpuTileRows)));
    SmallVector<Value> next(sums.begin(), sums.end());
    for (int64_t r = 0; r < kCpuTileRows; ++r) {
      Value word = memref::LoadOp::create(b, p.panelA,
                                          ValueRange{addi(aOffset, index(r))});
      Value av = vector::BitCastOp::create(
          b, byteType, vector::BroadcastOp::create(b, rowType, word));
      for (int64_t j = 0; j < blocks; ++j) {
        Value &sum = next[j * kCpuTileRows + r];
        sum = LLVM::CallIntrinsicOp::create(
                  b, rowType, vpdpbusd,
                  ValueRange{sum, lhsUnsigned ? av : bv[j],
                             lhsUnsigned ? bv[j] : av})
                  .getResult(0);
      }
    }
    return next;
  };
  SmallVector<Value> sums;
  for (int64_t i = 0; i < width; ++i)
    sums.push_back(vector::ShuffleOp::create(b, init[i * halves],
                                             init[i * halves + 1], whole));
  if (twoSets)
    sums.append(width, arith::ConstantOp::create(
                           b, DenseElementsAttr::get(
                                  rowType, b.getI32IntegerAttr(0))));
  // Quads per step: one for a tile of several blocks, whose sums are
  // independent enough already; an even and an odd one for the two sets.
  int64_t step = twoSets ? 2 : 1;
  auto steps = forLoop(
      index(0), arith::DivUIOp::create(b, p.kQuads, index(step)), sums,
      [&](Value i, ValueRange acc) {
        Value q = muli(i, index(step));
        // The tile's B words (32 KiB per block at K = 2048) and the A
        // words stream through L1 next to each other; fetched kAhead quads
        // early they are there when the dot products need them. A
        // prefetch past a panel's end is harmless: it cannot fault.
        constexpr int64_t kAhead = 16;
        auto prefetch = [&](Value panel, Value base, int64_t stride) {
          memref::PrefetchOp::create(
              b, panel,
              ValueRange{addi(base, muli(addi(q, index(kAhead)),
                                         index(stride)))},
              /*isWrite=*/false, /*localityHint=*/3, /*isDataCache=*/true);
        };
        for (Value bBase : p.bBases)
          prefetch(p.panelB, bBase, kCpuTileCols);
        prefetch(p.panelA, p.aBase, kCpuTileRows);
        SmallVector<Value> next = quad(q, acc.take_front(width));
        if (twoSets)
          next.append(quad(addi(q, index(1)), acc.drop_front(width)));
        return next;
      });
  SmallVector<Value> sets(steps.getResults());
  if (twoSets) {
    // An odd last quad goes to the first set.
    Value oddCount = arith::CmpIOp::create(
        b, arith::CmpIPredicate::ne,
        arith::RemUIOp::create(b, p.kQuads, index(2)), index(0));
    auto last = scf::IfOp::create(
        b, oddCount,
        [&](OpBuilder &, Location) {
          SmallVector<Value> next =
              quad(arith::SubIOp::create(b, p.kQuads, index(1)),
                   ValueRange(sets).take_front(width));
          next.append(sets.begin() + width, sets.end());
          scf::YieldOp::create(b, next);
        },
        [&](OpBuilder &, Location) { scf::YieldOp::create(b, sets); });
    sets.assign(last.getResults().begin(), last.getResults().end());
  }
  SmallVector<Value> result;
  for (int64_t i = 0; i < width; ++i) {
    Value row = sets[i];
    if (twoSets)
      row = addi(row, sets[width + i]);
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


} // namespace lq::cpu_stages
