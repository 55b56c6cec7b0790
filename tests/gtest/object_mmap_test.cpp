// mmap behaviours shared by the device and a tmpfs file: coherence with read(2)/write(2) in both
// directions, SIGBUS beyond EOF, MAP_PRIVATE copy-on-write, and write(2) from a buffer that maps
// the object itself.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <vmcoh/sigbus_probe.hpp>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

class MmapTest : public ObjectTest {
 protected:
  void SetUp() override {
    ObjectTest::SetUp();
    install_sigbus_probe();
  }
};

const std::byte* at(const Mapping& map, std::uint64_t block) { return map.data() + block * kBlock; }

TEST_P(MmapTest, HolesReadZeroThroughMmap) {
  pwrite_block(fd(), 2, block_stamp(2, 1));
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  EXPECT_TRUE(mapped_block(shared, 1).is_zero()) << "never written";
  EXPECT_EQ(mapped_block(shared, 2), block_stamp(2, 1));
  target().punch_hole(2 * kBlock, kBlock);
  EXPECT_TRUE(mapped_block(shared, 2).is_zero()) << "punched while mapped";
}

TEST_P(MmapTest, MmapSeesWriteOverAFaultedHole) {
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  ASSERT_TRUE(mapped_block(shared, 3).is_zero());  // fault the hole in
  pwrite_block(fd(), 3, block_stamp(3, 1));
  EXPECT_EQ(mapped_block(shared, 3), block_stamp(3, 1));
}

TEST_P(MmapTest, MmapSeesWriteOverFaultedData) {
  pwrite_block(fd(), 3, block_stamp(3, 1));
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  ASSERT_EQ(mapped_block(shared, 3), block_stamp(3, 1));
  pwrite_block(fd(), 3, block_stamp(3, 2));
  EXPECT_EQ(mapped_block(shared, 3), block_stamp(3, 2));
}

TEST_P(MmapTest, ReadSeesMmapStores) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  store_block(shared, 4, block_stamp(4, 1));  // into a hole
  EXPECT_EQ(pread_block(fd(), 4), block_stamp(4, 1));
  store_block(shared, 4, block_stamp(4, 2));  // over data
  EXPECT_EQ(pread_block(fd(), 4), block_stamp(4, 2));
}

TEST_P(MmapTest, WriteOverMmapStoresIsSeenByTheMapping) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  store_block(shared, 5, block_stamp(5, 1));
  pwrite_block(fd(), 5, block_stamp(5, 2));
  EXPECT_EQ(mapped_block(shared, 5), block_stamp(5, 2));
}

TEST_P(MmapTest, PartialWriteKeepsTheRestOfAnMmapStore) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  PageImage expected = block_stamp(7, 1);
  store_block(shared, 7, expected);
  const std::string text = "written with pwrite";
  constexpr std::uint64_t kAt = 1000;
  ASSERT_EQ(::pwrite(fd(), text.data(), text.size(), static_cast<off_t>(7 * kBlock + kAt)),
            static_cast<ssize_t>(text.size()));
  std::memcpy(expected.bytes() + kAt, text.data(), text.size());
  EXPECT_EQ(pread_block(fd(), 7), expected);
  EXPECT_EQ(mapped_block(shared, 7), expected);
}

TEST_P(MmapTest, MsyncAndFsyncSucceed) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  store_block(shared, 6, block_stamp(6, 1));
  EXPECT_EQ(::msync(shared.data(), kTestSize, MS_SYNC), 0) << std::strerror(errno);
  EXPECT_EQ(::msync(shared.data(), kTestSize, MS_ASYNC), 0) << std::strerror(errno);
  EXPECT_EQ(::fsync(fd()), 0) << std::strerror(errno);
  EXPECT_EQ(::fdatasync(fd()), 0) << std::strerror(errno);
  EXPECT_EQ(pread_block(fd(), 6), block_stamp(6, 1));
}

TEST_P(MmapTest, SharedMappingRaisesSigbusBeyondEofAfterShrink) {
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  pwrite_block(fd(), 20, block_stamp(20, 1));
  ASSERT_EQ(mapped_block(shared, 20), block_stamp(20, 1));  // mapped before the shrink
  target().set_size(16 * kBlock);
  EXPECT_TRUE(load_would_sigbus(at(shared, 20))) << "cut page, was mapped";
  EXPECT_TRUE(load_would_sigbus(at(shared, 16))) << "first page at EOF";
  EXPECT_FALSE(load_would_sigbus(at(shared, 15))) << "last page below EOF";
}

TEST_P(MmapTest, PrivateMappingRaisesSigbusBeyondEofEvenForCowedPages) {
  const Mapping priv = map(PROT_READ | PROT_WRITE, MAP_PRIVATE);
  pwrite_block(fd(), 21, block_stamp(21, 1));
  for (const std::uint64_t block : {20, 21, 22}) {
    store_block(priv, block, make_stamp({kTestRunId, block * kBlock, 7, kStampPrivate, 0}));
  }
  ASSERT_EQ(header_of(mapped_block(priv, 21)).flags, kStampPrivate) << "COWed before the shrink";
  target().set_size(16 * kBlock);
  for (const std::uint64_t block : {20, 21, 22}) {
    EXPECT_TRUE(load_would_sigbus(at(priv, block))) << "COWed block " << block;
  }
  EXPECT_TRUE(store_would_sigbus(priv.data() + 23 * kBlock, std::byte{1})) << "never COWed";
  EXPECT_FALSE(load_would_sigbus(at(priv, 15)));
}

TEST_P(MmapTest, RegrownPagesReadZero) {
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  const Mapping priv = map(PROT_READ | PROT_WRITE, MAP_PRIVATE);
  pwrite_block(fd(), 30, block_stamp(30, 1));
  ASSERT_EQ(mapped_block(shared, 30), block_stamp(30, 1));
  store_block(priv, 31, make_stamp({kTestRunId, 31 * kBlock, 7, kStampPrivate, 0}));
  target().set_size(16 * kBlock);
  target().set_size(kTestSize);
  EXPECT_TRUE(pread_block(fd(), 30).is_zero());
  EXPECT_TRUE(mapped_block(shared, 30).is_zero());
  EXPECT_TRUE(mapped_block(priv, 31).is_zero()) << "the COWed copy went with the truncation";
}

TEST_P(MmapTest, PrivateStoresAreInvisibleToReadAndSharedMappings) {
  pwrite_block(fd(), 8, block_stamp(8, 1));
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  const Mapping priv = map(PROT_READ | PROT_WRITE, MAP_PRIVATE);
  ASSERT_EQ(mapped_block(shared, 8), block_stamp(8, 1));
  const PageImage mine = make_stamp({kTestRunId, 8 * kBlock, 9, kStampPrivate, 0});
  store_block(priv, 8, mine);
  store_block(priv, 9, mine);  // over a hole
  EXPECT_EQ(mapped_block(priv, 8), mine);
  EXPECT_EQ(pread_block(fd(), 8), block_stamp(8, 1));
  EXPECT_EQ(mapped_block(shared, 8), block_stamp(8, 1));
  EXPECT_TRUE(pread_block(fd(), 9).is_zero());
  EXPECT_TRUE(mapped_block(shared, 9).is_zero());
}

TEST_P(MmapTest, PrivateMappingSeesObjectChangesToPagesItHasNotCowed) {
  const Mapping priv = map(PROT_READ | PROT_WRITE, MAP_PRIVATE);
  ASSERT_TRUE(mapped_block(priv, 10).is_zero());  // read-faulted, not COWed
  pwrite_block(fd(), 10, block_stamp(10, 1));
  EXPECT_EQ(mapped_block(priv, 10), block_stamp(10, 1)) << "write over a faulted hole";
  pwrite_block(fd(), 10, block_stamp(10, 2));
  EXPECT_EQ(mapped_block(priv, 10), block_stamp(10, 2)) << "write over faulted data";
  target().punch_hole(10 * kBlock, kBlock);
  EXPECT_TRUE(mapped_block(priv, 10).is_zero()) << "punch";
}

TEST_P(MmapTest, PrivateCopyIgnoresLaterObjectChanges) {
  const Mapping priv = map(PROT_READ | PROT_WRITE, MAP_PRIVATE);
  const PageImage mine = make_stamp({kTestRunId, 11 * kBlock, 9, kStampPrivate, 0});
  store_block(priv, 11, mine);
  pwrite_block(fd(), 11, block_stamp(11, 1));
  EXPECT_EQ(mapped_block(priv, 11), mine);
}

// write(2) whose source buffer is a mapping of the object itself: the kernel faults the source
// while writing the destination, so this deadlocks if the write holds the lock the fault needs.
class WriteFromSelfTest : public MmapTest {
 protected:
  void write_from_mapping(std::uint64_t from_block, std::uint64_t to_block) {
    const Mapping shared = map(PROT_READ, MAP_SHARED);
    EXPECT_EQ(::pwrite(fd(), at(shared, from_block), kBlock, static_cast<off_t>(to_block * kBlock)),
              static_cast<ssize_t>(kBlock))
        << std::strerror(errno);
  }
};

TEST_P(WriteFromSelfTest, FromDataToAnotherPage) {
  pwrite_block(fd(), 1, block_stamp(1, 1));
  write_from_mapping(1, 12);
  EXPECT_EQ(pread_block(fd(), 12), block_stamp(1, 1));
}

TEST_P(WriteFromSelfTest, FromDataToTheSamePage) {
  pwrite_block(fd(), 2, block_stamp(2, 1));
  write_from_mapping(2, 2);
  EXPECT_EQ(pread_block(fd(), 2), block_stamp(2, 1));
}

TEST_P(WriteFromSelfTest, FromAHoleToAnotherPage) {
  pwrite_block(fd(), 13, block_stamp(13, 1));
  write_from_mapping(14, 13);
  EXPECT_TRUE(pread_block(fd(), 13).is_zero());
}

TEST_P(WriteFromSelfTest, FromAHoleToTheSamePage) {
  write_from_mapping(15, 15);
  EXPECT_TRUE(pread_block(fd(), 15).is_zero());
}

INSTANTIATE_TEST_SUITE_P(Backends, MmapTest, testing::Values(Backend::device, Backend::tmpfs),
                         backend_name);
INSTANTIATE_TEST_SUITE_P(Backends, WriteFromSelfTest,
                         testing::Values(Backend::device, Backend::tmpfs), backend_name);

}  // namespace
}  // namespace vmcoh::test
