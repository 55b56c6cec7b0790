#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include <vmcoh/backing_server.hpp>
#include <vmcoh/error.hpp>

namespace vmcoh {

namespace {

// Loads held at once, at most; more are answered at once (see serve()).
constexpr std::size_t kMaxHeld = 64;

}  // namespace

BackingServer::BackingServer(const std::filesystem::path& device, std::uint64_t blocks,
                             Access access)
    : fd_(Fd::open(device, O_RDWR)),
      wakeup_(check_syscall(::eventfd(0, EFD_CLOEXEC), "eventfd")),
      copy_(blocks),
      loads_(blocks),
      stores_(blocks),
      fail_(blocks),
      fail_stores_(blocks),
      writable_(access == Access::writable),
      held_blocks_(blocks),
      held_(kMaxHeld) {
  vmcoh_attach attach{};
  if (writable_) attach.flags = VMCOH_ATTACH_WRITABLE;
  check_syscall(::ioctl(fd_.get(), VMCOH_IOC_ATTACH, &attach),
                fmt::format("VMCOH_IOC_ATTACH {}", device.string()));
  thread_ = std::thread([this] { serve(); });
}

BackingServer::~BackingServer() {
  if (!fd_) return;
  try {
    detach();
  } catch (const std::exception&) {
    // Destructors do not throw; the kernel detaches a closed server (it orphans the object).
  }
}

void BackingServer::set_block(std::uint64_t index, const PageImage& page) {
  const std::scoped_lock lock(mutex_);
  copy_.at(index) = page;
}

PageImage BackingServer::block(std::uint64_t index) const {
  const std::scoped_lock lock(mutex_);
  return copy_.at(index);
}

void BackingServer::invalidate(std::uint64_t index, std::uint64_t count) const {
  range_ioctl(VMCOH_IOC_INVALIDATE, "VMCOH_IOC_INVALIDATE", index, count);
}

void BackingServer::drop(std::uint64_t index, std::uint64_t count) const {
  range_ioctl(VMCOH_IOC_DROP, "VMCOH_IOC_DROP", index, count);
}

void BackingServer::range_ioctl(unsigned long request, std::string_view name, std::uint64_t index,
                                std::uint64_t count) const {
  vmcoh_range range{};
  range.offset = index * kPageSize;
  range.length = count * kPageSize;
  check_syscall(::ioctl(fd_.get(), request, &range),
                fmt::format("{} of blocks {}+{}", name, index, count));
}

void BackingServer::hold(std::uint64_t index) {
  const std::scoped_lock lock(mutex_);
  held_blocks_.at(index) = true;
}

void BackingServer::release(std::uint64_t index) {
  const std::scoped_lock lock(mutex_);
  held_blocks_.at(index) = false;
  answer_held_locked(index);
}

void BackingServer::answer_held(std::uint64_t index) {
  const std::scoped_lock lock(mutex_);
  answer_held_locked(index);
}

void BackingServer::answer_held_locked(std::uint64_t index) {
  std::size_t kept = 0;
  for (std::size_t i = 0; i < held_count_; ++i) {
    if (held_[i].index == index) {
      send_reply(held_[i].id, &held_[i].page, 0);
      --pending_;
    } else {
      held_[kept++] = held_[i];
    }
  }
  held_count_ = kept;
}

void BackingServer::fail_loads(std::uint64_t index, int error) {
  const std::scoped_lock lock(mutex_);
  fail_.at(index) = error;
}

void BackingServer::fail_stores(std::uint64_t index, int error) {
  const std::scoped_lock lock(mutex_);
  fail_stores_.at(index) = error;
}

std::uint64_t BackingServer::loads(std::uint64_t index) const {
  const std::scoped_lock lock(mutex_);
  return loads_.at(index);
}

std::uint64_t BackingServer::stores(std::uint64_t index) const {
  const std::scoped_lock lock(mutex_);
  return stores_.at(index);
}

bool BackingServer::wait_for_loads(std::uint64_t index, std::uint64_t count,
                                   std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return loads_.at(index) >= count; });
}

std::uint64_t BackingServer::max_pending() const {
  const std::scoped_lock lock(mutex_);
  return max_pending_;
}

std::uint64_t BackingServer::stale_replies() const { return stale_replies_.load(); }

void BackingServer::die() {
  stop();
  const std::scoped_lock lock(mutex_);
  held_count_ = 0;
  pending_ = 0;
  fd_.reset();
}

void BackingServer::detach() {
  stop();
  vmcoh_attach detach{};
  const int ret = ::ioctl(fd_.get(), VMCOH_IOC_DETACH, &detach);
  const int err = errno;
  {
    const std::scoped_lock lock(mutex_);
    held_count_ = 0;
    pending_ = 0;
  }
  fd_.reset();
  if (ret < 0) throw_errno("VMCOH_IOC_DETACH", err);
}

void BackingServer::stop() {
  if (!thread_.joinable()) return;
  const std::uint64_t one = 1;
  check_syscall(::write(wakeup_.get(), &one, sizeof(one)), "write eventfd");
  thread_.join();
}

void BackingServer::serve() {
  std::array<pollfd, 2> fds{{{fd_.get(), POLLIN, 0}, {wakeup_.get(), POLLIN, 0}}};
  for (;;) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0 || (fds[0].revents & (POLLERR | POLLNVAL)) != 0) return;
    for (;;) {
      vmcoh_request request{};
      request.flags = VMCOH_RECV_NONBLOCK;
      if (writable_) request.data = reinterpret_cast<std::uintptr_t>(stored_.bytes());
      if (::ioctl(fd_.get(), VMCOH_IOC_RECV, &request) < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        return;  // EPERM: no longer the server
      }
      handle(request);
    }
  }
}

void BackingServer::handle(const vmcoh_request& request) {
  const std::uint64_t index = request.offset / kPageSize;
  int error = 0;
  if (request.op == VMCOH_REQ_STORE) {
    {
      const std::scoped_lock lock(mutex_);
      if (index >= copy_.size()) {
        error = -ENXIO;
      } else {
        ++stores_[index];
        error = fail_stores_[index];
        if (error == 0) copy_[index] = stored_;
        changed_.notify_all();
      }
    }
    send_reply(request.id, nullptr, error);
    return;
  }
  {
    const std::scoped_lock lock(mutex_);
    if (request.op != VMCOH_REQ_LOAD || index >= copy_.size()) {
      error = -ENXIO;
    } else {
      ++loads_[index];
      max_pending_ = std::max(max_pending_, ++pending_);
      changed_.notify_all();
      if (held_blocks_[index] && fail_[index] == 0 && held_count_ < held_.size()) {
        held_[held_count_++] = Held{request.id, index, copy_[index]};
        return;
      }
      error = fail_[index];
      answer_ = copy_[index];
    }
  }
  // Answered outside the lock, as a real server's answer travels while its copy may change:
  // this is the window in which an INVALIDATE overtakes a load.
  send_reply(request.id, error == 0 ? &answer_ : nullptr, error);
  const std::scoped_lock lock(mutex_);
  if (error != -ENXIO) --pending_;
}

void BackingServer::send_reply(std::uint64_t id, const PageImage* page, int error) {
  vmcoh_reply reply{};
  reply.id = id;
  reply.error = error;
  if (page != nullptr) {
    reply.data = reinterpret_cast<std::uintptr_t>(page->bytes());
    reply.length = kPageSize;
  }
  if (::ioctl(fd_.get(), VMCOH_IOC_REPLY, &reply) < 0 && errno == ENOENT) ++stale_replies_;
}

}  // namespace vmcoh
