// Test hooks of /dev/vmcoh (module parameter test_hooks=1): hold points, which park a task at a
// named step of the fault or invalidation protocol until it is released, so a test can drive one
// exact interleaving; and the unsafe protocol variants (unsafe=NAME) such a test must catch.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include <vmcoh.h>

namespace vmcoh {

// The wrappers allocate only to report a failure (see hold_wait for why that matters).
namespace device {
// VMCOH_IOC_HOLD_ARM: parks the first task that reaches `point` for page `index` (and, for an
// invalidation point, one of `ops`, 0 meaning any) for at most `park_timeout` (0: the module's
// default).  Throws std::system_error on failure (EPERM without test_hooks=1, EBUSY if armed).
void hold_arm(int fd, std::uint64_t point, std::uint64_t index, std::uint64_t ops,
              std::chrono::milliseconds park_timeout);
// VMCOH_IOC_HOLD_WAIT: true once a task is parked at `point`, false if none parked within
// `timeout`.  Throws on anything else (ENOENT: the point is neither armed nor occupied).  A task
// parked in ->fault holds its mmap_lock: until it is released, its process must not grow the
// heap or map memory, or that would wait for the park to end.
[[nodiscard]] bool hold_wait(int fd, std::uint64_t point, std::chrono::milliseconds timeout);
// VMCOH_IOC_HOLD_RELEASE: lets the parked task go, or disarms; true if a task was parked.
bool hold_release(int fd, std::uint64_t point);
}  // namespace device

// "FAULT_LOOKED_UP", "INVAL_BEFORE_UNMAP", ...: VMCOH_HOLD_* without its prefix.
[[nodiscard]] std::string_view hold_point_name(std::uint64_t point) noexcept;
// "none", "lookup_before_lock", ...: the module parameter's value for VMCOH_UNSAFE_*.
[[nodiscard]] std::string_view unsafe_variant_name(std::uint64_t variant) noexcept;
[[nodiscard]] std::optional<std::uint64_t> unsafe_variant_from_name(std::string_view name) noexcept;

// One armed hold point, owned: the destructor releases it (a parked task goes on, an unfired point
// is disarmed), so no error path leaves a task parked until its timeout.  Movable, not copyable.
class HoldPoint {
 public:
  HoldPoint(int fd, std::uint64_t point, std::uint64_t index, std::uint64_t ops,
            std::chrono::milliseconds park_timeout);
  HoldPoint(HoldPoint&& other) noexcept;
  HoldPoint& operator=(HoldPoint&&) = delete;
  HoldPoint(const HoldPoint&) = delete;
  HoldPoint& operator=(const HoldPoint&) = delete;
  ~HoldPoint();

  [[nodiscard]] std::uint64_t point() const noexcept { return point_; }
  // True once a task is parked here; false if none parked within `timeout`.
  [[nodiscard]] bool wait_parked(std::chrono::milliseconds timeout) const;
  // Lets the parked task go (or disarms); true if a task was parked.  Later calls return false.
  bool release();

 private:
  int fd_;
  std::uint64_t point_;
  bool armed_ = true;
};

}  // namespace vmcoh
