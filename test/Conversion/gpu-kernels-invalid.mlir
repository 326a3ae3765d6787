// RUN: lq-opt %s --lq-gpu-kernels --split-input-file --verify-diagnostics
// RUN: not lq-opt %s --lq-gpu-kernels=chip=sm_75 --split-input-file 2>&1 | FileCheck %s --check-prefix=CHIP

// CHIP: error: unknown GPU chip 'sm_75': expected sm_80 or sm_90a

func.func @operand_from_argument(%q: !lq.qtensor<4x8x!lq.log4>, %w: tensor<8x6xf32>, %s: f32) -> tensor<4x6xf32> {
  %c = lq.sawb_clip %w : tensor<8x6xf32>
  %qw, %sw, %nf, %ov = lq.quantize %w range %c : tensor<8x6xf32> -> !lq.qtensor<8x6x!lq.sint4>
  // expected-error @below {{left operand must come from lq.quantize or lq.unpack to be fused into a GPU kernel}}
  %y = lq.matmul (%q) scale %s, %qw scale %sw : (!lq.qtensor<4x8x!lq.log4>), !lq.qtensor<8x6x!lq.sint4> -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// -----

func.func @f16_input(%x: tensor<4x8xf16>, %w: tensor<8x6xf32>) -> tensor<4x6xf32> {
  %c = lq.sawb_clip %x : tensor<4x8xf16>
  %qx, %sx, %nf, %ov = lq.quantize %x range %c : tensor<4x8xf16> -> !lq.qtensor<4x8x!lq.sint4>
  %cw = lq.sawb_clip %w : tensor<8x6xf32>
  %qw, %sw, %nf2, %ov2 = lq.quantize %w range %cw : tensor<8x6xf32> -> !lq.qtensor<8x6x!lq.sint4>
  // expected-error @below {{left operand: f16 inputs have no GPU kernel yet; use f32 or bf16}}
  %y = lq.matmul (%qx) scale %sx, %qw scale %sw : (!lq.qtensor<4x8x!lq.sint4>), !lq.qtensor<8x6x!lq.sint4> -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}
