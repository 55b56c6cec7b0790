// store-vs-fault: stores through the writers' own MAP_SHARED mappings fill holes and overwrite
// pages, racing read faults through the other actors' mappings, write(2)s and punches.
//
// write-vs-fault with the store fault as the writer that fills the hole (linux-mm 2017, "DAX:
// write vs fault", the other way round).  On /dev/vmcoh a store into a hole goes through ->fault
// (no PTE yet) or ->page_mkwrite (the writer's own PTE maps the zero page); either allocates and
// publishes a block under the entry lock, and must take the zero page out of every mapping
// before it publishes: write(2) takes no entry lock, so once the block is published a write(2)
// copies into it and returns, and a reader's zero-page PTE left behind shows zeros after that
// (unsafe=zero_unmap_after_publish unmaps only after publishing).  A store alone cannot show it:
// the zero page goes while the store's own operation is still in flight, when zeros are legal.
// So some fills are a store and a pwrite of the same stamp at once (store+pwrite, the pwrite from
// a thread of the writer, started 0 to 4 us after the store): the operation is done when the
// pwrite returns, finished or not the store, since both write the same bytes; a load after that
// must show the stamp, never zeros.
//
// Setup: config.pages holes.
// Writers: page p belongs to writer p % W; each maps the object MAP_SHARED read-write.  Each
// operation picks one of the writer's pages: a hole is filled (a store, a store+pwrite, or one of
// PageWriter's write methods), half the time after a load through the writer's own mapping, so
// that the store write-faults the zero page; a data page is overwritten (mostly by a store) and
// after a few overwrites punched again.  So stores fault into holes while write(2)s and punches
// of other pages go on, and readers fault around them.
// Readers: read_object_until_stopped (MAP_SHARED loads, half aimed at the page being written), at
// nice 10, so that a writer and its twin get two CPUs when they want them: a hole read before
// its fill maps the zero page into the reader's mapping.
// Oracle: judge_content.  A store is no more atomic than a write(2): a torn page is legal while
// its operation is in flight (every byte from a state of the window), never once it is done.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

#include <fmt/format.h>

#include <vmcoh/clock.hpp>
#include <vmcoh/mapping.hpp>
#include <vmcoh/sigbus_probe.hpp>

#include "page_ops.hpp"
#include "sampler.hpp"
#include "scenario.hpp"

namespace vmcoh::race {

namespace {

// Overwrites between a fill and the next punch.
constexpr std::uint64_t kMinOverwrites = 2;
constexpr std::uint64_t kMaxOverwrites = 5;
// Fills, out of 8: a store 4, a store+pwrite 2, a write method 2.  Overwrites, out of 3: a
// store 2, a write method 1.
constexpr std::uint64_t kFillStores = 4;
constexpr std::uint64_t kFillTwins = 2;
constexpr std::uint64_t kOverwriteStoresOutOf3 = 2;
// The twin's thread, and the writer waiting for it, spin (yielding) this long before they sleep;
// armed, the twin spins on the CPU this long before it yields.
constexpr int kTwinSpins = 2000;
constexpr int kTwinHotSpins = 1 << 16;
// The most the twin's pwrite starts after the store (a store fault into a hole takes a few).
constexpr std::uint64_t kMaxTwinDelayNs = 4000;
// How much less CPU a reader asks for than the writers (nice(2)): a store+pwrite needs the writer
// and its twin on two CPUs at once.
constexpr int kReaderNice = 10;

// Copies `image` into the page at `offset` of `map`, word by word: a store, faulting as any store
// does.  SIGBUS (ENOSPC on the device) throws.
void store_page(const Mapping& map, std::uint64_t offset, const PageImage& image) {
  auto* dst = reinterpret_cast<volatile std::uint64_t*>(map.data() + offset);
  if (const auto fault = probe_store(dst, image.words.data(), kWordsPerPage)) {
    throw std::runtime_error(
        fmt::format("store at offset {:#x} raised SIGBUS at {}", offset, fault->address));
  }
}

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// The other half of a store+pwrite: a thread that pwrite()s the page the writer is storing into,
// and publishes the operation done as soon as its pwrite returns.  The two must run at the same
// time, on two CPUs, which a wakeup cannot promise (readers hold the CPUs): so the writer first
// arms the twin and waits until it spins, and only then lets it go, starting its own store at
// once; the twin waits a random few microseconds more, so that its pwrite meets the store fault
// at every step.
class TwinWriter {
 public:
  explicit TwinWriter(const SharedState& shared, int fd)
      : shared_(shared), fd_(fd), thread_([this](const std::stop_token& stop) { run(stop); }) {}
  TwinWriter(const TwinWriter&) = delete;
  TwinWriter& operator=(const TwinWriter&) = delete;
  ~TwinWriter() {
    thread_.request_stop();
    armed_.fetch_add(1, std::memory_order_release);
    armed_.notify_one();
  }

  // Wakes the twin and returns once it spins, waiting for go().
  void arm() {
    const std::uint32_t seq = armed_.fetch_add(1, std::memory_order_release) + 1;
    armed_.notify_one();
    wait_until(ready_, seq);
  }
  // Lets the armed twin pwrite `image` at `page`, whose `state` has begun, after `delay_ns`.
  // `image` must stay until finish() returns.
  void go(std::size_t page, std::uint64_t state, const PageImage& image, std::uint64_t delay_ns) {
    page_ = page;
    state_ = state;
    image_ = &image;
    delay_ns_ = delay_ns;
    go_.store(armed_.load(std::memory_order_relaxed), std::memory_order_release);
  }
  // Waits until the pwrite returned; throws its error.
  void finish() {
    wait_until(completed_, armed_.load(std::memory_order_relaxed));
    if (!error_.empty()) throw std::runtime_error(error_);
  }

 private:
  // Spins (yielding) a while for `word` to become `want`, then sleeps on it.
  static void wait_until(std::atomic<std::uint32_t>& word, std::uint32_t want) {
    for (int spin = 0;; ++spin) {
      const std::uint32_t now = word.load(std::memory_order_acquire);
      if (now == want) return;
      if (spin < kTwinSpins) {
        std::this_thread::yield();
      } else {
        word.wait(now, std::memory_order_acquire);
      }
    }
  }

  void run(const std::stop_token& stop) {
    std::uint32_t seen = 0;
    for (;;) {
      std::uint32_t seq = armed_.load(std::memory_order_acquire);
      for (int spin = 0; seq == seen && !stop.stop_requested(); ++spin) {
        if (spin < kTwinSpins) {
          std::this_thread::yield();
        } else {
          armed_.wait(seen, std::memory_order_acquire);
        }
        seq = armed_.load(std::memory_order_acquire);
      }
      if (stop.stop_requested()) return;
      seen = seq;
      ready_.store(seq, std::memory_order_release);
      ready_.notify_one();
      // On the CPU now, and so is the writer: spin without letting go of it.
      for (int spin = 0; go_.load(std::memory_order_acquire) != seq; ++spin) {
        if (stop.stop_requested()) return;
        spin < kTwinHotSpins ? cpu_relax() : std::this_thread::yield();
      }
      for (const std::uint64_t until = monotonic_ns() + delay_ns_; monotonic_ns() < until;) {
        cpu_relax();
      }
      try {
        write_page(fd_, page_ * kPageSize, *image_, OpMethod::pwrite);
        shared_.end_op(page_, state_);
      } catch (const std::exception& e) {
        error_ = e.what();  // the state stays in flight; the writer throws
      }
      completed_.store(seq, std::memory_order_release);
      completed_.notify_one();
    }
  }

  const SharedState& shared_;
  int fd_;
  std::size_t page_ = 0;
  std::uint64_t state_ = 0;
  const PageImage* image_ = nullptr;
  std::uint64_t delay_ns_ = 0;
  std::string error_;
  std::atomic<std::uint32_t> armed_{0};      // the writer: get ready for operation n
  std::atomic<std::uint32_t> ready_{0};      // the twin: spinning, waiting for go
  std::atomic<std::uint32_t> go_{0};         // the writer: the store starts now
  std::atomic<std::uint32_t> completed_{0};  // the twin: pwrite returned
  std::jthread thread_;                      // last: it runs once the rest is built
};

class StoringWriter {
 public:
  explicit StoringWriter(ActorEnv& env)
      : env_(env),
        target_(env.open_target()),
        writer_(env, target_),
        map_(Mapping::map(env.shared().pages() * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED,
                          target_.fd())),
        twin_(env.shared(), target_.fd()) {}

  void run() {
    const SharedState& shared = env_.shared();
    Rng& rng = env_.rng();
    const std::vector<std::size_t> owned =
        owned_chunks(0, shared.pages(), env_.config().writers, env_.role_index(), 1);
    std::vector<std::uint64_t> overwrites_left(shared.pages(), 0);
    env_.start();
    while (env_.keep_writing()) {
      const std::size_t page = owned[rng.below(owned.size())];
      if (shared.last_kind(page) != StateKind::data) {
        fill(page);
        overwrites_left[page] = rng.between(kMinOverwrites, kMaxOverwrites);
      } else if (overwrites_left[page] > 0) {
        if (rng.below(3) < kOverwriteStoresOutOf3) {
          store(page);
        } else {
          writer_.write(page, writer_.random_write_method());
        }
        --overwrites_left[page];
      } else {
        writer_.punch(page, 1);
      }
    }
  }

 private:
  [[nodiscard]] PageImage next_stamp(std::size_t page, std::uint64_t* state) const {
    *state = env_.shared().last_state(page) + 1;
    return make_stamp({env_.run_id(), page * kPageSize, *state, 0, 0});
  }

  void fill(std::size_t page) {
    Rng& rng = env_.rng();
    if (rng.chance(1, 2)) {
      // The writer's own PTE then maps the hole (the zero page on the device), and the store
      // write-faults it: ->page_mkwrite rather than ->fault.
      std::uint64_t word = 0;
      static_cast<void>(probe_load(
          &word, reinterpret_cast<const volatile std::uint64_t*>(map_.data() + page * kPageSize),
          1));
    }
    const std::uint64_t roll = rng.below(8);
    if (roll < kFillStores) return store(page);
    if (roll < kFillStores + kFillTwins) return store_and_pwrite(page);
    writer_.write(page, writer_.random_write_method());
  }

  void store(std::size_t page) {
    std::uint64_t state = 0;
    const PageImage image = next_stamp(page, &state);
    writer_.apply(page, 1, StateKind::data, OpMethod::mmap_store,
                  [&] { store_page(map_, page * kPageSize, image); });
  }

  // One operation, two copies of the same stamp at once: a store here, a pwrite on the twin's
  // thread, which publishes the state done when its pwrite returns.
  void store_and_pwrite(std::size_t page) {
    const SharedState& shared = env_.shared();
    std::uint64_t state = 0;
    const PageImage image = next_stamp(page, &state);
    twin_.arm();
    shared.set_hot(env_.hot_slot(), page);
    shared.begin_op(page, state, StateKind::data, OpMethod::store_pwrite, page, 1);
    twin_.go(page, state, image, env_.rng().below(kMaxTwinDelayNs + 1));
    try {
      store_page(map_, page * kPageSize, image);
    } catch (...) {
      twin_.finish();
      throw;
    }
    twin_.finish();
    if (++env_.counters().ops % kPublishOpsEvery == 0) env_.publish_counters();
  }

  ActorEnv& env_;
  const Target target_;
  PageWriter writer_;
  Mapping map_;
  TwinWriter twin_;  // last: its thread goes first
};

void store_fill_punch(ActorEnv& env) { StoringWriter(env).run(); }

void read_at_lower_priority(ActorEnv& env) {
  (void)!::nice(kReaderNice);
  read_object_until_stopped(env);
}

class StoreVsFault final : public Scenario {
 public:
  std::string_view name() const noexcept override { return "store-vs-fault"; }
  std::string_view summary() const noexcept override {
    return "stores through MAP_SHARED mappings filling holes (alone and racing a pwrite of the "
           "same page) vs read faults: no zero page may stay mapped over stored data";
  }
  std::string_view reproduces() const noexcept override {
    return "linux-mm-2017-dax-write-vs-fault (store fault)";
  }
  void setup(const Target&, const SharedState&, const RunConfig& config) const override {
    require_pages(config, config.writers, name());
  }
  std::vector<ActorSpec> actors(const RunConfig& config) const override {
    std::vector<ActorSpec> actors;
    for (std::size_t i = 0; i < config.writers; ++i) {
      actors.push_back({"writer", true, store_fill_punch});
    }
    for (std::size_t i = 0; i < config.readers; ++i) {
      actors.push_back({"reader", false, read_at_lower_priority});
    }
    return actors;
  }
};

}  // namespace

const Scenario& store_vs_fault() {
  static const StoreVsFault scenario;
  return scenario;
}

}  // namespace vmcoh::race
