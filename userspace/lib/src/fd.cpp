#include <fcntl.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>

namespace vmcoh {

Fd Fd::open(const std::filesystem::path& path, int flags, mode_t mode) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) throw_errno("open " + path.string());
  return Fd(fd);
}

Fd Fd::unnamed(const std::filesystem::path& dir, int flags) {
  const int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC | flags, 0600);
  if (fd >= 0) return Fd(fd);
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
    throw_errno("O_TMPFILE in " + dir.string());
  std::string name = (dir / "vmcoh-scratch-XXXXXX").string();
  Fd named(::mkostemp(name.data(), O_CLOEXEC | flags));
  if (!named) throw_errno("mkostemp " + name);
  check_syscall(::unlink(name.c_str()), "unlink " + name);
  return named;
}

void Fd::reset(int fd) noexcept {
  // close() errors are not actionable here: the descriptor is gone either way.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

bool is_tmpfs(const std::filesystem::path& dir) noexcept {
  struct statfs fs {};
  return ::statfs(dir.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

}  // namespace vmcoh
