//===- StreamIds.h - stream ids for gradients without one -------*- C++ -*-===//
//
// Internal to the transforms. lq-expand-linear numbers the lq.linear_grad
// ops that have no stream, and lq-quantize-matmuls the gradients it
// quantizes, by one rule: each gets the smallest id not used explicitly in
// its function and not handed out before, in the order asked. Each pass
// says which ids its function uses explicitly.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_LIB_TRANSFORMS_STREAMIDS_H
#define LQ_LIB_TRANSFORMS_STREAMIDS_H

#include "llvm/ADT/SmallSet.h"

#include <cstdint>

namespace lq::transforms {

class StreamIds {
public:
  /// Marks `stream` as used explicitly: it is never handed out.
  void reserve(uint64_t stream) { used.insert(stream); }

  /// The smallest id neither reserved nor handed out before.
  uint64_t next() {
    while (used.contains(free))
      ++free;
    return free++;
  }

private:
  // A set with no reserved key values: an explicit stream may be any
  // 64-bit value.
  llvm::SmallSet<uint64_t, 8> used;
  uint64_t free = 0;
};

} // namespace lq::transforms

#endif // LQ_LIB_TRANSFORMS_STREAMIDS_H
