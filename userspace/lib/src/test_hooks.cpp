#include <sys/ioctl.h>

#include <array>
#include <cerrno>
#include <utility>

#include <fmt/format.h>

#include <vmcoh/error.hpp>
#include <vmcoh/test_hooks.hpp>

namespace vmcoh {

namespace {

constexpr std::array<std::string_view, VMCOH_NR_HOLD_POINTS> kHoldPointNames = {
    "FAULT_SIZE_CHECKED", "FAULT_LOCKED",          "FAULT_LOOKED_UP",    "FAULT_BEFORE_PTE",
    "INVAL_MAP_CHANGED",  "INVAL_ENTRIES_REMOVED", "INVAL_BEFORE_UNMAP", "INVAL_BEFORE_FREE",
    "DROP_STARTED",       "FAULT_ALLOCATED",       "MKWRITE_LOCKED",     "WRITEBACK_CLEARED",
};

constexpr std::array<std::string_view, VMCOH_NR_UNSAFE> kUnsafeNames = {
    "none",
    "lookup_before_lock",
    "unmap_before_remove",
    "no_size_recheck",
    "no_even_cows",
    "free_before_unmap",
    "write_no_invalidate",
    "load_after_invalidate",
    "invalidate_waits_load",
    "drop_under_entry_lock",
    "drop_skips_writeback",
    "reclaim_in_fault",
    "pmd_downgrade_no_unmap",
    "wait_holding_mmap_lock",
    "zero_unmap_after_publish",
    "reuse_pinned",
    "no_store_wait",
    "writeback_copy_before_unmap",
};

vmcoh_hold hold_arg(std::uint64_t point, std::chrono::milliseconds timeout) {
  vmcoh_hold arg{};
  arg.point = point;
  arg.timeout_ms = static_cast<std::uint64_t>(timeout.count());
  return arg;
}

}  // namespace

// The wrappers format their messages only on failure: a caller may hold a task parked in ->fault
// with this process's mmap_lock held, and an allocation that grows the heap would wait for it.
namespace device {

void hold_arm(int fd, std::uint64_t point, std::uint64_t index, std::uint64_t ops,
              std::chrono::milliseconds park_timeout) {
  vmcoh_hold arg = hold_arg(point, park_timeout);
  arg.index = index;
  arg.ops = ops;
  if (::ioctl(fd, VMCOH_IOC_HOLD_ARM, &arg) != 0) {
    throw_errno(fmt::format("VMCOH_IOC_HOLD_ARM {} index {}", hold_point_name(point), index));
  }
}

bool hold_wait(int fd, std::uint64_t point, std::chrono::milliseconds timeout) {
  vmcoh_hold arg = hold_arg(point, timeout);
  for (;;) {
    if (::ioctl(fd, VMCOH_IOC_HOLD_WAIT, &arg) == 0) return true;
    if (errno == ETIMEDOUT) return false;
    // A signal (the SIGBUS probe of another thread is not one) restarts the whole wait.
    if (errno != EINTR) {
      throw_errno(fmt::format("VMCOH_IOC_HOLD_WAIT {}", hold_point_name(point)));
    }
  }
}

bool hold_release(int fd, std::uint64_t point) {
  vmcoh_hold arg = hold_arg(point, std::chrono::milliseconds(0));
  const int released = ::ioctl(fd, VMCOH_IOC_HOLD_RELEASE, &arg);
  if (released < 0) throw_errno(fmt::format("VMCOH_IOC_HOLD_RELEASE {}", hold_point_name(point)));
  return released == 1;
}

}  // namespace device

std::string_view hold_point_name(std::uint64_t point) noexcept {
  return point < kHoldPointNames.size() ? kHoldPointNames[point] : "?";
}

std::string_view unsafe_variant_name(std::uint64_t variant) noexcept {
  return variant < kUnsafeNames.size() ? kUnsafeNames[variant] : "?";
}

std::optional<std::uint64_t> unsafe_variant_from_name(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kUnsafeNames.size(); ++i) {
    if (kUnsafeNames[i] == name) return i;
  }
  return std::nullopt;
}

HoldPoint::HoldPoint(int fd, std::uint64_t point, std::uint64_t index, std::uint64_t ops,
                     std::chrono::milliseconds park_timeout)
    : fd_(fd), point_(point) {
  device::hold_arm(fd, point, index, ops, park_timeout);
}

HoldPoint::HoldPoint(HoldPoint&& other) noexcept
    : fd_(other.fd_), point_(other.point_), armed_(std::exchange(other.armed_, false)) {}

HoldPoint::~HoldPoint() {
  // Errors are not actionable here; closing the arming descriptor releases the point anyway.
  if (armed_) {
    vmcoh_hold arg = hold_arg(point_, std::chrono::milliseconds(0));
    ::ioctl(fd_, VMCOH_IOC_HOLD_RELEASE, &arg);
  }
}

bool HoldPoint::wait_parked(std::chrono::milliseconds timeout) const {
  return device::hold_wait(fd_, point_, timeout);
}

bool HoldPoint::release() {
  if (!std::exchange(armed_, false)) return false;
  return device::hold_release(fd_, point_);
}

}  // namespace vmcoh
