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

int64_t ThreadPool::drain(uint64_t generation, int64_t n_tasks, TaskFn fn, void* context, int slot) {
  const uint64_t tag = generation << kTaskBits;
  int64_t ran = 0;
  uint64_t word = next_.load(std::memory_order_relaxed);
  for (;;) {
    if ((word & ~kTaskMask) != tag || static_cast<int64_t>(word & kTaskMask) >= n_tasks) break;
    if (!next_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) continue;
    fn(context, static_cast<int64_t>(word & kTaskMask), slot);
    ++ran;
    word = next_.load(std::memory_order_relaxed);
  }
  return ran;
}

void ThreadPool::worker_loop(int slot) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t generation;
    int64_t n_tasks;
    TaskFn fn;
    void* context;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation = generation_;
      if (slot >= participants_) continue;
      n_tasks = n_tasks_;
      fn = fn_;
      context = context_;
    }
    const int64_t ran = drain(generation, n_tasks, fn, context, slot);
    if (ran > 0 && finished_.fetch_add(ran, std::memory_order_acq_rel) + ran == n_tasks) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_all();
    }
  }
}

void ThreadPool::run(int64_t n_tasks, int participants, TaskFn fn, void* context) {
  if (n_tasks <= 0) return;
  std::unique_lock<std::mutex> exclusive(run_mutex_, std::try_to_lock);
  const int used = static_cast<int>(
      std::min<int64_t>({static_cast<int64_t>(std::max(participants, 1)), static_cast<int64_t>(size()), n_tasks}));
  if (!exclusive.owns_lock() || used == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(context, t, 0);
    return;
  }
  uint64_t generation;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation = ++generation_ & ((uint64_t{1} << (64 - kTaskBits)) - 1);
    generation_ = generation;
    fn_ = fn;
    context_ = context;
    n_tasks_ = n_tasks;
    participants_ = used;
    finished_.store(0, std::memory_order_relaxed);
    next_.store(generation << kTaskBits, std::memory_order_release);
  }
  wake_.notify_all();
  const int64_t ran = drain(generation, n_tasks, fn, context, 0);
  if (finished_.fetch_add(ran, std::memory_order_acq_rel) + ran == n_tasks) return;
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return finished_.load(std::memory_order_acquire) == n_tasks; });
}

}  // namespace kvflash::cpu
