// What the device's mappings are to the rest of mm/: flags a core dump, mlock or khugepaged go by.
#include <liburing.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using VmaTest = DeviceTest;

// A core dump reads every page of a VMA it dumps, faulting in what is not resident: for a backed
// object a LOAD per page, for a sparse 1 TiB mapping a terabyte.  A private mapping with a copied
// page is dumped by default (coredump_filter's anonymous-private bit, fs/coredump.c
// vma_dump_size()), so every mapping of the device is VM_DONTDUMP, as DRM's are (issue 14,
// item 10).
TEST_F(VmaTest, MappingsAreLeftOutOfCoreDumps) {
  for (const int flags : {MAP_SHARED, MAP_PRIVATE}) {
    const Mapping map = this->map(PROT_READ | PROT_WRITE, flags);
    map.data()[0] = std::byte{1};  // a private mapping now has a copied page
    const std::string vm_flags = smaps_line(map.data(), "VmFlags:");
    ASSERT_FALSE(vm_flags.empty()) << "no VMA in /proc/self/smaps at " << map.data();
    EXPECT_NE((vm_flags + " ").find(" dd "), std::string::npos)
        << (flags == MAP_SHARED ? "MAP_SHARED: " : "MAP_PRIVATE: ") << vm_flags;
  }
}

// A long-term pin of a block would hold its page for as long as the pin lasts, and the window
// (window.c, "Pins") makes whoever writes the index next wait that long.  No long-term pin
// reaches our pages through io_uring's fixed buffers: 6.1's io_uring refuses file-backed VMAs
// other than shmem and hugetlbfs (io_uring/rsrc.c, -EOPNOTSUPP), and 6.12's GUP refuses a
// writable FOLL_LONGTERM pin of a shared mapping that needs write notification
// (writable_file_mapping_allowed() in mm/gup.c, -EFAULT); a read-only one cannot take io_uring's
// FOLL_WRITE pin (-EFAULT).  If a kernel ever allows it, this fails, and the pin wait must be
// thought about again (issue 14, item 3).
TEST_F(VmaTest, IoUringCannotRegisterAMappingAsAFixedBuffer) {
  io_uring ring{};
  const int rc = io_uring_queue_init(4, &ring, 0);
  if (rc < 0) GTEST_SKIP() << "no io_uring here: " << std::strerror(-rc);
  for (const int prot : {PROT_READ | PROT_WRITE, PROT_READ}) {
    const Mapping map = this->map(prot, MAP_SHARED);
    const iovec buffer{map.data(), kBlock};
    const int err = io_uring_register_buffers(&ring, &buffer, 1);
    EXPECT_TRUE(err == -EOPNOTSUPP || err == -EFAULT)
        << (prot & PROT_WRITE ? "PROT_READ | PROT_WRITE" : "PROT_READ")
        << ": io_uring_register_buffers() said " << err
        << (err == 0 ? " (registered: a long-term pin of our page)" : "");
    if (err == 0) io_uring_unregister_buffers(&ring);
  }
  io_uring_queue_exit(&ring);
}

}  // namespace
}  // namespace vmcoh::test
