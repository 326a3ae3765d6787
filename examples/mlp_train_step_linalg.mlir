// One SGD step of a 784-128-10 MLP written in linalg on tensors, the form
// that framework lowerings produce: every GEMM is a linalg.matmul in f32.
// lq-quantize-matmuls turns the forward, backward-data and weight-gradient
// GEMMs into 4-bit lq ops.
//
// Layer 2's GEMMs carry no annotation: the pass infers their roles from the
// graph (dlogits feeds dA = dlogits W2 and dW2 = dlogits^T A, and the
// forward GEMM is the one reading W2). Layer 1's input gradient is not
// computed, so its dW1 has no partner to be recognized by; its GEMMs are
// marked with lq.role.
//
//   lq-opt examples/mlp_train_step_linalg.mlir --lq-quantize-matmuls
//   lq-opt examples/mlp_train_step_linalg.mlir --lq-quantize-matmuls \
//     --lq-lower-to-linalg --canonicalize

#mk = affine_map<(m, n, k) -> (m, k)>
#km = affine_map<(m, n, k) -> (k, m)>
#nk = affine_map<(m, n, k) -> (n, k)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>
#id = affine_map<(b, f) -> (b, f)>
#row = affine_map<(b, f) -> (f)>
#vec = affine_map<(i) -> (i)>

func.func @train_step(%x: tensor<64x784xf32>, %dlogits: tensor<64x10xf32>,
                      %w1: tensor<128x784xf32>, %b1: tensor<128xf32>,
                      %w2: tensor<10x128xf32>, %b2: tensor<10xf32>,
                      %seed: i64 {lq.seed}, %lr: f32)
    -> (tensor<64x10xf32>, tensor<128x784xf32>, tensor<128xf32>,
        tensor<10x128xf32>, tensor<10xf32>) {
  %zero = arith.constant 0.0 : f32

  // Layer 1: h = x W1^T + b1, a = ReLU(h).
  %h_empty = tensor.empty() : tensor<64x128xf32>
  %h_init = linalg.fill ins(%zero : f32) outs(%h_empty : tensor<64x128xf32>) -> tensor<64x128xf32>
  %xw1 = linalg.matmul indexing_maps = [#mk, #nk, #mn] {lq.role = "forward"}
      ins(%x, %w1 : tensor<64x784xf32>, tensor<128x784xf32>)
      outs(%h_init : tensor<64x128xf32>) -> tensor<64x128xf32>
  %h = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%xw1, %b1 : tensor<64x128xf32>, tensor<128xf32>) outs(%h_empty : tensor<64x128xf32>) {
  ^bb0(%v: f32, %bias: f32, %out: f32):
    %s = arith.addf %v, %bias : f32
    linalg.yield %s : f32
  } -> tensor<64x128xf32>
  %a = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%h : tensor<64x128xf32>) outs(%h_empty : tensor<64x128xf32>) {
  ^bb0(%v: f32, %out: f32):
    %r = arith.maximumf %v, %zero : f32
    linalg.yield %r : f32
  } -> tensor<64x128xf32>

  // Layer 2: logits = a W2^T + b2. Its input is a ReLU, so it is quantized
  // unsigned.
  %l_empty = tensor.empty() : tensor<64x10xf32>
  %l_init = linalg.fill ins(%zero : f32) outs(%l_empty : tensor<64x10xf32>) -> tensor<64x10xf32>
  %aw2 = linalg.matmul indexing_maps = [#mk, #nk, #mn]
      ins(%a, %w2 : tensor<64x128xf32>, tensor<10x128xf32>)
      outs(%l_init : tensor<64x10xf32>) -> tensor<64x10xf32>
  %logits = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%aw2, %b2 : tensor<64x10xf32>, tensor<10xf32>) outs(%l_empty : tensor<64x10xf32>) {
  ^bb0(%v: f32, %bias: f32, %out: f32):
    %s = arith.addf %v, %bias : f32
    linalg.yield %s : f32
  } -> tensor<64x10xf32>

  // Backward through layer 2, given the loss gradient dlogits:
  // dA = dlogits W2, dW2 = dlogits^T a, db2 = column sums of dlogits.
  %da_init = linalg.fill ins(%zero : f32) outs(%h_empty : tensor<64x128xf32>) -> tensor<64x128xf32>
  %da = linalg.matmul ins(%dlogits, %w2 : tensor<64x10xf32>, tensor<10x128xf32>)
      outs(%da_init : tensor<64x128xf32>) -> tensor<64x128xf32>
  %w2_empty = tensor.empty() : tensor<10x128xf32>
  %dw2_init = linalg.fill ins(%zero : f32) outs(%w2_empty : tensor<10x128xf32>) -> tensor<10x128xf32>
  %dw2 = linalg.matmul indexing_maps = [#km, #kn, #mn]
      ins(%dlogits, %a : tensor<64x10xf32>, tensor<64x128xf32>)
      outs(%dw2_init : tensor<10x128xf32>) -> tensor<10x128xf32>
  %b2_empty = tensor.empty() : tensor<10xf32>
  %db2_init = linalg.fill ins(%zero : f32) outs(%b2_empty : tensor<10xf32>) -> tensor<10xf32>
  %db2 = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["reduction", "parallel"]}
      ins(%dlogits : tensor<64x10xf32>) outs(%db2_init : tensor<10xf32>) {
  ^bb0(%g: f32, %acc: f32):
    %s = arith.addf %acc, %g : f32
    linalg.yield %s : f32
  } -> tensor<10xf32>

  // ReLU derivative, then layer 1's weight and bias gradients.
  %dh = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%h, %da : tensor<64x128xf32>, tensor<64x128xf32>) outs(%h_empty : tensor<64x128xf32>) {
  ^bb0(%hv: f32, %g: f32, %out: f32):
    %pos = arith.cmpf ogt, %hv, %zero : f32
    %r = arith.select %pos, %g, %zero : f32
    linalg.yield %r : f32
  } -> tensor<64x128xf32>
  %w1_empty = tensor.empty() : tensor<128x784xf32>
  %dw1_init = linalg.fill ins(%zero : f32) outs(%w1_empty : tensor<128x784xf32>) -> tensor<128x784xf32>
  %dw1 = linalg.matmul indexing_maps = [#km, #kn, #mn] {lq.role = "weight_grad"}
      ins(%dh, %x : tensor<64x128xf32>, tensor<64x784xf32>)
      outs(%dw1_init : tensor<128x784xf32>) -> tensor<128x784xf32>
  %b1_empty = tensor.empty() : tensor<128xf32>
  %db1_init = linalg.fill ins(%zero : f32) outs(%b1_empty : tensor<128xf32>) -> tensor<128xf32>
  %db1 = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["reduction", "parallel"]}
      ins(%dh : tensor<64x128xf32>) outs(%db1_init : tensor<128xf32>) {
  ^bb0(%g: f32, %acc: f32):
    %s = arith.addf %acc, %g : f32
    linalg.yield %s : f32
  } -> tensor<128xf32>

  // SGD: p -= lr * dp.
  %w1_new = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%w1, %dw1 : tensor<128x784xf32>, tensor<128x784xf32>) outs(%w1_empty : tensor<128x784xf32>) {
  ^bb0(%w: f32, %g: f32, %out: f32):
    %step = arith.mulf %lr, %g : f32
    %r = arith.subf %w, %step : f32
    linalg.yield %r : f32
  } -> tensor<128x784xf32>
  %w2_new = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%w2, %dw2 : tensor<10x128xf32>, tensor<10x128xf32>) outs(%w2_empty : tensor<10x128xf32>) {
  ^bb0(%w: f32, %g: f32, %out: f32):
    %step = arith.mulf %lr, %g : f32
    %r = arith.subf %w, %step : f32
    linalg.yield %r : f32
  } -> tensor<10x128xf32>
  %b1_new = linalg.generic {indexing_maps = [#vec, #vec, #vec], iterator_types = ["parallel"]}
      ins(%b1, %db1 : tensor<128xf32>, tensor<128xf32>) outs(%b1_empty : tensor<128xf32>) {
  ^bb0(%p: f32, %g: f32, %out: f32):
    %step = arith.mulf %lr, %g : f32
    %r = arith.subf %p, %step : f32
    linalg.yield %r : f32
  } -> tensor<128xf32>
  %b2_new = linalg.generic {indexing_maps = [#vec, #vec, #vec], iterator_types = ["parallel"]}
      ins(%b2, %db2 : tensor<10xf32>, tensor<10xf32>) outs(%b2_empty : tensor<10xf32>) {
  ^bb0(%p: f32, %g: f32, %out: f32):
    %step = arith.mulf %lr, %g : f32
    %r = arith.subf %p, %step : f32
    linalg.yield %r : f32
  } -> tensor<10xf32>
  return %logits, %w1_new, %b1_new, %w2_new, %b2_new
      : tensor<64x10xf32>, tensor<128x784xf32>, tensor<128xf32>, tensor<10x128xf32>, tensor<10xf32>
}
