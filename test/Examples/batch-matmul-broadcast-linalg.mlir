// The batch_matmul layer with a broadcast weight, not annotated, through
// lq-quantize-matmuls and on: its three batched GEMMs are one 2-D GEMM
// each over [batch * rows], quantized with no remark; then CPU kernels,
// GPU binaries, or the reference lowering.

// RUN: lq-opt %lq_src_root/examples/batch_matmul_broadcast_linalg.mlir --lq-quantize-matmuls \
// RUN:   2>&1 | FileCheck %s --check-prefix=QUANT --implicit-check-not=remark
// RUN: lq-opt %lq_src_root/examples/batch_matmul_broadcast_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-cpu-kernels | FileCheck %s --check-prefix=CPU
// RUN: lq-opt %lq_src_root/examples/batch_matmul_broadcast_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-lower-to-gpu=chip=sm_80 | FileCheck %s --check-prefix=GPU
// RUN: lq-opt %lq_src_root/examples/batch_matmul_broadcast_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-lower-to-linalg --canonicalize --cse | FileCheck %s --check-prefix=LOWER

// QUANT-LABEL: func.func @bmm_layer
// QUANT: %[[Y:.*]] = lq.matmul({{.*}} {role = #lq.role<forward>} : (!lq.qtensor<6x8x!lq.sint4>), !lq.qtensor<8x4x!lq.sint4> -> tensor<6x4xf32>
// QUANT: %[[YE:.*]] = tensor.expand_shape %[[Y]] {{\[}}[0, 1], [2]] output_shape [2, 3, 4]
// QUANT: %[[DX:.*]] = lq.matmul({{.*}} {role = #lq.role<backward_data>, transpose_rhs} : (!lq.qtensor<6x4x!lq.log4>), !lq.qtensor<8x4x!lq.sint4> -> tensor<6x8xf32>
// QUANT: %[[DXE:.*]] = tensor.expand_shape %[[DX]] {{\[}}[0, 1], [2]] output_shape [2, 3, 8]
// QUANT: %[[DWT:.*]] = lq.matmul({{.*}} {role = #lq.role<weight_grad>, transpose_lhs} : (!lq.qtensor<6x4x!lq.log4>), !lq.qtensor<6x8x!lq.sint4> -> tensor<4x8xf32>
// QUANT: %[[DW:.*]] = linalg.transpose ins(%[[DWT]] : tensor<4x8xf32>)
// QUANT: return %[[YE]], %[[DXE]], %[[DW]]
// QUANT-NOT: linalg.batch_matmul
// QUANT-NOT: linalg.broadcast
// QUANT-NOT: linalg.reduce

// CPU-COUNT-3: lq.matmul{{.*}}lq.cpu_kernel = "lq_gemm{{[0-2]}}"

// GPU: module attributes {gpu.container_module}
// GPU-COUNT-3: gpu.binary @lq_gemm{{[0-2]}}  [#gpu.object<#nvvm.target<O = 3, chip = "sm_80"

// LOWER: func.func @bmm_layer
// LOWER-NOT: = lq.
// LOWER: return
