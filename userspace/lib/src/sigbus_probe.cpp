#include <pthread.h>
#include <setjmp.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <mutex>

#include <vmcoh/error.hpp>
#include <vmcoh/sigbus_probe.hpp>

namespace vmcoh {

namespace {

// Per-thread probe state.  Trivial, so the handler reads it without running any TLS initialiser
// (thread_local access in a signal handler is safe for the static TLS of the executable).
struct ProbeSlot {
  sigjmp_buf env;
  volatile std::sig_atomic_t armed;
  const void* fault_address;
};
thread_local ProbeSlot tls_probe;

void on_sigbus(int signo, siginfo_t* info, void* /*ucontext*/) {
  ProbeSlot& slot = tls_probe;
  if (slot.armed == 0) {
    // Not ours: restore the default action and let the signal kill the process.
    static_cast<void>(::signal(signo, SIG_DFL));
    static_cast<void>(::raise(signo));
    return;
  }
  slot.armed = 0;
  slot.fault_address = info->si_addr;
  siglongjmp(slot.env, 1);
}

}  // namespace

void install_sigbus_probe() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    check_syscall(::sigaction(SIGBUS, &action, nullptr), "sigaction(SIGBUS)");
  });
}

namespace {

// Runs access(context) with the probe armed.  Everything the access touches lives in the caller's
// frame or in mapped memory, and nothing that changes after sigsetjmp is read after a siglongjmp,
// so no local needs to be volatile.  Accesses are volatile: the compiler neither elides nor merges
// them, and each happens exactly once unless it faults.
using Access = void (*)(void* context);

void unblock_sigbus() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGBUS);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

std::optional<SigbusFault> run_probed(Access access, void* context) {
  ProbeSlot& slot = tls_probe;
  // No signal mask is saved (that would add a system call to every probe); after a fault the
  // mask is mended instead.  SA_NODEFER normally leaves SIGBUS unblocked in the handler, but a
  // runtime that wraps handlers (sanitizers) may block it, and a SIGBUS taken while blocked kills.
  if (sigsetjmp(slot.env, 0) != 0) {
    unblock_sigbus();
    return SigbusFault{slot.fault_address};
  }
  slot.armed = 1;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  access(context);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  slot.armed = 0;
  return std::nullopt;
}

struct LoadWords {
  std::uint64_t* dst;
  const volatile std::uint64_t* src;
  std::size_t words;
};
struct StoreWords {
  volatile std::uint64_t* dst;
  const std::uint64_t* src;
  std::size_t words;
};
struct LoadByte {
  const volatile std::byte* address;
  std::byte value;
};
struct StoreByte {
  volatile std::byte* address;
  std::byte value;
};

}  // namespace

std::optional<SigbusFault> probe_load(std::uint64_t* dst, const volatile std::uint64_t* src,
                                      std::size_t words) {
  LoadWords copy{dst, src, words};
  return run_probed(
      [](void* context) {
        const auto& c = *static_cast<LoadWords*>(context);
        for (std::size_t i = 0; i < c.words; ++i) c.dst[i] = c.src[i];
      },
      &copy);
}

std::optional<SigbusFault> probe_store(volatile std::uint64_t* dst, const std::uint64_t* src,
                                       std::size_t words) {
  StoreWords copy{dst, src, words};
  return run_probed(
      [](void* context) {
        const auto& c = *static_cast<StoreWords*>(context);
        for (std::size_t i = 0; i < c.words; ++i) c.dst[i] = c.src[i];
      },
      &copy);
}

bool load_would_sigbus(const volatile void* address) {
  LoadByte access{static_cast<const volatile std::byte*>(address), std::byte{0}};
  return run_probed(
             [](void* context) {
               auto& a = *static_cast<LoadByte*>(context);
               a.value = *a.address;
             },
             &access)
      .has_value();
}

bool store_would_sigbus(volatile void* address, std::byte value) {
  StoreByte access{static_cast<volatile std::byte*>(address), value};
  return run_probed(
             [](void* context) {
               const auto& a = *static_cast<StoreByte*>(context);
               *a.address = a.value;
             },
             &access)
      .has_value();
}

}  // namespace vmcoh
