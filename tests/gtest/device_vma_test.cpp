// What the device's mappings are to the rest of mm/: flags a core dump, mlock or khugepaged go by.
#include <sys/mman.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using VmaTest = DeviceTest;

// The VmFlags line of /proc/self/smaps for the VMA that starts at `start`, or "" if none does.
std::string vm_flags_of(const void* start) {
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
    } else if (ours && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

// A core dump reads every page of a VMA it dumps, faulting in what is not resident: for a backed
// object a LOAD per page, for a sparse 1 TiB mapping a terabyte.  A private mapping with a copied
// page is dumped by default (coredump_filter's anonymous-private bit, fs/coredump.c
// vma_dump_size()), so every mapping of the device is VM_DONTDUMP, as DRM's are (issue 14,
// item 10).
TEST_F(VmaTest, MappingsAreLeftOutOfCoreDumps) {
  for (const int flags : {MAP_SHARED, MAP_PRIVATE}) {
    const Mapping map = this->map(PROT_READ | PROT_WRITE, flags);
    map.data()[0] = std::byte{1};  // a private mapping now has a copied page
    const std::string vm_flags = vm_flags_of(map.data());
    ASSERT_FALSE(vm_flags.empty()) << "no VMA in /proc/self/smaps at " << map.data();
    EXPECT_NE((vm_flags + " ").find(" dd "), std::string::npos)
        << (flags == MAP_SHARED ? "MAP_SHARED: " : "MAP_PRIVATE: ") << vm_flags;
  }
}

}  // namespace
}  // namespace vmcoh::test
