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
  // Like map(), at an address that is a multiple of `alignment` (a power of two, at least the
  // page size): an area `alignment` larger is reserved, the mapping placed in it (MAP_FIXED),
  // and the rest given back.  A file mapped so from an offset aligned the same way may be mapped
  // by PMDs (alignment 2 MiB), which an address mmap() chose need not allow.
  static Mapping map_aligned(std::size_t length, std::size_t alignment, int prot, int flags, int fd,
                             off_t offset = 0);

  // Maps [at, at + length) of this mapping afresh (MAP_FIXED) from `offset` of `fd`: what the old
  // mapping had there goes, with the page tables that only it used (a PMD's worth of page table
  // goes when the range covers an aligned 2 MiB), so the next fault starts from an empty PMD.
  void remap(std::size_t at, std::size_t length, int prot, int flags, int fd, off_t offset) const;

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
