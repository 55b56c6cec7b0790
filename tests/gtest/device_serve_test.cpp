// VMCOH_IOC_SERVE (uapi/vmcoh.h): a batch of replies and a batch of requests in one call.  Every
// backed-object test serves through it (BackingServer); these check the call itself: per-reply
// results that do not stop the batch, bad batches refused whole, a request that could not be
// delivered queued again, and the wait for the first request.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <span>
#include <thread>
#include <vector>

#include <vmcoh/fd.hpp>
#include <vmcoh/mapping.hpp>

#include "backing_fixture.hpp"

namespace vmcoh::test {
namespace {

using namespace std::chrono_literals;

struct ServeResult {
  int ret = 0;
  int error = 0;  // errno if ret < 0
  vmcoh_serve serve{};
};

ServeResult serve(int fd, std::span<vmcoh_reply> replies, std::span<vmcoh_request> requests,
                  std::uint64_t flags = VMCOH_RECV_NONBLOCK) {
  ServeResult r;
  r.serve.flags = flags;
  r.serve.replies = reinterpret_cast<std::uintptr_t>(replies.data());
  r.serve.nr_replies = static_cast<std::uint32_t>(replies.size());
  r.serve.requests = reinterpret_cast<std::uintptr_t>(requests.data());
  r.serve.nr_requests = static_cast<std::uint32_t>(requests.size());
  r.ret = ::ioctl(fd, VMCOH_IOC_SERVE, &r.serve);
  r.error = r.ret < 0 ? errno : 0;
  return r;
}

// A server attached by hand, and readers of blocks whose loads it receives.
class ServeTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (testing::Test::IsSkipped()) return;
    server_ = Fd::open(device_path(), O_RDWR);
    vmcoh_attach attach{};
    ASSERT_EQ(::ioctl(server_.get(), VMCOH_IOC_ATTACH, &attach), 0) << std::strerror(errno);
  }
  void TearDown() override {
    if (server_) {
      vmcoh_attach detach{};
      EXPECT_EQ(::ioctl(server_.get(), VMCOH_IOC_DETACH, &detach), 0) << std::strerror(errno);
    }
    DeviceTest::TearDown();
  }

  // Receives with non-blocking SERVE calls until `want` requests came; fails after kWait.
  std::vector<vmcoh_request> receive(std::size_t want) {
    std::vector<vmcoh_request> got;
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
      std::array<vmcoh_request, 8> slots{};
      const ServeResult r = serve(server_.get(), {}, slots);
      EXPECT_GE(r.ret, 0) << std::strerror(r.error);
      if (r.ret < 0) break;
      EXPECT_EQ(r.serve.received, static_cast<std::uint32_t>(r.ret));
      got.insert(got.end(), slots.begin(), slots.begin() + r.ret);
      if (r.ret == 0) std::this_thread::sleep_for(5ms);
    }
    EXPECT_EQ(got.size(), want);
    return got;
  }

  Fd server_;
};

vmcoh_reply answer(const vmcoh_request& request, const PageImage& page) {
  vmcoh_reply reply{};
  reply.id = request.id;
  reply.data = reinterpret_cast<std::uintptr_t>(page.bytes());
  reply.length = request.length;
  return reply;
}

TEST_F(ServeTest, OneCallAnswersABatchAndAReplyItRefusesDoesNotStopTheOthers) {
  std::vector<std::future<ReadResult>> readers;
  for (std::uint64_t b = 1; b <= 3; ++b) {
    readers.push_back(std::async(std::launch::async, [this, b] { return read_block(fd(), b); }));
  }
  const std::vector<vmcoh_request> requests = receive(3);
  ASSERT_EQ(requests.size(), 3U);
  std::vector<PageImage> pages;
  for (const vmcoh_request& request : requests) {
    ASSERT_EQ(request.op, VMCOH_REQ_LOAD);
    ASSERT_EQ(request.length, kBlock);
    pages.push_back(block_stamp(request.offset / kBlock, 4));
  }
  vmcoh_reply stale{};
  stale.id = 0xdead;
  stale.error = -EIO;
  vmcoh_reply short_answer = answer(requests[2], pages[2]);
  short_answer.length = kBlock / 2;
  std::array<vmcoh_reply, 5> replies{answer(requests[0], pages[0]), stale,
                                     answer(requests[1], pages[1]), short_answer,
                                     answer(requests[2], pages[2])};
  replies[1].result = 1;  // SERVE sets every result, whatever it held
  std::array<vmcoh_request, 4> more{};
  const ServeResult r = serve(server_.get(), replies, more);
  ASSERT_EQ(r.ret, 0) << std::strerror(r.error);
  EXPECT_EQ(r.serve.replied, 5U);
  EXPECT_EQ(r.serve.received, 0U);
  EXPECT_EQ(replies[0].result, 0);
  EXPECT_EQ(replies[1].result, -ENOENT) << "no such request";
  EXPECT_EQ(replies[2].result, 0);
  EXPECT_EQ(replies[3].result, -EINVAL) << "an answer is a whole block";
  EXPECT_EQ(replies[4].result, 0) << "the short answer left the request pending";
  for (std::uint64_t b = 1; b <= 3; ++b) {
    EXPECT_EQ(readers[b - 1].get().page, block_stamp(b, 4)) << "block " << b;
  }
}

TEST_F(ServeTest, ABadBatchIsRefusedWhole) {
  std::vector<vmcoh_reply> replies(VMCOH_SERVE_MAX + 1);
  std::vector<vmcoh_request> requests(VMCOH_SERVE_MAX + 1);
  EXPECT_EQ(serve(server_.get(), replies, {}).error, EINVAL) << "more replies than the most";
  EXPECT_EQ(serve(server_.get(), {}, requests).error, EINVAL) << "more requests than the most";
  EXPECT_EQ(serve(server_.get(), {}, std::span(requests).first(1), 2).error, EINVAL)
      << "unknown flag";
  requests[0].flags = VMCOH_RECV_NONBLOCK;
  EXPECT_EQ(serve(server_.get(), {}, std::span(requests).first(1)).error, EINVAL)
      << "a slot's flags are the call's";
  requests[0] = vmcoh_request{};
  requests[0].reserved[1] = 1;
  EXPECT_EQ(serve(server_.get(), {}, std::span(requests).first(1)).error, EINVAL);
  vmcoh_serve bad{};
  bad.reserved[0] = 1;
  EXPECT_EQ(::ioctl(server_.get(), VMCOH_IOC_SERVE, &bad), -1);
  EXPECT_EQ(errno, EINVAL);
  bad = vmcoh_serve{};
  bad.nr_replies = 1;  // at address 0
  EXPECT_EQ(::ioctl(server_.get(), VMCOH_IOC_SERVE, &bad), -1);
  EXPECT_EQ(errno, EFAULT);
  const Fd other = Fd::open(device_path(), O_RDWR);
  EXPECT_EQ(serve(other.get(), {}, {}).error, EPERM) << "not the server's file";
  EXPECT_EQ(serve(fd(), {}, {}).error, EPERM);
}

// A request received into slots that cannot be written is not lost: the next call gets it.
TEST_F(ServeTest, ARequestItCouldNotDeliverIsReceivedAgain) {
  auto reader = std::async(std::launch::async, [this] { return read_block(fd(), 5); });
  const Mapping read_only =
      Mapping::map(kBlock, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1);  // zero slots
  const std::span<vmcoh_request> unwritable(reinterpret_cast<vmcoh_request*>(read_only.data()), 2);
  ServeResult r;
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  do {
    std::this_thread::sleep_for(5ms);
    r = serve(server_.get(), {}, unwritable);
  } while (r.ret == 0 && std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(r.ret, -1);
  EXPECT_EQ(r.error, EFAULT);
  const std::vector<vmcoh_request> again = receive(1);
  ASSERT_EQ(again.size(), 1U);
  EXPECT_EQ(again[0].offset, 5 * kBlock);
  const PageImage page = block_stamp(5, 2);
  std::array<vmcoh_reply, 1> reply{answer(again[0], page)};
  EXPECT_EQ(serve(server_.get(), reply, {}).ret, 0);
  EXPECT_EQ(reply[0].result, 0);
  EXPECT_EQ(reader.get().page, page);
}

// Without VMCOH_RECV_NONBLOCK, SERVE sends its replies and waits for the first request.
TEST_F(ServeTest, ABlockingCallWaitsForTheFirstRequest) {
  std::array<vmcoh_request, 4> slots{};
  auto call = std::async(std::launch::async, [&] { return serve(server_.get(), {}, slots, 0); });
  EXPECT_EQ(call.wait_for(200ms), std::future_status::timeout) << "returned with nothing queued";
  auto reader = std::async(std::launch::async, [this] { return read_block(fd(), 7); });
  ASSERT_EQ(call.wait_for(kWait), std::future_status::ready);
  const ServeResult r = call.get();
  ASSERT_EQ(r.ret, 1) << std::strerror(r.error);
  EXPECT_EQ(slots[0].offset, 7 * kBlock);
  const PageImage page = block_stamp(7, 3);
  std::array<vmcoh_reply, 1> reply{answer(slots[0], page)};
  EXPECT_EQ(serve(server_.get(), reply, {}).ret, 0);
  EXPECT_EQ(reader.get().page, page);
}

}  // namespace
}  // namespace vmcoh::test
