// The example training step: five GEMMs survive expansion (two forward, the
// backward-data GEMM of layer 2, two weight-gradient GEMMs; layer 1's input
// gradient is unused), and the reference lowering leaves nothing of lq.

// RUN: lq-opt %lq_src_root/examples/mlp_train_step.mlir --lq-expand-linear --cse \
// RUN: | FileCheck %s --check-prefix=EXPAND
// RUN: lq-opt %lq_src_root/examples/mlp_train_step.mlir --lq-lower-to-linalg \
// RUN:   --canonicalize --cse | FileCheck %s --check-prefix=LOWER

// EXPAND-COUNT-2: lq.matmul{{.*}}role = #lq.role<forward>
// EXPAND: lq.quantize %[[DL:.*]] range %{{.*}} seed %{{.*}} : tensor<64x10xf32> -> !lq.qtensor<64x10x!lq.log4>
// EXPAND: lq.matmul{{.*}}role = #lq.role<backward_data>
// EXPAND: lq.matmul{{.*}}role = #lq.role<weight_grad>
// EXPAND: lq.quantize {{.*}}seed %{{.*}} {stream = 1 : i64} : tensor<64x128xf32> -> !lq.qtensor<64x128x!lq.log4>
// EXPAND: lq.quantize {{.*}}seed %{{.*}} {sample = 1 : i64, stream = 1 : i64}
// EXPAND-NOT: backward_data
// EXPAND: lq.matmul(%{{.*}}, %{{.*}}) {{.*}}role = #lq.role<weight_grad>
// EXPAND-NOT: lq.matmul

// LOWER: func.func @train_step
// LOWER-NOT: lq.
// LOWER-NOT: !lq
// LOWER: return
