// The im2col convolution layer: its three GEMMs are recognized without
// annotations (dy feeds dcols = dy Wm and dWm = dy^T cols; the forward GEMM
// reads Wm), share one LUQ quantize of dy, and lower to CPU kernels, GPU
// binaries and the reference linalg; col2im takes dcols back to dx.

// RUN: lq-opt %lq_src_root/examples/conv_im2col_linalg.mlir --lq-quantize-matmuls \
// RUN:   | FileCheck %s --check-prefix=QUANT
// RUN: lq-opt %lq_src_root/examples/conv_im2col_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-cpu-kernels | FileCheck %s --check-prefix=CPU
// RUN: lq-opt %lq_src_root/examples/conv_im2col_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-lower-to-gpu=chip=sm_80 | FileCheck %s --check-prefix=GPU
// RUN: lq-opt %lq_src_root/examples/conv_im2col_linalg.mlir --lq-quantize-matmuls \
// RUN:   --lq-lower-to-linalg --canonicalize --cse | FileCheck %s --check-prefix=LOWER

// QUANT-LABEL: func.func @conv_step
// QUANT-SAME: (%{{.*}}: tensor<2x3x6x6xf32>, %{{.*}}: tensor<4x3x3x3xf32>, %[[DY:.*]]: tensor<32x4xf32>, %[[SEED:.*]]: i64 {lq.seed})
// QUANT: %[[M:.*]], %{{.*}} = lq.max_abs %[[DY]]
// QUANT: %[[G:.*]], %[[A:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[DY]] range %[[M]] seed %[[SEED]] : tensor<32x4xf32> -> !lq.qtensor<32x4x!lq.log4>
// QUANT: %[[COLS:.*]] = tensor.collapse_shape {{.*}} into tensor<32x27xf32>
// QUANT: %[[QC:.*]], %[[SC:.*]], %{{.*}}, %{{.*}} = lq.quantize %[[COLS]] range %{{.*}} : tensor<32x27xf32> -> !lq.qtensor<32x27x!lq.sint4>
// QUANT: %[[QW:.*]], %[[SW:.*]], %{{.*}}, %{{.*}} = lq.quantize %{{.*}} : tensor<4x27xf32> -> !lq.qtensor<4x27x!lq.sint4>
// QUANT: lq.matmul(%[[QC]]) scale %[[SC]], %[[QW]] scale %[[SW]] {role = #lq.role<forward>, transpose_rhs}
// QUANT: %[[DC:.*]] = lq.matmul(%[[G]]) scale %[[A]], %[[QW]] scale %[[SW]] {role = #lq.role<backward_data>} : {{.*}} -> tensor<32x27xf32>
// QUANT: tensor.expand_shape %[[DC]] {{\[}}[0, 1, 2], [3, 4, 5]] output_shape [2, 4, 4, 3, 3, 3]
// QUANT: tensor.pad
// QUANT: linalg.generic
// QUANT: } -> tensor<2x3x6x6xf32>
// QUANT: %[[DWM:.*]] = lq.matmul(%[[G]]) scale %[[A]], %[[QC]] scale %[[SC]] {role = #lq.role<weight_grad>, transpose_lhs} : {{.*}} -> tensor<4x27xf32>
// QUANT: tensor.expand_shape %[[DWM]]
// QUANT-NOT: linalg.matmul

// CPU-COUNT-3: lq.matmul{{.*}}lq.cpu_kernel = "lq_gemm{{[0-2]}}"

// GPU-COUNT-3: gpu.binary @lq_gemm{{[0-2]}}  [#gpu.object<#nvvm.target<O = 3, chip = "sm_80"
// GPU-NOT: gpu.module

// LOWER: func.func @conv_step
// LOWER-SAME: -> (tensor<32x4xf32>, tensor<2x3x6x6xf32>, tensor<4x3x3x3xf32>)
// LOWER-NOT: = lq.
// LOWER-NOT: !lq
// LOWER: return
