#include <fcntl.h>
#include <unistd.h>

#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>

namespace vmcoh {

Fd Fd::open(const std::filesystem::path& path, int flags, mode_t mode) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) throw_errno("open " + path.string());
  return Fd(fd);
}

void Fd::reset(int fd) noexcept {
  // close() errors are not actionable here: the descriptor is gone either way.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace vmcoh
