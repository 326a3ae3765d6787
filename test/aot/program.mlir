// The backward-data GEMM of a layer: LUQ on dy, SAWB on the weight.
func.func @backward_data(%dy: tensor<5x37xf32>, %w: tensor<37x9xf32>, %seed: i64) -> tensor<5x9xf32> {
  %m, %bad = lq.max_abs %dy : tensor<5x37xf32>
  %g, %a, %nf, %ov = lq.quantize %dy range %m seed %seed {stream = 3} : tensor<5x37xf32> -> !lq.qtensor<5x37x!lq.log4>
  %c = lq.sawb_clip %w : tensor<37x9xf32>
  %qw, %sw, %nf2, %ov2 = lq.quantize %w range %c : tensor<37x9xf32> -> !lq.qtensor<37x9x!lq.sint4>
  %dx = lq.matmul (%g) scale %a, %qw scale %sw {role = #lq.role<backward_data>}
      : (!lq.qtensor<5x37x!lq.log4>), !lq.qtensor<37x9x!lq.sint4> -> tensor<5x9xf32>
  return %dx : tensor<5x9xf32>
}
