#include <fcntl.h>
#include <liburing.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include <vmcoh/error.hpp>
#include <vmcoh/pinned_io.hpp>
#include <vmcoh/userfault.hpp>

namespace vmcoh {

std::size_t process_vm_write_self(const void* from, void* to, std::size_t length) {
  const iovec local{const_cast<void*>(from), length};
  const iovec remote{to, length};
  return static_cast<std::size_t>(check_syscall(
      ::process_vm_writev(::getpid(), &local, 1, &remote, 1, 0), "process_vm_writev"));
}

namespace {

// How long the probe's read may take to reach its trap page.
constexpr auto kProbeTrapTimeout = std::chrono::seconds(10);
constexpr std::byte kProbeBefore{0xa5};

// Whether an O_DIRECT read of `file` into [first, trap] has already written `first` when it
// waits for the trap page.  `first` is anonymous, present and writable, so a filesystem that
// reads with page faults disabled pins it at once, fails on the trap page, completes the first
// page's I/O and only then faults the trap page in - with no pin held while it waits, and
// nothing to race.  A read that pins its buffers in turn and submits once it has them all
// (iomap's) waits on the trap page with the first one pinned and unwritten.
bool read_completes_before_waiting(const DirectFile& file) {
  PageImage data;
  data.words.fill(0x5a5a'5a5a'5a5a'5a5aULL);
  file.set_first_page(data);
  const Mapping first =
      Mapping::map(kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  std::memset(first.data(), std::to_integer<int>(kProbeBefore), kPageSize);
  const TrapPage trap;
  std::future<ssize_t> read =
      std::async(std::launch::async, [&] { return file.read_into(first.data(), trap.data()); });
  const bool waited = trap.wait_fault(kProbeTrapTimeout);
  const bool written = std::memcmp(first.data(), data.bytes(), kPageSize) == 0;
  trap.resolve_zero();  // also when it never waited, so that the read cannot hang on it
  const ssize_t n = read.get();
  if (n < 0) throw_errno("O_DIRECT preadv", static_cast<int>(-n));
  if (!waited) {
    throw std::runtime_error(
        fmt::format("the O_DIRECT probe read never reached its trap page "
                    "within {} s",
                    kProbeTrapTimeout.count()));
  }
  return written;
}

}  // namespace

std::optional<std::string> o_direct_refusal(const std::filesystem::path& dir) {
  if (is_tmpfs(dir)) {
    return fmt::format("{} is tmpfs: O_DIRECT copies through the page cache, pinning nothing",
                       dir.string());
  }
  std::optional<DirectFile> file;
  try {
    file.emplace(dir);
    const Mapping pages =
        Mapping::map(2 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    const ssize_t n = file->read_into(pages.data(), pages.data() + kPageSize);
    if (n < 0) throw_errno("O_DIRECT preadv", static_cast<int>(-n));
  } catch (const std::system_error& e) {
    if (e.code() != std::errc::invalid_argument) throw;
    return fmt::format("{} refuses O_DIRECT: {}", dir.string(), e.what());
  }
  if (read_completes_before_waiting(*file)) {
    return fmt::format(
        "O_DIRECT reads in {} do not hold a buffer pinned while they wait: they complete what "
        "they could pin and fault the rest in before retrying (btrfs_direct_read())",
        dir.string());
  }
  return std::nullopt;
}

DirectFile::DirectFile(const std::filesystem::path& dir)
    : fd_(Fd::unnamed(dir, O_DIRECT)),
      buffer_(
          Mapping::map(2 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1)) {
  std::memset(buffer_.data(), 0, buffer_.size());
  const ssize_t n = check_syscall(::pwrite(fd_.get(), buffer_.data(), buffer_.size(), 0),
                                  "O_DIRECT pwrite " + dir.string());
  if (static_cast<std::size_t>(n) != buffer_.size()) {
    throw std::runtime_error(fmt::format("O_DIRECT pwrite in {}: {} bytes", dir.string(), n));
  }
  check_syscall(::fdatasync(fd_.get()), "fdatasync " + dir.string());
}

void DirectFile::set_first_page(const PageImage& page) const {
  std::memcpy(buffer_.data(), page.bytes(), kPageSize);
  const ssize_t n =
      check_syscall(::pwrite(fd_.get(), buffer_.data(), kPageSize, 0), "O_DIRECT pwrite");
  if (static_cast<std::size_t>(n) != kPageSize) {
    throw std::runtime_error(fmt::format("O_DIRECT pwrite: {} bytes", n));
  }
}

ssize_t DirectFile::read_into(void* first, void* second) const {
  const iovec iov[2] = {{first, kPageSize}, {second, kPageSize}};
  const ssize_t n = ::preadv(fd_.get(), iov, 2, 0);
  return n < 0 ? -errno : n;
}

IoUring::IoUring(unsigned entries) : ring_(std::make_unique<io_uring>()) {
  const int err = io_uring_queue_init(entries, ring_.get(), 0);
  if (err < 0) throw_errno("io_uring_queue_init", -err);
}

IoUring::~IoUring() { io_uring_queue_exit(ring_.get()); }

RegisteredBuffer IoUring::register_buffer(void* addr, std::size_t length) {
  const iovec iov{addr, length};
  const int err = io_uring_register_buffers(ring_.get(), &iov, 1);
  if (err < 0) throw_errno("io_uring_register_buffers", -err);
  return RegisteredBuffer(ring_.get());
}

int IoUring::read_fixed(int fd, std::uint64_t offset, void* addr, std::size_t length) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) throw std::runtime_error("io_uring: no free SQE");
  io_uring_prep_read_fixed(sqe, fd, addr, static_cast<unsigned>(length), offset, 0);
  const int submitted = io_uring_submit(ring_.get());
  if (submitted < 0) throw_errno("io_uring_submit", -submitted);
  io_uring_cqe* cqe = nullptr;
  const int err = io_uring_wait_cqe(ring_.get(), &cqe);
  if (err < 0) throw_errno("io_uring_wait_cqe", -err);
  const int res = cqe->res;
  io_uring_cqe_seen(ring_.get(), cqe);
  return res;
}

RegisteredBuffer::~RegisteredBuffer() {
  // Fails only if nothing is registered.
  if (ring_ != nullptr) io_uring_unregister_buffers(ring_);
}

}  // namespace vmcoh
