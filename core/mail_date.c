/*
 * mail_date.c: RFC 5322 3.3 date-time, formatted by hand.
 *
 * The calendar conversion is the proleptic Gregorian "civil from days"
 * algorithm (400-year eras of 146,097 days, years starting in March so the
 * leap day comes last): a few dozen integer operations, where gmtime_r() and
 * strftime() cost hundreds of instructions and take locale and time-zone
 * state into account that a UTC header never needs.
 */
#include <string.h>

#include "core/mail_date.h"

static char *
put_2digits(char *p, unsigned v)
{
	p[0] = (char)('0' + v / 10);
	p[1] = (char)('0' + v % 10);
	return p + 2;
}

static char *
put_uint(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

size_t
pa_mail_date(int64_t unix_seconds, char out[PA_MAIL_DATE_MAX])
{
	static const char days[7][3] = {{'T', 'h', 'u'}, {'F', 'r', 'i'}, {'S', 'a', 't'},
	                                {'S', 'u', 'n'}, {'M', 'o', 'n'}, {'T', 'u', 'e'},
	                                {'W', 'e', 'd'}}; /* 1970-01-01 was a Thursday */
	static const char months[12][3] = {{'J', 'a', 'n'}, {'F', 'e', 'b'}, {'M', 'a', 'r'},
	                                   {'A', 'p', 'r'}, {'M', 'a', 'y'}, {'J', 'u', 'n'},
	                                   {'J', 'u', 'l'}, {'A', 'u', 'g'}, {'S', 'e', 'p'},
	                                   {'O', 'c', 't'}, {'N', 'o', 'v'}, {'D', 'e', 'c'}};
	/* Clamped near the year 82,000, so the year never needs more than five digits. */
	const int64_t max_seconds = INT64_C(253402300799) * 10;
	uint64_t t = unix_seconds < 0
	                 ? 0
	                 : (uint64_t)(unix_seconds > max_seconds ? max_seconds : unix_seconds);
	uint64_t days_since_epoch = t / 86400, sod = t % 86400;
	/* Shift the epoch to 0000-03-01 so that each era is whole. */
	uint64_t z = days_since_epoch + 719468;
	uint64_t era = z / 146097;
	uint64_t doe = z - era * 146097;                                      /* [0, 146096] */
	uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
	uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
	uint64_t mp = (5 * doy + 2) / 153;                                    /* March = 0 */
	unsigned mday = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	unsigned month = (unsigned)(mp < 10 ? mp + 3 : mp - 9); /* 1..12 */
	uint64_t year = yoe + era * 400 + (month <= 2);
	char *p = out;

	memcpy(p, days[days_since_epoch % 7], 3);
	p += 3;
	*p++ = ',';
	*p++ = ' ';
	p = mday >= 10 ? put_2digits(p, mday) : (*p = (char)('0' + mday), p + 1);
	*p++ = ' ';
	memcpy(p, months[month - 1], 3);
	p += 3;
	*p++ = ' ';
	p = put_uint(p, year); /* from 1970 on: the four digits RFC 5322 3.3 asks at least */
	*p++ = ' ';
	p = put_2digits(p, (unsigned)(sod / 3600));
	*p++ = ':';
	p = put_2digits(p, (unsigned)(sod / 60 % 60));
	*p++ = ':';
	p = put_2digits(p, (unsigned)(sod % 60));
	memcpy(p, " +0000", 7);
	return (size_t)(p - out) + 6;
}
