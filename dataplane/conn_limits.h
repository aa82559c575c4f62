/*
 * conn_limits.h: connection accounting shared by every worker: the total number
 * of open connections (limits.conn_total), and per client address the open
 * connections (limits.conn_per_ip) and the connection attempts in the current
 * second (limits.conn_rate_per_ip).
 *
 * One client's flows land on different workers (RSS, SO_REUSEPORT), so the
 * per-address figures must add up across workers, yet the poll-mode path
 * takes no lock and makes no system call.  Each worker owns one DPDK rte_hash
 * (RW_CONCURRENCY_LF: one writer, lock-free readers) mapping an address to an
 * entry of its own fixed array, whose counters only it writes, with atomic
 * stores.  Admitting a connection reads the address's entry in every
 * worker's table (lock-free lookups, atomic loads) and adds them up; it then
 * writes only its own entry.  Two workers admitting the same address at the
 * same instant may each see the other's count one short, so a limit can be
 * overshot by at most workers - 1: the price of never waiting.
 *
 * Memory is bounded: limits.table_size entries per worker.  An entry with no
 * open connection and no attempt in the last two seconds is stale and is
 * removed by its owner a few at a time on every loop; its slot is reused only
 * after every worker has passed a quiescent state (DPDK's QSBR RCU), so no
 * reader ever sees an entry change under it.  A full table admits the
 * connection without per-address accounting and counts it (fail open: the
 * total still bounds the load; failing closed would let an attacker with
 * many addresses lock everyone out).
 */
#ifndef PA_CONN_LIMITS_H
#define PA_CONN_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pa_limits;

/* A client address as a key: IPv4 as ::ffff:a.b.c.d, IPv6 cut to its /64. */
struct limits_key {
	uint8_t b[16];
};

struct limits_conf {
	unsigned conn_total;       /* 0: no limit */
	unsigned conn_per_ip;      /* 0: no limit */
	unsigned conn_rate_per_ip; /* attempts per second; 0: no limit */
};

/* What one connection holds; zero-initialised holds nothing. */
struct limits_hold {
	int32_t entry;  /* index + 1 in the worker's table; 0: no per-address share */
	bool total;     /* counted in the total */
	bool untracked; /* the table was full: admitted without per-address accounting */
};

/*
 * IPv4 (4 octets) or IPv6 (16) in network order, into a key.  A host's IPv6
 * addresses are one /64 (RFC 4291 2.5.1): cutting there keeps a client from
 * getting a fresh budget from each of its 2^64 addresses.
 */
void limits_key_of(int family, const uint8_t *addr, struct limits_key *key);

/* On the main lcore before the workers start; NULL with err set on failure. */
struct pa_limits *limits_create(unsigned nworkers, unsigned entries_per_worker, char *err,
                                size_t errlen);
/* After the workers have stopped. */
void limits_destroy(struct pa_limits *limits);

/*
 * On worker `worker`: counts one more open connection in the total.  Returns
 * SMTP_REFUSAL_NONE (holding it), or SMTP_REFUSAL_CONN_TOTAL.
 */
int limits_admit_total(struct pa_limits *limits, const struct limits_conf *conf,
                       struct limits_hold *hold);

/*
 * On worker `worker`: a connection attempt from key.  The attempt always
 * counts in the address's rate (as Postfix's anvil counts them: a client
 * that keeps hammering stays refused).  Returns SMTP_REFUSAL_NONE, holding
 * one open connection of key, or SMTP_REFUSAL_CONN_RATE or
 * SMTP_REFUSAL_CONN_PER_IP, holding nothing for the address.
 */
int limits_admit_addr(struct pa_limits *limits, unsigned worker, const struct limits_key *key,
                      const struct limits_conf *conf, struct limits_hold *hold);

/* Lets go of the per-address share only (XCLIENT moves a connection to another address). */
void limits_release_addr(struct pa_limits *limits, unsigned worker, struct limits_hold *hold);

/* Lets go of everything the connection holds; on the worker that admitted it. */
void limits_release(struct pa_limits *limits, unsigned worker, struct limits_hold *hold);

/*
 * Once per loop on each worker: reports the worker quiescent (it holds no
 * reference into any table between loops) and expires a few stale entries.
 */
void limits_tick(struct pa_limits *limits, unsigned worker);

/* Open connections from key across all workers, and entries in use on `worker`: for tests and
 * stats. */
unsigned limits_addr_conns(struct pa_limits *limits, const struct limits_key *key);
unsigned limits_entries(const struct pa_limits *limits, unsigned worker);

#endif
