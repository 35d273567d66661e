#include "backend/cpu/thread_pool.h"

#include <algorithm>
#include <cstdlib>

namespace kvflash::cpu {

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool([] {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("KVFLASH_NUM_THREADS")) {
      const long asked = std::strtol(env, nullptr, 10);
      if (asked > 0 && asked <= 1024) n = static_cast<int>(asked);
    }
    return std::max(n, 1);
  }());
  return pool;
}

ThreadPool::ThreadPool(int participants) {
  const int n_workers = std::max(participants, 1) - 1;
  workers_.reserve(static_cast<size_t>(n_workers));
  for (int i = 0; i < n_workers; ++i) workers_.emplace_back([this, i] { worker_loop(i + 1); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::drain(int slot) {
  for (int64_t t = next_task_.fetch_add(1, std::memory_order_relaxed); t < n_tasks_;
       t = next_task_.fetch_add(1, std::memory_order_relaxed)) {
    fn_(context_, t, slot);
  }
}

void ThreadPool::worker_loop(int slot) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      if (slot >= participants_) continue;
    }
    drain(slot);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_workers_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::run(int64_t n_tasks, int participants, TaskFn fn, void* context) {
  if (n_tasks <= 0) return;
  std::unique_lock<std::mutex> exclusive(run_mutex_, std::try_to_lock);
  const int used = static_cast<int>(std::min<int64_t>({static_cast<int64_t>(std::max(participants, 1)),
                                                       static_cast<int64_t>(size()), n_tasks}));
  if (!exclusive.owns_lock() || used == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(context, t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    context_ = context;
    n_tasks_ = n_tasks;
    participants_ = used;
    busy_workers_ = used - 1;
    next_task_.store(0, std::memory_order_relaxed);
    ++generation_;
  }
  wake_.notify_all();
  drain(0);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return busy_workers_ == 0; });
}

}  // namespace kvflash::cpu
