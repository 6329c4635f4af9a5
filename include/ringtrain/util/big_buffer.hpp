// BigBuffer: std::vector storage for the large flat buffers (parameters,
// gradients, optimizer state, all-reduce scratch).
//
// Why: on these machines an all-reduce of the default model's 0.94 MB of
// gradients took a median of 68-80 us from 2 MiB-aligned buffers backed by
// transparent huge pages, and 115-620 us from ordinary malloc'd pages (varying
// from process to process), because Open MPI's single-copy transfer pins and
// walks every 4 KiB page of the peer's buffer. Buffers of 256 KiB or more are
// therefore 2 MiB-aligned and madvise(MADV_HUGEPAGE)d; smaller ones are 64-byte
// aligned (one cache line, one AVX-512 vector). Allocation happens once, before
// the step loop, like every large buffer (docs/ARCHITECTURE.md).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace ringtrain {

template <typename T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr std::size_t kHuge = std::size_t{2} << 20;

  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}

  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    const bool huge = bytes >= (std::size_t{256} << 10);
    const std::size_t align = huge ? kHuge : 64;
    void* p = std::aligned_alloc(align, (bytes + align - 1) / align * align);
    if (!p) throw std::bad_alloc();
    if (huge) ::madvise(p, (bytes + align - 1) / align * align, MADV_HUGEPAGE);  // a hint; failure is harmless
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) { std::free(p); }

  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const { return false; }
};

template <typename T>
using BigBuffer = std::vector<T, HugePageAllocator<T>>;

}  // namespace ringtrain
