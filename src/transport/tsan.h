// What ThreadSanitizer cannot see of the data plane, told to it explicitly (no-ops in other builds).
//
// TSan's interceptors record the bytes a sendmsg read only after the syscall returns, and they do
// not link a send on one socket to the receive it causes on another. In a ring, the bytes of a
// segment we forward go round and come back as that segment's final value, received into the same
// memory on our other I/O thread: TSan then sees "recv wrote, then sendmsg read" (the late record)
// or "sendmsg read, then recv wrote" with nothing ordering them, though the network does. So a
// TSan build records each send's read itself when the send is handed to the kernel, releases the
// payload's address there, and acquires it before receiving into that address; `intercept_send`
// is off (see data_plane.cpp) so the interceptor's late record does not come on top. The same
// pairing models same-host copies, which TSan does not see at all: the reader acquires the
// sender's address, records the copy, and releases it before acknowledging; the sender acquires it
// when the acknowledgement arrives.
#pragma once
#include <cstddef>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define PCCL_TSAN 1
#endif

namespace pccl::transport::tsan {

#if defined(PCCL_TSAN)
inline void read(const void *p, size_t n) { if (p && n) __tsan_read_range(const_cast<void *>(p), n); }
inline void write(void *p, size_t n) { if (p && n) __tsan_write_range(p, n); }
inline void release(const void *p) { if (p) __tsan_release(const_cast<void *>(p)); }
inline void acquire(const void *p) { if (p) __tsan_acquire(const_cast<void *>(p)); }
#else
inline void read(const void *, size_t) {}
inline void write(void *, size_t) {}
inline void release(const void *) {}
inline void acquire(const void *) {}
#endif

} // namespace pccl::transport::tsan
