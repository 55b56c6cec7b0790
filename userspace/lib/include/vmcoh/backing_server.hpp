// BackingServer: a userspace backing store for /dev/vmcoh, the reference implementation of the
// protocol in uapi/vmcoh.h ("Backing store"), and the harness's tool to control load timing.
//
// It keeps its copy of the object in memory, attaches to the device, and answers LOAD requests
// from a thread of its own; a writable server also keeps what STORE requests bring.  A test can
// hold the answers for one block (they are received but not sent until released), make loads or
// stores fail, change its copy and INVALIDATE, DROP a range, or make the server die.
//
// Everything the serving thread touches is allocated up front.  A fault of this process that
// waits for a load lets go of mmap_lock whenever it may be retried (kmod/fault.c), but one that
// may not (GUP from a caller that cannot take it again) holds it, and a serving thread that had
// to grow its heap would wait for that fault, which waits for it.
//
// It serves in batches (VMCOH_IOC_SERVE): one call sends the answers to the requests of the last
// batch and receives the next, up to kBatch of them, as FUSE-over-io_uring's COMMIT_AND_FETCH
// does.  A minimal server for users who write their own is userspace/examples/minimal_server.cpp
// (docs/server.md).  DROP is called from another thread than the one that serves: it waits for
// the STOREs it sends.  A server that ATTACHes with VMCOH_ATTACH_REGIONS (Loads::regions) answers
// a LOAD of a run with the run's blocks, one after the other in one buffer, in one reply; one
// that ATTACHes with VMCOH_ATTACH_STORE_RUNS (Stores::runs) keeps a STORE of a run of dirty blocks
// whole, or fails it whole.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <vmcoh.h>
#include <vmcoh/fd.hpp>
#include <vmcoh/stamp.hpp>

namespace vmcoh {

class BackingServer {
 public:
  enum class Access { read_only, writable };
  // What one LOAD may ask for: one block, or a run of blocks within a 2 MiB region.
  enum class Loads { blocks, regions };
  // What one STORE of a writable server may carry: one block, or a run within a region.
  enum class Stores { blocks, runs };

  // Opens `device`, ATTACHes (std::system_error on failure: EBUSY if another server is attached
  // or the object holds blocks of its own) and starts serving.  Its copy has `blocks` blocks, all
  // zero until set_block().  A writable server takes STOREs, which makes the object writable.
  BackingServer(const std::filesystem::path& device, std::uint64_t blocks,
                Access access = Access::read_only, Loads loads = Loads::blocks,
                Stores stores = Stores::blocks);
  BackingServer(const BackingServer&) = delete;
  BackingServer& operator=(const BackingServer&) = delete;
  // Stops serving and DETACHes, unless it died.
  ~BackingServer();

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] std::uint64_t blocks() const noexcept { return copy_.size(); }

  // The server's copy of a block: what loads answered after this call return.
  void set_block(std::uint64_t index, const PageImage& page);
  [[nodiscard]] PageImage block(std::uint64_t index) const;
  // VMCOH_IOC_INVALIDATE of [index, index + count) blocks.
  void invalidate(std::uint64_t index, std::uint64_t count = 1) const;
  // VMCOH_IOC_DROP of [index, index + count) blocks: returns once they are written back and
  // invalidated.  Not from the serving thread, which must answer the STOREs meanwhile.
  void drop(std::uint64_t index, std::uint64_t count = 1) const;

  // From now on, loads of `index` are received but not answered until release(index).  Each
  // held load keeps the block as it was when received: a release answers with that copy, as a
  // server would whose answer was on its way before its copy changed.  A load of a run that
  // covers `index` is held whole, its blocks kept as they were.
  void hold(std::uint64_t index);
  // Answers the held loads of `index` (of runs covering it) and stops holding it.
  void release(std::uint64_t index);
  // Answers the held loads of `index` and goes on holding the next ones.
  void answer_held(std::uint64_t index);
  // Loads of `index` are answered with `error` (a negative errno) until set back to 0.
  void fail_loads(std::uint64_t index, int error);
  // The same for STOREs of `index`: the server does not keep them.
  void fail_stores(std::uint64_t index, int error);

  // LOAD requests received for `index` (one of their run), answered or not.
  [[nodiscard]] std::uint64_t loads(std::uint64_t index) const;
  // LOAD requests received, and the blocks they asked for.
  [[nodiscard]] std::uint64_t requests() const;
  // The last kRecentRequests LOADs received, oldest first, as "first+count" (for failures).
  [[nodiscard]] std::string recent_requests() const;
  [[nodiscard]] std::uint64_t requested_blocks() const;
  // STORE requests received for `index` (one of their run), kept or not.
  [[nodiscard]] std::uint64_t stores(std::uint64_t index) const;
  // STORE requests received, and the blocks they carried.
  [[nodiscard]] std::uint64_t store_requests() const;
  [[nodiscard]] std::uint64_t stored_blocks() const;
  // Waits until at least `count` loads of `index` were received; false on timeout.
  bool wait_for_loads(std::uint64_t index, std::uint64_t count,
                      std::chrono::milliseconds timeout) const;
  // Waits until at least `count` STOREs of `index` were received and handled (their contents
  // in block(), if kept); false on timeout.  A reclaim's STOREs come from the window's worker,
  // after the faults that made it reclaim may have returned.
  bool wait_for_stores(std::uint64_t index, std::uint64_t count,
                       std::chrono::milliseconds timeout) const;
  // The most loads that were received and not yet answered at one time.
  [[nodiscard]] std::uint64_t max_pending() const;
  // REPLYs the kernel refused with ENOENT (the load had timed out or been failed).
  [[nodiscard]] std::uint64_t stale_replies() const;

  // Stops serving and closes the fd without DETACH: to the kernel, the server died.
  void die();
  // DETACH, stop serving and close.
  void detach();

 private:
  struct Held {
    std::uint64_t id = 0;
    std::uint64_t index = 0;  // the first block of its run
    std::uint64_t count = 0;  // blocks in the run
    std::size_t slot = 0;     // its copy: held_pages_ from slot * run_
  };

  // INVALIDATE or DROP of [index, index + count) blocks.
  void range_ioctl(unsigned long request, std::string_view name, std::uint64_t index,
                   std::uint64_t count) const;
  void serve();
  // Handles a request of the batch; true if it is answered now, in `reply`, with answer slot
  // `slot`; false if held.
  bool handle(const vmcoh_request& request, std::size_t slot, vmcoh_reply& reply);
  // Answers the held loads of `index`, with mutex_ held.
  void answer_held_locked(std::uint64_t index);
  // REPLY with `count` blocks from `pages` (none: an error or a STORE's answer), counting one
  // the kernel refused as stale.
  void send_reply(std::uint64_t id, const PageImage* pages, std::uint64_t count, int error);
  void stop();

  Fd fd_;
  Fd wakeup_;  // an eventfd: stop() wakes the serving thread through it
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<PageImage> copy_;
  std::size_t run_;                   // the longest run a LOAD asks for
  std::size_t store_run_;             // the longest run a STORE carries
  std::vector<PageImage> answer_;     // the serving thread's copies of a batch's runs, run_ each
  std::vector<PageImage> stored_;     // where SERVE copies a batch's STOREs, store_run_ each
  std::vector<vmcoh_request> batch_;  // the requests of a batch
  std::vector<vmcoh_reply> replies_;  // the answers to them, sent with the next batch
  std::vector<bool> counted_;         // which answers count in pending_
  std::vector<std::uint64_t> loads_;
  std::vector<std::uint64_t> stores_;
  std::vector<int> fail_;
  std::vector<int> fail_stores_;
  bool writable_;
  bool regions_;
  std::uint64_t requests_ = 0;
  static constexpr std::size_t kRecentRequests = 16;
  std::array<std::pair<std::uint64_t, std::uint64_t>, kRecentRequests> recent_{};  // a ring
  std::uint64_t requested_blocks_ = 0;
  std::uint64_t store_requests_ = 0;
  std::uint64_t stored_blocks_ = 0;
  std::vector<bool> held_blocks_;
  std::vector<Held> held_;  // allocated up front; the first held_count_ are held now
  std::size_t held_count_ = 0;
  std::vector<PageImage> held_pages_;  // the held runs' copies, a slot per held_ entry
  std::vector<bool> held_slots_;       // which slots are taken
  std::uint64_t pending_ = 0;
  std::uint64_t max_pending_ = 0;
  std::atomic<std::uint64_t> stale_replies_{0};
  std::thread thread_;
};

}  // namespace vmcoh
