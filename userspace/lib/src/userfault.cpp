#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

#include <fmt/format.h>

#include <vmcoh/error.hpp>
#include <vmcoh/stamp.hpp>
#include <vmcoh/userfault.hpp>

namespace vmcoh {

Userfaultfd Userfaultfd::open() {
  Fd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!fd) {
    const int err = errno;
    throw_errno(err == EPERM ? "userfaultfd: kernel-mode faults need CAP_SYS_PTRACE (run as root) "
                               "or vm.unprivileged_userfaultfd=1"
                             : "userfaultfd",
                err);
  }
  uffdio_api api{};
  api.api = UFFD_API;
  check_syscall(::ioctl(fd.get(), UFFDIO_API, &api), "UFFDIO_API");
  return Userfaultfd(std::move(fd));
}

std::optional<std::uintptr_t> Userfaultfd::wait_fault(std::chrono::milliseconds timeout) const {
  pollfd p{fd(), POLLIN, 0};
  const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (ready < 0 && errno != EINTR) throw_errno("poll userfaultfd");
  if (ready <= 0) return std::nullopt;
  uffd_msg msg{};
  const ssize_t n = ::read(fd(), &msg, sizeof msg);
  if (n < 0 && errno == EAGAIN) return std::nullopt;  // another reader took it
  check_syscall(n, "read userfaultfd");
  if (msg.event != UFFD_EVENT_PAGEFAULT) {
    throw std::runtime_error(fmt::format("userfaultfd: unexpected event {:#x}", msg.event));
  }
  return static_cast<std::uintptr_t>(msg.arg.pagefault.address) & ~std::uintptr_t{kPageSize - 1};
}

void Userfaultfd::copy(void* dst, const void* src, std::size_t length) const {
  uffdio_copy arg{};
  arg.dst = reinterpret_cast<std::uintptr_t>(dst);
  arg.src = reinterpret_cast<std::uintptr_t>(src);
  arg.len = length;
  check_syscall(::ioctl(fd(), UFFDIO_COPY, &arg), "UFFDIO_COPY");
}

void Userfaultfd::zero(void* dst, std::size_t length) const {
  uffdio_zeropage arg{};
  arg.range.start = reinterpret_cast<std::uintptr_t>(dst);
  arg.range.len = length;
  check_syscall(::ioctl(fd(), UFFDIO_ZEROPAGE, &arg), "UFFDIO_ZEROPAGE");
}

UffdRegistration::UffdRegistration(const Userfaultfd& uffd, void* start, std::size_t length)
    : uffd_(uffd.fd()), start_(reinterpret_cast<std::uintptr_t>(start)), length_(length) {
  uffdio_register reg{};
  reg.range.start = start_;
  reg.range.len = length_;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  check_syscall(::ioctl(uffd_, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER");
}

UffdRegistration::~UffdRegistration() {
  if (uffd_ < 0) return;
  uffdio_range range{start_, length_};
  // Fails only for a range that was never registered; munmap() unregisters anyway.
  ::ioctl(uffd_, UFFDIO_UNREGISTER, &range);
}

TrapPage::TrapPage()
    : uffd_(Userfaultfd::open()),
      page_(Mapping::map(kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1)),
      registration_(uffd_, page_.data(), kPageSize) {}

bool TrapPage::wait_fault(std::chrono::milliseconds timeout) const {
  const std::optional<std::uintptr_t> at = uffd_.wait_fault(timeout);
  if (at && *at != reinterpret_cast<std::uintptr_t>(page_.data())) {
    throw std::runtime_error(fmt::format("userfaultfd: a fault at {:#x}, not the trap page", *at));
  }
  return at.has_value();
}

void TrapPage::resolve(const void* page) const { uffd_.copy(page_.data(), page, kPageSize); }

void TrapPage::resolve_zero() const { uffd_.zero(page_.data(), kPageSize); }

void TrapPage::rearm() const {
  check_syscall(::madvise(page_.data(), kPageSize, MADV_DONTNEED), "madvise(MADV_DONTNEED) trap");
}

}  // namespace vmcoh
