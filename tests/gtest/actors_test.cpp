// Actors as threads and as processes: how each way of ending is reported.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include <vmcoh/actors.hpp>
#include <vmcoh/shared_array.hpp>

namespace vmcoh {
namespace {

using Status = ActorOutcome::Status;
using namespace std::chrono_literals;

auto soon() { return std::chrono::steady_clock::now() + 20s; }

class ActorsTest : public testing::TestWithParam<ActorMode> {};

TEST_P(ActorsTest, ReturningIsFinishedAndThrowingIsFailedWithTheMessage) {
  ActorGroup group(GetParam(), 2);
  group.spawn("returns", [] {});
  group.spawn("throws", [] { throw std::runtime_error("boom"); });
  const auto outcomes = group.join(soon());
  ASSERT_EQ(outcomes.size(), 2U);
  EXPECT_EQ(outcomes[0].name, "returns");
  EXPECT_EQ(outcomes[0].status, Status::finished);
  EXPECT_EQ(outcomes[1].status, Status::failed);
  EXPECT_EQ(outcomes[1].detail, "boom");
}

TEST_P(ActorsTest, AnyFailedSeesAFailureBeforeTheOthersEnd) {
  SharedArray<std::uint64_t> stop(1);
  ActorGroup group(GetParam(), 2);
  group.spawn("waits", [&] {
    while (atomic(stop[0]).load() == 0) std::this_thread::sleep_for(1ms);
  });
  group.spawn("throws", [] { throw std::runtime_error("early"); });
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (!group.any_failed() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(group.any_failed());
  atomic(stop[0]).store(1);
  EXPECT_EQ(group.join(soon())[0].status, Status::finished);
}

TEST_P(ActorsTest, ActorsShareMemoryMappedBeforeTheyStart) {
  SharedArray<std::uint64_t> counter(1);
  ActorGroup group(GetParam(), 4);
  for (int i = 0; i < 4; ++i) group.spawn("adds", [&] { atomic(counter[0]).fetch_add(1); });
  for (const auto& o : group.join(soon())) EXPECT_EQ(o.status, Status::finished);
  EXPECT_EQ(atomic(counter[0]).load(), 4U);
}

INSTANTIATE_TEST_SUITE_P(Modes, ActorsTest,
                         testing::Values(ActorMode::threads, ActorMode::processes),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(ProcessActors, AProcessKilledBySignalCrashed) {
  ActorGroup group(ActorMode::processes, 1);
  group.spawn("dies", [] { static_cast<void>(::raise(SIGKILL)); });
  const auto outcomes = group.join(soon());
  EXPECT_EQ(outcomes[0].status, Status::crashed);
  EXPECT_NE(outcomes[0].detail.find("signal 9"), std::string::npos) << outcomes[0].detail;
}

TEST(ProcessActors, AStragglerIsKilledAtTheDeadline) {
  ActorGroup group(ActorMode::processes, 1);
  group.spawn("sleeps", [] { std::this_thread::sleep_for(60s); });
  const auto start = std::chrono::steady_clock::now();
  const auto outcomes = group.join(start + 200ms);
  EXPECT_EQ(outcomes[0].status, Status::hung);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

}  // namespace
}  // namespace vmcoh
