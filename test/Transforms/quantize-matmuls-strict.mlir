// With strict, a GEMM whose role is neither given nor inferred is an error
// instead of staying in high precision.

// RUN: lq-opt %s --lq-quantize-matmuls=strict=true --verify-diagnostics

#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>

func.func @attention_scores(%q: tensor<8x16xf32>, %k: tensor<8x16xf32>) -> tensor<8x8xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8x8xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<8x8xf32>) -> tensor<8x8xf32>
  // expected-error @below {{cannot infer the training role of this GEMM; mark it with lq.role}}
  %s = linalg.matmul indexing_maps = [#mk, #nk, #mn]
      ins(%q, %k : tensor<8x16xf32>, tensor<8x16xf32>) outs(%c : tensor<8x8xf32>) -> tensor<8x8xf32>
  return %s : tensor<8x8xf32>
}

// RUN: not lq-opt %s --lq-quantize-matmuls=smp=3 2>&1 | FileCheck %s --check-prefix=SMP
// SMP: error: smp must be a power of two between 1 and 64, got 3
