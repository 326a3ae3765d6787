//===- Plot.h - training curves as a PNG ------------------------*- C++ -*-===//

#ifndef LQ_TRAIN_PLOT_H
#define LQ_TRAIN_PLOT_H

#include "lq/Runtime/Runtime.h"

#include <string>
#include <vector>

namespace lq::train {

/// One curve: y over x, drawn in a color of its own.
struct Series {
  std::string name;
  std::vector<double> x, y;
};

/// A panel of curves with a title and axis labels.
struct Panel {
  std::string title, xLabel;
  std::vector<Series> series;
};

/// Draws the panels side by side (lines, axes with tick values, a legend)
/// into an RGB PNG at `path`.
Result<bool> writePlotPng(const std::string &path,
                          const std::vector<Panel> &panels);

} // namespace lq::train

#endif // LQ_TRAIN_PLOT_H
