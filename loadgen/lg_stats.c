/*
 * lg_stats.c: counting session events, merging the threads' counters,
 * printing the reports (lg_stats.h).
 */
#include "loadgen/lg_stats.h"

#include <string.h>

#include <jansson.h>

static unsigned
reply_class(unsigned code)
{
	unsigned c = code / 100;

	return c >= 2 && c <= 5 ? c : 0;
}

/* One writer per struct lg_stats: plain increments, read racily by the monitor. */
void
lg_stats_event(void *arg, const struct lg_event *ev)
{
	struct lg_stats *st = arg;

	switch (ev->type) {
	case LG_EV_CONNECTED:
		st->connects++;
		st->open++;
		latency_record(&st->connect_lat, ev->latency_us);
		break;
	case LG_EV_TLS_DONE:
		st->tls_done++;
		latency_record(&st->tls_lat, ev->latency_us);
		break;
	case LG_EV_READY:
		st->ready++;
		break;
	case LG_EV_REPLY:
		st->replies[reply_class(ev->code)]++;
		break;
	case LG_EV_MSG_START:
		st->messages++;
		break;
	case LG_EV_EOD_SENT:
		break;
	case LG_EV_MSG_DONE:
		st->eod_replies[reply_class(ev->code)]++;
		latency_record(&st->eod_lat, ev->latency_us);
		if (ev->code / 100 == 2) {
			st->ok++;
			st->bytes += ev->bytes;
		} else {
			st->failed++;
		}
		break;
	case LG_EV_MSG_FAILED:
		st->failed++;
		break;
	case LG_EV_CLOSED:
		st->errors[ev->err < LG_ERR_COUNT ? ev->err : LG_ERR_PROTOCOL]++;
		if (ev->connected)
			st->open--;
		break;
	}
}

static uint64_t
rd(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void
lg_stats_merge(struct lg_stats *dst, const struct lg_stats *src)
{
	dst->messages += rd(&src->messages);
	dst->ok += rd(&src->ok);
	dst->failed += rd(&src->failed);
	dst->bytes += rd(&src->bytes);
	for (unsigned i = 0; i < 6; i++) {
		dst->replies[i] += rd(&src->replies[i]);
		dst->eod_replies[i] += rd(&src->eod_replies[i]);
	}
	for (unsigned i = 0; i < LG_ERR_COUNT; i++)
		dst->errors[i] += rd(&src->errors[i]);
	dst->connects += rd(&src->connects);
	dst->tls_done += rd(&src->tls_done);
	dst->ready += rd(&src->ready);
	dst->open += rd(&src->open);
	dst->late += rd(&src->late);
	latency_merge(&dst->connect_lat, &src->connect_lat);
	latency_merge(&dst->eod_lat, &src->eod_lat);
	latency_merge(&dst->tls_lat, &src->tls_lat);
}

static uint64_t
error_total(const struct lg_stats *t)
{
	uint64_t n = 0;

	for (unsigned i = LG_ERR_NONE + 1; i < LG_ERR_COUNT; i++)
		n += t->errors[i];
	return n;
}

void
lg_stats_report_line(FILE *f, const struct lg_stats *now, const struct lg_stats *prev, double dt,
                     double elapsed)
{
	double d = dt > 0 ? dt : 1;

	fprintf(f,
	        "[%6.1fs] %8.0f msg/s %8.2f MB/s  ok %llu  2xx/4xx/5xx %llu/%llu/%llu  "
	        "open %llu  eod p50/p99 %llu/%llu us  errors %llu\n",
	        elapsed, (double)(now->ok - prev->ok) / d,
	        (double)(now->bytes - prev->bytes) / d / 1e6, (unsigned long long)now->ok,
	        (unsigned long long)now->replies[2], (unsigned long long)now->replies[4],
	        (unsigned long long)now->replies[5], (unsigned long long)now->open,
	        (unsigned long long)latency_quantile(&now->eod_lat, 0.5),
	        (unsigned long long)latency_quantile(&now->eod_lat, 0.99),
	        (unsigned long long)error_total(now));
}

void
lg_stats_report_final(FILE *f, const struct lg_stats *t, double seconds)
{
	double s = seconds > 0 ? seconds : 1e-9;

	fprintf(f, "pigeon-loadgen: %llu messages, %llu ok, %llu failed in %.3f s\n",
	        (unsigned long long)t->messages, (unsigned long long)t->ok,
	        (unsigned long long)t->failed, seconds);
	fprintf(f, "  throughput   %.1f msg/s, %.2f MB/s (message bytes of ok messages)\n",
	        (double)t->ok / s, (double)t->bytes / s / 1e6);
	fprintf(
	    f,
	    "  replies      2xx %llu, 3xx %llu, 4xx %llu, 5xx %llu (end of data: %llu/%llu/%llu)\n",
	    (unsigned long long)t->replies[2], (unsigned long long)t->replies[3],
	    (unsigned long long)t->replies[4], (unsigned long long)t->replies[5],
	    (unsigned long long)t->eod_replies[2], (unsigned long long)t->eod_replies[4],
	    (unsigned long long)t->eod_replies[5]);
	fprintf(f, "  connect      %llu, p50 %llu us, p99 %llu us, p999 %llu us\n",
	        (unsigned long long)t->connects,
	        (unsigned long long)latency_quantile(&t->connect_lat, 0.5),
	        (unsigned long long)latency_quantile(&t->connect_lat, 0.99),
	        (unsigned long long)latency_quantile(&t->connect_lat, 0.999));
	fprintf(f, "  eod->reply   p50 %llu us, p99 %llu us, p999 %llu us\n",
	        (unsigned long long)latency_quantile(&t->eod_lat, 0.5),
	        (unsigned long long)latency_quantile(&t->eod_lat, 0.99),
	        (unsigned long long)latency_quantile(&t->eod_lat, 0.999));
	if (t->tls_done > 0)
		fprintf(f, "  tls          %llu handshakes, p50 %llu us, p99 %llu us\n",
		        (unsigned long long)t->tls_done,
		        (unsigned long long)latency_quantile(&t->tls_lat, 0.5),
		        (unsigned long long)latency_quantile(&t->tls_lat, 0.99));
	if (t->late > 0)
		fprintf(f,
		        "  open loop    %llu messages started over 1 ms late: too few connections, "
		        "or the client is saturated\n",
		        (unsigned long long)t->late);
	fprintf(f, "  sessions     %llu closed cleanly; errors:", (unsigned long long)t->errors[0]);
	for (unsigned i = LG_ERR_NONE + 1; i < LG_ERR_COUNT; i++)
		fprintf(f, " %s %llu", lg_err_name((enum lg_err)i),
		        (unsigned long long)t->errors[i]);
	fputc('\n', f);
}

int
lg_stats_print_json(FILE *f, const struct lg_stats *t, double seconds, unsigned connections)
{
	json_t *o = json_object(), *replies = json_object(), *eod = json_object(),
	       *errors = json_object();
	double s = seconds > 0 ? seconds : 1e-9;
	char *text;
	int rc = -1;

	if (o == NULL || replies == NULL || eod == NULL || errors == NULL)
		goto out;
	json_object_set_new(o, "messages", json_integer((json_int_t)t->messages));
	json_object_set_new(o, "ok", json_integer((json_int_t)t->ok));
	json_object_set_new(o, "failed", json_integer((json_int_t)t->failed));
	json_object_set_new(o, "seconds", json_real(seconds));
	json_object_set_new(o, "msgs_per_sec", json_real((double)t->ok / s));
	json_object_set_new(o, "bytes", json_integer((json_int_t)t->bytes));
	json_object_set_new(o, "bytes_per_sec", json_real((double)t->bytes / s));
	json_object_set_new(o, "connections", json_integer(connections));
	json_object_set_new(o, "connects", json_integer((json_int_t)t->connects));
	json_object_set_new(o, "ready", json_integer((json_int_t)t->ready));
	json_object_set_new(o, "tls_handshakes", json_integer((json_int_t)t->tls_done));
	json_object_set_new(o, "late", json_integer((json_int_t)t->late));
	json_object_set_new(o, "p50_us",
	                    json_integer((json_int_t)latency_quantile(&t->eod_lat, 0.5)));
	json_object_set_new(o, "p99_us",
	                    json_integer((json_int_t)latency_quantile(&t->eod_lat, 0.99)));
	json_object_set_new(o, "p999_us",
	                    json_integer((json_int_t)latency_quantile(&t->eod_lat, 0.999)));
	json_object_set_new(o, "connect_p50_us",
	                    json_integer((json_int_t)latency_quantile(&t->connect_lat, 0.5)));
	json_object_set_new(o, "connect_p99_us",
	                    json_integer((json_int_t)latency_quantile(&t->connect_lat, 0.99)));
	json_object_set_new(o, "connect_p999_us",
	                    json_integer((json_int_t)latency_quantile(&t->connect_lat, 0.999)));
	json_object_set_new(o, "tls_p99_us",
	                    json_integer((json_int_t)latency_quantile(&t->tls_lat, 0.99)));
	json_object_set_new(replies, "2xx", json_integer((json_int_t)t->replies[2]));
	json_object_set_new(replies, "3xx", json_integer((json_int_t)t->replies[3]));
	json_object_set_new(replies, "4xx", json_integer((json_int_t)t->replies[4]));
	json_object_set_new(replies, "5xx", json_integer((json_int_t)t->replies[5]));
	json_object_set_new(o, "replies", replies);
	replies = NULL;
	json_object_set_new(eod, "2xx", json_integer((json_int_t)t->eod_replies[2]));
	json_object_set_new(eod, "4xx", json_integer((json_int_t)t->eod_replies[4]));
	json_object_set_new(eod, "5xx", json_integer((json_int_t)t->eod_replies[5]));
	json_object_set_new(o, "eod_replies", eod);
	eod = NULL;
	for (unsigned i = LG_ERR_NONE + 1; i < LG_ERR_COUNT; i++)
		json_object_set_new(errors, lg_err_name((enum lg_err)i),
		                    json_integer((json_int_t)t->errors[i]));
	json_object_set_new(o, "errors", errors);
	errors = NULL;
	json_object_set_new(o, "clean_closes", json_integer((json_int_t)t->errors[LG_ERR_NONE]));
	text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
	if (text != NULL) {
		fprintf(f, "%s\n", text);
		fflush(f);
		free(text);
		rc = 0;
	}
out:
	json_decref(o);
	json_decref(replies);
	json_decref(eod);
	json_decref(errors);
	return rc;
}
