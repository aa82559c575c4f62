/*
 * ctl_json.h: JSON helpers shared by pigeond's control socket and pigeonctl.
 */
#ifndef PA_CTL_JSON_H
#define PA_CTL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/*
 * A JSON string of s, which may hold any bytes (it comes from SMTP clients):
 * valid UTF-8 sequences are kept, every other byte becomes U+FFFD.
 */
json_t *ctl_json_lossy(const char *s);

/* ISO 8601 UTC with microseconds: arrival times sort as text and need no time zone. */
void ctl_format_time(uint64_t us, char out[32]);

/* Base64 (RFC 4648, padded): a malloc'ed NUL-terminated string, NULL when out of memory. */
char *ctl_base64_encode(const uint8_t *in, size_t len, size_t *outlen);

/* Decodes padded base64 into a malloc'ed buffer; NULL when it is not base64. */
uint8_t *ctl_base64_decode(const char *in, size_t len, size_t *outlen);

#endif
