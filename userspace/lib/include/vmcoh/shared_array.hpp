// SharedArray<T>: a zero-filled array in MAP_SHARED|MAP_ANONYMOUS memory.  Created before fork(),
// it is the same memory in the parent and in every child, so actors running as processes
// coordinate through it exactly as threads do.
//
// T must be trivial: its all-zero bytes are its initial value, and mmap() gives it life.  Fields
// that several actors touch concurrently are accessed only through std::atomic_ref (see atomic()),
// which is address-free for 8-byte integers on every Linux target, hence valid across processes.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <span>
#include <type_traits>

#include <vmcoh/mapping.hpp>

namespace vmcoh {

template <class T>
class SharedArray {
  static_assert(std::is_trivial_v<T>, "shared memory holds only trivial types");

 public:
  explicit SharedArray(std::size_t count)
      : mapping_(Mapping::anonymous_shared(bytes_for(count))), count_(count) {}

  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] T& operator[](std::size_t i) const noexcept { return items()[i]; }
  [[nodiscard]] std::span<T> items() const noexcept {
    return {reinterpret_cast<T*>(mapping_.data()), count_};
  }

 private:
  static std::size_t bytes_for(std::size_t count) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t bytes = count == 0 ? 1 : count * sizeof(T);
    return (bytes + page - 1) / page * page;
  }

  Mapping mapping_;
  std::size_t count_;
};

// The one way vmcoh touches a shared integer.
template <class T>
[[nodiscard]] std::atomic_ref<T> atomic(T& value) noexcept {
  static_assert(std::atomic_ref<T>::is_always_lock_free, "must be address-free across processes");
  return std::atomic_ref<T>(value);
}

}  // namespace vmcoh
