// The linalg training step through lq-quantize-matmuls and on: five GEMMs
// become lq.matmul (layer 2 inferred from the graph, layer 1 from its
// lq.role marks), each gradient quantized once for its two GEMMs; then CPU
// kernels, GPU binaries, or the reference lowering.

// RUN: lq-opt %lq_src_root/examples/mlp_train_step_linalg.mlir --lq-quantize-matmuls \
// RUN:   | FileCheck %s --check-prefix=QUANT
// RUN: lq-opt %lq_src_root/examples/mlp_train_step_linalg.mlir \
// RUN:   --lq-quantize-matmuls=keep-first=true | FileCheck %s --check-prefix=FIRST
// RUN: lq-opt %lq_src_root/examples/mlp_train_step_linalg.mlir \
// RUN:   --lq-quantize-matmuls=keep-last=true | FileCheck %s --check-prefix=LAST
// RUN: lq-opt %lq_src_root/examples/mlp_train_step_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-cpu-kernels | FileCheck %s --check-prefix=CPU
// RUN: lq-opt %lq_src_root/examples/mlp_train_step_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-lower-to-gpu=chip=sm_80 | FileCheck %s --check-prefix=GPU
// RUN: lq-opt %lq_src_root/examples/mlp_train_step_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-lower-to-linalg --canonicalize --cse | FileCheck %s --check-prefix=LOWER

// QUANT-LABEL: func.func @train_step
// QUANT-SAME: %[[SEED:[^:]*]]: i64 {lq.seed}
// QUANT: %[[G2:.*]], %[[A2:.*]], %{{.*}}, %{{.*}} = lq.quantize %{{.*}} range %{{.*}} seed %[[SEED]] {stream = 1 : i64} : tensor<64x10xf32> -> !lq.qtensor<64x10x!lq.log4>
// QUANT: lq.matmul({{.*}} {role = #lq.role<forward>, transpose_rhs} : (!lq.qtensor<64x784x!lq.sint4>), !lq.qtensor<128x784x!lq.sint4>
// QUANT: %[[QA:.*]], %{{.*}}, %{{.*}}, %{{.*}} = lq.quantize %{{.*}} : tensor<64x128xf32> -> !lq.qtensor<64x128x!lq.uint4>
// QUANT: lq.matmul(%[[QA]]) {{.*}} {role = #lq.role<forward>, transpose_rhs} : (!lq.qtensor<64x128x!lq.uint4>), !lq.qtensor<10x128x!lq.sint4>
// QUANT: lq.matmul(%[[G2]]) scale %[[A2]], {{.*}} {role = #lq.role<backward_data>} : (!lq.qtensor<64x10x!lq.log4>), !lq.qtensor<10x128x!lq.sint4> -> tensor<64x128xf32>
// QUANT: lq.matmul(%[[G2]]) scale %[[A2]], %[[QA]] {{.*}} {role = #lq.role<weight_grad>, transpose_lhs}
// QUANT: %[[G1:.*]], %{{.*}}, %{{.*}}, %{{.*}} = lq.quantize %{{.*}} range %{{.*}} seed %[[SEED]] : tensor<64x128xf32> -> !lq.qtensor<64x128x!lq.log4>
// QUANT: lq.matmul(%[[G1]]) {{.*}} {role = #lq.role<weight_grad>, transpose_lhs} : {{.*}} -> tensor<128x784xf32>
// QUANT-NOT: linalg.matmul
// QUANT-NOT: lq.matmul

// FIRST-LABEL: func.func @train_step
// FIRST: linalg.matmul {{.*}}{lq.role = "forward"}
// FIRST-COUNT-3: lq.matmul
// FIRST: linalg.matmul {{.*}}{lq.role = "weight_grad"}
// FIRST-NOT: lq.matmul

// LAST-LABEL: func.func @train_step
// LAST: lq.matmul{{.*}}role = #lq.role<forward>
// LAST-COUNT-3: linalg.matmul
// LAST: lq.matmul{{.*}}role = #lq.role<weight_grad>
// LAST-NOT: {{(lq|linalg)}}.matmul

// CPU-COUNT-5: lq.matmul{{.*}}lq.cpu_kernel = "lq_gemm{{[0-4]}}"
// CPU: func.func @lq_gemm0_gemm

// GPU: module attributes {gpu.container_module}
// GPU-COUNT-5: gpu.binary @lq_gemm{{[0-4]}}  [#gpu.object<#nvvm.target<O = 3, chip = "sm_80"
// GPU-NOT: gpu.module

// LOWER: func.func @train_step
// LOWER-NOT: = lq.
// LOWER-NOT: !lq
// LOWER: return
