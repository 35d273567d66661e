// A small persistent pool of worker threads for the CPU kernels. Created once, on first use; a call hands it a
// plain function pointer and a context, so running work allocates nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace kvflash::cpu {

class ThreadPool {
 public:
  /// fn(context, task, slot): slot in [0, participants) tells the task which per-thread scratch it owns.
  using TaskFn = void (*)(void* context, int64_t task, int slot);

  /// The process-wide pool: hardware_concurrency() participants (the caller counts as one), or
  /// KVFLASH_NUM_THREADS when that environment variable holds a positive number.
  static ThreadPool& instance();

  explicit ThreadPool(int participants);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Participants a run can use: the workers plus the calling thread.
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  /// Runs tasks [0, n_tasks) on up to min(participants, size()) threads and returns when all are done. Tasks are
  /// handed out dynamically and the caller works too, so a worker the OS has not scheduled yet delays nothing;
  /// callers get deterministic results by making each task's output independent of which thread ran it. A call
  /// made while another is running (from another thread) runs all its tasks on the caller alone, with slot 0.
  void run(int64_t n_tasks, int participants, TaskFn fn, void* context);

 private:
  // The next task and the run it belongs to share one atomic word, so that a worker that wakes up late can never
  // take a task of a later run: its claim fails once the generation has moved on.
  static constexpr int kTaskBits = 40;
  static constexpr uint64_t kTaskMask = (uint64_t{1} << kTaskBits) - 1;

  void worker_loop(int slot);
  // Takes and runs tasks of `generation` until none is left; returns how many it ran.
  int64_t drain(uint64_t generation, int64_t n_tasks, TaskFn fn, void* context, int slot);

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one run at a time

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  bool stopping_ = false;

  // The current run (written under mutex_ before the generation moves).
  uint64_t generation_ = 0;
  TaskFn fn_ = nullptr;
  void* context_ = nullptr;
  int64_t n_tasks_ = 0;
  int participants_ = 0;
  std::atomic<uint64_t> next_{0};     // generation << kTaskBits | next task index
  std::atomic<int64_t> finished_{0};  // tasks of the current run that have completed
};

}  // namespace kvflash::cpu
