/*
 * lg_stats.h: pigeon-loadgen's counters and latency histograms.
 *
 * One struct lg_stats per load thread (lcore), written only by it: the
 * session events land here through lg_stats_event().  The monitor thread
 * reads all of them racily once a second (relaxed loads of word-sized
 * counters, as core/latency_hist.h does), so nothing is locked on the hot
 * path and a report is at worst a few events stale.
 */
#ifndef LG_STATS_H
#define LG_STATS_H

#include <stdint.h>
#include <stdio.h>

#include "core/latency_hist.h"
#include "loadgen/lg_session.h"

struct lg_stats {
	uint64_t messages;             /* transactions started (MAIL sent) */
	uint64_t ok;                   /* 2xx to end of data */
	uint64_t failed;               /* transactions that ended without a 2xx to end of data */
	uint64_t bytes;                /* message bytes of messages that got a 2xx */
	uint64_t replies[6];           /* by class: [2] 2xx, [3] 3xx, [4] 4xx, [5] 5xx; [0] other */
	uint64_t eod_replies[6];       /* the same, for end-of-data replies only */
	uint64_t errors[LG_ERR_COUNT]; /* sessions closed, by reason ([LG_ERR_NONE]: clean) */
	uint64_t connects;             /* connections established */
	uint64_t tls_done;             /* STARTTLS handshakes finished */
	uint64_t ready;                /* sessions past EHLO (idle mode: connections held) */
	uint64_t open;                 /* connections open now (connected and not closed) */
	uint64_t late; /* open loop: messages started over 1 ms behind the schedule */
	struct latency_hist connect_lat; /* connect() → established */
	struct latency_hist eod_lat;     /* end of data sent → its reply */
	struct latency_hist tls_lat;     /* STARTTLS 220 → handshake done */
} __attribute__((aligned(64)));

/* An lg_event_fn: arg is the thread's struct lg_stats. */
void lg_stats_event(void *arg, const struct lg_event *ev);

/* dst += a racy snapshot of src. */
void lg_stats_merge(struct lg_stats *dst, const struct lg_stats *src);

/* One line for the per-second report: now - prev over dt seconds, totals from now. */
void lg_stats_report_line(FILE *f, const struct lg_stats *now, const struct lg_stats *prev,
                          double dt, double elapsed);

/* The end-of-run summary, human-readable. */
void lg_stats_report_final(FILE *f, const struct lg_stats *t, double seconds);

/* The end-of-run summary as one JSON object and a newline; -1 when jansson fails. */
int lg_stats_print_json(FILE *f, const struct lg_stats *t, double seconds, unsigned connections);

#endif
