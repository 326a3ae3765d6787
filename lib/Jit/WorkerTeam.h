//===- WorkerTeam.h - one parallel region per launch ------------*- C++ -*-===//
//
// A host launch runs dependent stages: statistics, quantization, packing,
// the GEMM. Handing each stage to a thread pool wakes the other threads
// once per stage, and waking an idle CPU costs from a few to about 70
// microseconds (on a virtual machine, an interrupt through the
// hypervisor): more than a small GEMM takes. A WorkerTeam wakes its
// workers once per launch and runs the stages as phases of one region,
// separated by barriers at which threads spin briefly before they sleep.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_JIT_WORKERTEAM_H
#define LQ_JIT_WORKERTEAM_H

#include "llvm/ADT/STLFunctionalExtras.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <sys/types.h>

namespace lq::runtime {

class WorkerTeam;

/// What one participant of a region sees: its index, how many take part,
/// and the barrier between phases.
class Region {
public:
  unsigned thread() const { return index; }
  unsigned participants() const { return count; }
  /// Returns when every participant has called it (at once when alone);
  /// what each wrote before it is visible to all after it.
  void barrier();

private:
  friend class WorkerTeam;
  Region(WorkerTeam *team, unsigned index, unsigned count)
      : team(team), index(index), count(count) {}
  WorkerTeam *team;
  unsigned index, count;
};

/// The caller and up to size() - 1 worker threads, started on the first
/// region that needs them.
class WorkerTeam {
public:
  explicit WorkerTeam(unsigned threads);
  ~WorkerTeam();
  WorkerTeam(const WorkerTeam &) = delete;
  WorkerTeam &operator=(const WorkerTeam &) = delete;

  unsigned size() const { return threads; }

  /// Runs body(region) on `participants` threads (at most size()), the
  /// caller as thread 0, and returns when all have returned. One
  /// participant runs on the caller alone and involves no other thread, so
  /// such regions of concurrent callers run side by side; larger regions of
  /// concurrent callers take the team one after another.
  void run(unsigned participants, llvm::function_ref<void(Region &)> body);

private:
  friend class Region;
  void barrier(unsigned count);
  void work(unsigned index, uint64_t seen);
  void startWorkers();
  /// Returns once `done()` holds: spins first, then sleeps until notify().
  template <typename Done> void waitUntil(Done done);
  /// Wakes the threads sleeping in waitUntil, if there are any.
  void notify();

  const unsigned threads;
  /// Held by the caller of a region of several participants.
  std::mutex regionMutex;
  /// Workers, made by the process that owns them (a forked child has none
  /// and runs its regions alone).
  std::unique_ptr<std::vector<std::thread>> workers;
  std::atomic<pid_t> owner{0};

  /// The current region: epoch << 16 | participants, published after body.
  std::atomic<uint64_t> state{0};
  llvm::function_ref<void(Region &)> body;
  /// Workers of the current region that have not returned yet.
  std::atomic<unsigned> running{0};
  std::atomic<bool> stopping{false};

  std::atomic<unsigned> arrived{0};
  std::atomic<uint64_t> barrierEpoch{0};

  std::mutex sleepMutex;
  std::condition_variable wake;
  std::atomic<unsigned> sleepers{0};
};

} // namespace lq::runtime

#endif // LQ_JIT_WORKERTEAM_H
