// The counting malloc behind alloc_counter.hpp: forwards to glibc's
// __libc_* functions and counts calls while counting is on.
#include "alloc_counter.hpp"

#if !defined(RT_TEST_OWN_MALLOC)

#include <errno.h>
#include <malloc.h>

#include <atomic>
#include <cstddef>

extern "C" {
void* __libc_malloc(size_t);
void __libc_free(void*);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
inline void note() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" {
void* malloc(size_t n) noexcept {
  note();
  return __libc_malloc(n);
}
void free(void* p) noexcept { __libc_free(p); }
void* calloc(size_t n, size_t size) noexcept {
  note();
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) noexcept {
  note();
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) noexcept {
  note();
  return __libc_memalign(align, n);
}
void* aligned_alloc(size_t align, size_t n) noexcept {
  note();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) noexcept {
  note();
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  void* p = __libc_memalign(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}

namespace ringtrain::test {
void start_alloc_counting() {
  g_allocations = 0;
  g_counting = true;
}
long stop_alloc_counting() {
  g_counting = false;
  return g_allocations.load();
}
}  // namespace ringtrain::test

#else

namespace ringtrain::test {
void start_alloc_counting() {}
long stop_alloc_counting() { return 0; }
}  // namespace ringtrain::test

#endif
