// Writes through pinned pages: ways to make the kernel take a reference to a page of user memory
// with get_user_pages()/pin_user_pages() and write through that reference later, when this
// process chooses (a TrapPage, userfault.hpp, holds the writer in between).  What the race
// harness's pin-vs-punch scenario drives:
//  - process_vm_writev() into this process: pins the target pages (pin_user_pages_remote), then
//    copies from the source, which may be a trap page;
//  - an O_DIRECT preadv(): the block layer pins each buffer of the vector in turn and submits the
//    I/O once it has them all, so a trap page after a page of a mapping holds that page pinned
//    with the data not yet in it (iomap's direct I/O: ext4, xfs; not btrfs's, which reads with
//    page faults disabled and faults the trap page in with no pin held - o_direct_refusal());
//  - io_uring fixed buffers: registration takes a long-term pin (FOLL_LONGTERM) that lasts until
//    the buffers are unregistered, and IORING_OP_READ_FIXED writes through it.  Kernels refuse
//    some file mappings: 6.1 every one but hugetlbfs (EOPNOTSUPP), later ones those that need
//    dirty tracking (EFAULT).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <vmcoh/fd.hpp>
#include <vmcoh/mapping.hpp>
#include <vmcoh/stamp.hpp>

struct io_uring;

namespace vmcoh {

// process_vm_writev(getpid(), {from, length}, {to, length}): the bytes written; throws on error.
std::size_t process_vm_write_self(const void* from, void* to, std::size_t length);

// Why an O_DIRECT read of a file in `dir` would not hold its buffers pinned while it waits on a
// trap page, or nullopt if it would: the filesystem refuses O_DIRECT (EINVAL); it is tmpfs,
// which takes O_DIRECT but copies through the page cache; or its reads complete what they could
// pin and fault the rest in before retrying (btrfs), which a probe read into a page and a trap
// page shows.  Needs userfaultfd; throws for other errors (`dir` missing or not writable).
[[nodiscard]] std::optional<std::string> o_direct_refusal(const std::filesystem::path& dir);

// An unnamed file of two pages in some directory, opened O_DIRECT, whose first page holds what
// set_first_page() put there.  Written in one go and synced when made, so its two pages are one
// extent and one read is one bio.
class DirectFile {
 public:
  explicit DirectFile(const std::filesystem::path& dir);

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  void set_first_page(const PageImage& page) const;
  // preadv() of the file's two pages into `first` then `second` (page-aligned, one page each):
  // the bytes read, or -errno.
  [[nodiscard]] ssize_t read_into(void* first, void* second) const;

 private:
  Fd fd_;
  Mapping buffer_;  // page-aligned, as O_DIRECT wants
};

class RegisteredBuffer;

// An io_uring instance (liburing), torn down when destroyed.
class IoUring {
 public:
  explicit IoUring(unsigned entries);
  IoUring(const IoUring&) = delete;
  IoUring& operator=(const IoUring&) = delete;
  ~IoUring();

  // Registers [addr, addr + length) as fixed buffer 0 until the result is destroyed; throws
  // std::system_error with the kernel's errno if it refuses.
  [[nodiscard]] RegisteredBuffer register_buffer(void* addr, std::size_t length);
  // IORING_OP_READ_FIXED of `length` bytes at `offset` of `fd` into the start of fixed buffer 0,
  // waiting for its completion: the CQE's result (bytes read, or -errno).
  [[nodiscard]] int read_fixed(int fd, std::uint64_t offset, void* addr, std::size_t length);

 private:
  friend class RegisteredBuffer;
  std::unique_ptr<io_uring> ring_;
};

class RegisteredBuffer {
 public:
  RegisteredBuffer(RegisteredBuffer&& other) noexcept
      : ring_(std::exchange(other.ring_, nullptr)) {}
  RegisteredBuffer& operator=(RegisteredBuffer&&) = delete;
  RegisteredBuffer(const RegisteredBuffer&) = delete;
  RegisteredBuffer& operator=(const RegisteredBuffer&) = delete;
  // Unregisters: the long-term pin goes.
  ~RegisteredBuffer();

 private:
  friend class IoUring;
  explicit RegisteredBuffer(io_uring* ring) noexcept : ring_(ring) {}
  io_uring* ring_;
};

}  // namespace vmcoh
