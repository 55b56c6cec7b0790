// The object a behaviour test runs against, in a known state: kTestSize bytes, all holes.
//
// Two backends: the vmcoh device (whose tests skip when /dev/vmcoh is absent; $VMCOH_DEVICE
// overrides the path) and a file on tmpfs, the reference whose behaviour the device must match
// wherever the two agree.  Device-only behaviours (ioctls, ENOSPC at EOF, stats) use DeviceTest.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include <vmcoh/mapping.hpp>
#include <vmcoh/oracle.hpp>
#include <vmcoh/stamp.hpp>
#include <vmcoh/target.hpp>

// How gtest prints vmcoh's values in a failed expectation (a page by its header, not 4096 bytes).
namespace vmcoh {
void PrintTo(const PageImage& page, std::ostream* os);
inline void PrintTo(Content content, std::ostream* os) { *os << to_string(content); }
}  // namespace vmcoh
namespace vmcoh::oracle {
inline void PrintTo(Finding finding, std::ostream* os) { *os << to_string(finding); }
inline void PrintTo(StateKind kind, std::ostream* os) { *os << to_string(kind); }
}  // namespace vmcoh::oracle

namespace vmcoh::test {

inline constexpr std::uint64_t kBlock = kPageSize;
inline constexpr std::uint64_t kTestBlocks = 64;
inline constexpr std::uint64_t kTestSize = kTestBlocks * kBlock;
inline constexpr std::uint64_t kTestRunId = 0x7e57'0000'0000'0001ULL;

[[nodiscard]] std::filesystem::path device_path();
[[nodiscard]] bool device_present();

// How long a stress scenario runs: $VMCOH_STRESS_SECONDS if set (make check sets it short: the
// deterministic scenarios are what must catch each broken protocol), else `otherwise`.
[[nodiscard]] std::chrono::milliseconds stress_time(std::chrono::milliseconds otherwise);

// Opens a target and brings it to kTestSize bytes of holes; restores the device's size, or
// removes the file, when destroyed.
class ScratchObject {
 public:
  // The device (must exist).
  static std::unique_ptr<ScratchObject> device();
  // A new file on tmpfs; nullptr if no tmpfs directory is available.
  static std::unique_ptr<ScratchObject> tmpfs_file();

  ScratchObject(Target target, std::filesystem::path remove_when_done);
  ScratchObject(const ScratchObject&) = delete;
  ScratchObject& operator=(const ScratchObject&) = delete;
  ~ScratchObject();

  [[nodiscard]] const Target& target() const noexcept { return target_; }

 private:
  Target target_;
  std::uint64_t original_size_;
  std::filesystem::path remove_when_done_;
};

// The stamp of `block` at `generation`: what the tests write and expect back.
[[nodiscard]] PageImage block_stamp(std::uint64_t block, std::uint64_t generation);

// Helpers over a target's descriptor; each fails the test (ADD_FAILURE) on a short transfer.
void pwrite_block(int fd, std::uint64_t block, const PageImage& page);
[[nodiscard]] PageImage pread_block(int fd, std::uint64_t block);
[[nodiscard]] PageImage mapped_block(const Mapping& map, std::uint64_t block);
// The first line of /proc/self/smaps that starts with `prefix` ("VmFlags:", "Rss:") in the entry
// of the VMA that starts at `start`; "" if there is none.
[[nodiscard]] std::string smaps_line(const void* start, const std::string& prefix);
void store_block(const Mapping& map, std::uint64_t block, const PageImage& page);
// A parameter of the loaded module, /sys/module/vmcoh/parameters/NAME: a number, Y as 1, N or
// absent as 0.
[[nodiscard]] std::uint64_t module_parameter(const std::string& name);
// Pages a read fault maps around itself, as the loaded module applies fault_around (0: 16, or 1
// with test_hooks=1).
[[nodiscard]] std::uint64_t fault_around_window();

enum class Backend { device, tmpfs };
[[nodiscard]] std::string backend_name(const testing::TestParamInfo<Backend>& info);
inline void PrintTo(Backend backend, std::ostream* os) {
  *os << (backend == Backend::device ? "device" : "tmpfs");
}

// Behaviours the device shares with a tmpfs file: each test runs against both.
class ObjectTest : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override;
  void TearDown() override { object_.reset(); }

  [[nodiscard]] const Target& target() const { return object_->target(); }
  [[nodiscard]] int fd() const { return object_->target().fd(); }
  [[nodiscard]] Mapping map(int prot, int flags, std::uint64_t length = kTestSize) const;

 private:
  std::unique_ptr<ScratchObject> object_;
};

// Behaviours only the device has.
class DeviceTest : public testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override { object_.reset(); }

  [[nodiscard]] const Target& target() const { return object_->target(); }
  [[nodiscard]] int fd() const { return object_->target().fd(); }
  [[nodiscard]] vmcoh_info info() const { return device::get_info(fd()); }
  [[nodiscard]] vmcoh_stats stats() const { return device::get_stats(fd()); }
  [[nodiscard]] Mapping map(int prot, int flags, std::uint64_t length = kTestSize) const;
  // From a SetUp that has set up: skips the test unless the module has test_hooks=1.
  void require_test_hooks() const;

 private:
  std::unique_ptr<ScratchObject> object_;
};

}  // namespace vmcoh::test
