// Two device nodes for the same device share one address space: an invalidation through one
// node reaches mappings made through the other (a second mknod, a container's /dev).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>
#include <vmcoh/sigbus_probe.hpp>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

// A second node for the device in a fresh temporary directory, removed with it.
class SecondNode {
 public:
  explicit SecondNode(dev_t rdev) {
    std::string dir = (std::filesystem::temp_directory_path() / "vmcoh-node-XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) throw_errno("mkdtemp " + dir);
    dir_ = dir;
    path_ = dir_ / "vmcoh";
    if (::mknod(path_.c_str(), S_IFCHR | 0600, rdev) != 0) {
      error_ = errno;
      path_.clear();
    }
  }
  SecondNode(const SecondNode&) = delete;
  SecondNode& operator=(const SecondNode&) = delete;
  ~SecondNode() { std::filesystem::remove_all(dir_); }

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] int error() const noexcept { return error_; }

 private:
  std::filesystem::path dir_;
  std::filesystem::path path_;
  int error_ = 0;
};

class TwoNodesTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    struct stat st {};
    ASSERT_EQ(::fstat(fd(), &st), 0);
    node_ = std::make_unique<SecondNode>(st.st_rdev);
    if (node_->path().empty()) {
      if (node_->error() == EPERM) GTEST_SKIP() << "mknod needs CAP_MKNOD";
      FAIL() << "mknod: " << std::strerror(node_->error());
    }
    other_ = Fd::open(node_->path(), O_RDWR);
  }

  std::unique_ptr<SecondNode> node_;
  Fd other_;
};

TEST_F(TwoNodesTest, PunchThroughOneNodeReachesAMappingMadeThroughTheOther) {
  pwrite_block(fd(), 5, block_stamp(5, 1));
  const Mapping other_map = Mapping::map(kTestSize, PROT_READ, MAP_SHARED, other_.get());
  ASSERT_EQ(mapped_block(other_map, 5), block_stamp(5, 1));
  target().punch_hole(5 * kBlock, kBlock);
  EXPECT_TRUE(mapped_block(other_map, 5).is_zero());
}

TEST_F(TwoNodesTest, WriteThroughOneNodeReachesAMappingMadeThroughTheOther) {
  const Mapping other_map = Mapping::map(kTestSize, PROT_READ, MAP_SHARED, other_.get());
  ASSERT_TRUE(mapped_block(other_map, 6).is_zero());  // the hole is mapped
  pwrite_block(fd(), 6, block_stamp(6, 1));
  EXPECT_EQ(mapped_block(other_map, 6), block_stamp(6, 1));
}

TEST_F(TwoNodesTest, ShrinkThroughOneNodeReachesAMappingMadeThroughTheOther) {
  install_sigbus_probe();
  pwrite_block(fd(), 20, block_stamp(20, 1));
  const Mapping other_map = Mapping::map(kTestSize, PROT_READ, MAP_SHARED, other_.get());
  ASSERT_EQ(mapped_block(other_map, 20), block_stamp(20, 1));
  target().set_size(16 * kBlock);
  EXPECT_TRUE(load_would_sigbus(other_map.data() + 20 * kBlock));
}

}  // namespace
}  // namespace vmcoh::test
