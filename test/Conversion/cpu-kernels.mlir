// RUN: lq-opt %s --lq-cpu-kernels | FileCheck %s
// RUN: lq-opt %s --lq-cpu-kernels --lq-cpu-kernels-to-llvm | FileCheck %s --check-prefix=LLVM \
// RUN:   --implicit-check-not='{{[ "](scf|vector|memref)\.[a-z_]+}}'
// The packed operand needs no quantization stage, anywhere in the module:
// RUN: lq-opt %s --lq-cpu-kernels | FileCheck %s --check-prefix=SCAN --implicit-check-not=@lq_gemm0_quant_rhs
// SCAN: func.func @backward_data
// The VNNI micro-kernels: vpdpbusd straight into the accumulators.
// RUN: lq-opt %s --lq-cpu-kernels=dot-product=avx-vnni | FileCheck %s --check-prefix=VNNI \
// RUN:   --implicit-check-not=llvm.x86.avx2.pmadd --implicit-check-not=vpdpbusd.512
// RUN: lq-opt %s --lq-cpu-kernels=dot-product=avx512-vnni | FileCheck %s --check-prefix=VNNI512 \
// RUN:   --implicit-check-not=llvm.x86.avx2.pmadd --implicit-check-not=vpdpbusd.256
// RUN: not lq-opt %s --lq-cpu-kernels=dot-product=sse2 2>&1 | FileCheck %s --check-prefix=BAD
// BAD: unknown dot-product 'sse2': expected avx2-vpmaddubsw, avx-vnni or avx512-vnni

// The backward-data GEMM of a layer: LUQ on dy (two SMP samples) fused into
// the kernel, the weight given packed.
// CHECK-LABEL: func.func @backward_data
// CHECK: lq.matmul{{.*}}lq.cpu_kernel = "lq_gemm0"{{.*}}lq.cpu_spec = "lhs=log4:f32:n rhs=sint4:packed:n bias=0 relu=0 out=f32 tile=6x16 dot=avx2-vpmaddubsw"
// VNNI: lq.cpu_spec = "{{.*}} tile=6x16 dot=avx-vnni"
// VNNI512: lq.cpu_spec = "{{.*}} tile=6x64 dot=avx512-vnni"
func.func @backward_data(%dy: tensor<?x512xf32>, %wp: tensor<512x392xi8>, %seed: i64, %sw: f32) -> tensor<?x784xf32> {
  %m, %bad = lq.max_abs %dy : tensor<?x512xf32>
  %g0, %a, %nf, %ov = lq.quantize %dy range %m seed %seed : tensor<?x512xf32> -> !lq.qtensor<?x512x!lq.log4>
  %g1, %a1, %nf1, %ov1 = lq.quantize %dy range %m seed %seed {sample = 1} : tensor<?x512xf32> -> !lq.qtensor<?x512x!lq.log4>
  %w = lq.unpack %wp : tensor<512x392xi8> -> !lq.qtensor<512x784x!lq.sint4>
  %dx = lq.matmul (%g0, %g1) scale %a, %w scale %sw {role = #lq.role<backward_data>}
      : (!lq.qtensor<?x512x!lq.log4>, !lq.qtensor<?x512x!lq.log4>), !lq.qtensor<512x784x!lq.sint4> -> tensor<?x784xf32>
  return %dx : tensor<?x784xf32>
}

// The LUQ max and the quantization take 16 lanes at a time;
// Philox is two 32x32->64 multiplies per round in 64-bit lanes, two rounds
// a step of a loop of five: a block per element at a row's ends, a block
// per lane in between (four groups of 8 lanes side by side).
// CHECK: func.func @lq_gemm0_maxabs_lhs({{.*}}) attributes {llvm.emit_c_interface}
// CHECK: vector.maskedload
// CHECK: vector.reduction <maxui>
// CHECK: func.func @lq_gemm0_quant_lhs(
// CHECK: scf.for {{.*}} to %c5{{(_[0-9]+)?}} step {{.*}} -> (vector<16xi64>,
// CHECK-COUNT-4: arith.muli {{.*}} : vector<16xi64>
// CHECK: vector.maskedstore {{.*}} vector<16xi1>, vector<16xi8>
// CHECK: scf.for {{.*}} to %c5{{(_[0-9]+)?}} step {{.*}} -> (vector<8xi64>,
// CHECK-COUNT-16: arith.muli {{.*}} : vector<8xi64>
// CHECK: vector.store {{.*}} vector<16xi8>
// Interior rows of dy's codes (one per byte): 8 K quads of each of the 6
// rows by one load, decoded in i8 lanes, shuffled into panel order.
// CHECK: func.func @lq_gemm0_pack_a(
// CHECK-COUNT-6: vector.load {{.*}} vector<32xi8>
// CHECK-COUNT-3: vector.store {{.*}} : memref<?xi32>, vector<16xi32>
// CHECK: func.func @lq_gemm0_pack_b(
// AVX2: 12 vpmaddubsw (unsigned x signed bytes) per K quad summed in i16,
// then 12 vpmaddwd by ones widen the sums into the i32 accumulators.
// CHECK: func.func @lq_gemm0_gemm(
// CHECK-COUNT-12: llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"({{.*}}) : (vector<32xi8>, vector<32xi8>) -> vector<16xi16>
// CHECK-COUNT-12: llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"({{.*}}) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>
// CHECK: arith.sitofp {{.*}} : vector<8xi32> to vector<8xf32>
// VNNI: func.func @lq_gemm0_gemm(
// VNNI-COUNT-12: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"({{.*}}) : (vector<8xi32>, vector<32xi8>, vector<32xi8>) -> vector<8xi32>
// VNNI: arith.sitofp {{.*}} : vector<8xi32> to vector<8xf32>
// 512 bits: a row of a column block per instruction. Tiles of four column
// blocks: one K quad per step into 24 accumulators; the column blocks left
// over: tiles of one block, even and odd K quads into two sets of 6
// accumulators, an odd last quad after the loop. Both kinds share one
// epilogue, a loop over their blocks.
// VNNI512: func.func @lq_gemm0_gemm(
// VNNI512-COUNT-24: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"({{.*}}) : (vector<16xi32>, vector<64xi8>, vector<64xi8>) -> vector<16xi32>
// VNNI512: } else {
// VNNI512-COUNT-18: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"({{.*}}) : (vector<16xi32>, vector<64xi8>, vector<64xi8>) -> vector<16xi32>
// VNNI512-COUNT-12: arith.sitofp {{.*}} : vector<8xi32> to vector<8xf32>
// VNNI512-NOT: vpdpbusd
// VNNI512-NOT: arith.sitofp {{.*}} : vector<8xi32> to vector<8xf32>

// LLVM: llvm.func @lq_gemm0_gemm(
// LLVM: llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"
// LLVM: llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"
// LLVM: llvm.func @_mlir_ciface_lq_gemm0_gemm(
