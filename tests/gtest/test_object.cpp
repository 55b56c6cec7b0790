#include "test_object.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>

namespace vmcoh {

void PrintTo(const PageImage& page, std::ostream* os) {
  *os << (page.is_zero() ? std::string("zero page") : "page with " + describe(header_of(page)));
}

}  // namespace vmcoh

namespace vmcoh::test {

namespace {

std::optional<std::filesystem::path> tmpfs_dir() {
  std::vector<std::filesystem::path> candidates = {"/dev/shm"};
  if (const char* tmpdir = std::getenv("TMPDIR")) candidates.emplace_back(tmpdir);
  candidates.emplace_back("/tmp");
  for (const auto& dir : candidates) {
    if (is_tmpfs(dir)) return dir;
  }
  return std::nullopt;
}

}  // namespace

std::filesystem::path device_path() {
  const char* env = std::getenv("VMCOH_DEVICE");
  return env != nullptr && *env != '\0' ? env : VMCOH_DEVICE_PATH;
}

bool device_present() { return std::filesystem::exists(device_path()); }

std::chrono::milliseconds stress_time(std::chrono::milliseconds otherwise) {
  const char* env = std::getenv("VMCOH_STRESS_SECONDS");
  if (env == nullptr || *env == '\0') return otherwise;
  char* end = nullptr;
  const double seconds = std::strtod(env, &end);
  if (*end != '\0' || !(seconds > 0)) {
    ADD_FAILURE() << "VMCOH_STRESS_SECONDS=" << env << " is not a positive number of seconds";
    return otherwise;
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

std::unique_ptr<ScratchObject> ScratchObject::device() {
  return std::make_unique<ScratchObject>(Target::open(device_path()), std::filesystem::path());
}

std::unique_ptr<ScratchObject> ScratchObject::tmpfs_file() {
  const auto dir = tmpfs_dir();
  if (!dir) return nullptr;
  std::string name = (*dir / "vmcoh-gtest-XXXXXX").string();
  const int fd = check_syscall(::mkstemp(name.data()), "mkstemp " + name);
  ::close(fd);
  return std::make_unique<ScratchObject>(Target::open(name), name);
}

ScratchObject::ScratchObject(Target target, std::filesystem::path remove_when_done)
    : target_(std::move(target)),
      original_size_(target_.size()),
      remove_when_done_(std::move(remove_when_done)) {
  target_.set_size(kTestSize);
  target_.punch_hole(0, kTestSize);
}

ScratchObject::~ScratchObject() {
  try {
    if (!remove_when_done_.empty()) {
      std::filesystem::remove(remove_when_done_);
      return;
    }
    if (const std::uint64_t size = target_.size(); size > 0) target_.punch_hole(0, size);
    target_.set_size(original_size_);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "restoring " << target_.path() << ": " << e.what();
  }
}

PageImage block_stamp(std::uint64_t block, std::uint64_t generation) {
  return make_stamp({kTestRunId, block * kBlock, generation, 0, 0});
}

void pwrite_block(int fd, std::uint64_t block, const PageImage& page) {
  const ssize_t n = ::pwrite(fd, page.bytes(), kBlock, static_cast<off_t>(block * kBlock));
  if (n != static_cast<ssize_t>(kBlock)) {
    ADD_FAILURE() << "pwrite of block " << block << " returned " << n << ": "
                  << std::strerror(errno);
  }
}

PageImage pread_block(int fd, std::uint64_t block) {
  PageImage page;
  const ssize_t n = ::pread(fd, page.bytes(), kBlock, static_cast<off_t>(block * kBlock));
  if (n != static_cast<ssize_t>(kBlock)) {
    ADD_FAILURE() << "pread of block " << block << " returned " << n << ": "
                  << std::strerror(errno);
  }
  return page;
}

PageImage mapped_block(const Mapping& map, std::uint64_t block) {
  PageImage page;
  std::memcpy(page.bytes(), map.data() + block * kBlock, kBlock);
  return page;
}

void store_block(const Mapping& map, std::uint64_t block, const PageImage& page) {
  std::memcpy(map.data() + block * kBlock, page.bytes(), kBlock);
}

std::string backend_name(const testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::device ? "device" : "tmpfs";
}

void ObjectTest::SetUp() {
  if (GetParam() == Backend::device) {
    if (!device_present()) GTEST_SKIP() << device_path() << " absent: vmcoh module not loaded";
    object_ = ScratchObject::device();
  } else {
    object_ = ScratchObject::tmpfs_file();
    if (!object_) GTEST_SKIP() << "no tmpfs directory (/dev/shm, $TMPDIR, /tmp)";
  }
}

Mapping ObjectTest::map(int prot, int flags, std::uint64_t length) const {
  return Mapping::map(length, prot, flags, fd());
}

void DeviceTest::SetUp() {
  if (!device_present()) GTEST_SKIP() << device_path() << " absent: vmcoh module not loaded";
  object_ = ScratchObject::device();
}

Mapping DeviceTest::map(int prot, int flags, std::uint64_t length) const {
  return Mapping::map(length, prot, flags, fd());
}

void DeviceTest::require_test_hooks() const {
  if ((info().features & VMCOH_FEATURE_TEST_HOOKS) == 0) GTEST_SKIP() << "needs test_hooks=1";
}

std::string smaps_line(const void* start, const std::string& prefix) {
  std::ifstream smaps("/proc/self/smaps");
  const auto want = reinterpret_cast<std::uintptr_t>(start);
  bool ours = false;
  for (std::string line; std::getline(smaps, line);) {
    std::uintptr_t from = 0;
    std::uintptr_t to = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> from >> dash >> to && dash == '-') {
      ours = from == want;
    } else if (ours && line.rfind(prefix, 0) == 0) {
      return line;
    }
  }
  return "";
}

std::uint64_t module_parameter(const std::string& name) {
  std::ifstream in("/sys/module/vmcoh/parameters/" + name);
  std::string value;
  in >> value;
  if (value == "Y") return 1;
  if (value == "N") return 0;
  return value.empty() ? 0 : std::stoull(value);
}

std::uint64_t fault_around_window() {
  if (const std::uint64_t pages = module_parameter("fault_around")) return pages;
  return module_parameter("test_hooks") != 0 ? 1 : 16;
}

}  // namespace vmcoh::test
