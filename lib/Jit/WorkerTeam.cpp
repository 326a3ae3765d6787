//===- WorkerTeam.cpp - one parallel region per launch --------------------===//

#include "WorkerTeam.h"

#include <algorithm>
#include <chrono>

#include <unistd.h>

using namespace lq::runtime;

namespace {

/// How long a waiting thread spins before it sleeps: about what waking a
/// sleeping thread costs on a virtual machine, so that spinning never
/// wastes more than twice the best choice made knowing the wait's length.
constexpr std::chrono::microseconds kSpinTime(50);

void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

} // namespace

void Region::barrier() {
  if (count > 1)
    team->barrier(count);
}

// Regions publish their participants in 16 bits.
WorkerTeam::WorkerTeam(unsigned threads)
    : threads(std::clamp(threads, 1u, 0xffffu)) {}

WorkerTeam::~WorkerTeam() {
  if (!workers)
    return;
  // A forked child holds copies of its parent's thread handles, not
  // threads: nothing to stop or join.
  if (owner != getpid()) {
    (void)workers.release();
    return;
  }
  stopping.store(true);
  notify();
  for (std::thread &t : *workers)
    t.join();
}

// Sleeping: a waiter counts itself in `sleepers` and then checks its
// condition under sleepMutex; a notifier changes the condition and then
// reads `sleepers`. Both sequentially consistent, so at least one of them
// sees the other: no wake-up is lost.
template <typename Done> void WorkerTeam::waitUntil(Done done) {
  auto start = std::chrono::steady_clock::now();
  for (unsigned i = 1;; ++i) {
    if (done())
      return;
    cpuRelax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() - start > kSpinTime)
      break;
  }
  std::unique_lock<std::mutex> lock(sleepMutex);
  sleepers.fetch_add(1);
  while (!done())
    wake.wait(lock);
  sleepers.fetch_sub(1);
}

void WorkerTeam::notify() {
  if (sleepers.load() == 0)
    return;
  { std::lock_guard<std::mutex> lock(sleepMutex); }
  wake.notify_all();
}

void WorkerTeam::startWorkers() {
  uint64_t epoch = state.load() >> 16;
  workers = std::make_unique<std::vector<std::thread>>();
  for (unsigned i = 1; i < threads; ++i)
    workers->emplace_back([this, i, epoch] { work(i, epoch); });
  owner = getpid();
}

void WorkerTeam::work(unsigned index, uint64_t seen) {
  for (;;) {
    uint64_t s = 0;
    waitUntil([&] {
      s = state.load();
      return (s >> 16) != seen || stopping.load();
    });
    if (stopping.load())
      return;
    seen = s >> 16;
    unsigned count = unsigned(s & 0xffff);
    // A region can end only after its participants return, so a worker
    // that takes part always reads that region's body.
    if (index >= count)
      continue;
    Region region(this, index, count);
    body(region);
    if (running.fetch_sub(1) == 1)
      notify();
  }
}

void WorkerTeam::run(unsigned participants,
                     llvm::function_ref<void(Region &)> fn) {
  participants = std::clamp(participants, 1u, threads);
  // A forked child runs alone: its parent's workers did not come along.
  if (participants > 1 && owner != 0 && owner != getpid())
    participants = 1;
  if (participants == 1) {
    Region region(this, 0, 1);
    fn(region);
    return;
  }
  std::lock_guard<std::mutex> lock(regionMutex);
  if (!workers)
    startWorkers();
  body = fn;
  running.store(participants - 1);
  uint64_t epoch = (state.load() >> 16) + 1;
  state.store(epoch << 16 | participants);
  notify();
  Region region(this, 0, participants);
  fn(region);
  waitUntil([&] { return running.load() == 0; });
}

void WorkerTeam::barrier(unsigned count) {
  // Read before arriving: the epoch cannot move until this thread arrives.
  uint64_t epoch = barrierEpoch.load();
  if (arrived.fetch_add(1) + 1 == count) {
    arrived.store(0);
    barrierEpoch.store(epoch + 1);
    notify();
    return;
  }
  waitUntil([&] { return barrierEpoch.load() != epoch; });
}
