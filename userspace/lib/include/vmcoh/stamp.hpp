// Page stamps: every page vmcoh writes is self-describing, so a single read tells what it holds.
//
// A stamp is a 64-byte header followed by a payload derived from the header's key:
//
//   word 0  magic        "VMCOHSTP"
//   word 1  offset       byte offset of the page in the object
//   word 2  generation   the page's state number (see oracle.hpp)
//   word 3  run_id       derived from the seed: pages from another run are foreign
//   word 4  flags|actor  kStampPrivate for stores into MAP_PRIVATE mappings, and who made them
//   word 5  checksum     over the whole page, this word read as zero
//   word 6-7             zero
//   word 8+ payload      mix(key, word index)
//
// Because every byte is a function of (run_id, offset, generation, flags, actor), a mixture of two
// pages (a torn read) fails the checksum, and the oracle can tell which generation each byte
// came from.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vmcoh {

inline constexpr std::size_t kPageSize = 4096;
inline constexpr std::size_t kWordsPerPage = kPageSize / sizeof(std::uint64_t);

// One page's bytes, as 64-bit words (the unit in which mapped memory is copied).  Page-aligned, so
// that a REPLY from an array of them is pinned and copied once rather than twice (uapi/vmcoh.h).
struct alignas(kPageSize) PageImage {
  std::array<std::uint64_t, kWordsPerPage> words{};

  [[nodiscard]] std::byte* bytes() noexcept { return reinterpret_cast<std::byte*>(words.data()); }
  [[nodiscard]] const std::byte* bytes() const noexcept {
    return reinterpret_cast<const std::byte*>(words.data());
  }
  [[nodiscard]] bool is_zero() const noexcept;
  friend bool operator==(const PageImage&, const PageImage&) = default;
};

inline constexpr std::uint64_t kStampMagic = 0x5054'5348'4f43'4d56ULL;  // "VMCOHSTP"
inline constexpr std::uint32_t kStampPrivate = 1U << 0;

struct StampHeader {
  std::uint64_t magic;
  std::uint64_t offset;
  std::uint64_t generation;
  std::uint64_t run_id;
  std::uint32_t flags;
  std::uint32_t actor;
  std::uint64_t checksum;
  std::uint64_t reserved[2];
};
static_assert(sizeof(StampHeader) == 64);

// What a stamp is a function of.
struct StampKey {
  std::uint64_t run_id = 0;
  std::uint64_t offset = 0;
  std::uint64_t generation = 0;
  std::uint32_t flags = 0;
  std::uint32_t actor = 0;
};

[[nodiscard]] PageImage make_stamp(const StampKey& key);
[[nodiscard]] StampHeader header_of(const PageImage& page) noexcept;
// The checksum a stamp of exactly these bytes would carry.
[[nodiscard]] std::uint64_t page_checksum(const PageImage& page) noexcept;

// What one read of a page shows, judged from its bytes alone (the oracle adds the history).
enum class Content {
  zero,       // every byte zero: a hole
  valid,      // an intact stamp of this run for this offset (header.generation tells which)
  torn,       // stamp bytes mixed with other bytes: checksum mismatch or a half-written header
  misplaced,  // an intact stamp of this run for another offset
  foreign,    // non-zero bytes that are no stamp of this run
};
[[nodiscard]] std::string_view to_string(Content content) noexcept;

struct Observation {
  Content content = Content::zero;
  StampHeader header{};  // decoded as-is, whatever the content
};

[[nodiscard]] Observation classify(const PageImage& page, std::uint64_t expected_offset,
                                   std::uint64_t run_id) noexcept;

// "magic=... offset=0x.. gen=.. run=.. flags=.. actor=.. checksum=.." for reports.
[[nodiscard]] std::string describe(const StampHeader& header);

}  // namespace vmcoh
