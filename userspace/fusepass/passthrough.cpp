#include "passthrough.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <new>
#include <span>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace vmcoh::fusepass {
namespace {

static_assert(sizeof(fuse_ino_t) >= sizeof(std::uintptr_t), "a node id holds an Inode's address");

Filesystem& filesystem(fuse_req_t req) noexcept {
  return *static_cast<Filesystem*>(fuse_req_userdata(req));
}

fuse_ino_t node_id(Inode& inode) noexcept { return reinterpret_cast<std::uintptr_t>(&inode); }

// A node id or an fi->fh that holds an address (of an Inode, of a DirHandle).
template <class T>
T& from_handle(std::uint64_t handle) noexcept {
  return *reinterpret_cast<T*>(  // NOLINT(performance-no-int-to-ptr): libfuse's handles are u64
      static_cast<std::uintptr_t>(handle));
}

// errno after a failed call, never 0: a caller told 0 would take the failure for success.
int failure_errno() noexcept {
  const int err = errno;
  return err != 0 ? err : EIO;
}

// An open file's fi->fh is its backing descriptor.
int file_fd(const fuse_file_info* fi) noexcept { return static_cast<int>(fi->fh); }

// "/proc/self/fd/N": how an O_PATH descriptor is reopened for reading or writing, or changed by a
// call that has no AT_EMPTY_PATH form (chmod, utimensat).
class ProcPath {
 public:
  explicit ProcPath(int fd) noexcept {
    constexpr std::string_view kPrefix = "/proc/self/fd/";
    char* const digits = std::copy(kPrefix.begin(), kPrefix.end(), path_.begin());
    *std::to_chars(digits, path_.end() - 1, fd).ptr = '\0';
  }
  [[nodiscard]] const char* c_str() const noexcept { return path_.data(); }

 private:
  std::array<char, 32> path_{};
};

// The reply of a request that succeeds or fails with errno: `result` is a system call's.
void reply_result(fuse_req_t req, int result) noexcept {
  fuse_reply_err(req, result == -1 ? errno : 0);
}

// Hands the reference lookup() took to the kernel.  A request the caller abandoned (a fatal
// signal) is gone by the time the reply is written: the kernel never learns of the reference and
// will never forget it, so it is dropped here.
void reply_entry(fuse_req_t req, const fuse_entry_param& entry) noexcept {
  Filesystem& fs = filesystem(req);
  if (fuse_reply_entry(req, &entry) != 0) fs.forget(entry.ino, 1);
}

// The flags a backing file is opened with for the flags of the open(2) the kernel forwarded.
int backing_open_flags(int flags, const Options& options) noexcept {
  // The kernel already serves an O_DIRECT caller past its own page cache; the backing file's
  // O_DIRECT would demand an alignment of libfuse's request buffers the server cannot give.
  flags &= ~O_DIRECT;
  if (options.writeback_cache) {
    // The writeback cache reads pages in to fill partial writes, also of a file opened O_WRONLY,
    // and the kernel positions appending writes at its own i_size.
    if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
    flags &= ~O_APPEND;
  }
  return flags | O_CLOEXEC;
}

void set_open_reply(fuse_file_info* fi, const Options& options) noexcept {
  fi->direct_io = options.direct_io ? 1 : 0;
  fi->keep_cache = options.keep_cache ? 1 : 0;
}

// One descriptor, read or written from `pos` on, as a libfuse buffer.
fuse_bufvec fd_bufvec(int fd, std::size_t size, off_t pos) noexcept {
  fuse_bufvec bufs{};
  bufs.count = 1;
  bufs.buf[0].size = size;
  bufs.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  bufs.buf[0].fd = fd;
  bufs.buf[0].pos = pos;
  return bufs;
}

struct DirCloser {
  void operator()(DIR* dir) const noexcept { static_cast<void>(::closedir(dir)); }
};

// An open directory's fi->fh.  The kernel serialises readdir of one open directory, so no lock.
struct DirHandle {
  explicit DirHandle(std::unique_ptr<DIR, DirCloser> dir_) noexcept : dir(std::move(dir_)) {}

  std::unique_ptr<DIR, DirCloser> dir;
  off_t offset = 0;           // where `dir` is: the d_off of the last entry sent
  dirent* pending = nullptr;  // read from `dir` but did not fit in the last reply
};

DirHandle& dir_handle(const fuse_file_info* fi) noexcept { return from_handle<DirHandle>(fi->fh); }

void op_init(void* userdata, fuse_conn_info* conn) {
  const Options& options = static_cast<Filesystem*>(userdata)->options();
  if (options.writeback_cache) {
    if ((conn->capable & FUSE_CAP_WRITEBACK_CACHE) != 0) {
      conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    } else {
      fmt::print(stderr, "vmcoh-fusepass: the kernel offers no writeback cache; running without\n");
    }
  }
  if (!options.auto_inval_data) conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
  if (options.direct_io && (conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP) != 0) {
    conn->want |= FUSE_CAP_DIRECT_IO_ALLOW_MMAP;
  }
#endif
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param entry{};
  const int err = filesystem(req).lookup(parent, name, entry);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  reply_entry(req, entry);
}

void op_forget(fuse_req_t req, fuse_ino_t ino, std::uint64_t nlookup) {
  filesystem(req).forget(ino, nlookup);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, std::size_t count, fuse_forget_data* forgets) {
  Filesystem& fs = filesystem(req);
  for (const fuse_forget_data& f : std::span(forgets, count)) fs.forget(f.ino, f.nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
  Filesystem& fs = filesystem(req);
  struct stat st {};
  if (::fstatat(fs.inode(ino).path_fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_attr(req, &st, fs.options().timeout);
}

// Applies each attribute `valid` names.  Only the size goes through the open file the kernel may
// pass (ftruncate(2)): for a directory fi->fh is a DirHandle, and the path reaches the same inode.
int set_attributes(const Inode& inode, const struct stat& attr, int valid,
                   const fuse_file_info* fi) noexcept {
  const ProcPath path(inode.path_fd.get());
  if ((valid & FUSE_SET_ATTR_MODE) != 0 && ::chmod(path.c_str(), attr.st_mode) == -1) return errno;
  if ((valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) != 0) {
    const uid_t uid = (valid & FUSE_SET_ATTR_UID) != 0 ? attr.st_uid : static_cast<uid_t>(-1);
    const gid_t gid = (valid & FUSE_SET_ATTR_GID) != 0 ? attr.st_gid : static_cast<gid_t>(-1);
    if (::fchownat(inode.path_fd.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) {
      return errno;
    }
  }
  if ((valid & FUSE_SET_ATTR_SIZE) != 0) {
    Fd reopened;
    if (fi == nullptr) {
      reopened.reset(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
      if (!reopened) return errno;
    }
    if (::ftruncate(fi != nullptr ? file_fd(fi) : reopened.get(), attr.st_size) == -1) return errno;
  }
  if ((valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) != 0) {
    std::array<timespec, 2> times{timespec{0, UTIME_OMIT}, timespec{0, UTIME_OMIT}};
    if ((valid & FUSE_SET_ATTR_ATIME_NOW) != 0) {
      times[0].tv_nsec = UTIME_NOW;
    } else if ((valid & FUSE_SET_ATTR_ATIME) != 0) {
      times[0] = attr.st_atim;
    }
    if ((valid & FUSE_SET_ATTR_MTIME_NOW) != 0) {
      times[1].tv_nsec = UTIME_NOW;
    } else if ((valid & FUSE_SET_ATTR_MTIME) != 0) {
      times[1] = attr.st_mtim;
    }
    if (::utimensat(AT_FDCWD, path.c_str(), times.data(), 0) == -1) return errno;
  }
  return 0;
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi) {
  const int err = set_attributes(filesystem(req).inode(ino), *attr, valid, fi);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  op_getattr(req, ino, fi);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Fd fd(
      ::openat(filesystem(req).inode(ino).path_fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    fuse_reply_err(req, errno);
    return;
  }
  std::unique_ptr<DIR, DirCloser> dir(::fdopendir(fd.get()));
  if (!dir) {
    fuse_reply_err(req, errno);
    return;
  }
  static_cast<void>(fd.release());  // the DIR owns it now
  std::unique_ptr<DirHandle> handle;
  try {
    handle = std::make_unique<DirHandle>(std::move(dir));
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  fi->fh = reinterpret_cast<std::uintptr_t>(handle.get());
  // An abandoned opendir is never released: the handle is the kernel's only if the reply lands.
  if (fuse_reply_open(req, fi) == 0) static_cast<void>(handle.release());
}

void op_readdir(fuse_req_t req, fuse_ino_t /*ino*/, std::size_t size, off_t offset,
                fuse_file_info* fi) {
  DirHandle& d = dir_handle(fi);
  std::vector<char> reply;
  try {
    reply.resize(size);
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  if (offset != d.offset) {
    ::seekdir(d.dir.get(), offset);
    d.offset = offset;
    d.pending = nullptr;
  }
  std::size_t used = 0;
  int err = 0;
  for (;;) {
    if (d.pending == nullptr) {
      errno = 0;
      d.pending = ::readdir(d.dir.get());
      if (d.pending == nullptr) {
        err = errno;
        break;
      }
    }
    struct stat st {};
    st.st_ino = d.pending->d_ino;
    st.st_mode = DTTOIF(d.pending->d_type);
    const std::size_t length = fuse_add_direntry(req, reply.data() + used, size - used,
                                                 d.pending->d_name, &st, d.pending->d_off);
    if (length > size - used) break;
    used += length;
    d.offset = d.pending->d_off;
    d.pending = nullptr;
  }
  if (err != 0 && used == 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_buf(req, reply.data(), used);
}

void op_releasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  const std::unique_ptr<DirHandle> handle(&dir_handle(fi));
  fuse_reply_err(req, 0);
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Filesystem& fs = filesystem(req);
  if (::mkdirat(fs.inode(parent).path_fd.get(), name, mode) == -1) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_entry_param entry{};
  const int err = fs.lookup(parent, name, entry);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  reply_entry(req, entry);
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  reply_result(req, ::unlinkat(filesystem(req).inode(parent).path_fd.get(), name, AT_REMOVEDIR));
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  reply_result(req, ::unlinkat(filesystem(req).inode(parent).path_fd.get(), name, 0));
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  Filesystem& fs = filesystem(req);
  Fd file(::openat(fs.inode(parent).path_fd.get(), name,
                   backing_open_flags(fi->flags | O_CREAT, fs.options()), mode));
  if (!file) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_entry_param entry{};
  const int err = fs.lookup_fd(file.get(), entry);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = static_cast<std::uint64_t>(file.get());
  set_open_reply(fi, fs.options());
  // As in op_opendir, and the lookup reference as in reply_entry().
  if (fuse_reply_create(req, &entry, fi) == 0) {
    static_cast<void>(file.release());
  } else {
    fs.forget(entry.ino, 1);
  }
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = filesystem(req);
  // O_NOFOLLOW would refuse the /proc magic link itself.
  Fd file(::open(ProcPath(fs.inode(ino).path_fd.get()).c_str(),
                 backing_open_flags(fi->flags & ~O_NOFOLLOW, fs.options())));
  if (!file) {
    fuse_reply_err(req, errno);
    return;
  }
  fi->fh = static_cast<std::uint64_t>(file.get());
  set_open_reply(fi, fs.options());
  if (fuse_reply_open(req, fi) == 0) static_cast<void>(file.release());
}

void op_release(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  const Fd file(file_fd(fi));
  fuse_reply_err(req, 0);
}

void op_read(fuse_req_t req, fuse_ino_t /*ino*/, std::size_t size, off_t offset,
             fuse_file_info* fi) {
  fuse_bufvec data = fd_bufvec(file_fd(fi), size, offset);
  fuse_reply_data(req, &data, FUSE_BUF_SPLICE_MOVE);
}

void op_write_buf(fuse_req_t req, fuse_ino_t /*ino*/, fuse_bufvec* in, off_t offset,
                  fuse_file_info* fi) {
  fuse_bufvec out = fd_bufvec(file_fd(fi), fuse_buf_size(in), offset);
  const ssize_t written = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
  if (written < 0) {
    fuse_reply_err(req, static_cast<int>(-written));
    return;
  }
  fuse_reply_write(req, static_cast<std::size_t>(written));
}

// close(2) of a duplicate: what the backing filesystem would see of the caller's close.
void op_flush(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  const int dup = ::dup(file_fd(fi));
  reply_result(req, dup == -1 ? -1 : ::close(dup));
}

void op_fsync(fuse_req_t req, fuse_ino_t /*ino*/, int datasync, fuse_file_info* fi) {
  reply_result(req, datasync != 0 ? ::fdatasync(file_fd(fi)) : ::fsync(file_fd(fi)));
}

void op_fallocate(fuse_req_t req, fuse_ino_t /*ino*/, int mode, off_t offset, off_t length,
                  fuse_file_info* fi) {
  reply_result(req, ::fallocate(file_fd(fi), mode, offset, length));
}

void op_lseek(fuse_req_t req, fuse_ino_t /*ino*/, off_t offset, int whence, fuse_file_info* fi) {
  const off_t found = ::lseek(file_fd(fi), offset, whence);
  if (found == -1) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_lseek(req, found);
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t /*ino_in*/, off_t offset_in,
                        fuse_file_info* fi_in, fuse_ino_t /*ino_out*/, off_t offset_out,
                        fuse_file_info* fi_out, std::size_t length, int flags) {
  loff_t in = offset_in;
  loff_t out = offset_out;
  const ssize_t copied = ::copy_file_range(file_fd(fi_in), &in, file_fd(fi_out), &out, length,
                                           static_cast<unsigned>(flags));
  if (copied == -1) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_write(req, static_cast<std::size_t>(copied));
}

void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs st {};
  if (::fstatvfs(filesystem(req).inode(ino).path_fd.get(), &st) == -1) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_statfs(req, &st);
}

}  // namespace

Filesystem::Filesystem(Options options)
    : options_(std::move(options)), root_(Fd::open(options_.source, O_PATH | O_DIRECTORY), 0, 0) {}

const fuse_lowlevel_ops& Filesystem::operations() noexcept {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o{};
    o.init = op_init;
    o.lookup = op_lookup;
    o.forget = op_forget;
    o.forget_multi = op_forget_multi;
    o.getattr = op_getattr;
    o.setattr = op_setattr;
    o.opendir = op_opendir;
    o.readdir = op_readdir;
    o.releasedir = op_releasedir;
    o.mkdir = op_mkdir;
    o.rmdir = op_rmdir;
    o.unlink = op_unlink;
    o.create = op_create;
    o.open = op_open;
    o.release = op_release;
    o.read = op_read;
    o.write_buf = op_write_buf;
    o.flush = op_flush;
    o.fsync = op_fsync;
    o.fallocate = op_fallocate;
    o.lseek = op_lseek;
    o.copy_file_range = op_copy_file_range;
    o.statfs = op_statfs;
    return o;
  }();
  return ops;
}

Inode& Filesystem::inode(fuse_ino_t ino) noexcept {
  return ino == FUSE_ROOT_ID ? root_ : from_handle<Inode>(ino);
}

int Filesystem::lookup(fuse_ino_t parent, const char* name, fuse_entry_param& entry) noexcept {
  Fd path_fd(::openat(inode(parent).path_fd.get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!path_fd) return failure_errno();
  return reference(std::move(path_fd), entry);
}

int Filesystem::lookup_fd(int fd, fuse_entry_param& entry) noexcept {
  Fd path_fd(::open(ProcPath(fd).c_str(), O_PATH | O_CLOEXEC));
  if (!path_fd) return failure_errno();
  return reference(std::move(path_fd), entry);
}

int Filesystem::reference(Fd path_fd, fuse_entry_param& entry) noexcept {
  entry = fuse_entry_param{};
  entry.attr_timeout = options_.timeout;
  entry.entry_timeout = options_.timeout;
  if (::fstatat(path_fd.get(), "", &entry.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) {
    return failure_errno();
  }
  const std::pair<dev_t, ino_t> key{entry.attr.st_dev, entry.attr.st_ino};
  try {
    const std::lock_guard lock(mutex_);
    const auto it = inodes_.find(key);
    Inode* found = it != inodes_.end() ? it->second.get() : nullptr;
    if (found == nullptr) {
      auto added = std::make_unique<Inode>(std::move(path_fd), key.first, key.second);
      found = added.get();
      inodes_.emplace(key, std::move(added));
    }
    ++found->nlookup;
    entry.ino = node_id(*found);
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  return 0;
}

void Filesystem::forget(fuse_ino_t ino, std::uint64_t nlookup) noexcept {
  if (ino == FUSE_ROOT_ID) return;
  Inode& forgotten = inode(ino);
  std::unique_ptr<Inode> last;  // destroyed (its descriptor closed) outside the lock
  const std::lock_guard lock(mutex_);
  assert(forgotten.nlookup >= nlookup);
  forgotten.nlookup -= nlookup;
  if (forgotten.nlookup == 0) {
    const auto it = inodes_.find({forgotten.dev, forgotten.ino});
    last = std::move(it->second);
    inodes_.erase(it);
  }
}

std::size_t Filesystem::referenced_inodes() const {
  const std::lock_guard lock(mutex_);
  return inodes_.size();
}

}  // namespace vmcoh::fusepass
