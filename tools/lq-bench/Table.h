//===- Table.h - the summary table of an lq-bench run -----------*- C++ -*-===//

#ifndef LQ_BENCH_TABLE_H
#define LQ_BENCH_TABLE_H

#include "GemmBench.h"
#include "Harness.h"

#include <cstdio>
#include <string>
#include <vector>

namespace lq::bench {

/// Prints each measurement that ran, its baseline, the ratio and the target
/// (docs/benchmarks.md), for the benchmarks registered with these sizes,
/// cases and roles.
void printTable(const CollectingReporter &reporter,
                const std::vector<std::string> &quantSizes,
                const std::vector<GemmCase> &gemms,
                const std::vector<Role> &launchRoles,
                const std::vector<Role> &coldRoles,
                const std::vector<Role> &diskRoles, std::FILE *out);

} // namespace lq::bench

#endif // LQ_BENCH_TABLE_H
