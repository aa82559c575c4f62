/*
 * handoff_window.c: how many connections each destination may have now,
 * adapted to how it answers (slow start, then additive increase and
 * multiplicative decrease, as TCP's congestion control does, RFC 5681 3.1,
 * with Postfix's qmgr feedback's signals).
 *
 * A destination's window starts at relay.concurrency_min.  After a window's
 * worth of successful transactions (as many as the window), while jobs
 * still wait for it and their mean latency stays within twice the lowest
 * mean seen (its floor), it doubles (slow start) until the first sign of
 * trouble, then grows by one; it shrinks by one when that mean is above
 * twice the floor (the destination is slowing down), which also ends slow
 * start.  A temporary failure (4xx, or a connection lost or refused) halves
 * it and ends slow start, at most once per HO_WINDOW_CUT_US so that one
 * burst of failures counts once.  It stays
 * between relay.concurrency_min and relay.concurrency (the ceiling; a
 * minimum above it is the ceiling).
 *
 * What it promises: the window is always within those bounds, also after a
 * reload changed them; every change is logged with its reason.
 */
#include "handoff/handoff_internal.h"

#include "core/log.h"

#define HO_WINDOW_CUT_US 100000u /* one halving per burst of failures */

static unsigned
floor_of(const struct handoff *h)
{
	unsigned min = h->cfg.concurrency_min != 0 ? h->cfg.concurrency_min : 1;

	return min < h->cfg.concurrency ? min : h->cfg.concurrency;
}

unsigned
ho_window(struct handoff *h, struct ho_dest *d)
{
	unsigned lo = floor_of(h);

	if (d->win < lo)
		d->win = lo; /* a new destination starts here; a reload may raise the floor */
	if (d->win > h->cfg.concurrency)
		d->win = h->cfg.concurrency;
	return d->win;
}

static void
set_window(struct handoff *h, struct ho_dest *d, unsigned win, const char *why)
{
	unsigned old = ho_window(h, d);

	d->win = win;
	ho_window(h, d); /* clamps */
	d->win_ok = 0;
	d->lat_sum_us = 0;
	if (d->win != old)
		pa_log_info("hand-off: %s concurrency %u -> %u (%s)", d->rd.key, old, d->win, why);
}

void
ho_window_success(struct handoff *h, struct ho_dest *d, uint64_t latency_us)
{
	uint64_t mean;
	unsigned win = ho_window(h, d);

	d->lat_sum_us += latency_us;
	if (++d->win_ok < win)
		return;
	mean = d->lat_sum_us / d->win_ok;
	/*
	 * The floor follows the lowest mean, and creeps up 1/16 a window so
	 * that a destination whose normal pace became slower is not held
	 * against one lucky window for ever.
	 */
	if (d->lat_floor_us == 0 || mean < d->lat_floor_us)
		d->lat_floor_us = mean != 0 ? mean : 1;
	else
		d->lat_floor_us += d->lat_floor_us / 16 + 1;
	if (mean > 2 * d->lat_floor_us && win > floor_of(h)) {
		d->win_linear = true;
		set_window(h, d, win - 1, "replies slowing down");
	} else if (mean <= 2 * d->lat_floor_us && d->nqueued > 0 && win < h->cfg.concurrency) {
		set_window(h, d, d->win_linear ? win + 1 : 2 * win,
		           d->win_linear ? "jobs waiting, replies quick"
		                         : "jobs waiting, replies quick, slow start");
	} else {
		set_window(h, d, win, "");
	}
}

void
ho_window_failure(struct handoff *h, struct ho_dest *d, uint64_t now)
{
	unsigned win = ho_window(h, d);

	if (now < d->win_cut_us + HO_WINDOW_CUT_US)
		return;
	d->win_cut_us = now;
	d->win_linear = true;
	set_window(h, d, win / 2, "temporary failure");
}
