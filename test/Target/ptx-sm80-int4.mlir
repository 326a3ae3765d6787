// REQUIRES: lq-gpu-pack
// RUN: rm -rf %t && lq-gpu-pack %s --chip=sm_80,sm_90a -o %t
// RUN: FileCheck %s < %t/lq_gemm0.sm_80.ptx
// No kernel of the module uses the int8 shape:
// RUN: FileCheck %s --check-prefix=SCAN --implicit-check-not=m16n8k32 < %t/lq_gemm0.sm_80.ptx
// RUN: FileCheck %s --check-prefix=INFO < %t/lq_gemm0.sm_80.info
// RUN: FileCheck %s --check-prefix=HOPPER --implicit-check-not=m16n8k64 < %t/lq_gemm0.sm_90a.ptx

// The forward GEMM of a layer after a ReLU: unsigned SAWB activations
// times signed SAWB weights, both int4 and K-contiguous. On sm_80 the
// tiles hold the 4-bit codes and the tensor cores multiply them as u4 x s4
// (m16n8k64); sm_90a has no int4 wgmma and widens them to int8.
func.func @forward(%x: tensor<256x512xf32>, %w: tensor<10x512xf32>) -> tensor<256x10xf32> {
  %cx = lq.sawb_clip %x : tensor<256x512xf32>
  %qx, %sx, %nf, %ov = lq.quantize %x range %cx : tensor<256x512xf32> -> !lq.qtensor<256x512x!lq.uint4>
  %cw = lq.sawb_clip %w : tensor<10x512xf32>
  %qw, %sw, %nf2, %ov2 = lq.quantize %w range %cw : tensor<10x512xf32> -> !lq.qtensor<10x512x!lq.sint4>
  %y = lq.matmul (%qx) scale %sx, %qw scale %sw {transpose_rhs, role = #lq.role<forward>}
      : (!lq.qtensor<256x512x!lq.uint4>), !lq.qtensor<10x512x!lq.sint4> -> tensor<256x10xf32>
  return %y : tensor<256x10xf32>
}

// CHECK: .entry lq_gemm_64x64_any(
// CHECK: mma.sync.aligned.m16n8k64.row.col.satfinite.s32.u4.s4.s32
// CHECK: .entry lq_gemm_64x64_vec(
// Two stages of 64-deep f32 tiles.
// CHECK: cp.async.wait_group 1;
// CHECK: mma.sync.aligned.m16n8k64.row.col.satfinite.s32.u4.s4.s32
// SCAN: .target sm_80

// INFO: lhs=uint4 f32 n
// INFO: rhs=sint4 f32 t
// INFO: tile=64 64 64 2 128
// INFO: tile=128 128 64 2 256

// HOPPER: wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8
