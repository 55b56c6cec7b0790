// The fixture of the backed-object tests (device_backing_test.cpp, device_writeback_test.cpp):
// a BackingServer attached to /dev/vmcoh, serving stamped blocks, and the helpers the scenarios
// share.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <vmcoh/backing_server.hpp>
#include <vmcoh/mapping.hpp>
#include <vmcoh/stamp.hpp>

#include "test_object.hpp"

namespace vmcoh::test {

inline constexpr auto kWait = std::chrono::seconds(10);  // for what must happen; failing costs it
inline constexpr auto kStuck = std::chrono::seconds(3);  // a call this slow waits for something

// The server's copy: block b holds its stamp at generation 1.
void fill_server(BackingServer& server);

vmcoh_backing_stats backing_stats(int fd);

// A module parameter set for the length of a test (we run as root in the VM).
class ParameterOverride {
 public:
  ParameterOverride(std::string name, const std::string& value);
  ParameterOverride(const ParameterOverride&) = delete;
  ParameterOverride& operator=(const ParameterOverride&) = delete;
  ~ParameterOverride();

 private:
  std::string path_;
  std::string old_;
};

// pread of one block: the page, or the errno; `bytes` is what pread returned (-1 on error).
struct ReadResult {
  PageImage page;
  int error = 0;
  ssize_t bytes = 0;
};
ReadResult read_block(int fd, std::uint64_t block);

// The tasks of process `pid` (or of this one), each with its kernel stack (we are root in the
// VM): what a test prints when something that must not wait is stuck.
std::string task_stacks(const std::string& pid = "self");

// Every task in the system whose kernel stack has a frame of the module (the window's worker
// included), each with its stack and state.
std::string module_task_stacks();

// Sets the server's copy of `block` to `generation` and INVALIDATEs it, which must not wait for
// the load of it in flight: the failure says so, with every task's stack, after releasing the
// server's hold on `block` so that the stuck INVALIDATE ends.
testing::AssertionResult change_and_invalidate(BackingServer& server, std::uint64_t block,
                                               std::uint64_t generation);

// A mapped block read through the SIGBUS probe: nullopt if the load raised SIGBUS (a broken
// protocol may fail a load the test expects to succeed; that must fail the test, not kill it).
std::optional<PageImage> probed_block(const Mapping& map, std::uint64_t block);

// A REPLY whose answer's first read blocks (userfaultfd) while load_timeout_ms (300) runs out:
// the load fails with EIO in time, and the late REPLY gets ENOENT.
void expect_a_stuck_reply_does_not_keep_its_load_from_timing_out(int fd);

class BackingTest : public DeviceTest {
 protected:
  void SetUp() override { set_up(BackingServer::Access::read_only); }
  void TearDown() override;
  // A server for an object of `blocks` blocks (the device is resized first if that is not
  // kTestBlocks).
  void set_up(BackingServer::Access access, std::uint64_t blocks = kTestBlocks,
              BackingServer::Loads loads = BackingServer::Loads::blocks,
              BackingServer::Stores stores = BackingServer::Stores::blocks);

  [[nodiscard]] BackingServer& server() const { return *server_; }
  [[nodiscard]] vmcoh_backing_stats backing() const { return backing_stats(fd()); }
  // The server changes blocks and invalidates them while readers fault and read them: once
  // INVALIDATE of generation g has returned, nothing may show an older one
  // (device_backing_test.cpp).
  void invalidation_stress();

  std::unique_ptr<BackingServer> server_;
};

// Four regions' worth of blocks, served by a server that takes runs (device_region_load_test.cpp).
inline constexpr std::uint64_t kRegionTestBlocks = 4 * VMCOH_RANGE_SIZE / kBlock;
class RegionBackingTest : public BackingTest {
 protected:
  void SetUp() override;
};

// Needs test_hooks=1 (tests/guest/backing.sh runs it; the plain gtest run leaves it out).
class BackingHoldTest : public BackingTest {
 protected:
  void SetUp() override;
};

}  // namespace vmcoh::test
