// Worker: one side of an interleaving, a thread that lives as long as the program and runs one
// job at a time.
//
// The threads exist before any hold point is armed, because a task parked in ->fault holds its
// mmap_lock for reading: creating a thread (mmap of its stack), growing the heap (brk) or any
// other mmap_lock writer in this process would then sleep behind the parked fault, and every
// later fault of the process would queue behind that writer.  For the same reason a job should
// not allocate: capture one pointer (std::function then stores it in place).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace vmcoh::interleave {

class Worker {
 public:
  Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  // Stops and joins the thread if it is idle; a thread still inside a job (stuck in the kernel)
  // is detached, and the program must then leave through std::_Exit.
  ~Worker();

  // Runs `job` on the worker thread; the worker must be idle.  An exception thrown by `job` is
  // kept as failure().
  void start(std::function<void()> job);
  // Waits at most `bound` for the current job to end; true if no job is running any more.
  [[nodiscard]] bool wait(std::chrono::milliseconds bound);
  [[nodiscard]] bool busy();
  // What the last job threw, if it threw.
  [[nodiscard]] std::optional<std::string> failure();

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::function<void()> job_;
  bool busy_ = false;
  bool stop_ = false;
  std::optional<std::string> failure_;
  std::thread thread_;
};

}  // namespace vmcoh::interleave
