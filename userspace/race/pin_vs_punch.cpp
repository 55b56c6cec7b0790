// pin-vs-punch: a write through a GUP pin taken before a punch races the rewrite of the punched
// page.
//
// A page that get_user_pages()/pin_user_pages() holds - for O_DIRECT, process_vm_writev(),
// io_uring fixed buffers - may be written through that reference long after a punch took it
// out of the object, and the write must never land in what backs the page after the punch:
// fs/dax.c makes truncation wait for pinned pages (dax_layout_busy_page()), and the device's
// window, where block i is always the same page, makes the write(2), store or load that would
// publish the page again wait for the pin (docs/window.md, "Pins").  Without a window the
// punched block is simply freed once the pin lets go.  On a page-cache file the punch removes the
// pinned page from the cache, so the late write is lost - unless the page is part of a large folio
// the punch cannot split while it is pinned (huge-page tmpfs): then it stays in the file, and the
// late write shows, the known GUP vs file-backed memory problem (the report says so).
//
// Each pinned operation holds the pin deterministically: the writer pins page P of its own
// MAP_SHARED mapping, and the same system call then waits on a trap page U of the writer's
// (userfaultfd, vmcoh/userfault.hpp; vmcoh/pinned_io.hpp has the calls):
//  - pvm: process_vm_writev(getpid(), U -> P), on a thread, pins P, then faults copying from U;
//  - dio: an O_DIRECT preadv() of a scratch file (its first page holds P's current stamp) into
//    [P, U], on a thread: the block layer pins P, then faults pinning U, before it submits I/O;
//  - uring: io_uring_register_buffers() of P takes a long-term pin, and IORING_OP_READ_FIXED of
//    a scratch file holding P's current stamp writes through it.
// With P pinned in state s (data, done), the writer punches P (state s+1) and rewrites it with
// pwrite (state s+2), both on a thread of their own, and waits up to kRewriteWait for them: a
// target that waits for the pin holds the punch (DAX) or the rewrite (the device's window) until
// the pin goes, so the wait must time out rather than deadlock (pin-waits counts those).  Then it
// lets the pinned write land - it resolves the trap (pvm: U gets the stamp of state s; dio:
// zeros, U is the read's second buffer), or issues the READ_FIXED and unregisters - and joins
// the call and the rewrite.  The pinned write carries state s, which P held when pinned: before
// the punch it would change nothing; on the page that backs P after the rewrite it is stale.
//
// Setup: every page written once (state 1); the methods probed (a refusal skips the method and
// is reported: dio where --scratch, by default the target's directory or /tmp for the device,
// refuses O_DIRECT, is tmpfs, which copies without pinning, or does not hold the pin while the
// read waits on the trap page (btrfs: o_direct_refusal()); uring where the kernel refuses to
// pin the target's pages long-term).  userfaultfd must be available (root, or
// vm.unprivileged_userfaultfd=1): setup fails otherwise.
// Writers: page p belongs to writer p % W.  Each operation picks one of the writer's pages: a
// page that is not data is written; otherwise, one time in kPlainOneIn an overwrite, else a
// pinned operation with a method the target takes.
// Readers: read_object_until_stopped (MAP_SHARED loads, half aimed at the page being punched), at
// nice 10, so that the writer's threads get the CPU as soon as they wake.
// Oracle: judge_content; no change is needed: a pinned write landing after the rewrite shows
// state s after state s+1 is done, which is stale data.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include <vmcoh/error.hpp>
#include <vmcoh/mapping.hpp>
#include <vmcoh/pinned_io.hpp>
#include <vmcoh/userfault.hpp>

#include "page_ops.hpp"
#include "sampler.hpp"
#include "scenario.hpp"

namespace vmcoh::race {

namespace {

using namespace std::chrono_literals;

// How long the writer waits for a rewrite before it lets the pinned write go.
constexpr auto kRewriteWait = 50ms;
// How long a pinning call may take to reach the trap, and how often it is looked at meanwhile.
constexpr auto kTrapTimeout = 10s;
constexpr auto kTrapPoll = 10ms;
// One operation in kPlainOneIn is a plain overwrite, not a pinned one.
constexpr std::uint64_t kPlainOneIn = 4;
constexpr unsigned kRingEntries = 4;
// How much less CPU a reader asks for than the writers (nice(2)): a pinned operation is a chain
// of wakeups across the writer's threads, each of which would otherwise wait for a reader's
// time slice.
constexpr int kReaderNice = 10;

constexpr OpMethod kPinnedMethods[] = {OpMethod::pvm, OpMethod::dio, OpMethod::uring};

std::string uring_refusal(const std::system_error& e) {
  switch (e.code().value()) {
    case EOPNOTSUPP:
      return fmt::format("{} (this kernel pins no file mapping long-term but hugetlbfs)", e.what());
    case EFAULT:
      return fmt::format(
          "{} (this kernel pins no file mapping that needs dirty tracking "
          "long-term)",
          e.what());
    default:
      return e.what();
  }
}

// Which of the pinned methods the target and this kernel take (see the top of the file).
void probe_pinned_methods(const Target& target, const SharedState& shared,
                          const RunConfig& config) {
  { const TrapPage trap; }  // userfaultfd: EPERM fails the setup, saying what it needs
  const Mapping page = Mapping::map(kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, target.fd());
  try {
    PageImage current;
    std::memcpy(current.bytes(), page.data(), kPageSize);
    static_cast<void>(process_vm_write_self(current.bytes(), page.data(), kPageSize));
    shared.set_method(OpMethod::pvm, MethodState::supported);
  } catch (const std::system_error& e) {
    shared.set_method(OpMethod::pvm, MethodState::refused, e.what());
  }
  if (const std::optional<std::string> why = o_direct_refusal(config.scratch_dir())) {
    shared.set_method(OpMethod::dio, MethodState::refused, *why);
  } else {
    shared.set_method(OpMethod::dio, MethodState::supported);
  }
  try {
    IoUring ring(kRingEntries);
    const RegisteredBuffer buffer = ring.register_buffer(page.data(), kPageSize);
    shared.set_method(OpMethod::uring, MethodState::supported);
  } catch (const std::system_error& e) {
    shared.set_method(OpMethod::uring, MethodState::refused, uring_refusal(e));
  }
}

// A system call that pins a page and then waits on the trap, on a thread of its own.
class TrappedCall {
 public:
  template <class Call>
  explicit TrappedCall(Call call)
      : thread_([this, call = std::move(call)] {
          try {
            result_ = call();
          } catch (const std::exception& e) {
            error_ = e.what();
          }
          ended_.store(true, std::memory_order_release);
        }) {}

  [[nodiscard]] bool ended() const noexcept { return ended_.load(std::memory_order_acquire); }
  // Waits for the call: its result, or throws its error.
  std::size_t join() {
    thread_.join();
    if (!error_.empty()) throw std::runtime_error(error_);
    return result_;
  }

 private:
  std::size_t result_ = 0;
  std::string error_;
  std::atomic<bool> ended_{false};
  std::jthread thread_;  // last: it runs once the rest is built
};

// The punch of a pinned page and its rewrite, on a thread of their own: the punch, then the
// rewrite begun and published done from that thread as its pwrite returns.  Either may wait for
// the pin - fs/dax.c's truncation does (dax_layout_busy_page()), the device's window makes the
// write(2) wait - and stays in flight for as long as it waits.
class Rewrite {
 public:
  Rewrite(PageWriter& writer, const SharedState& shared, int fd, std::uint64_t run_id,
          std::size_t page, OpMethod pinned)
      : shared_(shared) {
    thread_ = std::jthread([this, &writer, fd, run_id, page, pinned] {
      try {
        writer.punch(page, 1, pinned);
        const std::uint64_t state = shared_.last_state(page) + 1;
        image_ = make_stamp({run_id, page * kPageSize, state, 0, 0});
        shared_.begin_op(page, state, StateKind::data, OpMethod::pwrite, page, 1, pinned);
        write_page(fd, page * kPageSize, image_, OpMethod::pwrite);
        shared_.end_op(page, state);
      } catch (const std::exception& e) {
        error_ = e.what();  // the state stays in flight; join() throws
      }
      returned_.release();
    });
  }

  // True if the pwrite returned within `timeout`.
  [[nodiscard]] bool returned_within(std::chrono::milliseconds timeout) {
    if (!returned_.try_acquire_for(timeout)) return false;
    returned_.release();
    return true;
  }
  void join() {
    thread_.join();
    if (!error_.empty()) throw std::runtime_error(error_);
  }

 private:
  const SharedState& shared_;
  PageImage image_;
  std::string error_;
  std::binary_semaphore returned_{0};
  std::jthread thread_;
};

// Lets a trapped call go on if the operation ends early (it threw): a trap left unresolved would
// hold the call, and the join of its thread, for ever.
class TrapRelease {
 public:
  explicit TrapRelease(const TrapPage& trap) noexcept : trap_(trap) {}
  TrapRelease(const TrapRelease&) = delete;
  TrapRelease& operator=(const TrapRelease&) = delete;
  ~TrapRelease() {
    if (!armed_) return;
    try {
      trap_.resolve_zero();
    } catch (const std::exception&) {
      // EEXIST: the page was filled already, and nothing waits for it.
    }
  }
  void disarm() noexcept { armed_ = false; }

 private:
  const TrapPage& trap_;
  bool armed_ = true;
};

class PinningWriter {
 public:
  explicit PinningWriter(ActorEnv& env)
      : env_(env),
        target_(env.open_target()),
        writer_(env, target_),
        map_(Mapping::map(env.shared().pages() * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED,
                          target_.fd())) {
    const SharedState& shared = env.shared();
    for (const OpMethod m : kPinnedMethods) {
      if (shared.method_supported(m)) methods_.push_back(m);
    }
    if (shared.method_supported(OpMethod::dio)) direct_.emplace(env.config().scratch_dir());
    if (shared.method_supported(OpMethod::uring)) {
      ring_.emplace(kRingEntries);
      stamp_source_ = Fd::unnamed(env.config().scratch_dir());
    }
  }

  void run() {
    const SharedState& shared = env_.shared();
    Rng& rng = env_.rng();
    const std::vector<std::size_t> owned =
        owned_chunks(0, shared.pages(), env_.config().writers, env_.role_index(), 1);
    env_.start();
    while (env_.keep_writing()) {
      const std::size_t page = owned[rng.below(owned.size())];
      if (shared.last_kind(page) != StateKind::data || methods_.empty() ||
          rng.chance(1, kPlainOneIn)) {
        writer_.write(page, writer_.random_write_method());
        continue;
      }
      const OpMethod method = methods_[rng.below(methods_.size())];
      method == OpMethod::uring ? through_ring(page) : through_trap(page, method);
      ActorCounters& counters = env_.counters();
      ++(method == OpMethod::pvm   ? counters.pinned_pvm
         : method == OpMethod::dio ? counters.pinned_dio
                                   : counters.pinned_uring);
    }
  }

 private:
  [[nodiscard]] PageImage current_stamp(std::size_t page) const {
    return make_stamp({env_.run_id(), page * kPageSize, env_.shared().last_state(page), 0, 0});
  }

  // Starts the punch of the pinned page and its rewrite, and gives them kRewriteWait.
  void punch_and_rewrite(std::size_t page, OpMethod method, std::optional<Rewrite>& rewrite) {
    rewrite.emplace(writer_, env_.shared(), target_.fd(), env_.run_id(), page, method);
    waited_ = !rewrite->returned_within(kRewriteWait);
  }

  // Counted here, once the rewrite's thread (which counts the punch) has been joined.
  void finish_rewrite(Rewrite& rewrite) {
    rewrite.join();
    if (std::exchange(waited_, false)) ++env_.counters().pin_waits;
    if (++env_.counters().ops % kPublishOpsEvery == 0) env_.publish_counters();
  }

  // pvm and dio: the call pins the page, then waits on the trap while the page is punched and
  // rewritten; resolving the trap lets its write land.
  void through_trap(std::size_t page, OpMethod method) {
    const PageImage current = current_stamp(page);
    std::byte* const pinned = map_.data() + page * kPageSize;
    if (method == OpMethod::dio) direct_->set_first_page(current);
    trap_.rearm();
    // Destroyed in reverse: the trap released, the rewrite joined, then the call.
    TrappedCall call([&]() -> std::size_t {
      if (method == OpMethod::pvm) return process_vm_write_self(trap_.data(), pinned, kPageSize);
      const ssize_t n = direct_->read_into(pinned, trap_.data());
      if (n < 0) throw std::system_error(static_cast<int>(-n), std::generic_category(), "preadv");
      return static_cast<std::size_t>(n);
    });
    std::optional<Rewrite> rewrite;
    TrapRelease release(trap_);
    wait_for_trap(call, method);
    punch_and_rewrite(page, method, rewrite);
    method == OpMethod::pvm ? trap_.resolve(current.bytes()) : trap_.resolve_zero();
    release.disarm();
    const std::size_t want = method == OpMethod::pvm ? kPageSize : 2 * kPageSize;
    if (const std::size_t n = call.join(); n != want) {
      throw std::runtime_error(
          fmt::format("{} of page {} wrote {} of {} bytes", to_string(method), page, n, want));
    }
    finish_rewrite(*rewrite);
  }

  void wait_for_trap(TrappedCall& call, OpMethod method) {
    const auto deadline = std::chrono::steady_clock::now() + kTrapTimeout;
    while (!trap_.wait_fault(kTrapPoll)) {
      if (call.ended()) {
        const std::size_t n = call.join();
        throw std::runtime_error(
            fmt::format("{} returned {} without touching the trap page: nothing was held",
                        to_string(method), n));
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        throw std::runtime_error(fmt::format("{} did not reach the trap page in {} s",
                                             to_string(method), kTrapTimeout.count()));
      }
    }
  }

  // uring: the registration pins the page until it is unregistered; READ_FIXED writes through
  // the pin after the punch and the rewrite.
  void through_ring(std::size_t page) {
    const PageImage current = current_stamp(page);
    std::byte* const pinned = map_.data() + page * kPageSize;
    const ssize_t staged =
        check_syscall(::pwrite(stamp_source_.get(), current.bytes(), kPageSize, 0), "pwrite");
    if (static_cast<std::size_t>(staged) != kPageSize) {
      throw std::runtime_error("short pwrite of the READ_FIXED source");
    }
    std::optional<Rewrite> rewrite;
    {
      const RegisteredBuffer buffer = ring_->register_buffer(pinned, kPageSize);
      punch_and_rewrite(page, OpMethod::uring, rewrite);
      const int n = ring_->read_fixed(stamp_source_.get(), 0, pinned, kPageSize);
      if (n != static_cast<int>(kPageSize)) {
        throw std::runtime_error(fmt::format("READ_FIXED into page {}: {}", page,
                                             n < 0 ? std::strerror(-n) : std::to_string(n)));
      }
    }  // unregistered: the pin goes, and a rewrite that waited for it goes on
    finish_rewrite(*rewrite);
  }

  ActorEnv& env_;
  const Target target_;
  PageWriter writer_;
  bool waited_ = false;  // the last punch and rewrite outlasted kRewriteWait
  Mapping map_;
  TrapPage trap_;
  std::vector<OpMethod> methods_;
  std::optional<DirectFile> direct_;
  std::optional<IoUring> ring_;
  Fd stamp_source_;
};

void pin_punch_rewrite(ActorEnv& env) { PinningWriter(env).run(); }

void read_at_lower_priority(ActorEnv& env) {
  (void)!::nice(kReaderNice);
  read_object_until_stopped(env);
}

class PinVsPunch final : public Scenario {
 public:
  std::string_view name() const noexcept override { return "pin-vs-punch"; }
  std::string_view summary() const noexcept override {
    return "writes through GUP pins (process_vm_writev, O_DIRECT, io_uring fixed buffers) held "
           "across a punch and a rewrite: the late write never lands on the rewritten page";
  }
  std::string_view reproduces() const noexcept override {
    return "fs/dax.c dax_layout_busy_page (GUP pins vs truncation)";
  }
  void setup(const Target& target, const SharedState& shared,
             const RunConfig& config) const override {
    require_pages(config, config.writers, name());
    write_initial_pages(target, shared, config.run_id(name()), 0, config.pages);
    probe_pinned_methods(target, shared, config);
  }
  std::vector<ActorSpec> actors(const RunConfig& config) const override {
    std::vector<ActorSpec> actors;
    for (std::size_t i = 0; i < config.writers; ++i) {
      actors.push_back({"writer", true, pin_punch_rewrite});
    }
    for (std::size_t i = 0; i < config.readers; ++i) {
      actors.push_back({"reader", false, read_at_lower_priority});
    }
    return actors;
  }
};

}  // namespace

const Scenario& pin_vs_punch() {
  static const PinVsPunch scenario;
  return scenario;
}

}  // namespace vmcoh::race
