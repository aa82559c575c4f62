/*
 * sanitized.h: SANITIZED is 1 in a build with AddressSanitizer (gcc's
 * __SANITIZE_ADDRESS__, clang's __has_feature), where per-thread caches
 * keep nothing, so tests can expect what each build does.
 */
#ifndef PA_TEST_SANITIZED_H
#define PA_TEST_SANITIZED_H

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#endif
