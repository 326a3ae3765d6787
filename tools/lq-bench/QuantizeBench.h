//===- QuantizeBench.h - quantizers against memcpy --------------*- C++ -*-===//

#ifndef LQ_BENCH_QUANTIZEBENCH_H
#define LQ_BENCH_QUANTIZEBENCH_H

#include <string>
#include <vector>

namespace lq::bench {

/// Registers quantize/{memcpy,luq,sawb,luq-hindsight}/<rows>x<cols> for each
/// size and returns the sizes, in order.
std::vector<std::string> registerQuantizeBenchmarks();

} // namespace lq::bench

#endif // LQ_BENCH_QUANTIZEBENCH_H
