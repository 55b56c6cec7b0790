// Fd: an owned file descriptor, closed by its destructor.  Movable, not copyable.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <utility>

namespace vmcoh {

class Fd {
 public:
  Fd() noexcept = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  // Opens `path` (O_CLOEXEC is always added); throws std::system_error on failure.
  static Fd open(const std::filesystem::path& path, int flags, mode_t mode = 0);
  // A new regular file in `dir` that no name reaches, opened read-write with `flags` added:
  // O_TMPFILE, or where the filesystem refuses that, a named file unlinked at once.
  static Fd unnamed(const std::filesystem::path& dir, int flags = 0);

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  // Gives up ownership without closing.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  // Closes the descriptor held (if any) and takes ownership of `fd`.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// True if `dir` is on tmpfs (false also if it cannot be looked at).
[[nodiscard]] bool is_tmpfs(const std::filesystem::path& dir) noexcept;

}  // namespace vmcoh
