// RUN: lq-opt %s -split-input-file -verify-diagnostics

// expected-error @below {{lq.qtensor must be 2-D, got rank 3}}
func.func @qtensor_rank(%q: !lq.qtensor<2x3x4x!lq.log4>) { return }

// -----

// expected-error @below {{lq.qtensor format must be !lq.sint4, !lq.uint4 or !lq.log4, got 'i4'}}
func.func @qtensor_format(%q: !lq.qtensor<2x3xi4>) { return }

// -----

func.func @quantize_shape(%x: tensor<4x8xf32>, %m: f32, %s: i64) {
  // expected-error @below {{result shape must be 4x8, got 4x9}}
  %q, %a, %nf, %ov = lq.quantize %x range %m seed %s : tensor<4x8xf32> -> !lq.qtensor<4x9x!lq.log4>
  return
}

// -----

func.func @quantize_luq_needs_seed(%x: tensor<4x8xf32>, %m: f32) {
  // expected-error @below {{LUQ (!lq.log4) quantization needs a seed}}
  %q, %a, %nf, %ov = lq.quantize %x range %m : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.log4>
  return
}

// -----

func.func @quantize_sawb_no_seed(%x: tensor<4x8xf32>, %c: f32, %s: i64) {
  // expected-error @below {{SAWB (int4) quantization is deterministic and takes no seed}}
  %q, %a, %nf, %ov = lq.quantize %x range %c seed %s : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  return
}

// -----

func.func @quantize_sawb_no_stream(%x: tensor<4x8xf32>, %c: f32) {
  // expected-error @below {{stream and sample apply only to LUQ (!lq.log4)}}
  %q, %a, %nf, %ov = lq.quantize %x range %c {stream = 3} : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.uint4>
  return
}

// -----

func.func @quantize_sawb_no_hindsight(%x: tensor<4x8xf32>, %c: f32) {
  // expected-error @below {{in-hindsight scaling applies only to LUQ (!lq.log4)}}
  %q, %a, %nf, %ov = lq.quantize %x range %c {hindsight} : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
  return
}

// -----

func.func @quantize_stream_range(%x: tensor<4x8xf32>, %m: f32, %s: i64) {
  // expected-error @below {{stream must be in [0, 2^32), got 4294967296}}
  %q, %a, %nf, %ov = lq.quantize %x range %m seed %s {stream = 4294967296} : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.log4>
  return
}

// -----

func.func @quantize_sample_range(%x: tensor<4x8xf32>, %m: f32, %s: i64) {
  // expected-error @below {{sample must be in [0, 2^32), got -1}}
  %q, %a, %nf, %ov = lq.quantize %x range %m seed %s {sample = -1} : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.log4>
  return
}

// -----

func.func @quantize_input_type(%x: tensor<4x8xf64>, %m: f32, %s: i64) {
  // expected-error @below {{operand #0 must be 2D tensor of 32-bit float or bfloat16 type or 16-bit float values}}
  %q, %a, %nf, %ov = lq.quantize %x range %m seed %s : tensor<4x8xf64> -> !lq.qtensor<4x8x!lq.log4>
  return
}

// -----

func.func @dequantize_shape(%q: !lq.qtensor<4x8x!lq.log4>, %a: f32) {
  // expected-error @below {{result shape must be 4x8, got 8x4}}
  %x = lq.dequantize %q scale %a : !lq.qtensor<4x8x!lq.log4> -> tensor<8x4xf32>
  return
}

// -----

func.func @pack_shape(%q: !lq.qtensor<4x5x!lq.log4>) {
  // expected-error @below {{packed shape must be 4x3, got 4x2}}
  %p = lq.pack %q : !lq.qtensor<4x5x!lq.log4> -> tensor<4x2xi8>
  return
}

// -----

func.func @unpack_shape(%p: tensor<4x3xi8>) {
  // expected-error @below {{packed shape must be 4x4, got 4x3}}
  %q = lq.unpack %p : tensor<4x3xi8> -> !lq.qtensor<4x8x!lq.sint4>
  return
}

// -----

func.func @unpack_dynamic_cols(%p: tensor<4x3xi8>) {
  // expected-error @below {{result column count must be static}}
  %q = lq.unpack %p : tensor<4x3xi8> -> !lq.qtensor<4x?x!lq.sint4>
  return
}

// -----

func.func @matmul_no_lhs(%b: !lq.qtensor<8x6x!lq.sint4>, %s: f32) {
  // expected-error @below {{needs at least one left operand}}
  %y = "lq.matmul"(%s, %b, %s) <{operandSegmentSizes = array<i32: 0, 1, 1, 1, 0>}> : (f32, !lq.qtensor<8x6x!lq.sint4>, f32) -> tensor<4x6xf32>
  return
}

// -----

func.func @matmul_smp_power_of_two(%a: !lq.qtensor<4x8x!lq.log4>, %b: !lq.qtensor<8x6x!lq.sint4>, %s: f32) {
  // expected-error @below {{SMP sample count must be a power of two in [1, 64], got 3}}
  %y = lq.matmul (%a, %a, %a) scale %s, %b scale %s : (!lq.qtensor<4x8x!lq.log4>, !lq.qtensor<4x8x!lq.log4>, !lq.qtensor<4x8x!lq.log4>), !lq.qtensor<8x6x!lq.sint4> -> tensor<4x6xf32>
  return
}

// -----

func.func @matmul_smp_needs_luq(%a: !lq.qtensor<4x8x!lq.sint4>, %b: !lq.qtensor<8x6x!lq.sint4>, %s: f32) {
  // expected-error @below {{SMP samples apply to a LUQ (!lq.log4) left operand}}
  %y = lq.matmul (%a, %a) scale %s, %b scale %s : (!lq.qtensor<4x8x!lq.sint4>, !lq.qtensor<4x8x!lq.sint4>), !lq.qtensor<8x6x!lq.sint4> -> tensor<4x6xf32>
  return
}

// -----

func.func @matmul_smp_same_type(%a: !lq.qtensor<4x8x!lq.log4>, %a2: !lq.qtensor<4x?x!lq.log4>, %b: !lq.qtensor<8x6x!lq.sint4>, %s: f32) {
  // expected-error @below {{SMP samples of the left operand must all have type '!lq.qtensor<4x8x!lq.log4>'}}
  %y = lq.matmul (%a, %a2) scale %s, %b scale %s : (!lq.qtensor<4x8x!lq.log4>, !lq.qtensor<4x?x!lq.log4>), !lq.qtensor<8x6x!lq.sint4> -> tensor<4x6xf32>
  return
}

// -----

func.func @matmul_two_log4(%a: !lq.qtensor<4x8x!lq.log4>, %b: !lq.qtensor<8x6x!lq.log4>, %s: f32) {
  // expected-error @below {{at most one operand may be !lq.log4}}
  %y = lq.matmul (%a) scale %s, %b scale %s : (!lq.qtensor<4x8x!lq.log4>), !lq.qtensor<8x6x!lq.log4> -> tensor<4x6xf32>
  return
}

// -----

func.func @matmul_reduction(%a: !lq.qtensor<4x8x!lq.log4>, %b: !lq.qtensor<8x6x!lq.sint4>, %s: f32) {
  // expected-error @below {{reduction dimensions differ: 8 (left) vs 6 (right)}}
  %y = lq.matmul (%a) scale %s, %b scale %s {transpose_rhs} : (!lq.qtensor<4x8x!lq.log4>), !lq.qtensor<8x6x!lq.sint4> -> tensor<4x8xf32>
  return
}

// -----

func.func @matmul_overflow_bound(%a: !lq.qtensor<4x1200000x!lq.log4>, %b: !lq.qtensor<1200000x6x!lq.sint4>, %s: f32) {
  // expected-error @below {{K = 1200000 with 2 samples can overflow the exact int32 accumulator}}
  %y = lq.matmul (%a, %a) scale %s, %b scale %s : (!lq.qtensor<4x1200000x!lq.log4>, !lq.qtensor<4x1200000x!lq.log4>), !lq.qtensor<1200000x6x!lq.sint4> -> tensor<4x6xf32>
  return
}

// -----

func.func @matmul_result_shape(%a: !lq.qtensor<8x4x!lq.log4>, %b: !lq.qtensor<8x6x!lq.sint4>, %s: f32) {
  // expected-error @below {{result shape must be 4x6, got 8x6}}
  %y = lq.matmul (%a) scale %s, %b scale %s {transpose_lhs} : (!lq.qtensor<8x4x!lq.log4>), !lq.qtensor<8x6x!lq.sint4> -> tensor<8x6xf32>
  return
}

// -----

func.func @matmul_bias(%a: !lq.qtensor<4x8x!lq.sint4>, %b: !lq.qtensor<8x6x!lq.sint4>, %s: f32, %bias: tensor<4xf32>) {
  // expected-error @below {{bias must have 6 elements, got 4}}
  %y = lq.matmul (%a) scale %s, %b scale %s bias %bias : (!lq.qtensor<4x8x!lq.sint4>), !lq.qtensor<8x6x!lq.sint4>, tensor<4xf32> -> tensor<4x6xf32>
  return
}

// -----

func.func @matmul_result_type(%a: !lq.qtensor<4x8x!lq.sint4>, %b: !lq.qtensor<8x6x!lq.sint4>, %s: f32) {
  // expected-error @below {{result #0 must be 2D tensor of 32-bit float or bfloat16 type values}}
  %y = lq.matmul (%a) scale %s, %b scale %s : (!lq.qtensor<4x8x!lq.sint4>), !lq.qtensor<8x6x!lq.sint4> -> tensor<4x6xf16>
  return
}

// -----

func.func @matmul_role_forward(%a: !lq.qtensor<4x8x!lq.log4>, %b: !lq.qtensor<8x6x!lq.sint4>, %s: f32) {
  // expected-error @below {{forward GEMM operands must be int4 (SAWB), not !lq.log4}}
  %y = lq.matmul (%a) scale %s, %b scale %s {role = #lq.role<forward>} : (!lq.qtensor<4x8x!lq.log4>), !lq.qtensor<8x6x!lq.sint4> -> tensor<4x6xf32>
  return
}

// -----

func.func @matmul_role_backward(%a: !lq.qtensor<4x8x!lq.sint4>, %b: !lq.qtensor<8x6x!lq.sint4>, %s: f32) {
  // expected-error @below {{weight_grad GEMM needs a !lq.log4 gradient on the left and an int4 operand on the right}}
  %y = lq.matmul (%a) scale %s, %b scale %s {role = #lq.role<weight_grad>} : (!lq.qtensor<4x8x!lq.sint4>), !lq.qtensor<8x6x!lq.sint4> -> tensor<4x6xf32>
  return
}

// -----

func.func @linear_features(%x: tensor<4x8xf32>, %w: tensor<6x7xf32>) {
  // expected-error @below {{input features differ: input has 8, weight has 7}}
  %y = lq.linear %x, %w : tensor<4x8xf32>, tensor<6x7xf32> -> tensor<4x6xf32>
  return
}

// -----

func.func @linear_bias(%x: tensor<4x8xf32>, %w: tensor<6x8xf32>, %b: tensor<8xf32>) {
  // expected-error @below {{bias must have 6 elements, got 8}}
  %y = lq.linear %x, %w bias %b : tensor<4x8xf32>, tensor<6x8xf32>, tensor<8xf32> -> tensor<4x6xf32>
  return
}

// -----

func.func @linear_result(%x: tensor<4x8xf32>, %w: tensor<6x8xf32>) {
  // expected-error @below {{result shape must be 4x6, got 6x4}}
  %y = lq.linear %x, %w : tensor<4x8xf32>, tensor<6x8xf32> -> tensor<6x4xf32>
  return
}

// -----

func.func @linear_grad_shape(%x: tensor<4x8xf32>, %w: tensor<6x8xf32>, %dy: tensor<4x8xf32>, %s: i64) {
  // expected-error @below {{gradient shape must be 4x6, got 4x8}}
  %dx, %dw, %gm, %nf, %ov = lq.linear_grad %x, %w, %dy seed %s : tensor<4x8xf32>, tensor<6x8xf32>, tensor<4x8xf32> -> tensor<4x8xf32>, tensor<6x8xf32>
  return
}

// -----

func.func @linear_grad_dx(%x: tensor<4x8xf32>, %w: tensor<6x8xf32>, %dy: tensor<4x6xf32>, %s: i64) {
  // expected-error @below {{input gradient shape must be 4x8, got 4x6}}
  %dx, %dw, %gm, %nf, %ov = lq.linear_grad %x, %w, %dy seed %s : tensor<4x8xf32>, tensor<6x8xf32>, tensor<4x6xf32> -> tensor<4x6xf32>, tensor<6x8xf32>
  return
}

// -----

func.func @linear_grad_dw(%x: tensor<4x8xf32>, %w: tensor<6x8xf32>, %dy: tensor<4x6xf32>, %s: i64) {
  // expected-error @below {{weight gradient shape must be 6x8, got 8x6}}
  %dx, %dw, %gm, %nf, %ov = lq.linear_grad %x, %w, %dy seed %s : tensor<4x8xf32>, tensor<6x8xf32>, tensor<4x6xf32> -> tensor<4x8xf32>, tensor<8x6xf32>
  return
}

// -----

func.func @linear_grad_smp(%x: tensor<4x8xf32>, %w: tensor<6x8xf32>, %dy: tensor<4x6xf32>, %s: i64) {
  // expected-error @below {{SMP sample count must be a power of two in [1, 64], got 6}}
  %dx, %dw, %gm, %nf, %ov = lq.linear_grad %x, %w, %dy seed %s {smp = 6} : tensor<4x8xf32>, tensor<6x8xf32>, tensor<4x6xf32> -> tensor<4x8xf32>, tensor<6x8xf32>
  return
}

// -----

func.func @linear_grad_stream(%x: tensor<4x8xf32>, %w: tensor<6x8xf32>, %dy: tensor<4x6xf32>, %s: i64) {
  // expected-error @below {{stream must be in [0, 2^32), got -2}}
  %dx, %dw, %gm, %nf, %ov = lq.linear_grad %x, %w, %dy seed %s {stream = -2} : tensor<4x8xf32>, tensor<6x8xf32>, tensor<4x6xf32> -> tensor<4x8xf32>, tensor<6x8xf32>
  return
}
