//===- Checkpoint.h - lq-train's state after an epoch -----------*- C++ -*-===//
//
// Everything a run needs to continue after a completed epoch exactly as if
// it had not stopped: the options that affect the numbers, the dataset's
// identity, the per-epoch results so far, the current mode's parameters and
// momentum buffers, and the in-hindsight gradient-max estimates.
//
// No random-engine state is kept because none outlives an epoch: the
// initialization engine is spent once the network exists (the saved
// parameters replace its draws), each epoch's shuffle engine is seeded
// with seed + epoch, and each step's LUQ seed is a function of the seed
// and the step's index. The seed is one of the saved options.
//
// The file (little-endian):
//
//   "LQTRCKPT"  u32 format version  u32 n, n bytes: lq version
//   u64 payload size  u64 xxh3 of the payload  payload
//
// The payload is a sequence of sections (4-byte tag, u64 size, bytes):
// OPTS, DATA, RSLT, TIME (the only time-dependent one: seconds per epoch),
// NET (parameters) and GEMM (estimates).
//
//===----------------------------------------------------------------------===//

#ifndef LQ_TRAIN_CHECKPOINT_H
#define LQ_TRAIN_CHECKPOINT_H

#include "lq/Spec/Result.h"

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lq::train {

struct EpochResult {
  double loss = 0, trainAcc = 0, testAcc = 0, seconds = 0;
  int64_t skipped = 0;
};

/// The results of one mode: complete, or those of its first epochs.
struct ModeRecord {
  std::string name;
  std::vector<EpochResult> epochs;
  /// xxh3 of the mode's parameters after its last epoch (of those here).
  uint64_t paramsDigest = 0;
};

/// Which data a run trained on, by content.
struct DatasetIdentity {
  int64_t trainCount = 0, testCount = 0, rows = 0, cols = 0;
  uint64_t digest = 0;
  bool operator==(const DatasetIdentity &o) const {
    return trainCount == o.trainCount && testCount == o.testCount &&
           rows == o.rows && cols == o.cols && digest == o.digest;
  }
  std::string describe() const;
};

/// One layer's parameters and momentum buffers.
struct LayerState {
  std::vector<float> w, b, vw, vb;
};

struct Checkpoint {
  /// (option name, value as the command line spells it), in a fixed order.
  std::vector<std::pair<std::string, std::string>> options;
  DatasetIdentity data;
  /// The completed modes, then the current one (at least one epoch done).
  std::vector<ModeRecord> results;
  /// Non-finite steps in a row at the end of the last epoch.
  int64_t consecutiveSkips = 0;
  /// The current mode's network.
  std::vector<LayerState> layers;
  /// The current mode's in-hindsight estimates, per layer.
  std::map<int, float> estimates;
};

/// The checkpoint file in `dir`.
std::string checkpointPath(const std::string &dir);

/// Writes `checkpoint` into `dir` (created if missing) atomically: into a
/// temporary file beside the final one, synced, then renamed over it, so a
/// crash leaves either the previous checkpoint or this one.
Status writeCheckpoint(const std::string &dir, const Checkpoint &checkpoint);

/// Reads the checkpoint in `dir`; an error names the file and what is wrong
/// (missing, not a checkpoint, another format or lq version, truncated,
/// corrupt).
Result<Checkpoint> readCheckpoint(const std::string &dir);

} // namespace lq::train

#endif // LQ_TRAIN_CHECKPOINT_H
