//===- Workspace.cpp - scratch memory reused across launches --------------===//

#include "Workspace.h"

#include <algorithm>
#include <new>

using namespace lq::runtime;

uint8_t *Workspace::reserve(size_t bytes) {
  if (bytes <= capacity && aligned)
    return aligned;
  constexpr size_t align = WorkspaceLayout::kAlign;
  // Grow by half again at least, so that slowly growing shapes do not
  // reallocate on every launch; fall back to the size asked when that
  // much is not available.
  size_t wanted = std::max(bytes, capacity + capacity / 2);
  // The old memory goes first: its contents need not survive.
  memory.reset();
  aligned = nullptr;
  capacity = 0;
  for (size_t size : {wanted, bytes}) {
    std::unique_ptr<uint8_t[]> fresh(new (std::nothrow) uint8_t[size + align]);
    if (!fresh)
      continue;
    uintptr_t address = reinterpret_cast<uintptr_t>(fresh.get());
    aligned = fresh.get() + (align - address % align) % align;
    memory = std::move(fresh);
    capacity = size;
    return aligned;
  }
  return nullptr;
}

WorkspacePool::Lease WorkspacePool::take() {
  std::unique_ptr<Workspace> workspace;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!idle.empty()) {
      workspace = std::move(idle.back());
      idle.pop_back();
    }
  }
  if (!workspace)
    workspace = std::make_unique<Workspace>();
  return Lease(*this, std::move(workspace));
}

void WorkspacePool::giveBack(std::unique_ptr<Workspace> workspace) {
  std::lock_guard<std::mutex> lock(mutex);
  idle.push_back(std::move(workspace));
}
