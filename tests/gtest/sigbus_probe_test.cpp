// The SIGBUS probe, against a one-page file mapped over two pages (the second is beyond EOF).
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>
#include <vmcoh/mapping.hpp>
#include <vmcoh/sigbus_probe.hpp>
#include <vmcoh/stamp.hpp>

namespace vmcoh {
namespace {

class SigbusProbeTest : public testing::Test {
 protected:
  void SetUp() override {
    install_sigbus_probe();
    std::string name = (std::filesystem::temp_directory_path() / "vmcoh-probe-XXXXXX").string();
    fd_ = Fd(check_syscall(::mkstemp(name.data()), "mkstemp"));
    ::unlink(name.c_str());
    check_syscall(::ftruncate(fd_.get(), kPageSize), "ftruncate");
    map_ = Mapping::map(2 * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get());
  }
  [[nodiscard]] std::byte* inside() const { return map_.data(); }
  [[nodiscard]] std::byte* beyond() const { return map_.data() + kPageSize; }

  Fd fd_;
  Mapping map_;
};

TEST_F(SigbusProbeTest, LoadBeyondEofRaisesSigbusAndInsideDoesNot) {
  EXPECT_TRUE(load_would_sigbus(beyond()));
  EXPECT_FALSE(load_would_sigbus(inside()));
}

TEST_F(SigbusProbeTest, StoreBeyondEofRaisesSigbusAndInsideDoesNot) {
  EXPECT_TRUE(store_would_sigbus(beyond(), std::byte{1}));
  EXPECT_FALSE(store_would_sigbus(inside(), std::byte{1}));
  EXPECT_EQ(*inside(), std::byte{1});
}

TEST_F(SigbusProbeTest, ProbeLoadCopiesUpToTheFaultAndNamesItsAddress) {
  std::vector<std::uint64_t> dst(16, ~0ULL);
  auto* src = reinterpret_cast<const volatile std::uint64_t*>(beyond()) - 8;
  const auto fault = probe_load(dst.data(), src, dst.size());
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->address, beyond());
  EXPECT_EQ(dst[7], 0U) << "the words below EOF were copied";
  EXPECT_EQ(dst[8], ~0ULL) << "nothing from the faulting word on";
}

TEST_F(SigbusProbeTest, ProbeStoreStopsAtTheFault) {
  const std::vector<std::uint64_t> src(16, 0x1234);
  auto* dst = reinterpret_cast<volatile std::uint64_t*>(beyond()) - 8;
  const auto fault = probe_store(dst, src.data(), src.size());
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->address, beyond());
  EXPECT_EQ(dst[7], 0x1234U);
}

TEST_F(SigbusProbeTest, ProbesInManyThreadsAtOnceEachSeeTheirOwnFaults) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 500;  // 4000 probes, half of them faults, interleaved across threads
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        if (!load_would_sigbus(beyond())) ++wrong;
        if (load_would_sigbus(inside())) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(SigbusProbeTest, ProbesWorkAgainAfterManyFaults) {
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(load_would_sigbus(beyond())) << i;
}

using SigbusProbeDeathTest = SigbusProbeTest;

TEST_F(SigbusProbeDeathTest, ASigbusOutsideAProbeStillKills) {
  EXPECT_EXIT(
      {
        static_cast<void>(*reinterpret_cast<volatile std::byte*>(beyond()));
        std::exit(0);
      },
      testing::KilledBySignal(SIGBUS), "");
}

}  // namespace
}  // namespace vmcoh
