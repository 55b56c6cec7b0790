// vmcoh-minimal-server: serves a file as the contents of /dev/vmcoh (docs/server.md).
//
//   vmcoh-minimal-server FILE [DEVICE]
//
// Sets the object's size to FILE's (rounded up to a block), ATTACHes read-only taking LOADs of
// runs of blocks (VMCOH_ATTACH_REGIONS), and answers each LOAD with pread(2) of FILE until
// SIGINT or SIGTERM, then DETACHes.  One VMCOH_IOC_SERVE call per batch sends the answers to the
// last batch and waits for the next.  Faults and read(2) of the object then see FILE; a server
// that changes its copy calls VMCOH_IOC_INVALIDATE, and a writable one takes STOREs as well
// (uapi/vmcoh.h, "Backing store").
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include <vmcoh.h>

namespace {

constexpr std::size_t kBatch = 8;       // requests per SERVE call
constexpr std::uint64_t kBlock = 4096;  // vmcoh_info.block_size

volatile std::sig_atomic_t stopping = 0;

void on_signal(int /*signal*/) { stopping = 1; }

int fail(const char* what) {
  std::perror(what);
  return 1;
}

// The answer to one request: the blocks of FILE it asks for, read into `buffer`.
vmcoh_reply answer(int file, const vmcoh_request& request, std::byte* buffer) {
  vmcoh_reply reply{};
  reply.id = request.id;
  if (request.op != VMCOH_REQ_LOAD) {
    reply.error = -EOPNOTSUPP;  // a read-only server is sent no STORE
    return reply;
  }
  const ssize_t got = ::pread(file, buffer, request.length, static_cast<off_t>(request.offset));
  if (got < 0) {
    reply.error = -errno;
    return reply;
  }
  // The last block may reach past FILE's end: zeros there.
  std::memset(buffer + got, 0, request.length - static_cast<std::uint64_t>(got));
  reply.data = reinterpret_cast<std::uintptr_t>(buffer);
  reply.length = request.length;
  return reply;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    (void)std::fprintf(stderr, "usage: %s FILE [DEVICE]\n", argv[0]);
    return 2;
  }
  const int file = ::open(argv[1], O_RDONLY | O_CLOEXEC);
  if (file < 0) return fail(argv[1]);
  const char* device = argc > 2 ? argv[2] : VMCOH_DEVICE_PATH;
  const int dev = ::open(device, O_RDWR | O_CLOEXEC);
  if (dev < 0) return fail(device);

  struct stat st {};
  if (::fstat(file, &st) != 0) return fail("fstat");
  vmcoh_set_size size{};
  size.size = (static_cast<std::uint64_t>(st.st_size) + kBlock - 1) / kBlock * kBlock;
  if (::ioctl(dev, VMCOH_IOC_SET_SIZE, &size) != 0) return fail("VMCOH_IOC_SET_SIZE");
  vmcoh_attach attach{};
  attach.flags = VMCOH_ATTACH_REGIONS;
  if (::ioctl(dev, VMCOH_IOC_ATTACH, &attach) != 0) return fail("VMCOH_IOC_ATTACH");
  (void)std::fprintf(stderr, "%s: serving %s as %s (%llu bytes)\n", argv[0], argv[1], device,
                     static_cast<unsigned long long>(size.size));

  // A run is at most VMCOH_RANGE_SIZE.  Page-aligned buffers: with a window, SERVE pins them
  // and copies each block once, straight where it goes.
  void* buffers = ::mmap(nullptr, kBatch * VMCOH_RANGE_SIZE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buffers == MAP_FAILED) return fail("mmap");

  // No SA_RESTART: a signal ends the SERVE that waits, with EINTR.
  struct sigaction action {};
  action.sa_handler = on_signal;
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);

  std::array<vmcoh_request, kBatch> requests{};
  std::array<vmcoh_reply, kBatch> replies{};
  std::uint32_t answered = 0;
  int status = 0;
  while (stopping == 0) {
    vmcoh_serve serve{};  // no flags: wait for the first request
    serve.replies = reinterpret_cast<std::uintptr_t>(replies.data());
    serve.nr_replies = answered;
    serve.requests = reinterpret_cast<std::uintptr_t>(requests.data());
    serve.nr_requests = kBatch;
    requests.fill(vmcoh_request{});
    const int received = ::ioctl(dev, VMCOH_IOC_SERVE, &serve);
    if (received < 0 && errno != EINTR) {
      status = fail("VMCOH_IOC_SERVE");
      break;
    }
    // Each reply's result says whether it was taken: -ENOENT if its request timed out.
    answered = 0;
    for (int i = 0; i < received; ++i) {
      auto* buffer =
          static_cast<std::byte*>(buffers) + static_cast<std::size_t>(i) * VMCOH_RANGE_SIZE;
      replies[answered++] = answer(file, requests[static_cast<std::size_t>(i)], buffer);
    }
  }
  vmcoh_attach detach{};
  if (::ioctl(dev, VMCOH_IOC_DETACH, &detach) != 0) status = fail("VMCOH_IOC_DETACH");
  return status;
}
