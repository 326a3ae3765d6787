//===- Plot.h - training curves as a PNG, drawn by matplotlib ---*- C++ -*-===//

#ifndef LQ_TRAIN_PLOT_H
#define LQ_TRAIN_PLOT_H

#include "lq/Runtime/Runtime.h"

#include <string>

namespace lq::train {

/// What became of the plot when nothing failed.
struct PlotOutcome {
  /// The PNG was written.
  bool written = false;
  /// Why it was not, when it was not: python3 or matplotlib is missing
  /// here. Not an error: the CSV holds the curves.
  std::string note;
};

/// Plots the curves of the CSV that lq-train wrote at `csvPath` (training
/// loss and test accuracy per epoch, one color per mode) into a PNG at
/// `pngPath`, by running lq-plot (installed next to lq-train) with
/// python3 and matplotlib.
Result<PlotOutcome> writePlot(const std::string &csvPath,
                              const std::string &pngPath);

} // namespace lq::train

#endif // LQ_TRAIN_PLOT_H
