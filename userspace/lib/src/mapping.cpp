#include <sys/mman.h>

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

void Mapping::reset() noexcept {
  // munmap() only fails for arguments mmap() could not have returned.
  if (addr_ != nullptr) ::munmap(addr_, length_);
  addr_ = nullptr;
  length_ = 0;
}

}  // namespace vmcoh
