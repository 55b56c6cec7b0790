// Mapping: an owned mmap() region, unmapped by its destructor.  Movable, not copyable.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <utility>

namespace vmcoh {

class Mapping {
 public:
  Mapping() noexcept = default;
  Mapping(Mapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), length_(std::exchange(other.length_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      reset();
      addr_ = std::exchange(other.addr_, nullptr);
      length_ = std::exchange(other.length_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  // mmap(NULL, length, prot, flags, fd, offset); throws std::system_error on failure.
  static Mapping map(std::size_t length, int prot, int flags, int fd, off_t offset = 0);
  // Zero-filled memory shared with every process forked after this call.
  static Mapping anonymous_shared(std::size_t length);

  [[nodiscard]] std::byte* data() const noexcept { return static_cast<std::byte*>(addr_); }
  [[nodiscard]] std::size_t size() const noexcept { return length_; }
  explicit operator bool() const noexcept { return addr_ != nullptr; }

  void reset() noexcept;

 private:
  Mapping(void* addr, std::size_t length) noexcept : addr_(addr), length_(length) {}

  void* addr_ = nullptr;
  std::size_t length_ = 0;
};

}  // namespace vmcoh
