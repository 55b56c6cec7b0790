// The harness's optional write paths (page_ops.hpp): the setup probe records what a target takes
// and why it refuses the rest, and each path writes exactly the stamp it was given.
#include <fcntl.h>

#include <cerrno>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "page_ops.hpp"
#include "shared_state.hpp"
#include "test_object.hpp"

namespace vmcoh::race {
namespace {

constexpr std::size_t kPages = 16;

class WriteMethodsTest : public testing::Test {
 protected:
  void SetUp() override {
    object_ = test::ScratchObject::tmpfs_file();
    if (!object_) GTEST_SKIP() << "no tmpfs directory";
    config_.target = object_->target().path();
    config_.pages = kPages;
    target().set_size(kPages * kPageSize);
  }

  [[nodiscard]] const Target& target() const { return object_->target(); }
  [[nodiscard]] PageImage stamp(std::size_t page, std::uint64_t generation) const {
    return make_stamp({config_.run_id("write-methods-test"), page * kPageSize, generation, 0, 0});
  }

  std::unique_ptr<test::ScratchObject> object_;
  RunConfig config_;
  SharedState shared_{kPages, 1, 1};
};

TEST_F(WriteMethodsTest, TheProbeRecordsWhatTmpfsTakesAndWhyItRefusesTheRest) {
  probe_write_methods(target(), shared_, config_);
  EXPECT_TRUE(shared_.method_supported(OpMethod::copy_file_range));
  EXPECT_TRUE(shared_.method_supported(OpMethod::splice));
  EXPECT_FALSE(shared_.method_supported(OpMethod::zero_range)) << "tmpfs has no ZERO_RANGE";
  EXPECT_TRUE(shared_.method_supported(OpMethod::punch));
  EXPECT_FALSE(shared_.method_supported(OpMethod::pvm)) << "never probed, so never used";
  const auto probed = shared_.probed_methods();
  ASSERT_EQ(probed.size(), 4U);
  EXPECT_EQ(probed[0].method, OpMethod::punch);
  EXPECT_TRUE(probed[0].supported);
  EXPECT_EQ(probed[1].method, OpMethod::zero_range);
  EXPECT_FALSE(probed[1].supported);
  EXPECT_NE(probed[1].reason.find("fallocate(ZERO_RANGE)"), std::string::npos) << probed[1].reason;
}

// /dev/zero stands in for a character device that is no file: the answers /dev/vmcoh gets, which
// the probe counts as refusals.
TEST_F(WriteMethodsTest, ACharacterDeviceRefusesZeroRangeAndCopyFileRange) {
  const Fd zero = Fd::open("/dev/zero", O_RDWR);
  EXPECT_EQ(::fallocate(zero.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, kPageSize), -1);
  EXPECT_EQ(errno, ENODEV);
  const Fd source = Fd::unnamed(config_.copy_source_dir());
  try {
    copy_page(source.get(), zero.get(), 0, stamp(0, 1));
    FAIL() << "copy_file_range into a character device";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EINVAL) << e.what();
  }
}

TEST_F(WriteMethodsTest, CopyFileRangeAndSpliceWriteTheirStamp) {
  const Fd source = Fd::unnamed(config_.copy_source_dir());
  copy_page(source.get(), target().fd(), 2 * kPageSize, stamp(2, 5));
  EXPECT_EQ(test::pread_block(target().fd(), 2), stamp(2, 5));
  const Pipe pipe = Pipe::open();
  splice_page(pipe, target().fd(), 3 * kPageSize, stamp(3, 6));
  splice_page(pipe, target().fd(), 4 * kPageSize, stamp(4, 7));
  EXPECT_EQ(test::pread_block(target().fd(), 3), stamp(3, 6));
  EXPECT_EQ(test::pread_block(target().fd(), 4), stamp(4, 7)) << "the pipe was left with bytes";
}

TEST_F(WriteMethodsTest, ScratchFilesGoBesideAFileTargetOrInTmpForADevice) {
  EXPECT_EQ(config_.scratch_dir(), config_.target.parent_path());
  EXPECT_EQ(config_.copy_source_dir(), config_.target.parent_path());
  RunConfig device;
  device.target = "/dev/null";
  EXPECT_EQ(device.scratch_dir(), "/tmp");
  device.scratch = "/var/tmp";
  EXPECT_EQ(device.scratch_dir(), "/var/tmp");
  EXPECT_EQ(device.copy_source_dir(), "/var/tmp");
  EXPECT_NE(device.replay_command("pin-vs-punch").find("--scratch /var/tmp"), std::string::npos);
}

}  // namespace
}  // namespace vmcoh::race
