// Region loads (uapi/vmcoh.h, "Region loads"): a server that ATTACHes with VMCOH_ATTACH_REGIONS is
// asked for runs of blocks - read-around of the aligned VMCOH_LOAD_RUN_MIN blocks on a miss, twice
// the previous run on a sequential one, up to the rest of the 2 MiB region - and each block of a
// run is loading on its own: one request however many tasks want its blocks, and an invalidation
// of part of it discards the answer for that part only.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <vmcoh/backing_server.hpp>
#include <vmcoh/fd.hpp>

#include "backing_fixture.hpp"

namespace vmcoh::test {

void RegionBackingTest::SetUp() {
  set_up(BackingServer::Access::read_only, kRegionTestBlocks, BackingServer::Loads::regions);
}

namespace {

constexpr std::uint64_t kRegion = VMCOH_RANGE_SIZE / kBlock;
constexpr std::uint64_t kRunMin = VMCOH_LOAD_RUN_MIN;

// Every block loaded exactly once.
void expect_each_loaded_once(const BackingServer& server, std::uint64_t first,
                             std::uint64_t count) {
  for (std::uint64_t b = first; b < first + count; ++b) {
    ASSERT_EQ(server.loads(b), 1U) << "block " << b;
  }
}

TEST_F(RegionBackingTest, ASequentialPassCostsOneRoundTripPerRegionOnceUnderWay) {
  const vmcoh_backing_stats before = backing();  // the counters count since the module loaded
  const Mapping shared = map(PROT_READ, MAP_SHARED, kRegionTestBlocks * kBlock);
  for (std::uint64_t b = 0; b < kRegionTestBlocks; ++b) {
    ASSERT_EQ(mapped_block(shared, b), block_stamp(b, 1)) << "block " << b;
  }
  expect_each_loaded_once(server(), 0, kRegionTestBlocks);
  // The first region: 16, 32, 64, 128 and 256 blocks, and the 16 left; then a region each.
  const std::uint64_t regions = kRegionTestBlocks / kRegion;
  EXPECT_EQ(server().requests(), 6 + (regions - 1));
  EXPECT_EQ(server().requested_blocks(), kRegionTestBlocks);
  EXPECT_EQ(backing().load_blocks - before.load_blocks, kRegionTestBlocks);
  EXPECT_EQ(backing().loads_published - before.loads_published, kRegionTestBlocks);
}

TEST_F(RegionBackingTest, ReadsOfOneMiBLoadRunsAsFaultsDo) {
  std::vector<std::byte> buf(1 << 20);
  for (std::uint64_t off = 0; off < kRegionTestBlocks * kBlock; off += buf.size()) {
    ASSERT_EQ(::pread(fd(), buf.data(), buf.size(), static_cast<off_t>(off)),
              static_cast<ssize_t>(buf.size()));
    for (std::uint64_t b = 0; b < buf.size() / kBlock; ++b) {
      const PageImage expected = block_stamp(off / kBlock + b, 1);
      ASSERT_TRUE(std::equal(expected.bytes(), expected.bytes() + kBlock, &buf[b * kBlock]))
          << "block " << off / kBlock + b;
    }
  }
  expect_each_loaded_once(server(), 0, kRegionTestBlocks);
  EXPECT_LE(server().requests(), 6 + (kRegionTestBlocks / kRegion - 1));
}

TEST_F(RegionBackingTest, AMissReadsAroundItsAlignedRunOnly) {
  const Mapping shared = map(PROT_READ, MAP_SHARED, kRegionTestBlocks * kBlock);
  EXPECT_EQ(mapped_block(shared, 1000), block_stamp(1000, 1));
  const std::uint64_t first = 1000 / kRunMin * kRunMin;
  expect_each_loaded_once(server(), first, kRunMin);
  EXPECT_EQ(server().loads(first - 1), 0U);
  EXPECT_EQ(server().loads(first + kRunMin), 0U);
  EXPECT_EQ(server().requests(), 1U);
  // A resident block ends a run: the aligned run of the block just before stops short of it.
  EXPECT_EQ(pread_block(fd(), first - 1), block_stamp(first - 1, 1));
  EXPECT_EQ(server().loads(first - 1), 1U);
  EXPECT_EQ(server().loads(first), 1U);
}

// The blocks whose load count is not 1 for [0, 16) (2 for block 12) and 0 beyond: what a
// request too many asked for.
std::string unexpected_loads_of(const BackingServer& server) {
  std::string out;
  for (std::uint64_t b = 0; b < server.blocks(); ++b) {
    const std::uint64_t expected = b == 12 ? 2 : b < 16 ? 1 : 0;
    if (server.loads(b) != expected) out += fmt::format(" {}x{}", b, server.loads(b));
  }
  return out.empty() ? " none" : out;
}

// The wendelin case for a run: the server's copy of one block of the run changes while the run
// is on its way.  Only that block's answer is stale, and only it is loaded again.  The read of
// block 13 starts once the run is asked for, and waits for it: started together, it could lock
// 13's entry first and cut the run in two, as it may (one load per block, not per run).
TEST_F(RegionBackingTest, ALoadOfARunInvalidatedInPartIsRedoneForThatPartOnly) {
  const vmcoh_backing_stats before = backing();
  server().hold(12);
  const Mapping shared = map(PROT_READ, MAP_SHARED, kRegionTestBlocks * kBlock);
  auto fault = std::async(std::launch::async, [&] { return probed_block(shared, 12); });
  ASSERT_TRUE(server().wait_for_loads(12, 1, kWait));
  ASSERT_EQ(server().loads(13), 1U) << "the miss at 12 asks for its aligned run";
  auto read = std::async(std::launch::async, [&] { return read_block(fd(), 13).page; });

  ASSERT_TRUE(change_and_invalidate(server(), 12, 2));

  server().release(12);  // answers the run as it was when asked: block 12 at generation 1
  EXPECT_EQ(fault.get(), std::optional(block_stamp(12, 2))) << "a stale answer was installed";
  EXPECT_EQ(read.get(), block_stamp(13, 1));
  EXPECT_EQ(mapped_block(shared, 12), block_stamp(12, 2));
  EXPECT_EQ(mapped_block(shared, 15), block_stamp(15, 1));
  EXPECT_EQ(server().loads(12), 2U);
  for (const std::uint64_t b : {0U, 11U, 13U, 15U}) EXPECT_EQ(server().loads(b), 1U) << b;
  EXPECT_EQ(server().requests(), 2U)
      << "blocks loaded other than [0, 16) once and 12 twice: " << unexpected_loads_of(server())
      << "; the LOADs, first+count: " << server().recent_requests();
  EXPECT_EQ(backing().loads_invalidated - before.loads_invalidated, 1U);
}

TEST_F(RegionBackingTest, AServerOfBlocksIsNeverSentARun) {
  server_.reset();
  server_ = std::make_unique<BackingServer>(device_path(), kRegionTestBlocks);
  fill_server(*server_);
  const Mapping shared = map(PROT_READ, MAP_SHARED, kRegionTestBlocks * kBlock);
  for (std::uint64_t b = 0; b < 64; ++b) ASSERT_EQ(mapped_block(shared, b), block_stamp(b, 1));
  EXPECT_EQ(server().requests(), 64U);
  EXPECT_EQ(server().requested_blocks(), 64U);
}

TEST_F(RegionBackingTest, AReplyMustCarryTheWholeRun) {
  server_.reset();
  const Fd srv = Fd::open(device_path(), O_RDWR);
  vmcoh_attach attach{};
  attach.flags = VMCOH_ATTACH_REGIONS;
  ASSERT_EQ(::ioctl(srv.get(), VMCOH_IOC_ATTACH, &attach), 0);
  auto read = std::async(std::launch::async, [&] { return read_block(fd(), 3); });
  vmcoh_request request{};
  ASSERT_EQ(::ioctl(srv.get(), VMCOH_IOC_RECV, &request), 0);
  ASSERT_EQ(request.offset, 0U);
  ASSERT_EQ(request.length, kRunMin * kBlock);
  std::vector<PageImage> run(2 * kRunMin);  // room for the answers too long
  for (std::uint64_t b = 0; b < run.size(); ++b) run[b] = block_stamp(b, 7);
  vmcoh_reply reply{};
  reply.id = request.id;
  reply.data = reinterpret_cast<std::uintptr_t>(run.data());
  const std::uint64_t length = request.length;
  for (const std::uint64_t bad : std::vector<std::uint64_t>{
           kBlock, length - kBlock, length + kBlock, length + 1, VMCOH_RANGE_SIZE + kBlock}) {
    reply.length = bad;
    EXPECT_EQ(::ioctl(srv.get(), VMCOH_IOC_REPLY, &reply), -1) << bad;
    EXPECT_EQ(errno, EINVAL) << bad;
  }
  reply.length = request.length;
  ASSERT_EQ(::ioctl(srv.get(), VMCOH_IOC_REPLY, &reply), 0);
  const ReadResult r = read.get();
  EXPECT_EQ(r.page, block_stamp(3, 7));
  EXPECT_EQ(pread_block(fd(), 15), block_stamp(15, 7));
  vmcoh_attach detach{};
  EXPECT_EQ(::ioctl(srv.get(), VMCOH_IOC_DETACH, &detach), 0);
}

TEST_F(RegionBackingTest, StressNoReadOfARunSeesAGenerationOlderThanTheLastInvalidation) {
  invalidation_stress();
}

}  // namespace
}  // namespace vmcoh::test
