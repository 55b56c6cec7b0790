// userfaultfd(2) in missing mode: memory whose first access blocks until this process says what
// it holds.  The access may be the kernel's own - copying from user memory, or pinning it - so a
// task can be held inside a system call at a known point: process_vm_writev() with its target
// page pinned, copying from a trap page; an O_DIRECT read with its first buffer pinned, pinning
// the trap page that follows it.  The race harness's pin-vs-punch scenario and the gtest suite
// use it that way (see pinned_io.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include <vmcoh/fd.hpp>
#include <vmcoh/mapping.hpp>

namespace vmcoh {

class Userfaultfd {
 public:
  // userfaultfd(O_CLOEXEC | O_NONBLOCK) and the UFFDIO_API handshake.  Without
  // UFFD_USER_MODE_ONLY, since the faults wanted are taken in kernel mode: where
  // vm.unprivileged_userfaultfd is 0 that needs CAP_SYS_PTRACE, and the EPERM thrown says so.
  // (O_NONBLOCK: without it, poll() on a userfaultfd says POLLERR at once, fs/userfaultfd.c.)
  static Userfaultfd open();

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  // Waits up to `timeout` for a page fault in a registered range, and reads it: the faulting
  // address (page-aligned), or nullopt if none came.
  [[nodiscard]] std::optional<std::uintptr_t> wait_fault(std::chrono::milliseconds timeout) const;
  // Fills the missing page(s) at [dst, dst + length) with a copy of `src` (UFFDIO_COPY) or with
  // zeros (UFFDIO_ZEROPAGE), waking whoever waits for them.
  void copy(void* dst, const void* src, std::size_t length) const;
  void zero(void* dst, std::size_t length) const;

 private:
  explicit Userfaultfd(Fd fd) noexcept : fd_(std::move(fd)) {}

  Fd fd_;
};

// [start, start + length) registered with a userfaultfd for missing faults, until destroyed.
// The userfaultfd must outlive it.
class UffdRegistration {
 public:
  UffdRegistration(const Userfaultfd& uffd, void* start, std::size_t length);
  UffdRegistration(UffdRegistration&& other) noexcept
      : uffd_(std::exchange(other.uffd_, -1)), start_(other.start_), length_(other.length_) {}
  UffdRegistration& operator=(UffdRegistration&&) = delete;
  UffdRegistration(const UffdRegistration&) = delete;
  UffdRegistration& operator=(const UffdRegistration&) = delete;
  ~UffdRegistration();

 private:
  int uffd_;
  std::uintptr_t start_;
  std::size_t length_;
};

// One anonymous page behind a userfaultfd of its own: every access to it, from user or kernel
// mode, waits until resolve() or resolve_zero(); rearm() makes it missing again.  The page is
// unregistered, unmapped and the userfaultfd closed when it is destroyed, in that order.
class TrapPage {
 public:
  TrapPage();

  [[nodiscard]] std::byte* data() const noexcept { return page_.data(); }
  // True once something waits for the page (within `timeout`); the fault is read, so the next
  // call waits for the next one.
  [[nodiscard]] bool wait_fault(std::chrono::milliseconds timeout) const;
  // Fills the page with a copy of `page` (kPageSize bytes), or with zeros: whoever waits goes on.
  void resolve(const void* page) const;
  void resolve_zero() const;
  // Drops the page (MADV_DONTNEED), so that the next access waits again.
  void rearm() const;

 private:
  Userfaultfd uffd_;
  Mapping page_;
  UffdRegistration registration_;
};

}  // namespace vmcoh
