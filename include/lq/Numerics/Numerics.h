//===- Numerics.h - The scalar golden model of lq ---------------*- C++ -*-===//
//
// Everything the CPU and GPU kernels are tested against bit for bit:
// Philox uniforms, LUQ, SAWB, 4-bit packing and the exact quantized GEMM.
// See docs/numerics.md.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_NUMERICS_NUMERICS_H
#define LQ_NUMERICS_NUMERICS_H

#include "lq/Numerics/Gemm.h"
#include "lq/Numerics/Luq.h"
#include "lq/Numerics/Pack.h"
#include "lq/Numerics/Philox.h"
#include "lq/Numerics/Sawb.h"
#include "lq/Numerics/Types.h"

#endif // LQ_NUMERICS_NUMERICS_H
