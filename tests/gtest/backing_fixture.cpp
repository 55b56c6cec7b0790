#include "backing_fixture.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <system_error>

#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>
#include <vmcoh/sigbus_probe.hpp>
#include <vmcoh/target.hpp>

#include "stuck_page.hpp"

namespace vmcoh::test {

void fill_server(BackingServer& server) {
  for (std::uint64_t b = 0; b < server.blocks(); ++b) server.set_block(b, block_stamp(b, 1));
}

vmcoh_backing_stats backing_stats(int fd) {
  vmcoh_backing_stats stats{};
  check_syscall(::ioctl(fd, VMCOH_IOC_GET_BACKING_STATS, &stats), "VMCOH_IOC_GET_BACKING_STATS");
  return stats;
}

ParameterOverride::ParameterOverride(std::string name, const std::string& value)
    : path_("/sys/module/vmcoh/parameters/" + std::move(name)) {
  std::ifstream(path_) >> old_;
  std::ofstream(path_) << value;
}

ParameterOverride::~ParameterOverride() { std::ofstream(path_) << old_; }

ReadResult read_block(int fd, std::uint64_t block) {
  ReadResult result;
  result.bytes = ::pread(fd, result.page.bytes(), kBlock, static_cast<off_t>(block * kBlock));
  if (result.bytes < 0) result.error = errno;
  return result;
}

std::string task_stacks(const std::string& pid) {
  std::ostringstream out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + pid + "/task")) {
    std::string comm;
    std::getline(std::ifstream(task.path() / "comm"), comm);
    std::ifstream stack(task.path() / "stack");
    out << "task " << task.path().filename().string() << " (" << comm << ")\n" << stack.rdbuf();
  }
  return out.str();
}

std::string module_task_stacks() {
  std::ostringstream out;
  std::error_code ec;
  for (const auto& proc : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = proc.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    for (const auto& task : std::filesystem::directory_iterator(proc.path() / "task", ec)) {
      std::ostringstream stack;
      stack << std::ifstream(task.path() / "stack").rdbuf();
      if (stack.str().find("[vmcoh]") == std::string::npos) continue;
      std::string comm;
      std::string stat;
      std::getline(std::ifstream(task.path() / "comm"), comm);
      std::getline(std::ifstream(task.path() / "stat"), stat);
      // The state follows the parenthesised comm in /proc/PID/stat.
      const auto paren = stat.rfind(") ");
      const char state = paren == std::string::npos ? '?' : stat[paren + 2];
      out << "task " << task.path().filename().string() << " (" << comm << ", pid " << pid
          << ", state " << state << ")\n"
          << stack.str();
    }
  }
  return out.str();
}

std::optional<PageImage> probed_block(const Mapping& map, std::uint64_t block) {
  PageImage page;
  if (probe_load(page.words.data(),
                 reinterpret_cast<const volatile std::uint64_t*>(map.data() + block * kBlock),
                 kWordsPerPage)) {
    return std::nullopt;
  }
  return page;
}

testing::AssertionResult change_and_invalidate(BackingServer& server, std::uint64_t block,
                                               std::uint64_t generation) {
  server.set_block(block, block_stamp(block, generation));
  auto invalidate = std::async(std::launch::async, [&] { server.invalidate(block); });
  if (invalidate.wait_for(kStuck) != std::future_status::ready) {
    const std::string stacks = task_stacks();
    // The load goes, and the INVALIDATE with it: now, not at load_timeout_ms (and a held
    // block's loads again after that).
    server.release(block);
    return testing::AssertionFailure()
           << "INVALIDATE must not wait for the load in flight; stuck tasks:\n"
           << stacks;
  }
  invalidate.get();
  return testing::AssertionSuccess();
}

void BackingTest::set_up(BackingServer::Access access, std::uint64_t blocks,
                         BackingServer::Loads loads, BackingServer::Stores stores) {
  DeviceTest::SetUp();
  if (IsSkipped()) return;
  install_sigbus_probe();
  if (blocks != kTestBlocks) device::set_size(fd(), blocks * kBlock);
  server_ = std::make_unique<BackingServer>(device_path(), blocks, access, loads, stores);
  fill_server(*server_);
}

void BackingTest::TearDown() {
  server_.reset();
  if (device_present() && info().backing != VMCOH_BACKING_NONE) {
    // A test that failed halfway, or left dirty blocks to a dead server, leaves the object
    // orphaned: shrinking discards every block, dirty or not; then it is brought back to plain.
    device::set_size(fd(), 0);
    BackingServer(device_path(), 0);
  }
  DeviceTest::TearDown();
}

void BackingHoldTest::SetUp() {
  BackingTest::SetUp();
  if (!IsSkipped()) require_test_hooks();
}

// The answer comes before the request leaves the in-flight set, where the timeout finds it.
void expect_a_stuck_reply_does_not_keep_its_load_from_timing_out(int fd) {
  using namespace std::chrono_literals;
  StuckPage answer;
  if (!answer.usable()) GTEST_SKIP() << "no userfaultfd here";
  const ParameterOverride timeout("load_timeout_ms", "300");
  const Fd server = Fd::open(device_path(), O_RDWR);
  vmcoh_attach attach{};
  ASSERT_EQ(::ioctl(server.get(), VMCOH_IOC_ATTACH, &attach), 0) << std::strerror(errno);

  auto reader = std::async(std::launch::async, [fd] { return read_block(fd, 9).error; });
  vmcoh_request request{};
  ASSERT_EQ(::ioctl(server.get(), VMCOH_IOC_RECV, &request), 0) << std::strerror(errno);
  auto replier = std::async(std::launch::async, [&] {
    vmcoh_reply reply{};
    reply.id = request.id;
    reply.data = reinterpret_cast<std::uintptr_t>(answer.data());
    reply.length = kBlock;
    return ::ioctl(server.get(), VMCOH_IOC_REPLY, &reply) == 0 ? 0 : errno;
  });
  ASSERT_TRUE(answer.wait_stuck(5s)) << "the REPLY never read its answer";
  const bool ended = reader.wait_for(3s) == std::future_status::ready;
  answer.resolve(block_stamp(9, 1));
  EXPECT_TRUE(ended) << "the load outlived load_timeout_ms (300 ms) by 3 s, waiting for a REPLY "
                        "stuck bringing in its answer";
  EXPECT_EQ(reader.get(), EIO);
  EXPECT_EQ(replier.get(), ENOENT) << "the REPLY of a load that timed out";
  EXPECT_EQ(::ioctl(server.get(), VMCOH_IOC_DETACH, &attach), 0) << std::strerror(errno);
}

}  // namespace vmcoh::test
