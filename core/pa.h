/*
 * pa.h: definitions every PigeonAir module shares.
 *
 * One return-status convention across the code base, in the nginx style:
 * PA_OK (0) for success, PA_ERROR (-1) for a failure the caller must
 * handle, PA_AGAIN (-2) when the operation cannot proceed now (a full ring,
 * a socket that would block) and should be retried later.  Functions that
 * return a count return it as a non-negative value and use the same
 * negative codes for failure.
 */
#ifndef PA_H
#define PA_H

#include <stddef.h>
#include <stdint.h>

#define PA_OK 0
#define PA_ERROR -1
#define PA_AGAIN -2

#define PA_VERSION "0.1.0"

#define pa_likely(x) __builtin_expect(!!(x), 1)
#define pa_unlikely(x) __builtin_expect(!!(x), 0)

#define pa_array_size(a) (sizeof(a) / sizeof((a)[0]))

#define pa_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
