#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include <vmcoh/error.hpp>
#include <vmcoh/target.hpp>

namespace vmcoh {

namespace device {

vmcoh_info get_info(int fd) {
  vmcoh_info info{};
  check_syscall(::ioctl(fd, VMCOH_IOC_GET_INFO, &info), "VMCOH_IOC_GET_INFO");
  return info;
}

vmcoh_stats get_stats(int fd) {
  vmcoh_stats stats{};
  check_syscall(::ioctl(fd, VMCOH_IOC_GET_STATS, &stats), "VMCOH_IOC_GET_STATS");
  return stats;
}

vmcoh_window_stats get_window_stats(int fd) {
  vmcoh_window_stats stats{};
  check_syscall(::ioctl(fd, VMCOH_IOC_GET_WINDOW_STATS, &stats), "VMCOH_IOC_GET_WINDOW_STATS");
  return stats;
}

void set_size(int fd, std::uint64_t size) {
  vmcoh_set_size arg{};
  arg.size = size;
  check_syscall(::ioctl(fd, VMCOH_IOC_SET_SIZE, &arg), fmt::format("VMCOH_IOC_SET_SIZE {}", size));
}

void punch_hole(int fd, std::uint64_t offset, std::uint64_t length) {
  vmcoh_range arg{};
  arg.offset = offset;
  arg.length = length;
  check_syscall(::ioctl(fd, VMCOH_IOC_PUNCH_HOLE, &arg),
                fmt::format("VMCOH_IOC_PUNCH_HOLE offset {} length {}", offset, length));
}

}  // namespace device

std::string_view to_string(TargetKind kind) noexcept {
  return kind == TargetKind::device ? "vmcoh device" : "regular file";
}

Target::Target(Fd fd, TargetKind kind, std::filesystem::path path, bool created,
               std::uint64_t block_size) noexcept
    : fd_(std::move(fd)),
      kind_(kind),
      path_(std::move(path)),
      created_(created),
      block_size_(block_size) {}

Target::Create Target::create_policy_for(const std::filesystem::path& path) {
  return path.parent_path() == "/dev" || path == VMCOH_DEVICE_PATH ? Create::never
                                                                   : Create::if_missing;
}

Target Target::open(const std::filesystem::path& path, Create create) {
  bool created = false;
  int raw = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (raw < 0 && errno == ENOENT && create == Create::if_missing) {
    raw = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0600);
    created = raw >= 0;
  }
  if (raw < 0) throw_errno("open " + path.string());
  Fd fd(raw);

  struct stat st {};
  check_syscall(::fstat(fd.get(), &st), "fstat " + path.string());
  if (S_ISCHR(st.st_mode)) {
    const vmcoh_info info = device::get_info(fd.get());
    if (info.abi_version != VMCOH_ABI_VERSION) {
      throw_errno(fmt::format("{}: vmcoh ABI version {}, expected {}", path.string(),
                              info.abi_version, VMCOH_ABI_VERSION),
                  EPROTO);
    }
    return Target(std::move(fd), TargetKind::device, path, created, info.block_size);
  }
  if (S_ISREG(st.st_mode)) {
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    return Target(std::move(fd), TargetKind::regular_file, path, created, page);
  }
  throw_errno(path.string() + " is neither a character device nor a regular file", ENODEV);
}

std::uint64_t Target::size() const {
  if (is_device()) return device::get_info(fd()).size;
  struct stat st {};
  check_syscall(::fstat(fd(), &st), "fstat " + path_.string());
  return static_cast<std::uint64_t>(st.st_size);
}

void Target::set_size(std::uint64_t size) const {
  if (is_device()) return device::set_size(fd(), size);
  check_syscall(::ftruncate(fd(), static_cast<off_t>(size)), fmt::format("ftruncate {}", size));
}

void Target::punch_hole(std::uint64_t offset, std::uint64_t length) const {
  if (is_device()) return device::punch_hole(fd(), offset, length);
  check_syscall(::fallocate(fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            static_cast<off_t>(offset), static_cast<off_t>(length)),
                fmt::format("fallocate(PUNCH_HOLE) offset {} length {}", offset, length));
}

void Target::zero_range(std::uint64_t offset, std::uint64_t length) const {
  check_syscall(::fallocate(fd(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                            static_cast<off_t>(offset), static_cast<off_t>(length)),
                fmt::format("fallocate(ZERO_RANGE) offset {} length {}", offset, length));
}

std::optional<vmcoh_info> Target::info() const {
  if (!is_device()) return std::nullopt;
  return device::get_info(fd());
}

std::optional<vmcoh_stats> Target::stats() const {
  if (!is_device()) return std::nullopt;
  return device::get_stats(fd());
}

}  // namespace vmcoh
