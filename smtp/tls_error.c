/*
 * tls_error.c: OpenSSL's per-thread error queue as one message.
 *
 * Every failed OpenSSL call leaves entries in the calling thread's queue; a
 * worker serves many connections, so the queue is emptied at every failure
 * and one connection's error is never reported against another's.
 */
#include <stdio.h>

#include <openssl/err.h>

#include "smtp/tls_private.h"

void
tls_error(char *err, size_t errlen, const char *call)
{
	unsigned long e = ERR_get_error();
	char reason[TLS_ERR_MAX];

	if (e == 0)
		snprintf(reason, sizeof(reason), "no error reported by OpenSSL");
	else
		ERR_error_string_n(e, reason, sizeof(reason));
	ERR_clear_error();
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s failed: %s", call, reason);
}
