// Readers: one reader's view of the object (its own descriptor and mappings) and the sampling
// procedure shared by every scenario.  A sample is
//   load size_done, cuts_done, done (acquire)  ->  the access  ->  acquire fence  ->
//   load begun, cuts_begun, size_begun
// and is then judged by the oracle: whether the access may fault (judge_extent), what a
// MAP_PRIVATE copy may show (judge_private), and which contents are legal (judge_content).
// Violations are recorded with everything needed to understand and replay them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <vmcoh/mapping.hpp>
#include <vmcoh/oracle.hpp>
#include <vmcoh/stamp.hpp>
#include <vmcoh/target.hpp>

#include "scenario.hpp"

namespace vmcoh::race {

class Sampler {
 public:
  // Maps the whole object (config.pages pages) MAP_SHARED read-only and, `with_private`, also
  // MAP_PRIVATE read-write.
  Sampler(ActorEnv& env, const Target& target, bool with_private);

  // A quarter of the time the page some writer is changing right now (the race), a quarter the
  // page it changed last (its aftermath), otherwise any page of [first, end).
  [[nodiscard]] std::size_t pick_page(std::size_t first, std::size_t end);

  void shared_load(std::size_t page);
  void pread(std::size_t page);
  // Without a copy of the page (and on a coin toss) a store of a private stamp, which makes one;
  // otherwise a load through the private mapping.
  void private_access(std::size_t page);

 private:
  struct Reading {
    std::size_t page;
    std::uint64_t offset;
    std::uint64_t done, begun;
    std::uint64_t cuts_done, cuts_begun;
    std::uint64_t size_done, size_begun;
    bool refused;  // SIGBUS, or EOF for pread
  };
  struct Verdict {
    const oracle::Judgement* judgement;
    const oracle::Window* window;
    const oracle::SizeWindow* sizes;
    const Observation* observation;
  };

  template <class Access>
  Reading read(std::size_t page, Access&& access);
  void judge(ReadPath path, oracle::Access access, const Reading& reading);
  void private_store(std::size_t page);
  void tally_sample();
  void report(ReadPath path, const Reading& reading, const Verdict& verdict);

  ActorEnv& env_;
  const Target& target_;
  Mapping shared_map_;
  Mapping private_map_;
  std::vector<oracle::PrivateCopy> copies_;  // this reader's copy of each page, if any
  std::uint64_t private_generation_ = 0;
  PageImage image_;
};

// A reader of the whole object through its own MAP_SHARED mapping, until the run stops: whole-page
// loads, half of them aimed at a page some writer is changing, and one sample in kPreadOneIn read
// with pread instead, for a light cross-check of the read(2) path.
inline constexpr std::uint64_t kPreadOneIn = 64;
void read_object_until_stopped(ActorEnv& env);

}  // namespace vmcoh::race
