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

// Loads held at once, at most; more are answered at once (see serve()).  A server of runs holds
// fewer: each keeps a copy of a whole region.
constexpr std::size_t kMaxHeld = 64;
constexpr std::size_t kMaxHeldRuns = 4;
// The longest run a LOAD asks for: a region.
constexpr std::size_t kRegionBlocks = VMCOH_RANGE_SIZE / kPageSize;
// Requests a SERVE call receives at most; a server of runs keeps a region's copy for each.
constexpr std::size_t kBatch = 16;
constexpr std::size_t kBatchRuns = 4;

}  // namespace

BackingServer::BackingServer(const std::filesystem::path& device, std::uint64_t blocks,
                             Access access, Loads loads, Stores stores)
    : fd_(Fd::open(device, O_RDWR)),
      wakeup_(check_syscall(::eventfd(0, EFD_CLOEXEC), "eventfd")),
      copy_(blocks),
      run_(loads == Loads::regions ? kRegionBlocks : 1),
      store_run_(stores == Stores::runs ? kRegionBlocks : 1),
      answer_((loads == Loads::regions ? kBatchRuns : kBatch) * run_),
      stored_(access == Access::writable ? answer_.size() / run_ * store_run_ : 0),
      batch_(answer_.size() / run_),
      replies_(batch_.size()),
      counted_(batch_.size()),
      loads_(blocks),
      stores_(blocks),
      fail_(blocks),
      fail_stores_(blocks),
      writable_(access == Access::writable),
      regions_(loads == Loads::regions),
      held_blocks_(blocks),
      held_(loads == Loads::regions ? kMaxHeldRuns : kMaxHeld),
      held_pages_(held_.size() * run_),
      held_slots_(held_.size()) {
  vmcoh_attach attach{};
  if (writable_) attach.flags |= VMCOH_ATTACH_WRITABLE;
  if (regions_) attach.flags |= VMCOH_ATTACH_REGIONS;
  if (stores == Stores::runs) attach.flags |= VMCOH_ATTACH_STORE_RUNS;
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
    const Held& held = held_[i];
    if (index >= held.index && index - held.index < held.count) {
      send_reply(held.id, &held_pages_[held.slot * run_], held.count, 0);
      held_slots_[held.slot] = false;
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

std::uint64_t BackingServer::requests() const {
  const std::scoped_lock lock(mutex_);
  return requests_;
}

std::string BackingServer::recent_requests() const {
  const std::scoped_lock lock(mutex_);
  std::string out;
  for (std::uint64_t i = requests_ > kRecentRequests ? requests_ - kRecentRequests : 0;
       i < requests_; ++i) {
    const auto& [index, count] = recent_[i % kRecentRequests];
    out += fmt::format("{}{}+{}", out.empty() ? "" : " ", index, count);
  }
  return out;
}

std::uint64_t BackingServer::requested_blocks() const {
  const std::scoped_lock lock(mutex_);
  return requested_blocks_;
}

std::uint64_t BackingServer::stores(std::uint64_t index) const {
  const std::scoped_lock lock(mutex_);
  return stores_.at(index);
}

std::uint64_t BackingServer::store_requests() const {
  const std::scoped_lock lock(mutex_);
  return store_requests_;
}

std::uint64_t BackingServer::stored_blocks() const {
  const std::scoped_lock lock(mutex_);
  return stored_blocks_;
}

bool BackingServer::wait_for_loads(std::uint64_t index, std::uint64_t count,
                                   std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return loads_.at(index) >= count; });
}

bool BackingServer::wait_for_stores(std::uint64_t index, std::uint64_t count,
                                    std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return stores_.at(index) >= count; });
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
  std::fill(held_slots_.begin(), held_slots_.end(), false);
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
    std::fill(held_slots_.begin(), held_slots_.end(), false);
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
  std::size_t answered = 0;  // replies_ to send with the next call
  for (;;) {
    if (answered == 0) {  // nothing to send: wait for a request
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0 || (fds[0].revents & (POLLERR | POLLNVAL)) != 0) return;
    }
    vmcoh_serve serve{};
    serve.flags = VMCOH_RECV_NONBLOCK;
    serve.replies = reinterpret_cast<std::uintptr_t>(replies_.data());
    serve.nr_replies = static_cast<std::uint32_t>(answered);
    serve.requests = reinterpret_cast<std::uintptr_t>(batch_.data());
    serve.nr_requests = static_cast<std::uint32_t>(batch_.size());
    for (std::size_t i = 0; i < batch_.size(); ++i) {
      batch_[i] = vmcoh_request{};
      if (writable_) {
        batch_[i].data = reinterpret_cast<std::uintptr_t>(stored_[i * store_run_].bytes());
      }
    }
    const int received = ::ioctl(fd_.get(), VMCOH_IOC_SERVE, &serve);
    const int err = errno;
    {
      const std::scoped_lock lock(mutex_);
      for (std::size_t i = 0; i < serve.replied; ++i) {
        if (replies_[i].result == -ENOENT) ++stale_replies_;
        if (counted_[i]) --pending_;
      }
    }
    if (received < 0 && err != EINTR) return;  // EPERM: no longer the server
    answered = 0;
    for (int i = 0; i < received; ++i) {
      const auto slot = static_cast<std::size_t>(i);
      if (handle(batch_[slot], slot, replies_[answered])) {
        counted_[answered] =
            batch_[slot].op == VMCOH_REQ_LOAD && replies_[answered].error != -ENXIO;
        ++answered;
      }
    }
  }
}

bool BackingServer::handle(const vmcoh_request& request, std::size_t slot, vmcoh_reply& reply) {
  const std::uint64_t index = request.offset / kPageSize;
  const std::uint64_t count = request.length / kPageSize;
  reply = vmcoh_reply{};
  reply.id = request.id;
  const std::scoped_lock lock(mutex_);
  if (request.op == VMCOH_REQ_STORE) {
    if (count == 0 || count > store_run_ || index >= copy_.size() || count > copy_.size() - index) {
      reply.error = -ENXIO;
      return true;
    }
    ++store_requests_;
    stored_blocks_ += count;
    for (std::uint64_t i = index; i < index + count; ++i) {
      ++stores_[i];
      if (fail_stores_[i] != 0) reply.error = fail_stores_[i];
    }
    if (reply.error == 0) {
      std::copy_n(stored_.begin() + static_cast<std::ptrdiff_t>(slot * store_run_), count,
                  copy_.begin() + static_cast<std::ptrdiff_t>(index));
    }
    changed_.notify_all();
    return true;
  }
  if (request.op != VMCOH_REQ_LOAD || count == 0 || count > run_ || index >= copy_.size() ||
      count > copy_.size() - index) {
    reply.error = -ENXIO;
    return true;
  }
  recent_[requests_ % kRecentRequests] = {index, count};
  ++requests_;
  requested_blocks_ += count;
  max_pending_ = std::max(max_pending_, ++pending_);
  int error = 0;
  for (std::uint64_t i = index; i < index + count; ++i) {
    ++loads_[i];
    if (fail_[i] != 0) error = fail_[i];
  }
  changed_.notify_all();
  const auto first = copy_.begin() + static_cast<std::ptrdiff_t>(index);
  const auto free_slot = std::find(held_slots_.begin(), held_slots_.end(), false);
  if (error == 0 && free_slot != held_slots_.end() &&
      std::any_of(held_blocks_.begin() + static_cast<std::ptrdiff_t>(index),
                  held_blocks_.begin() + static_cast<std::ptrdiff_t>(index + count),
                  [](bool held) { return held; })) {
    const auto held_slot = static_cast<std::size_t>(free_slot - held_slots_.begin());
    *free_slot = true;
    std::copy_n(first, count, held_pages_.begin() + static_cast<std::ptrdiff_t>(held_slot * run_));
    held_[held_count_++] = Held{request.id, index, count, held_slot};
    return false;
  }
  reply.error = error;
  if (error == 0) {
    // Sent outside the lock, with the next batch, as a real server's answer travels while its
    // copy may change: this is the window in which an INVALIDATE overtakes a load.
    PageImage* answer = &answer_[slot * run_];
    std::copy_n(first, count, answer);
    reply.data = reinterpret_cast<std::uintptr_t>(answer->bytes());
    reply.length = count * kPageSize;
  }
  return true;
}

void BackingServer::send_reply(std::uint64_t id, const PageImage* pages, std::uint64_t count,
                               int error) {
  vmcoh_reply reply{};
  reply.id = id;
  reply.error = error;
  if (pages != nullptr) {
    reply.data = reinterpret_cast<std::uintptr_t>(pages->bytes());
    reply.length = count * kPageSize;
  }
  if (::ioctl(fd_.get(), VMCOH_IOC_REPLY, &reply) < 0 && errno == ENOENT) ++stale_replies_;
}

}  // namespace vmcoh
