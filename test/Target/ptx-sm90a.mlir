// REQUIRES: lq-gpu-pack
// RUN: rm -rf %t && lq-gpu-pack %s --chip=sm_90a -o %t
// RUN: FileCheck %s < %t/lq_gemm0.sm_90a.ptx
// Every kernel of the module, not only the text after the last match:
// RUN: FileCheck %s --check-prefix=SCAN --implicit-check-not=lg2.approx \
// RUN:   --implicit-check-not=fma.rn --implicit-check-not=tensormap < %t/lq_gemm0.sm_90a.ptx
// An lg2.approx planted in lq_quant_lhs, far from the last match, fails it:
// RUN: sed -e '/^\.visible \.entry lq_quant_lhs(/,/^{/s/^{$/{ lg2.approx.f32 %%f1, %%f1;/' \
// RUN:   %t/lq_gemm0.sm_90a.ptx > %t/planted.ptx
// RUN: grep -c 'lg2.approx' %t/planted.ptx | FileCheck %s --check-prefix=PLANTED
// RUN: not FileCheck %s --check-prefix=SCAN --implicit-check-not=lg2.approx < %t/planted.ptx

// SCAN: .target sm_90a
// PLANTED: {{^}}1{{$}}

// The forward GEMM, y = Q(x) Q(W)^T + b, ReLU, bf16 out: SAWB on both
// operands in the kernel, wgmma on Hopper.
func.func @forward(%x: tensor<128x784xf32>, %w: tensor<512x784xf32>, %b: tensor<512xf32>) -> tensor<128x512xbf16> {
  %cx = lq.sawb_clip %x : tensor<128x784xf32>
  %qx, %sx, %nf, %ov = lq.quantize %x range %cx : tensor<128x784xf32> -> !lq.qtensor<128x784x!lq.sint4>
  %cw = lq.sawb_clip %w : tensor<512x784xf32>
  %qw, %sw, %nf2, %ov2 = lq.quantize %w range %cw : tensor<512x784xf32> -> !lq.qtensor<512x784x!lq.sint4>
  %y = lq.matmul (%qx) scale %sx, %qw scale %sw bias %b {transpose_rhs, relu, role = #lq.role<forward>}
      : (!lq.qtensor<128x784x!lq.sint4>), !lq.qtensor<512x784x!lq.sint4>, tensor<512xf32> -> tensor<128x512xbf16>
  return %y : tensor<128x512xbf16>
}

// CHECK: .target sm_90a
// CHECK: .entry lq_gemm_64x64_vec(
// CHECK: cp.async.cg.shared.global
// SAWB rounds half to even with exact f32 adds.
// CHECK: add.rn.f32 {{.*}}0f4B400000
// Generic-proxy stores to the int8 tiles are fenced before wgmma reads them.
// CHECK: fence.proxy.async.shared::cta;
// CHECK: wgmma.fence.sync.aligned;
// CHECK: wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8
// CHECK: wgmma.commit_group.sync.aligned;
// CHECK: wgmma.wait_group.sync.aligned 0;
// The epilogue: bias, ReLU (max keeping NaN), bf16 rounding, 16-bit stores.
// CHECK: max.NaN.f32
// CHECK: st.global.b16
// CHECK: .entry lq_gemm_64x64_tma(
// The tensor maps are by-value parameters (__grid_constant__), read in the
// parameter space: no copy in global memory that would need a tensormap
// proxy fence.
// CHECK: .param .align 64 .b8 lq_gemm_64x64_tma_param_17[128],
// CHECK-NEXT: .param .align 64 .b8 lq_gemm_64x64_tma_param_18[128]
// CHECK: cvta.param.u64
// The tensor memory accelerator: one thread initializes a barrier per
// stage, expects the stage's bytes and issues both boxes; every thread
// waits on the stage's phase.
// CHECK: mbarrier.init.shared.b64
// CHECK: fence.mbarrier_init.release.cluster
// CHECK: mbarrier.arrive.expect_tx.shared.b64 {{.*}}, [lq_mbar], {{%r[0-9]+}};
// CHECK: cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// CHECK: cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// CHECK: mbarrier.try_wait.parity.shared.b64
// CHECK: wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8
// CHECK: .entry lq_gemm_128x128_vec(
// CHECK: wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8
// CHECK: .entry lq_gemm_128x128_tma(
// CHECK: cp.async.bulk.tensor.2d
// CHECK: wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8
// The quantize-once placement for the tensor cores: each operand once to
// int8 codes, K-contiguous (x and W are both stored with K contiguous in
// the forward GEMM: four codes in one 32-bit store).
// CHECK: .entry lq_quant8_lhs(
// CHECK: st.global.b32
// CHECK: .entry lq_quant8_rhs(
// CHECK: st.global.b32
// The persistent warp-specialized int8 GEMM: 384 threads, one block.
// CHECK: .entry lq_gemm_ws_128x128(
// CHECK: .maxntid 384, 1, 1
// CHECK: .minnctapersm 1
// CHECK: mbarrier.init.shared.b64 [lq_ws_full]
// CHECK: mbarrier.init.shared.b64 [lq_ws_empty]
// The producer warpgroup gives up registers; its one thread waits for an
// empty stage, expects its bytes and issues both boxes.
// CHECK: setmaxnreg.dec.sync.aligned.u32 40;
// CHECK: mbarrier.try_wait.parity.shared.b64
// CHECK: mbarrier.arrive.expect_tx.shared.b64
// CHECK: cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// CHECK: cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// The consumers take the registers, wait for a full stage and multiply from
// 128-byte swizzled descriptors (bits 62-63 = 1, stride 1024, leading 16:
// 0x4000004000010000), one wgmma group left in flight, then release the
// previous stage to the producer; the tile's last group is waited for
// before the epilogue.
// CHECK: setmaxnreg.inc.sync.aligned.u32 232;
// CHECK: mbarrier.try_wait.parity.shared.b64
// CHECK: or.b64 {{%rd[0-9]+}}, {{%rd[0-9]+}}, 4611686293305360384;
// CHECK: wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8
// CHECK: wgmma.commit_group.sync.aligned;
// CHECK: wgmma.wait_group.sync.aligned 1;
// CHECK: mbarrier.arrive.shared.b64
// CHECK: wgmma.wait_group.sync.aligned 0;
// CHECK: st.global.b16
// CHECK: .entry lq_gemm_ws_128x256(
// CHECK: wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8
// CHECK: wgmma.wait_group.sync.aligned 1;
