// RUN: lq-opt %s --lq-cpu-kernels | FileCheck %s
// RUN: lq-opt %s --lq-cpu-kernels --lq-cpu-kernels-to-llvm | FileCheck %s --check-prefix=LLVM \
// RUN:   --implicit-check-not='{{[ "](scf|vector|memref)\.[a-z_]+}}'
// The packed operand needs no quantization stage, anywhere in the module:
// RUN: lq-opt %s --lq-cpu-kernels | FileCheck %s --check-prefix=SCAN --implicit-check-not=@lq_gemm0_quant_rhs
// SCAN: func.func @backward_data

// The backward-data GEMM of a layer: LUQ on dy (two SMP samples) fused into
// the kernel, the weight given packed.
// CHECK-LABEL: func.func @backward_data
// CHECK: lq.matmul{{.*}}lq.cpu_kernel = "lq_gemm0"{{.*}}lq.cpu_spec = "lhs=log4:f32:n rhs=sint4:packed:n bias=0 relu=0 out=f32 tile=6x16"
func.func @backward_data(%dy: tensor<?x512xf32>, %wp: tensor<512x392xi8>, %seed: i64, %sw: f32) -> tensor<?x784xf32> {
  %m, %bad = lq.max_abs %dy : tensor<?x512xf32>
  %g0, %a, %nf, %ov = lq.quantize %dy range %m seed %seed : tensor<?x512xf32> -> !lq.qtensor<?x512x!lq.log4>
  %g1, %a1, %nf1, %ov1 = lq.quantize %dy range %m seed %seed {sample = 1} : tensor<?x512xf32> -> !lq.qtensor<?x512x!lq.log4>
  %w = lq.unpack %wp : tensor<512x392xi8> -> !lq.qtensor<512x784x!lq.sint4>
  %dx = lq.matmul (%g0, %g1) scale %a, %w scale %sw {role = #lq.role<backward_data>}
      : (!lq.qtensor<?x512x!lq.log4>, !lq.qtensor<?x512x!lq.log4>), !lq.qtensor<512x784x!lq.sint4> -> tensor<?x784xf32>
  return %dx : tensor<?x784xf32>
}

// Statistics and quantization of the float operand, 8 lanes at a time;
// Philox is two 32x32->64 multiplies per round on vectors.
// CHECK: func.func @lq_gemm0_maxabs_lhs({{.*}}) attributes {llvm.emit_c_interface}
// CHECK: vector.maskedload
// CHECK: vector.reduction <maxui>
// CHECK: func.func @lq_gemm0_quant_lhs(
// CHECK-COUNT-20: arith.mului_extended {{.*}} : vector<8xi32>
// CHECK: vector.maskedstore
// CHECK: func.func @lq_gemm0_pack_a(
// CHECK: func.func @lq_gemm0_pack_b(
// CHECK: func.func @lq_gemm0_gemm(
// CHECK-COUNT-12: llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"
// CHECK: arith.sitofp {{.*}} : vector<8xi32> to vector<8xf32>

// LLVM: llvm.func @lq_gemm0_gemm(
// LLVM: llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"
// LLVM: llvm.func @_mlir_ciface_lq_gemm0_gemm(
