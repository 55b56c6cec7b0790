#include <sys/mman.h>

#include <cstdint>

#include <fmt/format.h>

#include <vmcoh/error.hpp>
#include <vmcoh/mapping.hpp>

namespace vmcoh {

Mapping Mapping::map(std::size_t length, int prot, int flags, int fd, off_t offset) {
  void* addr = ::mmap(nullptr, length, prot, flags, fd, offset);
  if (addr == MAP_FAILED) {
    throw_errno(fmt::format("mmap length {} fd {} offset {}", length, fd, offset));
  }
  return Mapping(addr, length);
}

Mapping Mapping::anonymous_shared(std::size_t length) {
  return map(length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
}

Mapping Mapping::map_aligned(std::size_t length, std::size_t alignment, int prot, int flags, int fd,
                             off_t offset) {
  Mapping area =
      map(length + alignment, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);
  const auto start = reinterpret_cast<std::uintptr_t>(area.data());
  const std::size_t head = ((start + alignment - 1) & ~(std::uintptr_t{alignment} - 1)) - start;
  std::byte* const aligned = area.data() + head;
  void* addr = ::mmap(aligned, length, prot, flags | MAP_FIXED, fd, offset);
  if (addr == MAP_FAILED) {
    throw_errno(fmt::format("mmap length {} fd {} offset {} at {}", length, fd, offset,
                            static_cast<void*>(aligned)));
  }
  // The mapping replaced the middle of the reservation; its head and tail go back now.
  if (head > 0) ::munmap(area.data(), head);
  ::munmap(aligned + length, alignment - head);
  area.addr_ = nullptr;
  area.length_ = 0;
  return Mapping(addr, length);
}

void Mapping::remap(std::size_t at, std::size_t length, int prot, int flags, int fd,
                    off_t offset) const {
  void* addr = ::mmap(data() + at, length, prot, flags | MAP_FIXED, fd, offset);
  if (addr == MAP_FAILED) {
    throw_errno(fmt::format("mmap MAP_FIXED length {} fd {} offset {}", length, fd, offset));
  }
}

void Mapping::reset() noexcept {
  // munmap() only fails for arguments mmap() could not have returned.
  if (addr_ != nullptr) ::munmap(addr_, length_);
  addr_ = nullptr;
  length_ = 0;
}

}  // namespace vmcoh
