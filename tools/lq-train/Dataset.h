//===- Dataset.h - IDX image classification data ---------------*- C++ -*-===//
//
// The IDX files of MNIST-style datasets (Fashion-MNIST as Debian ships it
// under /usr/share/datasets/fashion-mnist), gzipped or not.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_TRAIN_DATASET_H
#define LQ_TRAIN_DATASET_H

#include "lq/Runtime/Runtime.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lq::train {

struct Dataset {
  int64_t count = 0;
  int64_t rows = 0, cols = 0;
  /// count x rows*cols pixels in [0, 1].
  std::vector<float> images;
  std::vector<uint8_t> labels;
  int64_t pixels() const { return rows * cols; }
};

/// Reads `<dir>/<prefix>-images-idx3-ubyte[.gz]` and the labels beside it;
/// an error names the file and what is wrong with it (missing, truncated,
/// a bad magic number, counts that disagree, a label outside 0..9).
Result<Dataset> loadIdx(const std::string &dir, const std::string &prefix);

} // namespace lq::train

#endif // LQ_TRAIN_DATASET_H
