//===- Table.cpp - the summary table of an lq-bench run -------------------===//

#include "Table.h"

#include "LaunchBench.h"

#include <algorithm>

namespace lq::bench {
namespace {

using Result = CollectingReporter::Result;

std::string cell(const char *format, double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, v);
  return buffer;
}

struct TableRow {
  std::string benchmark, measured, baseline, ratio, target, verdict;
};

std::string verdict(bool met) { return met ? "met" : "MISSED"; }

/// Fills `row`'s baseline, ratio and verdict from `measured` and the
/// baseline's counter `counter` scaled by `unit` (printed with `format`);
/// a row with a target meets it from `minRatio` up.
void compare(TableRow &row, double measured, const Result *base,
             const char *counter, double unit, const char *format,
             bool targeted, double minRatio) {
  if (!base) {
    row.baseline = row.ratio = "n/a";
    row.verdict = targeted ? "n/a" : "-";
    return;
  }
  double b = base->counter(counter) * unit;
  row.baseline = cell(format, b);
  row.ratio = cell("%.2fx", measured / b);
  row.verdict = targeted ? verdict(measured / b >= minRatio) : "-";
}

/// Quantizer throughput. The first (largest) size is held against memcpy,
/// which it must reach half of; smaller sizes, whose memcpy runs in cache,
/// against the same quantizer's rate at the first size, 0.7x of which
/// they must keep (per-call costs must not dominate a training-sized
/// tensor). LUQ and SAWB have targets, LUQ with the max given is shown
/// for comparison.
void addQuantizeRows(const CollectingReporter &reporter,
                     const std::vector<std::string> &quantSizes,
                     std::vector<TableRow> &rows) {
  if (quantSizes.empty())
    return;
  const std::string &large = quantSizes.front();
  for (const std::string &size : quantSizes) {
    bool largest = size == large;
    for (const char *q : {"luq", "sawb", "luq-hindsight"}) {
      const Result *r =
          reporter.find(std::string("quantize/") + q + "/" + size);
      if (!r)
        continue;
      bool targeted = std::string(q) != "luq-hindsight";
      TableRow row;
      row.benchmark = std::string("quantize ") +
                      (q[0] == 's'    ? "SAWB"
                       : targeted     ? "LUQ"
                                      : "LUQ (max given)") +
                      " f32 " + size;
      double gbs = r->counter("bytes_per_second") * 1e-9;
      row.measured = cell("%.2f GB/s", gbs);
      if (largest) {
        row.target = targeted ? ">= 0.50x memcpy" : "-";
        compare(row, gbs, reporter.find("quantize/memcpy/" + size),
                "bytes_per_second", 1e-9, "%.2f GB/s memcpy", targeted, 0.5);
      } else {
        row.target = targeted ? ">= 0.70x at " + large : "-";
        std::string format = "%.2f GB/s at " + large;
        compare(row, gbs,
                reporter.find(std::string("quantize/") + q + "/" + large),
                "bytes_per_second", 1e-9, format.c_str(), targeted, 0.7);
      }
      rows.push_back(row);
    }
  }
}

/// GEMM rates against SGEMM. Targets, for GEMMs from f32 operands: the
/// 2048^3 forward GEMM 2.5x (8-bit dot products do four times the work of
/// an f32 FMA per instruction), the training shapes 1.3x each.
void addGemmRows(const CollectingReporter &reporter,
                 const std::vector<GemmCase> &gemms,
                 std::vector<TableRow> &rows) {
  for (const GemmCase &c : gemms) {
    const Result *base = reporter.find(c.name("openblas"));
    for (const char *impl : {"lq", "lq-packed"}) {
      const Result *r = reporter.find(c.name(impl));
      if (!r)
        continue;
      bool packed = std::string(impl) == "lq-packed";
      TableRow row;
      row.benchmark = "GEMM " + std::string(roleName(c.role)) + " " + c.what +
                      (packed ? ", pre-quantized" : "");
      double g = r->counter("FLOP/s") * 1e-9;
      row.measured = cell("%.1f GFLOP/s", g);
      bool large = c.M == 2048 && c.N == 2048 && c.K == 2048 &&
                   c.role == Role::Forward;
      bool trainingShape = !(c.M == c.N && c.N == c.K);
      double minRatio = large ? 2.5 : 1.3;
      bool targeted = !packed && (large || trainingShape);
      row.target = targeted ? cell(">= %.2fx SGEMM", minRatio) : "-";
      compare(row, g, base, "FLOP/s", 1e-9, "%.1f GFLOP/s SGEMM", targeted,
              minRatio);
      rows.push_back(row);
    }
  }
}

/// Tiny cached launches against a plain f32 function call; the forward
/// launch has an absolute target.
void addLaunchRows(const CollectingReporter &reporter,
                   const std::vector<Role> &roles,
                   std::vector<TableRow> &rows) {
  const Result *base = reporter.find(launchName("plain-call", Role::Forward));
  for (Role role : roles) {
    const Result *r = reporter.find(launchName("lq-cached", role));
    if (!r)
      continue;
    bool targeted = role == Role::Forward;
    TableRow row;
    row.benchmark = std::string("cached launch: ") + roleName(role) + " " +
                    std::to_string(kTinySize) + "^3";
    double us = r->seconds * 1e6;
    row.measured = cell("%.2f us", us);
    row.target = targeted ? "<= 2 us" : "-";
    if (base) {
      row.baseline = cell("%.2f us f32 call", base->seconds * 1e6);
      row.ratio = cell("%.2fx", us / (base->seconds * 1e6));
    } else {
      row.baseline = row.ratio = "n/a";
    }
    row.verdict = targeted ? verdict(us <= 2.0) : "-";
    rows.push_back(row);
  }
}

/// Compile times against their absolute targets.
void addJitRows(const CollectingReporter &reporter,
                const std::vector<Role> &coldRoles,
                const std::vector<Role> &diskRoles,
                std::vector<TableRow> &rows) {
  for (Role role : coldRoles)
    if (const Result *r =
            reporter.find(std::string("jit/cold-compile/") + roleName(role))) {
      double ms = r->seconds * 1e3;
      rows.push_back({std::string("cold compile: ") + roleName(role),
                      cell("%.1f ms", ms), "-", "-", "<= 150 ms",
                      verdict(ms <= 150.0)});
    }
  for (Role role : coldRoles)
    if (const Result *r = reporter.find(std::string("jit/gpu-cold-compile/") +
                                        roleName(role))) {
      double ms = r->seconds * 1e3;
      rows.push_back({std::string("cold compile: ") + roleName(role) +
                          " sm_90a",
                      cell("%.1f ms", ms), "-", "-", "<= 300 ms",
                      verdict(ms <= 300.0)});
    }
  if (const Result *r = reporter.find("jit/memory-hit/forward")) {
    double us = r->seconds * 1e6;
    rows.push_back({"in-process cache hit: forward", cell("%.3f us", us), "-",
                    "-", "<= 2 us", verdict(us <= 2.0)});
  }
  for (Role role : diskRoles)
    if (const Result *r = reporter.find(
            std::string("jit/disk-hit-new-process/") + roleName(role))) {
      double ms = r->seconds * 1e3;
      rows.push_back({std::string("disk hit, new process: ") + roleName(role),
                      cell("%.2f ms", ms), "-", "-", "<= 20 ms",
                      verdict(ms <= 20.0)});
    }
  if (const Result *r =
          reporter.find("jit/disk-hit-new-process-jit-ready/forward"))
    rows.push_back({"disk hit, new process, JIT ready: forward",
                    cell("%.2f ms", r->seconds * 1e3), "-", "-", "-", "-"});
  if (const Result *r = reporter.find("jit/disk-hit-in-process/forward"))
    rows.push_back({"disk hit, same process: forward",
                    cell("%.2f ms", r->seconds * 1e3), "-", "-", "-", "-"});
}

/// The rows under a header, each column as wide as its widest cell.
void printRows(const std::vector<TableRow> &rows, std::FILE *out) {
  TableRow header{"benchmark", "measured", "baseline", "ratio", "target",
                  "result"};
  size_t w[6] = {0, 0, 0, 0, 0, 0};
  auto widen = [&](const TableRow &r) {
    const std::string *cells[6] = {&r.benchmark, &r.measured, &r.baseline,
                                   &r.ratio,     &r.target,   &r.verdict};
    for (int i = 0; i < 6; ++i)
      w[i] = std::max(w[i], cells[i]->size());
  };
  widen(header);
  for (const TableRow &r : rows)
    widen(r);
  auto print = [&](const TableRow &r) {
    std::fprintf(out, "%-*s  %*s  %*s  %*s  %-*s  %s\n", int(w[0]),
                 r.benchmark.c_str(), int(w[1]), r.measured.c_str(),
                 int(w[2]), r.baseline.c_str(), int(w[3]), r.ratio.c_str(),
                 int(w[4]), r.target.c_str(), r.verdict.c_str());
  };
  std::fprintf(out, "\nlq-bench summary (ratios against baselines run in this "
                    "process)\n");
  print(header);
  std::fprintf(out, "%s\n",
               std::string(w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + 10, '-')
                   .c_str());
  for (const TableRow &r : rows)
    print(r);
}

} // namespace

void printTable(const CollectingReporter &reporter,
                const std::vector<std::string> &quantSizes,
                const std::vector<GemmCase> &gemms,
                const std::vector<Role> &launchRoles,
                const std::vector<Role> &coldRoles,
                const std::vector<Role> &diskRoles, std::FILE *out) {
  std::vector<TableRow> rows;
  addQuantizeRows(reporter, quantSizes, rows);
  addGemmRows(reporter, gemms, rows);
  addLaunchRows(reporter, launchRoles, rows);
  addJitRows(reporter, coldRoles, diskRoles, rows);
  if (!rows.empty())
    printRows(rows, out);
}

} // namespace lq::bench
