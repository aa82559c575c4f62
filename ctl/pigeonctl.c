/*
 * pigeonctl.c: the operator tool.
 *
 * `pigeonctl COMMAND [options]` or `pigeonctl GROUP COMMAND [options]`; every
 * command is one row of the command table.  Commands talk to a running
 * pigeond over its control socket (--socket PATH, else ctl.socket from the
 * configuration given with -c, else the default <spool.dir>/pigeond.sock);
 * `spool ls` and `spool show` with --dir read a stopped spool directly.
 *
 * What it promises: exit 0 on success, 1 when the command failed (pigeond's
 * error or a connection failure, on stderr), 2 on a usage error; --json
 * prints pigeond's reply object unchanged, one compact line; text output
 * never passes control characters from the spool to the terminal; `spool
 * show` writes the stored bytes unchanged.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/config.h"
#include "core/pa.h"
#include "ctl/ctl_client.h"
#include "ctl/ctl_json.h"
#include "spool/spool.h"

#define EXIT_USAGE 2
#define ERR_MAX 1024

struct command;

/* Everything a command line may give; each command says which it takes. */
struct args {
	const char *dir;    /* offline spool commands */
	const char *socket; /* --socket */
	const char *config; /* -c */
	bool json;
	long shard; /* -1: every shard */
	long limit; /* 0: the server's default */
	const char *from;
	const char *rcpt;
	long min_age; /* seconds; -1: none */
	long max_age;
	const char *id; /* the positional argument */
};

struct command {
	const char *group; /* NULL: a one-word command */
	const char *name;
	const char *args;
	const char *help;
	const char *options; /* option letters taken, 'q' for the positional queue id */
	int (*run)(const struct command *cmd, struct args *a);
	const char *request; /* the control request's cmd, for online commands */
};

static int run_simple(const struct command *cmd, struct args *a);
static int run_spool_ls(const struct command *cmd, struct args *a);
static int run_spool_show(const struct command *cmd, struct args *a);

#define SOCK "[--socket PATH | -c FILE] [--json]"

static const struct command commands[] = {
    {NULL, "status", SOCK, "version, uptime, backend, workers, listeners, paused, spool health",
     "Sjc", run_simple, "status"},
    {NULL, "stats", SOCK,
     "per worker and total: connections, messages, refusals by reason, bytes, commit latency",
     "Sjc", run_simple, "stats"},
    {NULL, "pause", SOCK, "stop taking new mail: new connections 421, MAIL 451", "Sjc", run_simple,
     "pause"},
    {NULL, "resume", SOCK, "take mail again after pause", "Sjc", run_simple, "resume"},
    {NULL, "reload", SOCK,
     "re-read the configuration; an invalid one is refused and the running one stays", "Sjc",
     run_simple, "reload"},
    {NULL, "shutdown", SOCK, "stop pigeond as SIGTERM does", "Sjc", run_simple, "shutdown"},
    {NULL, "metrics", SOCK, "the counters in Prometheus text format", "Sjc", run_simple, "metrics"},
    {"spool", "summary", SOCK, "per shard: messages, bytes, oldest age, age histogram (qshape)",
     "Sjc", run_simple, "spool.summary"},
    {"spool", "ls",
     SOCK " [--shard N] [--from TEXT] [--rcpt TEXT] [--min-age SECS] [--max-age SECS] [--limit "
          "N] | --dir DIR [--json]",
     "list message copies (filters: substring of sender or a recipient, age, shard); "
     "--dir: a stopped spool",
     "SjcdsfrnxlD", run_spool_ls, "spool.ls"},
    {"spool", "hold", SOCK " [--shard N]",
     "stop handing off a shard's messages (every shard without --shard); they stay queued", "Sjcs",
     run_simple, "spool.hold"},
    {"spool", "release", SOCK " [--shard N]", "hand off a held shard again, at once", "Sjcs",
     run_simple, "spool.release"},
    {"spool", "retry", SOCK, "make every queued message due for hand-off now", "Sjc", run_simple,
     "spool.retry"},
    {NULL, "drain", SOCK,
     "pause, release every hold, hand off everything, then exit once the spool is empty", "Sjc",
     run_simple, "drain"},
    {"spool", "show", SOCK " [--shard N] QUEUE-ID | --dir DIR [--shard N] QUEUE-ID",
     "write the stored message (Received: header and content) to stdout", "SjcdsqD", run_spool_show,
     "spool.show"},
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: pigeonctl [GROUP] COMMAND [options]\n\ncommands:\n");
	for (size_t i = 0; i < pa_array_size(commands); i++)
		fprintf(f, "  pigeonctl %s%s%s %s\n      %s\n",
		        commands[i].group ? commands[i].group : "", commands[i].group ? " " : "",
		        commands[i].name, commands[i].args, commands[i].help);
}

static int
usage_error(const struct command *cmd, const char *what)
{
	const char *g = cmd->group ? cmd->group : "", *sp = cmd->group ? " " : "";

	fprintf(stderr, "pigeonctl %s%s%s: %s\nusage: pigeonctl %s%s%s %s\n", g, sp, cmd->name,
	        what, g, sp, cmd->name, cmd->args);
	return EXIT_USAGE;
}

static bool
parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static int
parse_args(const struct command *cmd, int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
	    {"dir", required_argument, NULL, 'd'},     {"json", no_argument, NULL, 'j'},
	    {"shard", required_argument, NULL, 's'},   {"socket", required_argument, NULL, 'S'},
	    {"from", required_argument, NULL, 'f'},    {"rcpt", required_argument, NULL, 'r'},
	    {"min-age", required_argument, NULL, 'n'}, {"max-age", required_argument, NULL, 'x'},
	    {"limit", required_argument, NULL, 'l'},   {NULL, 0, NULL, 0},
	};
	int c;

	*a = (struct args){.shard = -1, .min_age = -1, .max_age = -1};
	opterr = 0;
	optind = 0; /* GNU getopt: start afresh */
	while ((c = getopt_long(argc, argv, "-c:", opts, NULL)) != -1) {
		if (c != 1 && (c == '?' || c == ':' || strchr(cmd->options, c) == NULL))
			return usage_error(cmd, "unknown option or missing argument");
		switch (c) {
		case 1: /* a positional argument */
			if (a->id != NULL || strchr(cmd->options, 'q') == NULL)
				return usage_error(cmd, "unexpected argument");
			a->id = optarg;
			break;
		case 'c':
			a->config = optarg;
			break;
		case 'd':
			a->dir = optarg;
			break;
		case 'j':
			a->json = true;
			break;
		case 'S':
			a->socket = optarg;
			break;
		case 'f':
			a->from = optarg;
			break;
		case 'r':
			a->rcpt = optarg;
			break;
		case 's':
			if (!parse_long(optarg, 0, SPOOL_MAX_SHARDS - 1, &a->shard))
				return usage_error(cmd, "--shard takes a shard number");
			break;
		case 'n':
		case 'x':
			if (!parse_long(optarg, 0, 1L << 40, c == 'n' ? &a->min_age : &a->max_age))
				return usage_error(cmd, "--min-age and --max-age take seconds");
			break;
		case 'l':
			if (!parse_long(optarg, 1, 100000, &a->limit))
				return usage_error(cmd, "--limit takes 1..100000");
			break;
		}
	}
	if (strchr(cmd->options, 'q') != NULL && a->id == NULL)
		return usage_error(cmd, "a queue id is required");
	if (a->dir != NULL && (a->socket != NULL || a->config != NULL))
		return usage_error(cmd, "--dir reads a stopped spool: no --socket or -c with it");
	return EXIT_SUCCESS;
}

/* --socket, else ctl.socket of -c FILE (or of the defaults), else <spool.dir>/pigeond.sock. */
static int
socket_path(const struct args *a, char *out, size_t outlen)
{
	struct pa_config config;
	char err[CONFIG_ERR_MAX];

	if (a->socket != NULL) {
		snprintf(out, outlen, "%s", a->socket);
		return PA_OK;
	}
	if (config_load(&config, a->config, NULL, 0, err, sizeof(err)) != PA_OK) {
		fprintf(stderr, "pigeonctl: %s\n", err);
		return PA_ERROR;
	}
	if (config.ctl_socket[0] != '\0')
		snprintf(out, outlen, "%s", config.ctl_socket);
	else
		snprintf(out, outlen, "%s/pigeond.sock", config.spool_dir);
	config_free(&config);
	return PA_OK;
}

/*
 * Sends the request; returns the result object (borrowed from *reply) or NULL
 * after printing the error.  With --json the reply is printed as it came.
 */
static json_t *
call(const struct command *cmd, const struct args *a, json_t *req, json_t **reply)
{
	char path[1100], err[ERR_MAX];
	const char *name = cmd->group ? "spool" : "";
	json_t *result;

	*reply = NULL;
	if (socket_path(a, path, sizeof(path)) != PA_OK)
		return NULL;
	if (ctl_client_call(path, req, reply, err, sizeof(err)) != PA_OK) {
		fprintf(stderr, "pigeonctl %s%s%s: %s\n", name, *name ? " " : "", cmd->name, err);
		return NULL;
	}
	if (a->json) {
		json_dumpf(*reply, stdout, JSON_COMPACT);
		putchar('\n');
	}
	if (!json_is_true(json_object_get(*reply, "ok"))) {
		const char *e = json_string_value(json_object_get(*reply, "error"));

		fprintf(stderr, "pigeonctl %s%s%s: %s\n", name, *name ? " " : "", cmd->name,
		        e != NULL ? e : "pigeond answered with an error");
		return NULL;
	}
	result = json_object_get(*reply, "result");
	return result != NULL ? result : json_null();
}

/* Spool and client strings: never let them drive the terminal. */
static void
print_safe(const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static long long
num(const json_t *obj, const char *key)
{
	return (long long)json_integer_value(json_object_get(obj, key));
}

static void
print_status(const json_t *r)
{
	const json_t *l = json_object_get(r, "listeners"), *sp = json_object_get(r, "spool");

	printf("version:    %s\n", json_string_value(json_object_get(r, "version")));
	printf("uptime:     %llds\n", num(r, "uptime_s"));
	printf("backend:    %s\n", json_string_value(json_object_get(r, "backend")));
	printf("workers:    %lld\n", num(r, "workers"));
	printf("hostname:   ");
	print_safe(json_string_value(json_object_get(r, "hostname")));
	printf("\nsmtp:       %s\n", json_string_value(json_object_get(l, "smtp")));
	printf("control:    %s\n", json_string_value(json_object_get(l, "ctl")));
	printf("metrics:    %s\n", json_is_string(json_object_get(l, "metrics"))
	                               ? json_string_value(json_object_get(l, "metrics"))
	                               : "off");
	printf("paused:     %s\n", json_is_true(json_object_get(r, "paused")) ? "yes" : "no");
	printf("config:     generation %lld\n", num(r, "config_generation"));
	printf("spool:      %s (%s, %lld shards, %lld commits, %lld commit failures)\n",
	       json_string_value(json_object_get(sp, "health")),
	       json_string_value(json_object_get(sp, "dir")), num(sp, "shards"), num(sp, "commits"),
	       num(sp, "commit_failures"));
}

static void
stats_row(const char *label, const json_t *w)
{
	const json_t *lat = json_object_get(w, "commit_latency_us");
	const json_t *refused = json_object_get(w, "refused");
	long long nref = 0;
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)refused, k, v) nref += json_integer_value(v);
	printf("%-7s %6lld %9lld %9lld %8lld %7lld %12lld %8lld %8lld %8lld\n", label,
	       num(w, "conns_open"), num(w, "conns_total"), num(w, "messages_accepted"),
	       num(w, "messages_failed"), nref, num(w, "bytes_accepted"), num(lat, "p50"),
	       num(lat, "p99"), num(lat, "p999"));
}

static void
print_tcp(const char *label, const json_t *t)
{
	const char *k;
	json_t *v;

	printf("tcp %s: retransmits %lld, rto %lld, syn cookies sent %lld accepted %lld, "
	       "time_wait %lld, resets sent %lld\n",
	       label, num(t, "retransmits"), num(t, "rto_expiries"), num(t, "syn_cookies_sent"),
	       num(t, "syn_cookies_accepted"), num(t, "time_wait"), num(t, "resets_sent"));
	json_object_foreach(json_object_get(t, "drops"), k, v)
	    printf("  drop %-20s %lld\n", k, (long long)json_integer_value(v));
}

static void
print_stats(const json_t *r)
{
	const json_t *workers = json_object_get(r, "workers"), *total = json_object_get(r, "total");
	const char *k;
	size_t i;
	json_t *w, *v;

	printf("%-7s %6s %9s %9s %8s %7s %12s %8s %8s %8s\n", "WORKER", "OPEN", "CONNS", "ACCEPTED",
	       "FAILED", "REFUSED", "BYTES", "P50_US", "P99_US", "P999_US");
	json_array_foreach(workers, i, w)
	{
		char label[16];

		snprintf(label, sizeof(label), "%lld", num(w, "worker"));
		stats_row(label, w);
	}
	stats_row("total", total);
	printf("\nrefused by reason (total):\n");
	json_object_foreach(json_object_get(total, "refused"), k, v)
	    printf("  %-18s %lld\n", k, (long long)json_integer_value(v));
	printf("connections refused (421): %lld, of which while paused: %lld\n",
	       num(total, "conns_refused"), num(total, "conns_paused"));
	json_array_foreach(workers, i, w) if (json_object_get(w, "tcp") != NULL)
	{
		char label[24];

		snprintf(label, sizeof(label), "worker %lld", num(w, "worker"));
		print_tcp(label, json_object_get(w, "tcp"));
	}
}

static void
print_summary(const json_t *r)
{
	const json_t *buckets = json_object_get(r, "buckets");
	size_t i, b;
	json_t *s, *name;

	printf("%-6s %9s %12s %10s", "SHARD", "MESSAGES", "BYTES", "OLDEST_S");
	json_array_foreach(buckets, b, name) printf(" %8s", json_string_value(name));
	putchar('\n');
	for (i = 0; i <= json_array_size(json_object_get(r, "shards")); i++) {
		bool total = i == json_array_size(json_object_get(r, "shards"));
		char label[16];

		s = total ? json_object_get(r, "total")
		          : json_array_get(json_object_get(r, "shards"), i);
		snprintf(label, sizeof(label), total ? "TOTAL" : "%lld", num(s, "shard"));
		printf("%-6s %9lld %12lld %10lld", label, num(s, "messages"), num(s, "bytes"),
		       num(s, "oldest_age_s"));
		json_array_foreach(buckets, b, name)
		    printf(" %8lld", num(json_object_get(s, "ages"), json_string_value(name)));
		putchar('\n');
	}
}

static int
finish(json_t *reply, int rc)
{
	json_decref(reply);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		perror("pigeonctl: writing stdout");
		return EXIT_FAILURE;
	}
	return rc;
}

/* The online request of ls or show: cmd plus the options given. */
static json_t *
spool_request(const struct command *cmd, const struct args *a)
{
	json_t *req = json_pack("{s:s}", "cmd", cmd->request);

	if (req == NULL)
		return NULL;
	if (a->shard >= 0)
		json_object_set_new(req, "shard", json_integer(a->shard));
	if (a->limit > 0)
		json_object_set_new(req, "limit", json_integer(a->limit));
	if (a->min_age >= 0)
		json_object_set_new(req, "min_age", json_integer(a->min_age));
	if (a->max_age >= 0)
		json_object_set_new(req, "max_age", json_integer(a->max_age));
	if (a->from != NULL)
		json_object_set_new(req, "from", json_string(a->from));
	if (a->rcpt != NULL)
		json_object_set_new(req, "rcpt", json_string(a->rcpt));
	if (a->id != NULL)
		json_object_set_new(req, "id", json_string(a->id));
	return req;
}

static int
run_simple(const struct command *cmd, struct args *a)
{
	json_t *req = spool_request(cmd, a), *reply, *r;

	r = req != NULL ? call(cmd, a, req, &reply) : NULL;
	json_decref(req);
	if (r == NULL)
		return finish(reply, EXIT_FAILURE);
	if (a->json)
		return finish(reply, EXIT_SUCCESS);
	if (strcmp(cmd->request, "status") == 0)
		print_status(r);
	else if (strcmp(cmd->request, "stats") == 0)
		print_stats(r);
	else if (strcmp(cmd->request, "spool.summary") == 0)
		print_summary(r);
	else if (strcmp(cmd->request, "metrics") == 0)
		fputs(json_string_value(json_object_get(r, "text")), stdout);
	else if (strcmp(cmd->request, "pause") == 0)
		printf("paused: new connections get 421, MAIL gets 451\n");
	else if (strcmp(cmd->request, "resume") == 0)
		printf("resumed: taking mail\n");
	else if (strcmp(cmd->request, "reload") == 0)
		printf("reloaded: configuration generation %lld\n", num(r, "config_generation"));
	else if (strcmp(cmd->request, "shutdown") == 0)
		printf("pigeond is stopping\n");
	else if (strcmp(cmd->request, "drain") == 0)
		printf("draining: paused, every hold released; pigeond exits once the spool is "
		       "empty\n");
	else if (strcmp(cmd->request, "spool.retry") == 0)
		printf("every queued message is due for hand-off now\n");
	else if (a->shard >= 0)
		printf("hand-off of shard %ld %s\n", a->shard,
		       json_is_true(json_object_get(r, "held")) ? "held" : "released");
	else
		printf("hand-off of every shard %s\n",
		       json_is_true(json_object_get(r, "held")) ? "held" : "released");
	return finish(reply, EXIT_SUCCESS);
}

/* One listing line, the same for a stopped spool and a running pigeond. */
static void
ls_text(const char *id, long long shard, long long size, const char *arrival, const char *from,
        const char *const *rcpts, size_t nrcpt)
{
	printf("%-24s %5lld %10lld %s <", id, shard, size, arrival);
	print_safe(from);
	printf(">");
	for (size_t i = 0; i < nrcpt; i++) {
		printf("%s<", i == 0 ? " " : ",");
		print_safe(rcpts[i]);
		printf(">");
	}
	putchar('\n');
}

static void
ls_header(void)
{
	printf("%-24s %5s %10s %-27s %s %s\n", "QUEUE-ID", "SHARD", "SIZE", "ARRIVAL", "FROM",
	       "RECIPIENTS");
}

static int
ls_offline_json(const struct spool_entry *e)
{
	json_t *rcpt = json_array(), *obj;
	char arrival[32];
	int rc;

	for (size_t i = 0; rcpt != NULL && i < e->nrcpt; i++)
		if (json_array_append_new(rcpt, ctl_json_lossy(e->rcpts[i])) != 0) {
			json_decref(rcpt);
			rcpt = NULL;
		}
	if (rcpt == NULL)
		return PA_ERROR;
	ctl_format_time(e->arrival_us, arrival);
	obj = json_pack("{s:s, s:I, s:I, s:o, s:o, s:s, s:I, s:o, s:o}", "id", e->queue_id, "shard",
	                (json_int_t)e->shard, "size", (json_int_t)e->size, "from",
	                ctl_json_lossy(e->mail_from), "rcpt", rcpt, "arrival", arrival,
	                "arrival_us", (json_int_t)e->arrival_us, "client",
	                ctl_json_lossy(e->client_addr), "helo", ctl_json_lossy(e->helo));
	if (obj == NULL)
		return PA_ERROR;
	rc = json_dumpf(obj, stdout, JSON_COMPACT) == 0 && putchar('\n') != EOF ? PA_OK : PA_ERROR;
	json_decref(obj);
	return rc;
}

static int
ls_offline_entry(const struct spool_entry *e, void *arg)
{
	const struct args *a = arg;
	char arrival[32];

	if (a->json)
		return ls_offline_json(e);
	ctl_format_time(e->arrival_us, arrival);
	ls_text(e->queue_id, e->shard, (long long)e->size, arrival, e->mail_from, e->rcpts,
	        e->nrcpt);
	return ferror(stdout) ? PA_ERROR : PA_OK;
}

static int
ls_offline(struct args *a)
{
	char err[ERR_MAX] = "";
	int rc;

	if (!a->json)
		ls_header();
	rc = spool_scan(a->dir, ls_offline_entry, a, err, sizeof(err));
	if (fflush(stdout) == EOF || ferror(stdout)) {
		perror("pigeonctl spool ls: writing stdout");
		return EXIT_FAILURE;
	}
	if (rc != PA_OK) {
		fprintf(stderr, "pigeonctl spool ls: %s\n",
		        err[0] != '\0' ? err : "listing failed");
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

static int
run_spool_ls(const struct command *cmd, struct args *a)
{
	json_t *req, *reply, *r, *e;
	size_t i;

	if (a->dir != NULL) {
		if (a->from || a->rcpt || a->min_age >= 0 || a->max_age >= 0 || a->limit > 0 ||
		    a->shard >= 0)
			return usage_error(cmd, "filters need a running pigeond (no --dir)");
		return ls_offline(a);
	}
	req = spool_request(cmd, a);
	r = req != NULL ? call(cmd, a, req, &reply) : NULL;
	json_decref(req);
	if (r == NULL)
		return finish(reply, EXIT_FAILURE);
	if (a->json)
		return finish(reply, EXIT_SUCCESS);
	ls_header();
	json_array_foreach(json_object_get(r, "entries"), i, e)
	{
		const json_t *rc = json_object_get(e, "rcpt");
		const char *rcpts[SPOOL_MAX_SHARDS];
		size_t n = 0, j;
		json_t *x;

		json_array_foreach(rc, j, x) if (n < pa_array_size(rcpts)) rcpts[n++] =
		    json_string_value(x);
		ls_text(json_string_value(json_object_get(e, "id")), num(e, "shard"),
		        num(e, "size"), json_string_value(json_object_get(e, "arrival")),
		        json_string_value(json_object_get(e, "from")), rcpts, n);
	}
	if (json_is_true(json_object_get(r, "truncated")))
		fprintf(stderr,
		        "pigeonctl spool ls: more messages match: raise --limit or filter\n");
	return finish(reply, EXIT_SUCCESS);
}

struct show {
	bool found;
	bool write_failed;
};

/* Every copy of a message holds the same bytes: the first one found is the answer. */
static int
show_entry(const struct spool_entry *e, void *arg)
{
	struct show *s = arg;

	s->found = true;
	s->write_failed = fwrite(e->data, 1, e->size, stdout) != e->size;
	return 1;
}

static int
show_offline(const struct args *a)
{
	struct show s = {false, false};
	char err[ERR_MAX] = "";
	int rc = spool_scan_id(a->dir, a->id, (int)a->shard, show_entry, &s, err, sizeof(err));

	if (rc == PA_ERROR) {
		fprintf(stderr, "pigeonctl spool show: %s\n", err[0] != '\0' ? err : "read failed");
		return EXIT_FAILURE;
	}
	if (s.write_failed || fflush(stdout) == EOF || ferror(stdout)) {
		perror("pigeonctl spool show: writing stdout");
		return EXIT_FAILURE;
	}
	if (!s.found) {
		if (a->shard >= 0)
			fprintf(stderr, "pigeonctl spool show: no message %s in shard %ld of %s\n",
			        a->id, a->shard, a->dir);
		else
			fprintf(stderr, "pigeonctl spool show: no message %s in %s\n", a->id,
			        a->dir);
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

static int
run_spool_show(const struct command *cmd, struct args *a)
{
	json_t *req, *reply, *r;
	const char *b64;
	uint8_t *data;
	size_t len;

	if (a->dir != NULL)
		return show_offline(a);
	req = spool_request(cmd, a);
	r = req != NULL ? call(cmd, a, req, &reply) : NULL;
	json_decref(req);
	if (r == NULL)
		return finish(reply, EXIT_FAILURE);
	if (a->json)
		return finish(reply, EXIT_SUCCESS);
	b64 = json_string_value(json_object_get(r, "data_base64"));
	data = b64 != NULL ? ctl_base64_decode(b64, strlen(b64), &len) : NULL;
	if (data == NULL) {
		fprintf(stderr, "pigeonctl spool show: the reply holds no valid message data\n");
		return finish(reply, EXIT_FAILURE);
	}
	if (fwrite(data, 1, len, stdout) != len) {
		perror("pigeonctl spool show: writing stdout");
		free(data);
		return finish(reply, EXIT_FAILURE);
	}
	free(data);
	return finish(reply, EXIT_SUCCESS);
}

int
main(int argc, char **argv)
{
	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	                  strcmp(argv[1], "help") == 0)) {
		usage(stdout);
		return EXIT_SUCCESS;
	}
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("pigeonctl %s\n", PA_VERSION);
		return EXIT_SUCCESS;
	}
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < pa_array_size(commands); i++) {
		const struct command *cmd = &commands[i];
		int skip = cmd->group != NULL ? 2 : 1;
		struct args a;
		int rc;

		if (cmd->group != NULL && (argc < 3 || strcmp(argv[1], cmd->group) != 0 ||
		                           strcmp(argv[2], cmd->name) != 0))
			continue;
		if (cmd->group == NULL && strcmp(argv[1], cmd->name) != 0)
			continue;
		/* getopt sees the command word as argv[0]. */
		rc = parse_args(cmd, argc - skip, argv + skip, &a);
		if (rc != EXIT_SUCCESS)
			return rc;
		return cmd->run(cmd, &a);
	}
	fprintf(stderr, "pigeonctl: unknown command: %s%s%s\n", argv[1], argc > 2 ? " " : "",
	        argc > 2 ? argv[2] : "");
	usage(stderr);
	return EXIT_USAGE;
}
