// The passthrough filesystem behind vmcoh-fusepass: its options, its inode table and the libfuse3
// low-level operations that serve a source directory through both.
//
// Every node id the kernel holds names an Inode: an O_PATH descriptor of the backing file or
// directory and the number of lookups the kernel has not yet forgotten.  The node id is the
// Inode's address (the root, FUSE_ROOT_ID, is the Filesystem's own), so the operations reach an
// Inode without a lock; the kernel guarantees a node id stays valid until it forgets it.  An Inode
// lives exactly as long as its lookup count is positive.  Its O_PATH descriptor pins the backing
// inode, so no other file can take the same (st_dev, st_ino) while it lives: that pair is a sound
// key for finding the Inode a second lookup of the same file must share.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include <vmcoh/fd.hpp>

namespace vmcoh::fusepass {

// libfuse 3.16 added FUSE_CAP_DIRECT_IO_ALLOW_MMAP; without it the kernel refuses MAP_SHARED
// mappings of a file opened with FOPEN_DIRECT_IO (ENODEV).
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
inline constexpr bool kCanAllowDirectIoMmap = true;
#else
inline constexpr bool kCanAllowDirectIoMmap = false;
#endif

struct Options {
  std::filesystem::path source;
  double timeout = 1.0;  // attribute and entry timeout, seconds
  bool writeback_cache = false;
  bool direct_io = false;
  bool keep_cache = false;
  bool auto_inval_data = true;  // libfuse's default: FUSE_CAP_AUTO_INVAL_DATA
};

struct Inode {
  Inode(Fd path, dev_t dev_, ino_t ino_) noexcept
      : path_fd(std::move(path)), dev(dev_), ino(ino_) {}

  const Fd path_fd;  // O_PATH
  const dev_t dev;
  const ino_t ino;
  std::uint64_t nlookup = 0;  // guarded by Filesystem::mutex_; unused for the root
};

class Filesystem {
 public:
  // Opens `options.source` as the root; throws std::system_error if it is not a directory.
  explicit Filesystem(Options options);

  // The operations; each reaches its Filesystem through fuse_req_userdata().
  static const fuse_lowlevel_ops& operations() noexcept;

  [[nodiscard]] const Options& options() const noexcept { return options_; }

  // The Inode of a node id the kernel holds.
  Inode& inode(fuse_ino_t ino) noexcept;

  // Finds `name` in `parent` and takes one lookup reference on its Inode for the kernel (fills
  // `entry`).  Returns 0 or an errno.
  int lookup(fuse_ino_t parent, const char* name, fuse_entry_param& entry) noexcept;

  // The same, for the file `fd` (any descriptor of it) just created: no name to race with.
  int lookup_fd(int fd, fuse_entry_param& entry) noexcept;

  // Drops `nlookup` references; the Inode and its descriptor go with the last one.
  void forget(fuse_ino_t ino, std::uint64_t nlookup) noexcept;

  // Inodes holding a reference the kernel has not forgotten (not counting the root).
  [[nodiscard]] std::size_t referenced_inodes() const;

 private:
  // Takes one reference on the Inode of the file `path_fd` names, adding it if it is new.
  int reference(Fd path_fd, fuse_entry_param& entry) noexcept;

  const Options options_;
  Inode root_;
  mutable std::mutex mutex_;
  std::map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>> inodes_;  // guarded by mutex_
};

}  // namespace vmcoh::fusepass
