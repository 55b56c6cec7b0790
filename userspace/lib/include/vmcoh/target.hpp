// Target: the object a test or a race runs against.  Either /dev/vmcoh (a character device whose
// size and holes are driven through its ioctls) or a regular file (ftruncate/fallocate), which is
// the reference: the kernel's page cache is coherent, so every scenario must pass on one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>

#include <vmcoh.h>
#include <vmcoh/fd.hpp>

namespace vmcoh {

// Thin wrappers over the ioctls of uapi/vmcoh.h; each throws std::system_error on failure.
namespace device {
vmcoh_info get_info(int fd);
vmcoh_stats get_stats(int fd);
vmcoh_window_stats get_window_stats(int fd);  // ENODEV without a window
void set_size(int fd, std::uint64_t size);
void punch_hole(int fd, std::uint64_t offset, std::uint64_t length);
}  // namespace device

enum class TargetKind { device, regular_file };
std::string_view to_string(TargetKind kind) noexcept;

class Target {
 public:
  enum class Create { never, if_missing };

  // Opens `path` read-write.  A character device must answer VMCOH_IOC_GET_INFO with our ABI
  // version; anything but a character device or a regular file is rejected.  With
  // Create::if_missing a missing path becomes an empty regular file (see created()).
  static Target open(const std::filesystem::path& path, Create create = Create::never);

  // Create::if_missing, except under /dev: a missing node there means the module is not loaded,
  // and a regular file must never stand in for it.
  [[nodiscard]] static Create create_policy_for(const std::filesystem::path& path);

  [[nodiscard]] TargetKind kind() const noexcept { return kind_; }
  [[nodiscard]] bool is_device() const noexcept { return kind_ == TargetKind::device; }
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  // True if open() created the file: whoever opened it should remove it when done.
  [[nodiscard]] bool created() const noexcept { return created_; }

  // The allocation unit: vmcoh_info.block_size, or the page size for a file.
  [[nodiscard]] std::uint64_t block_size() const noexcept { return block_size_; }
  [[nodiscard]] std::uint64_t size() const;
  void set_size(std::uint64_t size) const;
  // Makes [offset, offset+length) a hole; the size is unchanged.
  void punch_hole(std::uint64_t offset, std::uint64_t length) const;
  // fallocate(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE): [offset, offset+length) reads zero, its
  // blocks may stay allocated.  Filesystems that lack it answer EOPNOTSUPP, the device ENODEV.
  void zero_range(std::uint64_t offset, std::uint64_t length) const;
  // Device only: nullopt for a regular file.
  [[nodiscard]] std::optional<vmcoh_info> info() const;
  [[nodiscard]] std::optional<vmcoh_stats> stats() const;

 private:
  Target(Fd fd, TargetKind kind, std::filesystem::path path, bool created,
         std::uint64_t block_size) noexcept;

  Fd fd_;
  TargetKind kind_;
  std::filesystem::path path_;
  bool created_;
  std::uint64_t block_size_;
};

}  // namespace vmcoh
