// The RAII handles and the Target abstraction on a regular file.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <iterator>
#include <system_error>
#include <type_traits>

#include <gtest/gtest.h>

#include <vmcoh/fd.hpp>
#include <vmcoh/mapping.hpp>
#include <vmcoh/shared_array.hpp>
#include <vmcoh/target.hpp>

namespace vmcoh {
namespace {

static_assert(!std::is_copy_constructible_v<Fd> && std::is_nothrow_move_constructible_v<Fd>);
static_assert(!std::is_copy_constructible_v<Mapping> &&
              std::is_nothrow_move_constructible_v<Mapping>);

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// Whether `addr` is mapped in this process (mincore fails with ENOMEM otherwise).
bool is_mapped(const void* addr) {
  unsigned char vec = 0;
  return ::mincore(const_cast<void*>(addr), 1, &vec) == 0;
}

std::filesystem::path scratch_path(const char* name) {
  return std::filesystem::temp_directory_path() / (std::string(name) + std::to_string(::getpid()));
}

TEST(Fd, ClosesOnDestructionAndMoveTransfersOwnership) {
  int raw = -1;
  {
    Fd a = Fd::open("/dev/null", O_RDONLY);
    raw = a.get();
    Fd b = std::move(a);
    // A moved-from Fd is documented to be empty: that is what this checks.
    EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
    EXPECT_EQ(b.get(), raw);
    EXPECT_TRUE(fd_is_open(raw));
  }
  EXPECT_FALSE(fd_is_open(raw));
}

TEST(Fd, OpenFailureThrowsTheErrno) {
  try {
    static_cast<void>(Fd::open("/nonexistent/vmcoh", O_RDONLY));
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
}

TEST(Mapping, UnmapsOnDestructionAndMoveTransfersOwnership) {
  const std::byte* addr = nullptr;
  {
    Mapping a = Mapping::anonymous_shared(4096);
    addr = a.data();
    Mapping b = std::move(a);
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is documented empty
    EXPECT_EQ(b.data(), addr);
    EXPECT_TRUE(is_mapped(addr));
  }
  EXPECT_FALSE(is_mapped(addr));
}

TEST(Mapping, AnAlignedMappingStartsAtTheAlignmentAndKeepsNothingElse) {
  constexpr std::size_t kAlign = std::size_t{2} << 20;
  const auto path = scratch_path("vmcoh-aligned-");
  const Target t = Target::open(path, Target::Create::if_missing);
  t.set_size(kAlign);
  const char byte = 'x';
  ASSERT_EQ(::pwrite(t.fd(), &byte, 1, 4096), 1);
  const std::byte* addr = nullptr;
  {
    const Mapping m = Mapping::map_aligned(kAlign, kAlign, PROT_READ, MAP_SHARED, t.fd());
    addr = m.data();
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(addr) % kAlign, 0U);
    EXPECT_EQ(m.size(), kAlign);
    EXPECT_FALSE(is_mapped(addr - 4096)) << "the reservation's head was given back";
    EXPECT_FALSE(is_mapped(addr + kAlign)) << "the reservation's tail was given back";
    EXPECT_EQ(static_cast<char>(m.data()[4096]), 'x');
    m.remap(0, kAlign, PROT_READ, MAP_SHARED, t.fd(), 0);
    EXPECT_EQ(static_cast<char>(m.data()[4096]), 'x') << "mapped afresh at the same address";
  }
  EXPECT_FALSE(is_mapped(addr));
  std::filesystem::remove(path);
}

TEST(Fd, AnUnnamedFileIsWritableAndInNoDirectory) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto entries = [&] {
    return std::distance(std::filesystem::directory_iterator(dir),
                         std::filesystem::directory_iterator());
  };
  const auto before = entries();
  const Fd f = Fd::unnamed(dir);
  EXPECT_EQ(entries(), before);
  const char byte = 'y';
  EXPECT_EQ(::pwrite(f.get(), &byte, 1, 0), 1);
}

TEST(SharedArray, IsSharedWithAForkedChild) {
  SharedArray<std::uint64_t> shared(4);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    atomic(shared[2]).store(42);
    std::_Exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(atomic(shared[2]).load(), 42U);
  EXPECT_EQ(atomic(shared[1]).load(), 0U) << "zero-filled";
}

TEST(Target, RegularFileSizesAndPunchesWithoutStats) {
  const auto path = scratch_path("vmcoh-target-");
  Target t = Target::open(path, Target::Create::if_missing);
  EXPECT_TRUE(t.created());
  EXPECT_EQ(t.kind(), TargetKind::regular_file);
  EXPECT_FALSE(t.stats().has_value());
  EXPECT_FALSE(t.info().has_value());
  t.set_size(std::uint64_t{8} * 4096);
  EXPECT_EQ(t.size(), 8U * 4096);
  const char byte = 'x';
  ASSERT_EQ(::pwrite(t.fd(), &byte, 1, 4096), 1);
  t.punch_hole(4096, 4096);
  char back = 'y';
  ASSERT_EQ(::pread(t.fd(), &back, 1, 4096), 1);
  EXPECT_EQ(back, '\0');
  EXPECT_EQ(t.size(), 8U * 4096) << "a punch keeps the size";
  std::filesystem::remove(path);
}

TEST(Target, OpeningAnExistingFileDoesNotCreateIt) {
  const auto path = scratch_path("vmcoh-existing-");
  { static_cast<void>(Fd::open(path, O_CREAT | O_WRONLY, 0600)); }
  EXPECT_FALSE(Target::open(path, Target::Create::if_missing).created());
  std::filesystem::remove(path);
}

TEST(Target, MissingPathWithoutCreateThrowsEnoent) {
  try {
    static_cast<void>(Target::open(scratch_path("vmcoh-missing-")));
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
}

TEST(Target, ACharacterDeviceThatIsNotVmcohIsRejected) {
  EXPECT_THROW(static_cast<void>(Target::open("/dev/null")), std::system_error);
}

}  // namespace
}  // namespace vmcoh
