// A linear layer y = x W on activations [batch, rows, features] written
// with linalg.batch_matmul and the weight broadcast over the batch, as
// torch-mlir writes torch.matmul of a 3-D tensor by a 2-D one (and
// torch.bmm of an expanded weight), with its backward pass: dx = dy W^T
// through another broadcast, and dW as the sum over the batch of x_b^T dy_b.
// Nothing is annotated: lq-quantize-matmuls reads each batched GEMM as one
// 2-D GEMM over [batch * rows] (the weight is shared by every batch
// element), infers the three roles, and quantizes them.
//
//   lq-opt examples/batch_matmul_broadcast_linalg.mlir --lq-quantize-matmuls
//
// Shapes: batch 2, rows 3, input features 8, output features 4.

#bmk = affine_map<(b, m, k) -> (b, m, k)>
#kn = affine_map<(b, m, k) -> (m, k)>

func.func @bmm_layer(%x: tensor<2x3x8xf32>, %w: tensor<8x4xf32>, %dy: tensor<2x3x4xf32>,
                     %seed: i64 {lq.seed})
    -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<8x4xf32>) {
  %zero = arith.constant 0.0 : f32

  // Forward: y[b] = x[b] W.
  %wb_e = tensor.empty() : tensor<2x8x4xf32>
  %wb = linalg.broadcast ins(%w : tensor<8x4xf32>) outs(%wb_e : tensor<2x8x4xf32>) dimensions = [0]
  %y_e = tensor.empty() : tensor<2x3x4xf32>
  %y_0 = linalg.fill ins(%zero : f32) outs(%y_e : tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  %y = linalg.batch_matmul ins(%x, %wb : tensor<2x3x8xf32>, tensor<2x8x4xf32>)
      outs(%y_0 : tensor<2x3x4xf32>) -> tensor<2x3x4xf32>

  // Backward data: dx[b] = dy[b] W^T, the transposed weight broadcast by a
  // linalg.generic copy as older lowerings write it.
  %wt_e = tensor.empty() : tensor<4x8xf32>
  %wt = linalg.transpose ins(%w : tensor<8x4xf32>) outs(%wt_e : tensor<4x8xf32>) permutation = [1, 0]
  %wtb_e = tensor.empty() : tensor<2x4x8xf32>
  %wtb = linalg.generic {indexing_maps = [#kn, #bmk], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%wt : tensor<4x8xf32>) outs(%wtb_e : tensor<2x4x8xf32>) {
  ^bb0(%v: f32, %out: f32):
    linalg.yield %v : f32
  } -> tensor<2x4x8xf32>
  %dx_e = tensor.empty() : tensor<2x3x8xf32>
  %dx_0 = linalg.fill ins(%zero : f32) outs(%dx_e : tensor<2x3x8xf32>) -> tensor<2x3x8xf32>
  %dx = linalg.batch_matmul ins(%dy, %wtb : tensor<2x3x4xf32>, tensor<2x4x8xf32>)
      outs(%dx_0 : tensor<2x3x8xf32>) -> tensor<2x3x8xf32>

  // Weight gradient: dW = sum_b x[b]^T dy[b].
  %xt_e = tensor.empty() : tensor<2x8x3xf32>
  %xt = linalg.transpose ins(%x : tensor<2x3x8xf32>) outs(%xt_e : tensor<2x8x3xf32>) permutation = [0, 2, 1]
  %p_e = tensor.empty() : tensor<2x8x4xf32>
  %p_0 = linalg.fill ins(%zero : f32) outs(%p_e : tensor<2x8x4xf32>) -> tensor<2x8x4xf32>
  %p = linalg.batch_matmul ins(%xt, %dy : tensor<2x8x3xf32>, tensor<2x3x4xf32>)
      outs(%p_0 : tensor<2x8x4xf32>) -> tensor<2x8x4xf32>
  %dw_e = tensor.empty() : tensor<8x4xf32>
  %dw_0 = linalg.fill ins(%zero : f32) outs(%dw_e : tensor<8x4xf32>) -> tensor<8x4xf32>
  %dw = linalg.reduce ins(%p : tensor<2x8x4xf32>) outs(%dw_0 : tensor<8x4xf32>) dimensions = [0]
    (%in: f32, %acc: f32) {
      %s = arith.addf %in, %acc : f32
      linalg.yield %s : f32
    }
  return %y, %dx, %dw : tensor<2x3x4xf32>, tensor<2x3x8xf32>, tensor<8x4xf32>
}
