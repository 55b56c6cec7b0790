// StuckPage: a page of memory whose first read blocks until the test says so, to hold a task
// inside a kernel copy from user memory (a REPLY's, a process_vm_writev()'s) at a chosen moment.
#pragma once

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>

#include "test_object.hpp"

namespace vmcoh::test {

// A page of memory whose first read blocks until resolve(): userfaultfd, missing mode.
class StuckPage {
 public:
  StuckPage()
      // O_NONBLOCK: without it, poll() on a userfaultfd says POLLERR at once (fs/userfaultfd.c).
      : uffd_(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK))),
        page_(Mapping::map(kBlock, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1)) {
    if (!uffd_) return;
    uffdio_api api{};
    api.api = UFFD_API;
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<std::uintptr_t>(page_.data());
    reg.range.len = kBlock;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(uffd_.get(), UFFDIO_API, &api) != 0 ||
        ::ioctl(uffd_.get(), UFFDIO_REGISTER, &reg) != 0) {
      uffd_.reset();
    }
  }
  [[nodiscard]] bool usable() const noexcept { return uffd_.valid(); }
  [[nodiscard]] std::byte* data() const noexcept { return page_.data(); }
  // True once something is stuck reading the page (within `timeout`).
  [[nodiscard]] bool wait_stuck(std::chrono::milliseconds timeout) const {
    pollfd p{uffd_.get(), POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 && (p.revents & POLLIN) != 0;
  }
  // Fills the page with `page`: whoever was stuck goes on.
  void resolve(const PageImage& page) {
    uffdio_copy copy{};
    copy.dst = reinterpret_cast<std::uintptr_t>(page_.data());
    copy.src = reinterpret_cast<std::uintptr_t>(page.bytes());
    copy.len = kBlock;
    if (::ioctl(uffd_.get(), UFFDIO_COPY, &copy) != 0) throw_errno("UFFDIO_COPY");
  }

 private:
  Fd uffd_;
  Mapping page_;
};

}  // namespace vmcoh::test
