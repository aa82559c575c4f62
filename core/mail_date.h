/*
 * mail_date.h: the RFC 5322 3.3 date-time that mail headers carry
 * (Received:, Date:, DSNs' Arrival-Date:), in one implementation.
 *
 * Always UTC ("+0000") and always English, whatever the locale.  Formatted by
 * hand: no gmtime_r(), no strftime() and no printf family, because the
 * Received: header is written on a poll-mode core for every message.
 */
#ifndef PA_MAIL_DATE_H
#define PA_MAIL_DATE_H

#include <stddef.h>
#include <stdint.h>

/* "Wed, 31 Dec 9999 23:59:59 +0000" plus NUL, with room for five-digit years. */
#define PA_MAIL_DATE_MAX 40

/*
 * Writes the date-time of unix_seconds (negative is taken as 0) into out,
 * NUL-terminated, and returns its length.  The day of the month has no
 * leading zero, as RFC 5322 3.3 allows and Postfix writes it.
 */
size_t pa_mail_date(int64_t unix_seconds, char out[PA_MAIL_DATE_MAX]);

#endif
