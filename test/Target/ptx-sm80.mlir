// REQUIRES: lq-gpu-pack
// RUN: rm -rf %t && lq-gpu-pack %s --chip=sm_80 -o %t
// RUN: FileCheck %s < %t/lq_gemm0.sm_80.ptx
// RUN: FileCheck %s --check-prefix=SCAN --implicit-check-not=lg2.approx \
// RUN:   --implicit-check-not=fma.rn < %t/lq_gemm0.sm_80.ptx
// RUN: FileCheck %s --check-prefix=INFO < %t/lq_gemm0.sm_80.info
// RUN: FileCheck %s --check-prefix=INDEX < %t/index.txt

// The weight-gradient GEMM, dW = Q_luq(dy)^T Q_sawb(x), with bf16 inputs:
// LUQ and SAWB run in the kernel on tiles staged by cp.async.
func.func @weight_grad(%dy: tensor<256x512xbf16>, %x: tensor<256x784xbf16>, %seed: i64) -> tensor<512x784xf32> {
  %m, %bad = lq.max_abs %dy : tensor<256x512xbf16>
  %g, %a, %nf, %ov = lq.quantize %dy range %m seed %seed : tensor<256x512xbf16> -> !lq.qtensor<256x512x!lq.log4>
  %c = lq.sawb_clip %x : tensor<256x784xbf16>
  %qx, %sx, %nf2, %ov2 = lq.quantize %x range %c : tensor<256x784xbf16> -> !lq.qtensor<256x784x!lq.sint4>
  %dw = lq.matmul (%g) scale %a, %qx scale %sx {transpose_lhs, role = #lq.role<weight_grad>}
      : (!lq.qtensor<256x512x!lq.log4>), !lq.qtensor<256x784x!lq.sint4> -> tensor<512x784xf32>
  return %dw : tensor<512x784xf32>
}

// CHECK: .target sm_80
// CHECK: .extern .shared .align 128 .b8 lq_smem[];
// CHECK: .entry lq_stats_lhs(
// CHECK: atom.global.max.u32
// Philox4x32-10: 32x32->64-bit products, the high half read directly.
// CHECK: .entry lq_quant_lhs(
// CHECK-COUNT-20: mul.wide.u32
// CHECK: .entry lq_gemm_64x64_vec(
// CHECK: cp.async.cg.shared.global [{{.*}}], [{{.*}}], 16, {{%r[0-9]+}};
// CHECK: cp.async.commit_group;
// Four stages of bf16 tiles in flight.
// CHECK: cp.async.wait_group 3;
// CHECK: mma.sync.aligned.m16n8k32.row.col.satfinite.s32.s8.s8.s32
// CHECK: .entry lq_gemm_128x128_vec(
// CHECK: mma.sync.aligned.m16n8k32.row.col.satfinite.s32.s8.s8.s32
// LUQ reads the exponent bits: no log2 approximation in any kernel, and no
// fused multiply-add changes the contract's roundings (the SCAN run).
// SCAN: .target sm_80

// INFO: abi=3
// INFO: chip=sm_80
// INFO: lhs=log4 bf16 t
// INFO: rhs=sint4 bf16 n
// INFO: tile=64 64 32 4 128
// INFO: tile=128 128 32 4 256

// INDEX: lq_gemm0.sm_80
