// RUN: lq-opt %s --lq-gpu-kernels | FileCheck %s
// RUN: lq-opt %s --lq-gpu-kernels=chip=sm_90a | FileCheck %s --check-prefix=SM90

// The backward-data GEMM of a layer: LUQ on dy (two SMP samples) fused into
// the kernel, the weight quantized with SAWB in the kernel too.
// CHECK: module attributes {gpu.container_module}
// CHECK-LABEL: func.func @backward_data
// CHECK: lq.matmul{{.*}}lq.gpu_kernel = "lq_gemm0"{{.*}}lq.gpu_spec = "gemm lhs=log4:f32:n rhs=sint4:f32:n smp=2 hindsight=0 bias=0 relu=0 out=f32 target=sm_80"
func.func @backward_data(%dy: tensor<?x512xf32>, %w: tensor<512x784xf32>, %seed: i64) -> tensor<?x784xf32> {
  %m, %bad = lq.max_abs %dy : tensor<?x512xf32>
  %g0, %a, %nf, %ov = lq.quantize %dy range %m seed %seed : tensor<?x512xf32> -> !lq.qtensor<?x512x!lq.log4>
  %g1, %a1, %nf1, %ov1 = lq.quantize %dy range %m seed %seed {sample = 1} : tensor<?x512xf32> -> !lq.qtensor<?x512x!lq.log4>
  %c = lq.sawb_clip %w : tensor<512x784xf32>
  %qw, %sw, %nf2, %ov2 = lq.quantize %w range %c : tensor<512x784xf32> -> !lq.qtensor<512x784x!lq.sint4>
  %dx = lq.matmul (%g0, %g1) scale %a, %qw scale %sw {role = #lq.role<backward_data>}
      : (!lq.qtensor<?x512x!lq.log4>, !lq.qtensor<?x512x!lq.log4>), !lq.qtensor<512x784x!lq.sint4> -> tensor<?x784xf32>
  return %dx : tensor<?x784xf32>
}

// Statistics: one atomic max per block for the LUQ operand; per-block f64
// moments for the SAWB operand.
// CHECK: gpu.module @lq_gemm0
// CHECK: gpu.func @lq_stats_lhs(%{{.*}}: !llvm.ptr<1>, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: !llvm.ptr<1>) kernel
// CHECK: llvm.atomicrmw umax
// CHECK: gpu.func @lq_quant_lhs(
// CHECK-COUNT-20: arith.mului_extended
// CHECK: gpu.func @lq_stats_rhs(
// CHECK: arith.mulf {{.*}} : f64
// CHECK: gpu.func @lq_quant_rhs(
// The GEMM in both tiles and both copy variants: plain loads for any
// layout, cp.async for aligned ones; mma.sync s8 on the int8 tiles.
// CHECK: gpu.func @lq_gemm_64x64_any({{.*}}) kernel attributes {known_block_size = array<i32: 128, 1, 1>, nvvm.minctasm = 1 : i32}
// CHECK-NOT: nvvm.cp.async
// CHECK: nvvm.mma.sync
// CHECK-SAME: multiplicandAPtxType = #nvvm.mma_type<s8>
// CHECK: gpu.func @lq_gemm_64x64_vec(
// CHECK: nvvm.cp.async.shared.global {{.*}}, 16, cache = cg
// CHECK: nvvm.cp.async.wait.group 2
// CHECK: nvvm.mma.sync
// CHECK: gpu.func @lq_gemm_128x128_any({{.*}}) kernel attributes {known_block_size = array<i32: 256, 1, 1>, nvvm.minctasm = 1 : i32}
// CHECK: gpu.func @lq_gemm_128x128_vec(

// sm_90a: one warpgroup per 64 rows issues wgmma from shared memory after
// an async-proxy fence.
// SM90: gpu.func @lq_gemm_64x64_vec({{.*}}) kernel attributes {known_block_size = array<i32: 128, 1, 1>, nvvm.minctasm = 1 : i32}
// SM90: nvvm.fence.proxy
// SM90: nvvm.wgmma.fence.aligned
// SM90: nvvm.wgmma.mma_async {{.*}}, <m = 64, n = 64, k = 32>, D[<s32>, <one>], A[<s8>, <one>, <row>], B[<s8>, <one>, <col>]
// SM90: nvvm.wgmma.wait.group.sync.aligned 0
// SM90: gpu.func @lq_gemm_128x128_vec({{.*}}) kernel attributes {known_block_size = array<i32: 256, 1, 1>, nvvm.minctasm = 1 : i32}
// SM90: nvvm.wgmma.mma_async {{.*}}, <m = 64, n = 128, k = 32>
