// One SGD step of a 784-128-10 MLP (Fashion-MNIST shaped) in which every
// GEMM -- forward, backward-data and weight-gradient of both layers -- runs
// in 4 bits: SAWB int4 for weights and activations, LUQ log4 for neural
// gradients.
//
//   lq-opt examples/mlp_train_step.mlir --lq-expand-linear
//   lq-opt examples/mlp_train_step.mlir --lq-lower-to-linalg --canonicalize

#id = affine_map<(b, f) -> (b, f)>
#row = affine_map<(b, f) -> (f)>

func.func @train_step(%x: tensor<64x784xf32>, %onehot: tensor<64x10xf32>,
                      %w1: tensor<128x784xf32>, %b1: tensor<128xf32>,
                      %w2: tensor<10x128xf32>, %b2: tensor<10xf32>,
                      %seed: i64, %lr: f32)
    -> (tensor<128x784xf32>, tensor<10x128xf32>, i1) {
  // Forward: y = Q(x) Q(W)^T + b, ReLU between the layers. The second layer
  // sees non-negative activations and quantizes them unsigned.
  %h = lq.linear %x, %w1 bias %b1
      : tensor<64x784xf32>, tensor<128x784xf32>, tensor<128xf32> -> tensor<64x128xf32>
  %zero = arith.constant 0.0 : f32
  %a_init = tensor.empty() : tensor<64x128xf32>
  %a = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%h : tensor<64x128xf32>) outs(%a_init : tensor<64x128xf32>) {
  ^bb0(%v: f32, %out: f32):
    %r = arith.maximumf %v, %zero : f32
    linalg.yield %r : f32
  } -> tensor<64x128xf32>
  %logits = lq.linear %a, %w2 bias %b2 {unsigned_input}
      : tensor<64x128xf32>, tensor<10x128xf32>, tensor<10xf32> -> tensor<64x10xf32>

  // Softmax cross-entropy gradient: (softmax(logits) - onehot) / batch.
  %p_init = tensor.empty() : tensor<64x10xf32>
  %p = linalg.softmax dimension(1) ins(%logits : tensor<64x10xf32>)
      outs(%p_init : tensor<64x10xf32>) -> tensor<64x10xf32>
  %inv_batch = arith.constant 0.015625 : f32
  %dl_init = tensor.empty() : tensor<64x10xf32>
  %dlogits = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%p, %onehot : tensor<64x10xf32>, tensor<64x10xf32>) outs(%dl_init : tensor<64x10xf32>) {
  ^bb0(%pv: f32, %t: f32, %out: f32):
    %d = arith.subf %pv, %t : f32
    %s = arith.mulf %d, %inv_batch : f32
    linalg.yield %s : f32
  } -> tensor<64x10xf32>

  // Backward through layer 2: dA = Q_luq(dlogits) Q(W2), dW2 = Q_luq(dlogits)^T Q(A).
  %da, %dw2, %max2, %bad2, %ovf2 = lq.linear_grad %a, %w2, %dlogits seed %seed {unsigned_input}
      : tensor<64x128xf32>, tensor<10x128xf32>, tensor<64x10xf32> -> tensor<64x128xf32>, tensor<10x128xf32>

  // ReLU derivative, then layer 1 with two LUQ samples (SMP). Its input
  // gradient is not needed: the backward-data GEMM of layer 1 disappears.
  %dh_init = tensor.empty() : tensor<64x128xf32>
  %dh = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%h, %da : tensor<64x128xf32>, tensor<64x128xf32>) outs(%dh_init : tensor<64x128xf32>) {
  ^bb0(%hv: f32, %g: f32, %out: f32):
    %pos = arith.cmpf ogt, %hv, %zero : f32
    %r = arith.select %pos, %g, %zero : f32
    linalg.yield %r : f32
  } -> tensor<64x128xf32>
  %dx, %dw1, %max1, %bad1, %ovf1 = lq.linear_grad %x, %w1, %dh seed %seed {smp = 2}
      : tensor<64x784xf32>, tensor<128x784xf32>, tensor<64x128xf32> -> tensor<64x784xf32>, tensor<128x784xf32>

  // SGD on the weights (the caller skips the step when a gradient was not
  // finite).
  %w1_init = tensor.empty() : tensor<128x784xf32>
  %w1_new = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%w1, %dw1 : tensor<128x784xf32>, tensor<128x784xf32>) outs(%w1_init : tensor<128x784xf32>) {
  ^bb0(%w: f32, %g: f32, %out: f32):
    %step = arith.mulf %lr, %g : f32
    %r = arith.subf %w, %step : f32
    linalg.yield %r : f32
  } -> tensor<128x784xf32>
  %w2_init = tensor.empty() : tensor<10x128xf32>
  %w2_new = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%w2, %dw2 : tensor<10x128xf32>, tensor<10x128xf32>) outs(%w2_init : tensor<10x128xf32>) {
  ^bb0(%w: f32, %g: f32, %out: f32):
    %step = arith.mulf %lr, %g : f32
    %r = arith.subf %w, %step : f32
    linalg.yield %r : f32
  } -> tensor<10x128xf32>
  %bad = arith.ori %bad1, %bad2 : i1
  return %w1_new, %w2_new, %bad : tensor<128x784xf32>, tensor<10x128xf32>, i1
}
