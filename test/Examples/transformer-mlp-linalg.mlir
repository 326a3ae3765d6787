// The transformer MLP block, written as torch-mlir writes it and not
// annotated, through lq-quantize-matmuls and on: all six GEMMs become
// lq.matmul with no remark (none stays in high precision), layer 1 with
// its bias and ReLU in the epilogue, layer 2 with its bias; then CPU
// kernels, GPU binaries, or the reference lowering.

// RUN: lq-opt %lq_src_root/examples/transformer_mlp_linalg.mlir --lq-quantize-matmuls \
// RUN:   2>&1 | FileCheck %s --check-prefix=QUANT --implicit-check-not=remark
// RUN: lq-opt %lq_src_root/examples/transformer_mlp_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-cpu-kernels | FileCheck %s --check-prefix=CPU
// RUN: lq-opt %lq_src_root/examples/transformer_mlp_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-lower-to-gpu=chip=sm_90a | FileCheck %s --check-prefix=GPU
// RUN: lq-opt %lq_src_root/examples/transformer_mlp_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-lower-to-linalg --canonicalize --cse | FileCheck %s --check-prefix=LOWER

// QUANT-LABEL: func.func @mlp_block
// QUANT: lq.matmul({{.*}} bias %{{.*}} {relu, role = #lq.role<forward>, transpose_rhs} : (!lq.qtensor<6x8x!lq.sint4>), !lq.qtensor<16x8x!lq.sint4>, tensor<16xf32> -> tensor<6x16xf32>
// QUANT: lq.matmul({{.*}} bias %{{.*}} {role = #lq.role<forward>, transpose_rhs} : (!lq.qtensor<6x16x!lq.uint4>), !lq.qtensor<8x16x!lq.sint4>, tensor<8xf32> -> tensor<6x8xf32>
// QUANT: lq.quantize %{{.*}} seed %{{.*}} {stream = 1 : i64} : tensor<6x8xf32> -> !lq.qtensor<6x8x!lq.log4>
// QUANT: lq.matmul({{.*}} {role = #lq.role<backward_data>} : (!lq.qtensor<6x8x!lq.log4>), !lq.qtensor<8x16x!lq.sint4> -> tensor<6x16xf32>
// QUANT: lq.matmul({{.*}} {role = #lq.role<weight_grad>, transpose_lhs} : (!lq.qtensor<6x8x!lq.log4>), !lq.qtensor<6x16x!lq.uint4> -> tensor<8x16xf32>
// QUANT: lq.quantize %{{.*}} seed %{{.*}} : tensor<6x16xf32> -> !lq.qtensor<6x16x!lq.log4>
// QUANT: lq.matmul({{.*}} {role = #lq.role<backward_data>} : (!lq.qtensor<6x16x!lq.log4>), !lq.qtensor<16x8x!lq.sint4> -> tensor<6x8xf32>
// QUANT: lq.matmul({{.*}} {role = #lq.role<weight_grad>, transpose_lhs} : (!lq.qtensor<6x16x!lq.log4>), !lq.qtensor<6x8x!lq.sint4> -> tensor<16x8xf32>
// QUANT-NOT: linalg.matmul
// QUANT-NOT: linalg.transpose

// CPU-COUNT-6: lq.matmul{{.*}}lq.cpu_kernel = "lq_gemm{{[0-5]}}"
// CPU: func.func @lq_gemm0_gemm

// GPU: module attributes {gpu.container_module}
// GPU-COUNT-6: gpu.binary @lq_gemm{{[0-5]}}  [#gpu.object<#nvvm.target<O = 3, chip = "sm_90a"
// GPU-NOT: gpu.module

// LOWER: func.func @mlp_block
// LOWER-NOT: = lq.
// LOWER-NOT: !lq
// LOWER: return
