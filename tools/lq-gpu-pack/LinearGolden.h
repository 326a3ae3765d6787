//===- LinearGolden.h - one lq.torch.Linear step from the CPU kernels -*- C++ -*-===//
//
// The three GEMMs of one step of a linear layer (and of one after a ReLU,
// whose input is unsigned), computed by the host kernels where the pack is
// made, so that the GPU machine (which has no host kernels) compares its
// own results with them bit for bit:
//
//   linear-step.txt   "name rows cols" per array, in file order, after
//                     "seed=" and "stream=" lines
//   linear-step.f32   the arrays, little-endian f32, row-major
//
//===----------------------------------------------------------------------===//

#ifndef LQ_TOOLS_LQGPUPACK_LINEARGOLDEN_H
#define LQ_TOOLS_LQGPUPACK_LINEARGOLDEN_H

#include "lq/Spec/Result.h"

#include <string>

namespace lq {

/// Writes linear-step.txt and linear-step.f32 into `dir`.
Status writeLinearGolden(const std::string &dir);

} // namespace lq

#endif // LQ_TOOLS_LQGPUPACK_LINEARGOLDEN_H
