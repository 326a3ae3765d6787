// RUN: lq-opt %s --lq-lower-to-linalg --split-input-file | FileCheck %s
// No logarithm anywhere in the reference (LUQ reads the exponent bits):
// RUN: lq-opt %s --lq-lower-to-linalg --split-input-file | FileCheck %s \
// RUN:   --check-prefix=SCAN --implicit-check-not=math.log2
// SCAN: func.func @signature

// Quantized tensors cross function boundaries as one code per byte.
// CHECK-LABEL: func.func @signature
// CHECK-SAME: (%{{.*}}: tensor<4x?xi8>) -> tensor<4x?xi8>
func.func @signature(%q: !lq.qtensor<4x?x!lq.log4>) -> !lq.qtensor<4x?x!lq.log4> {
  return %q : !lq.qtensor<4x?x!lq.log4>
}

// -----

// max |x| is one unsigned integer max over the magnitude bits; NaN and Inf
// sort above every finite value, which gives the non-finite flag.
// CHECK-LABEL: func.func @max_abs
// CHECK: linalg.generic {{.*}} iterator_types = ["reduction", "reduction"]
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: arith.andi %{{.*}}, %{{.*}} : i32
// CHECK: arith.maxui
// CHECK: arith.cmpi uge
func.func @max_abs(%x: tensor<4x8xbf16>) -> (f32, i1) {
  %m, %bad = lq.max_abs %x : tensor<4x8xbf16>
  return %m, %bad : f32, i1
}

// -----

// LUQ: Philox4x32-10 (two 32x32->64 multiplies per round) keyed by the
// element's row-major index; the exponent comes from the f32 bits, never
// from a logarithm.
// CHECK-LABEL: func.func @luq
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel"]
// CHECK: linalg.index 0
// CHECK: linalg.index 1
// CHECK-COUNT-20: arith.mului_extended
// CHECK: arith.uitofp
// CHECK: arith.shrui %{{.*}}, %{{.*}} : i32
// CHECK-NOT: math.log2
// CHECK: linalg.yield %{{.*}} : i8
// In hindsight mode a second reduction counts the saturated elements.
// CHECK: arith.cmpf ogt
// CHECK: arith.addi %{{.*}}, %{{.*}} : i32
// CHECK: return %{{.*}} : tensor<?x8xi8>, f32, i1, i32
func.func @luq(%x: tensor<?x8xf32>, %m: f32, %seed: i64) -> (!lq.qtensor<?x8x!lq.log4>, f32, i1, i32) {
  %q, %a, %nf, %ov = lq.quantize %x range %m seed %seed {stream = 3, sample = 1, hindsight}
      : tensor<?x8xf32> -> !lq.qtensor<?x8x!lq.log4>
  return %q, %a, %nf, %ov : !lq.qtensor<?x8x!lq.log4>, f32, i1, i32
}

// -----

// SAWB rounds half to even after clamping to the format's range.
// CHECK-LABEL: func.func @sawb
// CHECK: math.sqrt
// CHECK: arith.truncf %{{.*}} : f64 to f32
// CHECK: linalg.generic
// CHECK: arith.maximumf
// CHECK: arith.minimumf
// Round half to even: add and subtract 1.5 * 2^23.
// CHECK: %[[MAGIC:.*]] = arith.constant 0x4B400000 : f32
// CHECK: %[[UP:.*]] = arith.addf %{{.*}}, %[[MAGIC]] : f32
// CHECK: arith.subf %[[UP]], %[[MAGIC]] : f32
// CHECK: arith.fptosi
func.func @sawb(%x: tensor<4x8xf32>) -> !lq.qtensor<4x8x!lq.sint4> {
  %c = lq.sawb_clip %x : tensor<4x8xf32>
  %q, %s, %nf, %ov = lq.quantize %x range %c : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  return %q : !lq.qtensor<4x8x!lq.sint4>
}

// -----

// The GEMM decodes codes to integers inside the reduction (no dequantized
// copy), accumulates both SMP samples into one i32 sum, then applies the
// f32 epilogue.
// CHECK-DAG: #[[A:.*]] = affine_map<(d0, d1, d2) -> (d2, d0)>
// CHECK-DAG: #[[B:.*]] = affine_map<(d0, d1, d2) -> (d2, d1)>
// CHECK-DAG: #[[BIAS:.*]] = affine_map<(d0, d1) -> (d1)>
// CHECK: func.func @matmul
// CHECK: %[[ZERO:.*]] = linalg.fill {{.*}} -> tensor<8x6xi32>
// CHECK: %[[ACC0:.*]] = linalg.generic {indexing_maps = [#[[A]], #[[B]], #{{.*}}], iterator_types = ["parallel", "parallel", "reduction"]} {{.*}} outs(%[[ZERO]] : tensor<8x6xi32>)
// CHECK: arith.muli %{{.*}}, %{{.*}} : i32
// CHECK: %[[ACC1:.*]] = linalg.generic {{.*}} outs(%[[ACC0]] : tensor<8x6xi32>)
// CHECK: arith.mulf
// CHECK: arith.mulf %{{.*}}, %cst{{.*}} : f32
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[BIAS]], #{{.*}}]{{.*}} ins(%[[ACC1]], %{{.*}} : tensor<8x6xi32>, tensor<6xf32>)
// CHECK: arith.sitofp
// CHECK: arith.addf
// CHECK: arith.maximumf
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @matmul(%g0: !lq.qtensor<4x8x!lq.log4>, %g1: !lq.qtensor<4x8x!lq.log4>, %x: !lq.qtensor<4x6x!lq.uint4>,
                  %sa: f32, %sb: f32, %b: tensor<6xf32>) -> tensor<8x6xbf16> {
  %y = lq.matmul (%g0, %g1) scale %sa, %x scale %sb bias %b {transpose_lhs, relu}
      : (!lq.qtensor<4x8x!lq.log4>, !lq.qtensor<4x8x!lq.log4>), !lq.qtensor<4x6x!lq.uint4>, tensor<6xf32> -> tensor<8x6xbf16>
  return %y : tensor<8x6xbf16>
}

// -----

// Training-level ops are expanded first; nothing of lq is left.
// CHECK-LABEL: func.func @layer
// CHECK-NOT: lq.
// CHECK: return
func.func @layer(%x: tensor<8x16xf32>, %w: tensor<4x16xf32>, %dy: tensor<8x4xf32>, %seed: i64)
    -> (tensor<8x4xf32>, tensor<8x16xf32>, tensor<4x16xf32>) {
  %y = lq.linear %x, %w : tensor<8x16xf32>, tensor<4x16xf32> -> tensor<8x4xf32>
  %dx, %dw, %gm, %nf, %ov = lq.linear_grad %x, %w, %dy seed %seed
      : tensor<8x16xf32>, tensor<4x16xf32>, tensor<8x4xf32> -> tensor<8x16xf32>, tensor<4x16xf32>
  return %y, %dx, %dw : tensor<8x4xf32>, tensor<8x16xf32>, tensor<4x16xf32>
}
