/*
 * config.h: pigeond's configuration, one INI file read with DPDK's rte_cfgfile.
 *
 * Keys before any section are top-level ("listen"); a key in a section is
 * named section.key ("spool.dir").  Every key has a default, can be set in
 * the file and overridden on the command line with -o key=value.  An unknown
 * key or a bad value is an error that names the key; nothing is guessed.
 * docs/configuration.md documents the same table (a unit test checks that
 * every key is there).
 */
#ifndef PA_CONFIG_H
#define PA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sched.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/domain.h"
#include "core/milter_site.h"
#include "core/screen_site.h"
#include "smtp/smtp_session.h"

#define CONFIG_ERR_MAX 512
#define CONFIG_OVERRIDES_MAX 64
#define CONFIG_KEYS_MAX 128
#define CONFIG_VALUE_MAX 256 /* rte_cfgfile's CFG_VALUE_LEN */
#define CONFIG_CIDRS_MAX 32  /* entries in one address list (smtp.trusted_proxies, limits.exempt) */
#define CONFIG_IP6_MAX 4 /* dpdk.ip6 addresses */

/* One ADDR/PREFIX of an address list; IPv4 as AF_INET, never IPv4-mapped. */
struct pa_cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned prefix;
	uint8_t addr[16]; /* network order, host bits cleared */
};

enum pa_backend {
	PA_BACKEND_KERNEL,
	PA_BACKEND_DPDK,
};

/* dpdk.rss: hardware RSS when the port supports it (auto), required (on), or never (off). */
enum pa_dpdk_rss {
	PA_DPDK_RSS_AUTO,
	PA_DPDK_RSS_ON,
	PA_DPDK_RSS_OFF,
};

struct pa_config {
	char raw[CONFIG_KEYS_MAX][CONFIG_VALUE_MAX]; /* each key's value as given, by table order */
	enum pa_backend backend;
	char listen[128];
	struct sockaddr_storage listen_addr;
	socklen_t listen_addrlen;
	char hostname[256];
	unsigned workers;
	unsigned node_id;
	char **domains; /* canonical (core/domain.h: lower case, A-labels), sorted, for bsearch */
	size_t ndomains;
	char domain_first[PA_DOMAIN_MAX + 1]; /* the first of `domains` as listed, canonical */
	/* RCPT TO:<Postmaster> is stored as this; "" only when `domains` is empty too */
	char postmaster[SMTP_PATH_MAX + 1];
	char spool_dir[1024];
	unsigned spool_shards;
	unsigned spool_format;       /* of shards created now: 1 or 2 (segment log) */
	uint64_t spool_segment_size; /* format 2: bytes per segment file */
	unsigned spool_ring_size;
	char spool_committer_cpus[128]; /* a CPU list; empty: automatic (eal_committer_cpus()) */
	unsigned spool_idle_poll_us; /* 0: poll-mode workers ring idle committers (doorbell) */
	unsigned spool_linger_us;    /* idle committers on CPUs of their own look this long first */
	size_t max_message_size;
	unsigned max_recipients;
	unsigned max_errors;
	enum smtp_bare_lf_policy bare_lf;
	unsigned command_timeout_s;
	unsigned data_timeout_s;
	/* abuse limits and balancers (docs/security.md) */
	unsigned banner_delay_ms;             /* smtp.banner_delay; 0: banner at once */
	struct pa_cidr trusted_proxies[CONFIG_CIDRS_MAX]; /* smtp.trusted_proxies */
	unsigned ntrusted_proxies;
	bool proxy_protocol;                  /* trusted peers start with a PROXY header */
	unsigned limit_conn_total;            /* 0: no limit */
	unsigned limit_conn_per_ip;           /* 0: no limit */
	unsigned limit_conn_rate_per_ip;      /* new connections per second; 0: no limit */
	unsigned limit_commands;              /* per session; 0: no limit */
	struct pa_cidr limit_exempt[CONFIG_CIDRS_MAX]; /* limits.exempt */
	unsigned nlimit_exempt;
	unsigned limit_table_size; /* per-address entries per worker */
	unsigned shutdown_timeout_s;
	int log_level;  /* enum pa_log_level */
	int log_format; /* enum pa_log_format (log.format) */
	int log_target; /* enum pa_log_target (log.target) */
	char dpdk_eal[256];
	/* the DPDK dataplane (docs/dataplane.md); addresses in network order */
	char dpdk_ip[32]; /* ADDR/PREFIX as given */
	uint32_t dpdk_addr;
	unsigned dpdk_prefix;
	char dpdk_gateway[32];
	uint32_t dpdk_gateway_addr; /* 0: none */
	/* dpdk.ip6: ADDR/PREFIX each, AF_INET6, host bits kept (addr is the address itself) */
	struct pa_cidr dpdk_ip6[CONFIG_IP6_MAX];
	unsigned ndpdk_ip6;
	/* dpdk.gateway6 (all zero: none); dpdk.dad_transmits (RFC 4862; 0: no DAD) */
	uint8_t dpdk_gateway6[16];
	unsigned dpdk_dad_transmits;
	unsigned dpdk_msl_ms;       /* never 0 */
	unsigned dpdk_syn_backlog;
	unsigned dpdk_syn_per_source; /* 0: no limit */
	unsigned dpdk_max_conns;      /* per worker */
	unsigned dpdk_conn_mbufs;     /* receive mbufs one connection may hold */
	unsigned dpdk_mbufs;
	unsigned dpdk_idle_sleep_us;
	unsigned dpdk_challenge_ack_limit; /* RFC 5961 7, per worker per second; 0: none */
	char dpdk_impair[128]; /* tests only */
	enum pa_dpdk_rss dpdk_rss;
	/* recipient directory (directory/directory.h); no file and no URI: `domains` only */
	char directory_file[1024];
	char directory_ldap_uri[256];
	char directory_ldap_bind_dn[256];
	char directory_ldap_bind_password_file[1024];
	char directory_ldap_base[256];
	char directory_ldap_filter[256];
	char directory_ldap_mail_attr[64];
	char directory_ldap_alias_attr[64];
	char directory_ldap_host_attr[64];
	unsigned directory_refresh_s;
	unsigned directory_max_age_s;
	bool directory_case_sensitive_local;
	/* control socket and metrics listener (docs/operations.md) */
	char ctl_socket[1024]; /* empty: <spool.dir>/pigeond.sock */
	unsigned ctl_mode;
	char ctl_owner[64];
	char ctl_group[64];
	char metrics_listen[128]; /* ADDR:PORT; empty: no HTTP listener */
	/* STARTTLS (docs/tls.md); no tls.cert: not offered */
	char tls_cert[CONFIG_VALUE_MAX]; /* comma-separated, paired with tls_key by position */
	char tls_key[CONFIG_VALUE_MAX];
	char tls_ciphers[CONFIG_VALUE_MAX];
	char tls_ciphersuites[CONFIG_VALUE_MAX];
	int tls_min_version; /* enum tls_min_version (smtp/tls.h) */
	bool tls_required;
	unsigned tls_handshake_timeout_s;
	unsigned tls_ticket_lifetime_s; /* a session-ticket key seals tickets this long */
	/* hand-off to the delivery tier (docs/handoff.md) */
	char relay_routes[1024]; /* route-map file; empty: none */
	char relay_default[CONFIG_VALUE_MAX]; /* PROTO:HOST:PORT,...; empty: none */
	char relay_store_route[256];          /* destination with one %s, the store; empty: none */
	unsigned relay_max_recipients;        /* per hand-off transaction */
	char relay_helo[256];		      /* empty: hostname */
	unsigned relay_min_backoff_s;
	unsigned relay_max_backoff_s;
	unsigned relay_max_queue_lifetime_s;
	unsigned relay_concurrency;
	unsigned relay_concurrency_min;
	unsigned relay_timeout_s;
	unsigned relay_breaker_failures;
	unsigned relay_breaker_cooldown_s;
	uint64_t spool_high_water;	   /* bytes per shard; 0: no limit */
	uint64_t spool_min_free_bytes;	   /* one of these two is 0 */
	unsigned spool_min_free_percent;
	/* faults and privileges (docs/security.md) */
	unsigned spool_stall_timeout_ms;
	unsigned spool_retry_ms;
	char spool_impair[64]; /* tests only */
	/* DNS (dns/resolver.h) and connection screening (docs/security.md, "Screening") */
	char dns_servers[CONFIG_VALUE_MAX]; /* ADDR:PORT,[ADDR6]:PORT; empty: no resolver */
	unsigned dns_timeout_ms;
	unsigned dns_cache_size; /* answers kept by the resolver */
	struct screen_site screen_dnsbl[SCREEN_SITES_MAX];
	unsigned nscreen_dnsbl;
	struct screen_site screen_dnswl[SCREEN_SITES_MAX];
	unsigned nscreen_dnswl;
	unsigned screen_threshold;
	struct pa_cidr screen_allow[CONFIG_CIDRS_MAX]; /* never screened */
	unsigned nscreen_allow;
	bool screen_tempfail_listed;  /* screen.action=tempfail: 421, not 550 */
	bool screen_tempfail_failure; /* screen.temporary_action=tempfail: 421 on DNS failure */
	unsigned screen_cache_size;   /* verdicts kept per worker */
	/* content filters after end of data (docs/milter.md) */
	/* milter.timeout, milter.default_action, milter.connections */
	struct milter_site_defaults milter_defaults;
	struct milter_site milters[MILTER_SITES_MAX];
	unsigned nmilters;
	char user[64];	       /* empty: keep the user pigeond was started as */
	char group[64];	       /* empty: the user's primary group */
};

struct config_override {
	const char *key;
	const char *value;
};

/*
 * Loads path (NULL: defaults only), applies overrides in order, validates.
 * PA_OK, or PA_ERROR with err naming the key or the call that failed.
 */
int config_load(struct pa_config *config, const char *path, const struct config_override *ov,
                size_t nov, char *err, size_t errlen);
void config_free(struct pa_config *config);

/*
 * A CPU list as taskset -c and EAL's -l write it ("0", "0,2-3") into set;
 * PA_ERROR on anything else, an empty list included.
 */
int config_parse_cpu_list(const char *list, cpu_set_t *set);

/* Splits "key=value" in place; PA_ERROR when there is no '='. */
int config_parse_override(char *arg, struct config_override *ov);

/*
 * Whether addr (family AF_INET: 4 octets, AF_INET6: 16; an IPv4-mapped IPv6
 * address counts as IPv4) is inside one of list[0..n).
 */
bool config_cidr_match(const struct pa_cidr *list, unsigned n, int family, const uint8_t *addr);

/*
 * Whether domain is one of config->domains, in any case and in either form
 * (A-labels or U-labels, core/domain.h).  No allocation for an ASCII domain.
 */
bool config_domain_served(const struct pa_config *config, const char *domain);

/* Names of keys whose values differ and cannot change without a restart; NULL if none. */
const char *config_restart_needed(const struct pa_config *running, const struct pa_config *next);

/* For the documentation check: the key names, NULL-terminated. */
const char *const *config_key_names(void);

#endif
