// Counts heap allocations (malloc and friends, which operator new uses) so
// tests can prove the step loop allocates nothing. The counting malloc is
// interposed by alloc_counter.cpp; sanitizer builds bring their own malloc,
// so there kAllocCounting is false and tests that need it compile to nothing.
#pragma once

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define RT_TEST_OWN_MALLOC 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define RT_TEST_OWN_MALLOC 1
#endif

namespace ringtrain::test {

#if defined(RT_TEST_OWN_MALLOC)
constexpr bool kAllocCounting = false;
#else
constexpr bool kAllocCounting = true;
#endif

void start_alloc_counting();
long stop_alloc_counting();  // allocations since start

// Counts from construction until stop(); no doctest macro may run in between
// (they allocate).
class AllocationCounter {
 public:
  AllocationCounter() { start_alloc_counting(); }
  ~AllocationCounter() { stop_alloc_counting(); }
  long stop() { return stop_alloc_counting(); }
};

}  // namespace ringtrain::test
