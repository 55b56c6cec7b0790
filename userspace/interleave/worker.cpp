#include "worker.hpp"

#include <exception>
#include <stdexcept>
#include <utility>

namespace vmcoh::interleave {

Worker::Worker() : thread_([this] { loop(); }) {}

Worker::~Worker() {
  {
    const std::lock_guard lock(mutex_);
    stop_ = true;
    if (busy_) {
      thread_.detach();
      return;
    }
  }
  changed_.notify_all();
  thread_.join();
}

void Worker::start(std::function<void()> job) {
  {
    const std::lock_guard lock(mutex_);
    if (busy_) throw std::logic_error("Worker::start while a job is running");
    job_ = std::move(job);
    failure_.reset();
    busy_ = true;
  }
  changed_.notify_all();
}

bool Worker::wait(std::chrono::milliseconds bound) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, bound, [this] { return !busy_; });
}

bool Worker::busy() {
  const std::lock_guard lock(mutex_);
  return busy_;
}

std::optional<std::string> Worker::failure() {
  const std::lock_guard lock(mutex_);
  return failure_;
}

void Worker::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stop_ || (busy_ && job_); });
    if (stop_ && !busy_) return;
    std::function<void()> job = std::exchange(job_, nullptr);
    lock.unlock();
    std::optional<std::string> failure;
    try {
      job();
    } catch (const std::exception& e) {
      failure = e.what();
    } catch (...) {
      failure = "unknown exception";
    }
    lock.lock();
    failure_ = std::move(failure);
    busy_ = false;
    changed_.notify_all();
    if (stop_) return;
  }
}

}  // namespace vmcoh::interleave
