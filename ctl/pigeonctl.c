/*
 * pigeonctl.c: the operator tool.
 *
 * `pigeonctl COMMAND [options]` or `pigeonctl GROUP COMMAND [options]`; every
 * command is one row of the command table.  Options may stand before, between
 * or after the command words (`pigeonctl --socket S spool ls`, `pigeonctl
 * spool --json ls`, `pigeonctl spool ls --socket=S`), as git and systemctl
 * take them; `--` ends them.  Commands talk to a running
 * pigeond over its control socket (--socket PATH, else ctl.socket from the
 * configuration given with -c, else the default <spool.dir>/pigeond.sock);
 * `spool ls` and `spool show` with --dir read a stopped spool directly.
 * Every table (stats, summary per shard and per destination) goes through one
 * printer driven by a list of columns; every listing line, from a running
 * pigeond or from a stopped spool, through one line printer.
 *
 * What it promises: exit 0 on success, 1 when the command failed (pigeond's
 * error or a connection failure, on stderr), 2 on a usage error (an unknown
 * command or option, a missing or invalid value, an option the command does
 * not take, a stray argument), named on stderr before anything runs; --json
 * prints pigeond's reply object unchanged, one compact line; text output
 * never passes control characters from the spool to the terminal; `spool
 * show` writes the stored bytes unchanged.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
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
#define AGE_MAX_S (1L << 40)

/* Everything a command line may give; each command says which it takes. */
struct args {
	const char *dir;    /* offline spool commands */
	const char *socket; /* --socket */
	const char *config; /* -c */
	bool json;
	bool all;   /* --all: delete every message (of --shard) */
	long shard; /* -1: every shard */
	long limit; /* 0: the server's default */
	const char *from;
	const char *rcpt;
	const char *dest;
	long min_age; /* seconds; -1: none */
	long max_age;
	const char *id; /* the positional argument */
	bool help;      /* -h, --help: usage, of the command when one is named */
	bool version;   /* --version */
};

struct command {
	const char *group; /* NULL: a one-word command */
	const char *name;
	const char *args;
	const char *help;
	/* option letters taken; 'q': a queue id is required, 'i': a queue id may be given */
	const char *options;
	const char *request; /* the control request's cmd */
	/* Prints the result of a successful request as text; returns the exit status. */
	int (*print)(const struct command *cmd, const json_t *r);
	/* With --dir, on a stopped spool; NULL: the command needs pigeond. */
	int (*offline)(const struct command *cmd, struct args *a);
	const char *done; /* the line print_done() writes */
};

static int print_done(const struct command *cmd, const json_t *r);
static int print_status(const struct command *cmd, const json_t *r);
static int print_stats(const struct command *cmd, const json_t *r);
static int print_reload(const struct command *cmd, const json_t *r);
static int print_rotate(const struct command *cmd, const json_t *r);
static int print_metrics(const struct command *cmd, const json_t *r);
static int print_summary(const struct command *cmd, const json_t *r);
static int print_ls(const struct command *cmd, const json_t *r);
static int print_show(const struct command *cmd, const json_t *r);
static int print_op(const struct command *cmd, const json_t *r);
static int ls_offline(const struct command *cmd, struct args *a);
static int show_offline(const struct command *cmd, struct args *a);

#define SOCK "[--socket PATH | -c FILE] [--json]"
#define FILTER_ARGS                                                                                \
	"[--shard N] [--from TEXT] [--rcpt TEXT] [--dest TEXT] [--older-than AGE] "                \
	"[--younger-than AGE]"
#define FILTERS "sfrnxoye"
#define OP_OPTS "Sjci" FILTERS "l"

static const struct command commands[] = {
    {NULL, "status", SOCK, "version, uptime, backend, workers, listeners, paused, spool health",
     "Sjc", "status", print_status, NULL, NULL},
    {NULL, "stats", SOCK,
     "per worker and total: connections, messages, refusals by reason, bytes, commit latency, "
     "TLS handshakes, and every TCP counter of the DPDK stack",
     "Sjc", "stats", print_stats, NULL, NULL},
    {NULL, "pause", SOCK, "stop taking new mail: new connections 421, MAIL 451", "Sjc", "pause",
     print_done, NULL, "paused: new connections get 421, MAIL gets 451"},
    {NULL, "resume", SOCK, "take mail again after pause", "Sjc", "resume", print_done, NULL,
     "resumed: taking mail"},
    {NULL, "reload", SOCK,
     "re-read the configuration; an invalid one is refused and the running one stays", "Sjc",
     "reload", print_reload, NULL, NULL},
    {"tls", "rotate", SOCK,
     "a new session-ticket key now (the previous one still resumes until the next rotation); "
     "the schedule of tls.ticket_lifetime starts again from now",
     "Sjc", "tls.rotate", print_rotate, NULL, NULL},
    {NULL, "shutdown", SOCK, "stop pigeond as SIGTERM does", "Sjc", "shutdown", print_done, NULL,
     "pigeond is stopping"},
    {NULL, "metrics", SOCK, "the counters in Prometheus text format", "Sjc", "metrics",
     print_metrics, NULL, NULL},
    {"spool", "summary", SOCK " " FILTER_ARGS,
     "per shard and per destination: messages, bytes, oldest age, deferred, held, age "
     "histogram (qshape)",
     "Sjc" FILTERS, "spool.summary", print_summary, NULL, NULL},
    {"spool", "ls", SOCK " " FILTER_ARGS " [--limit N] | --dir DIR [--json]",
     "list message copies ('!' after the id: held); --dir: a stopped spool", "Sjcd" FILTERS "l",
     "spool.ls", print_ls, ls_offline, NULL},
    {"spool", "hold", SOCK " [QUEUE-ID] " FILTER_ARGS " [--limit N]",
     "keep messages from being handed off: one message, the matching ones, or whole shards "
     "(--shard N, or every shard); they stay queued",
     OP_OPTS, "spool.hold", print_op, NULL, NULL},
    {"spool", "release", SOCK " [QUEUE-ID] " FILTER_ARGS " [--limit N]",
     "hand held messages off again, at once: one message, the matching ones, or whole shards",
     OP_OPTS, "spool.release", print_op, NULL, NULL},
    {"spool", "retry", SOCK " [QUEUE-ID] " FILTER_ARGS " [--limit N]",
     "make queued messages due for hand-off now (every one without arguments); a held one "
     "only when named",
     OP_OPTS, "spool.retry", print_op, NULL, NULL},
    {"spool", "delete", SOCK " QUEUE-ID | " FILTER_ARGS " [--limit N] | [--shard N] --all",
     "remove messages from the spool without delivery and without a DSN", OP_OPTS "a",
     "spool.delete", print_op, NULL, NULL},
    {NULL, "drain", SOCK,
     "pause, release every hold, hand off everything, then exit once the spool is empty", "Sjc",
     "drain", print_done, NULL,
     "draining: paused, every hold released; pigeond exits once the spool is empty"},
    {"spool", "show", SOCK " [--shard N] QUEUE-ID | --dir DIR [--shard N] QUEUE-ID",
     "write the stored message (Received: header and content) to stdout", "Sjcdsq", "spool.show",
     print_show, show_offline, NULL},
};

/* One command's synopsis after `prefix`, then what it does. */
static void
command_usage(FILE *f, const char *prefix, const struct command *cmd)
{
	fprintf(f, "%spigeonctl %s%s%s %s\n      %s\n", prefix, cmd->group ? cmd->group : "",
	        cmd->group ? " " : "", cmd->name, cmd->args, cmd->help);
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: pigeonctl [options] [GROUP] COMMAND [options] [ARGUMENT]\n\n"
	           "Options may come before, between or after the command words, as --opt VALUE\n"
	           "or --opt=VALUE; `--` ends them.  Options every command takes:\n"
	           "  --socket PATH      the control socket (default: ctl.socket of the\n"
	           "                     configuration, else <spool.dir>/pigeond.sock)\n"
	           "  -c, --config FILE  the configuration file that names the socket\n"
	           "  --json             pigeond's reply object, one line\n"
	           "  -h, --help         this text; with a command, that command's usage\n"
	           "  --version          pigeonctl's version\n"
	           "and for spool ls and spool show:\n"
	           "  --dir DIR          read a stopped spool directly (no --socket or -c)\n\n"
	           "commands:\n");
	for (size_t i = 0; i < pa_array_size(commands); i++)
		command_usage(f, "  ", &commands[i]);
	fprintf(f, "\nAGE is seconds, or a number with s, m, h or d (--older-than 10m).\n"
	           "Exit status: 0 done, 1 the command failed, 2 usage error.\n");
}

/* "spool ls" or "status": for messages. */
static const char *
cmd_label(const struct command *cmd, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", cmd->group ? cmd->group : "", cmd->group ? " " : "",
	         cmd->name);
	return buf;
}

static int
usage_error(const struct command *cmd, const char *what)
{
	char label[64];

	cmd_label(cmd, label, sizeof(label));
	fprintf(stderr, "pigeonctl %s: %s\nusage: pigeonctl %s %s\n", label, what, label,
	        cmd->args);
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

/* An age: seconds, or a number with the unit s, m, h or d. */
static bool
parse_age(const char *s, long *out)
{
	static const struct {
		char unit;
		long seconds;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
	size_t len = strlen(s);
	char num[32];

	for (size_t i = 0; len > 1 && len < sizeof(num) && i < pa_array_size(units); i++)
		if (s[len - 1] == units[i].unit) {
			memcpy(num, s, len - 1);
			num[len - 1] = '\0';
			if (!parse_long(num, 0, AGE_MAX_S / units[i].seconds, out))
				return false;
			*out *= units[i].seconds;
			return true;
		}
	return parse_long(s, 0, AGE_MAX_S, out);
}

/* How an option's argument is read, and where it goes in struct args. */
enum opt_kind {
	OPT_PATH,   /* const char *, not empty */
	OPT_STRING, /* const char * */
	OPT_FLAG,   /* bool, no argument */
	OPT_SHARD,  /* long, 0 .. SPOOL_MAX_SHARDS - 1 */
	OPT_AGE,    /* long, parse_age() */
	OPT_LIMIT,  /* long, 1 .. 100000 */
};

static const struct opt_spec {
	int letter; /* what struct command.options names it by */
	const char *name;
	enum opt_kind kind;
	size_t off;
	const char *usage; /* the complaint when its argument does not parse */
} opt_specs[] = {
    {'c', "config", OPT_PATH, offsetof(struct args, config), NULL},
    {'d', "dir", OPT_PATH, offsetof(struct args, dir), NULL},
    {'S', "socket", OPT_PATH, offsetof(struct args, socket), NULL},
    {'f', "from", OPT_STRING, offsetof(struct args, from), NULL},
    {'r', "rcpt", OPT_STRING, offsetof(struct args, rcpt), NULL},
    {'e', "dest", OPT_STRING, offsetof(struct args, dest), NULL},
    {'j', "json", OPT_FLAG, offsetof(struct args, json), NULL},
    {'a', "all", OPT_FLAG, offsetof(struct args, all), NULL},
    {'s', "shard", OPT_SHARD, offsetof(struct args, shard), "--shard takes a shard number"},
    {'n', "min-age", OPT_AGE, offsetof(struct args, min_age),
     "--older-than (--min-age) takes an age: 600, 10m"},
    {'o', "older-than", OPT_AGE, offsetof(struct args, min_age),
     "--older-than (--min-age) takes an age: 600, 10m"},
    {'x', "max-age", OPT_AGE, offsetof(struct args, max_age),
     "--younger-than (--max-age) takes an age: 600, 10m"},
    {'y', "younger-than", OPT_AGE, offsetof(struct args, max_age),
     "--younger-than (--max-age) takes an age: 600, 10m"},
    {'l', "limit", OPT_LIMIT, offsetof(struct args, limit), "--limit takes 1..100000"},
    {'h', "help", OPT_FLAG, offsetof(struct args, help), NULL},
    {'V', "version", OPT_FLAG, offsetof(struct args, version), NULL},
};

/* Options every command takes, whatever its row of the command table says. */
#define OPTS_EVERY_COMMAND "hV"

/* Stores one option's argument; false when it does not parse. */
static bool
set_option(const struct opt_spec *o, struct args *a, const char *arg)
{
	void *field = (char *)a + o->off;

	switch (o->kind) {
	case OPT_PATH:
		if (*arg == '\0')
			return false;
		*(const char **)field = arg;
		return true;
	case OPT_STRING:
		*(const char **)field = arg;
		return true;
	case OPT_FLAG:
		*(bool *)field = true;
		return true;
	case OPT_SHARD:
		return parse_long(arg, 0, SPOOL_MAX_SHARDS - 1, field);
	case OPT_AGE:
		return parse_age(arg, field);
	case OPT_LIMIT:
		return parse_long(arg, 1, 100000, field);
	}
	return false;
}

static const struct opt_spec *
opt_spec_of(int letter)
{
	for (size_t i = 0; i < pa_array_size(opt_specs); i++)
		if (opt_specs[i].letter == letter)
			return &opt_specs[i];
	return NULL;
}

/* The command line once read: its options, and its words in the order given. */
struct cmdline {
	struct args a;
	const char **words; /* the command words, then the positional argument */
	int nwords;
	char given[pa_array_size(opt_specs) + 1]; /* letters of the options given, in order */
	char err[ERR_MAX];                        /* the first usage error; "" when none */
};

/* Keeps the first usage error only: the one the operator should fix first. */
static void __attribute__((format(printf, 2, 3)))
cmdline_error(struct cmdline *cl, const char *fmt, ...)
{
	va_list ap;

	if (cl->err[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(cl->err, sizeof(cl->err), fmt, ap);
	va_end(ap);
}

/* How many long options begin with the len bytes at `text`. */
static int
abbreviates(const char *text, size_t len)
{
	int n = 0;

	for (size_t i = 0; i < pa_array_size(opt_specs); i++)
		n += strncmp(opt_specs[i].name, text, len) == 0;
	return n;
}

/* Why getopt refused `arg`, the element it was reading: ret is '?' or ':'. */
static void
option_error(struct cmdline *cl, const char *arg, int ret)
{
	/* A long option is named as written, without its value; a short one by its letter. */
	int len = strncmp(arg, "--", 2) == 0 ? (int)strcspn(arg, "=") : 0;

	if (ret == ':' && len > 0)
		cmdline_error(cl, "option %.*s needs a value", len, arg);
	else if (ret == ':')
		cmdline_error(cl, "option -%c needs a value", optopt);
	else if (len > 0 && optopt != 0)
		cmdline_error(cl, "option %.*s takes no value", len, arg);
	else if (len > 0 && abbreviates(arg + 2, (size_t)len - 2) > 1)
		cmdline_error(cl, "ambiguous option %.*s: write it out", len, arg);
	else if (len > 0)
		cmdline_error(cl, "unknown option %.*s", len, arg);
	else
		cmdline_error(cl, "unknown option -%c", optopt);
}

/*
 * Reads every option wherever it stands (before, between or after the command
 * words, `--opt VALUE` or `--opt=VALUE`) and collects the other words in
 * order; `--` ends the options.  Which options the command takes is checked
 * later, once the words have named it.  Returns PA_ERROR only when out of
 * memory; a usage error is left in cl->err.
 */
static int
read_cmdline(int argc, char **argv, struct cmdline *cl)
{
	struct option opts[pa_array_size(opt_specs) + 1] = {{0}};

	for (size_t i = 0; i < pa_array_size(opt_specs); i++)
		opts[i] =
		    (struct option){opt_specs[i].name,
		                    opt_specs[i].kind == OPT_FLAG ? no_argument : required_argument,
		                    NULL, opt_specs[i].letter};
	*cl = (struct cmdline){.a = {.shard = -1, .min_age = -1, .max_age = -1}};
	cl->words = calloc((size_t)argc, sizeof(*cl->words));
	if (cl->words == NULL) {
		perror("pigeonctl: calloc");
		return PA_ERROR;
	}
	opterr = 0;
	optind = 0; /* GNU getopt: start afresh */
	for (;;) {
		/* The element getopt reads next: optind stays on a bundle of short options until
		 * its end. */
		const char *arg = argv[optind > 0 ? optind : 1];
		const struct opt_spec *o;
		/* '-': words come back in place, as option 1; ':': a missing value is told apart.
		 */
		int c = getopt_long(argc, argv, "-:hc:", opts, NULL);

		if (c == -1)
			break;
		if (c == 1) {
			cl->words[cl->nwords++] = optarg;
			continue;
		}
		o = opt_spec_of(c);
		if (c == '?' || c == ':' || o == NULL) {
			option_error(cl, arg, c);
			continue;
		}
		if (!set_option(o, &cl->a, optarg)) {
			if (o->usage != NULL)
				cmdline_error(cl, "%s", o->usage);
			else
				cmdline_error(cl, "option --%s needs a value", o->name);
			continue;
		}
		if (strchr(cl->given, c) == NULL)
			cl->given[strlen(cl->given)] = (char)c;
	}
	while (optind < argc) /* after `--`: words, even those that look like options */
		cl->words[cl->nwords++] = argv[optind++];
	return PA_OK;
}

static bool
is_group(const char *word)
{
	for (size_t i = 0; i < pa_array_size(commands); i++)
		if (commands[i].group != NULL && strcmp(commands[i].group, word) == 0)
			return true;
	return false;
}

/* The command the words name; *used: how many words that took. */
static const struct command *
find_command(const struct cmdline *cl, int *used)
{
	for (size_t i = 0; cl->nwords > 0 && i < pa_array_size(commands); i++) {
		const struct command *cmd = &commands[i];

		if (cmd->group == NULL && strcmp(cl->words[0], cmd->name) == 0) {
			*used = 1;
			return cmd;
		}
		if (cmd->group != NULL && cl->nwords >= 2 &&
		    strcmp(cl->words[0], cmd->group) == 0 && strcmp(cl->words[1], cmd->name) == 0) {
			*used = 2;
			return cmd;
		}
	}
	return NULL;
}

/* What is left once the words named cmd: the options it takes, its argument. */
static int
check_args(const struct command *cmd, struct cmdline *cl, int used)
{
	struct args *a = &cl->a;
	bool id_ok = strchr(cmd->options, 'q') != NULL || strchr(cmd->options, 'i') != NULL;
	char what[ERR_MAX];

	for (const char *g = cl->given; *g != '\0'; g++)
		if (strchr(cmd->options, *g) == NULL && strchr(OPTS_EVERY_COMMAND, *g) == NULL) {
			snprintf(what, sizeof(what), "option --%s does not apply to this command",
			         opt_spec_of(*g)->name);
			return usage_error(cmd, what);
		}
	if (cl->nwords > used + 1 || (cl->nwords == used + 1 && !id_ok)) {
		snprintf(what, sizeof(what), "unexpected argument: %s",
		         cl->words[id_ok ? used + 1 : used]);
		return usage_error(cmd, what);
	}
	a->id = cl->nwords > used ? cl->words[used] : NULL;
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

/* The control request of a command: cmd plus the options given. */
static json_t *
request_of(const struct command *cmd, const struct args *a)
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
	if (a->dest != NULL)
		json_object_set_new(req, "dest", json_string(a->dest));
	if (a->id != NULL)
		json_object_set_new(req, "id", json_string(a->id));
	if (a->all)
		json_object_set_new(req, "all", json_true());
	return req;
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

/*
 * Every online command: sends the request, prints the reply as it came with
 * --json, else the result through the command's printer.
 */
static int
run_online(const struct command *cmd, struct args *a)
{
	char path[1100], err[ERR_MAX], label[64];
	json_t *req = request_of(cmd, a), *reply = NULL, *r;
	const char *e;

	cmd_label(cmd, label, sizeof(label));
	if (req == NULL || socket_path(a, path, sizeof(path)) != PA_OK) {
		json_decref(req);
		return finish(NULL, EXIT_FAILURE);
	}
	if (ctl_client_call(path, req, &reply, err, sizeof(err)) != PA_OK) {
		fprintf(stderr, "pigeonctl %s: %s\n", label, err);
		json_decref(req);
		return finish(reply, EXIT_FAILURE);
	}
	json_decref(req);
	if (a->json) {
		json_dumpf(reply, stdout, JSON_COMPACT);
		putchar('\n');
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		e = json_string_value(json_object_get(reply, "error"));
		fprintf(stderr, "pigeonctl %s: %s\n", label,
		        e != NULL ? e : "pigeond answered with an error");
		return finish(reply, EXIT_FAILURE);
	}
	if (a->json)
		return finish(reply, EXIT_SUCCESS);
	r = json_object_get(reply, "result");
	return finish(reply, cmd->print(cmd, r != NULL ? r : json_null()));
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

static const char *
str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static int
print_done(const struct command *cmd, const json_t *r)
{
	(void)r;
	printf("%s\n", cmd->done);
	return EXIT_SUCCESS;
}

static int
print_reload(const struct command *cmd, const json_t *r)
{
	(void)cmd;
	printf("reloaded: configuration generation %lld\n", num(r, "config_generation"));
	return EXIT_SUCCESS;
}

static int
print_rotate(const struct command *cmd, const json_t *r)
{
	(void)cmd;
	printf("new session-ticket key: generation %lld\n", num(r, "ticket_generation"));
	return EXIT_SUCCESS;
}

static int
print_metrics(const struct command *cmd, const json_t *r)
{
	(void)cmd;
	fputs(str(r, "text") != NULL ? str(r, "text") : "", stdout);
	return EXIT_SUCCESS;
}

static int
print_status(const struct command *cmd, const json_t *r)
{
	const json_t *l = json_object_get(r, "listeners"), *sp = json_object_get(r, "spool");

	(void)cmd;
	printf("version:    %s\n", str(r, "version"));
	printf("uptime:     %llds\n", num(r, "uptime_s"));
	printf("backend:    %s\n", str(r, "backend"));
	printf("workers:    %lld\n", num(r, "workers"));
	printf("hostname:   ");
	print_safe(str(r, "hostname"));
	printf("\nsmtp:       %s\n", str(l, "smtp"));
	printf("control:    %s\n", str(l, "ctl"));
	printf("metrics:    %s\n", str(l, "metrics") != NULL ? str(l, "metrics") : "off");
	printf("telemetry:  %s\n", str(l, "telemetry") != NULL ? str(l, "telemetry") : "off");
	if (json_is_object(json_object_get(r, "dpdk"))) {
		const json_t *d = json_object_get(r, "dpdk");

		printf("port:       %s\n", str(d, "port"));
		printf("steering:   %s\n", str(d, "steering"));
	}
	printf("paused:     %s\n", json_is_true(json_object_get(r, "paused")) ? "yes" : "no");
	printf("config:     generation %lld\n", num(r, "config_generation"));
	printf("spool:      %s (%s, %lld shards, %lld commits, %lld commit failures)\n",
	       str(sp, "health"), str(sp, "dir"), num(sp, "shards"), num(sp, "commits"),
	       num(sp, "commit_failures"));
	/* Why new connections get 421: each shard refusing writes and RocksDB's last word. */
	for (size_t i = 0; i < json_array_size(json_object_get(sp, "unhealthy_shards")); i++) {
		const json_t *u = json_array_get(json_object_get(sp, "unhealthy_shards"), i);

		printf("  shard %lld %s: ", num(u, "shard"), str(u, "state"));
		print_safe(str(u, "error"));
		printf("\n");
	}
	return EXIT_SUCCESS;
}

/* ---- tables ------------------------------------------------------------- */

/* One column: its title, its width, and the member of the row it shows. */
struct column {
	const char *title;
	int width;
	/* "a" or "a.b" (member b of member a); an object member shows the sum of its members */
	const char *key;
};

struct table {
	const char *label_title; /* the first column: each row's label */
	int label_width;         /* at least; a longer label widens the column */
	const struct column *cols;
	size_t ncols;
	const json_t *buckets; /* more columns, one per name: the row's "ages" member */
};

static long long
cell(const json_t *row, const char *key)
{
	const char *dot = strchr(key, '.');
	const json_t *v;
	long long sum = 0;
	const char *k;
	json_t *m;

	if (dot != NULL) {
		char outer[64];

		snprintf(outer, sizeof(outer), "%.*s", (int)(dot - key), key);
		return cell(json_object_get(row, outer), dot + 1);
	}
	v = json_object_get(row, key);
	if (!json_is_object(v))
		return (long long)json_integer_value(v);
	json_object_foreach((json_t *)v, k, m) sum += (long long)json_integer_value(m);
	return sum;
}

/* One line: the titles when row is NULL. */
static void
table_line(const struct table *t, int label_width, const char *label, const json_t *row)
{
	size_t b;
	json_t *name;

	printf("%-*s", label_width, label);
	for (size_t i = 0; i < t->ncols; i++)
		if (row == NULL)
			printf(" %*s", t->cols[i].width, t->cols[i].title);
		else
			printf(" %*lld", t->cols[i].width, cell(row, t->cols[i].key));
	json_array_foreach(t->buckets, b, name)
	{
		if (row == NULL)
			printf(" %8s", json_string_value(name));
		else
			printf(" %8lld",
			       cell(json_object_get(row, "ages"), json_string_value(name)));
	}
	putchar('\n');
}

static void
row_label(const json_t *row, const char *label_key, char *out, size_t len)
{
	const json_t *l = json_object_get(row, label_key);

	if (json_is_string(l))
		snprintf(out, len, "%s", json_string_value(l));
	else
		snprintf(out, len, "%lld", (long long)json_integer_value(l));
}

/* The titles, one line per row (labelled by its member label_key), then total if given. */
static void
table_print(const struct table *t, const json_t *rows, const char *label_key,
            const char *total_label, const json_t *total)
{
	int width = t->label_width;
	char label[512];
	size_t i;
	json_t *row;

	/* Labels are shard and worker numbers and route-map destinations: never client text. */
	json_array_foreach(rows, i, row)
	{
		row_label(row, label_key, label, sizeof(label));
		if ((int)strlen(label) > width)
			width = (int)strlen(label);
	}
	table_line(t, width, t->label_title, NULL);
	json_array_foreach(rows, i, row)
	{
		row_label(row, label_key, label, sizeof(label));
		table_line(t, width, label, row);
	}
	if (total != NULL)
		table_line(t, width, total_label, total);
}

/* One "key value" pair of a counter group, three to a line; `n` counts them. */
static void
print_pair(const char *prefix, const char *key, const char *sub, const json_t *v, int *n)
{
	char label[64];

	snprintf(label, sizeof(label), "%s%s%s", key, sub != NULL ? "." : "",
	         sub != NULL ? sub : "");
	printf("%s%-24s %10lld", *n % 3 == 0 ? prefix : "  ", label,
	       (long long)json_integer_value(v));
	if (++*n % 3 == 0)
		putchar('\n');
}

/* Scalars first, then each nested object's members as "key.member". */
static void
print_counters(const char *prefix, const json_t *obj)
{
	const char *k, *sk;
	json_t *v, *sv;
	int n = 0;

	json_object_foreach((json_t *)obj, k, v) if (!json_is_object(v))
	    print_pair(prefix, k, NULL, v, &n);
	json_object_foreach((json_t *)obj, k, v) if (json_is_object(v))
	{
		json_object_foreach(v, sk, sv) print_pair(prefix, k, sk, sv, &n);
	}
	if (n % 3 != 0)
		putchar('\n');
}

/* Every key the server sends, so that a counter it adds is shown without a change here. */
static void
print_group(const char *what, const json_t *workers, const json_t *total)
{
	size_t i;
	json_t *w;

	json_array_foreach(workers, i, w) if (json_object_get(w, what) != NULL)
	{
		printf("\n%s worker %lld:\n", what, num(w, "worker"));
		print_counters("  ", json_object_get(w, what));
	}
	if (json_array_size(workers) > 1 && json_object_get(total, what) != NULL) {
		printf("\n%s total:\n", what);
		print_counters("  ", json_object_get(total, what));
	}
}

static int
print_stats(const struct command *cmd, const json_t *r)
{
	static const struct column cols[] = {
	    {"OPEN", 6, "conns_open"},
	    {"CONNS", 9, "conns_total"},
	    {"ACCEPTED", 9, "messages_accepted"},
	    {"FAILED", 8, "messages_failed"},
	    {"REFUSED", 7, "refused"},
	    {"BYTES", 12, "bytes_accepted"},
	    {"P50_US", 8, "commit_latency_us.p50"},
	    {"P99_US", 8, "commit_latency_us.p99"},
	    {"P999_US", 8, "commit_latency_us.p999"},
	};
	static const struct table t = {"WORKER", 7, cols, pa_array_size(cols), NULL};
	const json_t *workers = json_object_get(r, "workers"), *total = json_object_get(r, "total");
	const char *k;
	json_t *v;

	(void)cmd;
	table_print(&t, workers, "worker", "total", total);
	printf("\nrefused by reason (total):\n");
	json_object_foreach(json_object_get(total, "refused"), k, v)
	    printf("  %-18s %lld\n", k, (long long)json_integer_value(v));
	printf("connections refused (421): %lld, of which while paused: %lld\n",
	       num(total, "conns_refused"), num(total, "conns_paused"));
	printf("balancers: %lld PROXY headers, %lld XCLIENT; untracked by limits: %lld\n",
	       num(total, "proxy_headers"), num(total, "xclients"), num(total, "limits_untracked"));
	print_group("tls", workers, total);
	print_group("screen", workers, total);
	if (json_is_object(json_object_get(r, "dns"))) {
		printf("\ndns:\n");
		print_counters("  ", json_object_get(r, "dns"));
	}
	if (json_is_object(json_object_get(r, "milter"))) {
		printf("\nmilter:\n");
		print_counters("  ", json_object_get(r, "milter"));
	}
	print_group("tcp", workers, total);
	return EXIT_SUCCESS;
}

static int
print_summary(const struct command *cmd, const json_t *r)
{
	/* The destination table adds the hand-off engine's connections and breaker. */
	static const struct column cols[] = {
	    {"MESSAGES", 9, "messages"},
	    {"BYTES", 12, "bytes"},
	    {"OLDEST_S", 10, "oldest_age_s"},
	    {"DEFERRED", 8, "deferred"},
	    {"HELD", 6, "held"},
	    {"CONNS", 5, "engine.connections"},
	    {"BREAKER_S", 9, "engine.breaker_open_s"},
	};
	/* Format 2: each shard's segment log (docs/spool-format.md, "Reclaiming segments"). */
	static const struct column log_cols[] = {
	    {"SEGMENTS", 8, "log.segments"},
	    {"DISK_BYTES", 12, "log.bytes"},
	    {"LIVE_BYTES", 12, "log.live_bytes"},
	    {"RECLAIMABLE", 12, "log.reclaimable_bytes"},
	    {"RECLAIMED", 9, "log.reclaimed_segments"},
	};
	const json_t *buckets = json_object_get(r, "buckets");
	const struct table shards = {"SHARD", 6, cols, pa_array_size(cols) - 2, buckets};
	const struct table dests = {"DESTINATION", 11, cols, pa_array_size(cols), buckets};
	const struct table logs = {"SHARD", 6, log_cols, pa_array_size(log_cols), NULL};

	(void)cmd;
	table_print(&shards, json_object_get(r, "shards"), "shard", "TOTAL",
	            json_object_get(r, "total"));
	putchar('\n');
	if (json_is_object(json_object_get(json_object_get(r, "total"), "log"))) {
		table_print(&logs, json_object_get(r, "shards"), "shard", "TOTAL",
		            json_object_get(r, "total"));
		putchar('\n');
	}
	table_print(&dests, json_object_get(r, "destinations"), "destination", NULL, NULL);
	return EXIT_SUCCESS;
}

/* ---- listings ----------------------------------------------------------- */

static void
ls_header(void)
{
	printf("%-27s %5s %10s %-27s %s %s\n", "QUEUE-ID", "SHARD", "SIZE", "ARRIVAL", "FROM",
	       "RECIPIENTS");
}

/* One listing line, the same for a stopped spool and a running pigeond: an entry of spool.ls. */
static void
ls_line(const json_t *e)
{
	char id[40];
	size_t i;
	json_t *rcpt;

	/* postqueue's mark: '!' right after the id of a held message. */
	snprintf(id, sizeof(id), "%s%s", str(e, "id"),
	         json_is_true(json_object_get(e, "held")) ? "!" : "");
	/* 27: a queue id (26, docs/spool-format.md) and the held mark. */
	printf("%-27s %5lld %10lld %s <", id, num(e, "shard"), num(e, "size"), str(e, "arrival"));
	print_safe(str(e, "from"));
	printf(">");
	json_array_foreach(json_object_get(e, "rcpt"), i, rcpt)
	{
		printf("%s<", i == 0 ? " " : ",");
		print_safe(json_string_value(rcpt));
		printf(">");
	}
	putchar('\n');
}

static int
print_ls(const struct command *cmd, const json_t *r)
{
	size_t i;
	json_t *e;

	(void)cmd;
	ls_header();
	json_array_foreach(json_object_get(r, "entries"), i, e) ls_line(e);
	if (json_is_true(json_object_get(r, "truncated")))
		fprintf(stderr,
		        "pigeonctl spool ls: more messages match: raise --limit or filter\n");
	return EXIT_SUCCESS;
}

/* A stopped spool's entry as spool.ls gives it (no hand-off state: pigeond is not running). */
static json_t *
entry_json(const struct spool_entry *e)
{
	json_t *rcpt = json_array();
	char arrival[32];

	for (size_t i = 0; rcpt != NULL && i < e->nrcpt; i++)
		if (json_array_append_new(rcpt, ctl_json_lossy(e->rcpts[i])) != 0) {
			json_decref(rcpt);
			rcpt = NULL;
		}
	if (rcpt == NULL)
		return NULL;
	ctl_format_time(e->arrival_us, arrival);
	return json_pack("{s:s, s:I, s:I, s:o, s:o, s:s, s:I, s:o, s:o}", "id", e->queue_id,
	                 "shard", (json_int_t)e->shard, "size", (json_int_t)e->size, "from",
	                 ctl_json_lossy(e->mail_from), "rcpt", rcpt, "arrival", arrival,
	                 "arrival_us", (json_int_t)e->arrival_us, "client",
	                 ctl_json_lossy(e->client_addr), "helo", ctl_json_lossy(e->helo));
}

static int
ls_offline_entry(const struct spool_entry *e, void *arg)
{
	const struct args *a = arg;
	json_t *obj = entry_json(e);

	if (obj == NULL)
		return PA_ERROR;
	if (a->json) {
		json_dumpf(obj, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		ls_line(obj);
	}
	json_decref(obj);
	return ferror(stdout) ? PA_ERROR : PA_OK;
}

static int
ls_offline(const struct command *cmd, struct args *a)
{
	char err[ERR_MAX] = "";
	int rc;

	if (a->from || a->rcpt || a->dest || a->min_age >= 0 || a->max_age >= 0 || a->limit > 0 ||
	    a->shard >= 0)
		return usage_error(cmd, "filters need a running pigeond (no --dir)");
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

/* ---- hold, release, retry, delete --------------------------------------- */

static int
print_op(const struct command *cmd, const json_t *r)
{
	long long n = num(r, "messages");
	const char *op = cmd->name;

	if (json_object_get(r, "retrying") != NULL) {
		printf("every queued message is due for hand-off now\n");
		return EXIT_SUCCESS;
	}
	if (json_object_get(r, "held") != NULL) { /* whole shards */
		const json_t *shard = json_object_get(r, "shard");
		const char *verb = json_is_true(json_object_get(r, "held")) ? "held" : "released";

		if (json_is_integer(shard))
			printf("hand-off of shard %lld %s", (long long)json_integer_value(shard),
			       verb);
		else
			printf("hand-off of every shard %s", verb);
		if (json_object_get(r, "messages") != NULL)
			printf("; %lld held message cop%s released", n, n == 1 ? "y" : "ies");
		putchar('\n');
	} else if (str(r, "id") != NULL) {
		printf("%s %s: %lld cop%s; the hand-off engine applies it at once\n", op,
		       str(r, "id"), n, n == 1 ? "y" : "ies");
	} else {
		printf("%s: %lld message cop%s; the hand-off engine applies it at once\n", op, n,
		       n == 1 ? "y" : "ies");
	}
	if (json_is_true(json_object_get(r, "truncated")))
		fprintf(stderr, "pigeonctl spool %s: more messages match: run it again\n", op);
	return EXIT_SUCCESS;
}

/* ---- show --------------------------------------------------------------- */

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
show_offline(const struct command *cmd, struct args *a)
{
	struct show s = {false, false};
	char err[ERR_MAX] = "";
	int rc = spool_scan_id(a->dir, a->id, (int)a->shard, show_entry, &s, err, sizeof(err));

	(void)cmd;
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
print_show(const struct command *cmd, const json_t *r)
{
	const char *b64 = str(r, "data_base64");
	uint8_t *data;
	size_t len;
	int rc = EXIT_SUCCESS;

	(void)cmd;
	data = b64 != NULL ? ctl_base64_decode(b64, strlen(b64), &len) : NULL;
	if (data == NULL) {
		fprintf(stderr, "pigeonctl spool show: the reply holds no valid message data\n");
		return EXIT_FAILURE;
	}
	if (fwrite(data, 1, len, stdout) != len) {
		perror("pigeonctl spool show: writing stdout");
		rc = EXIT_FAILURE;
	}
	free(data);
	return rc;
}

/* Reads the command line, then runs the command it names; see the promise at the top. */
static int
run(struct cmdline *cl)
{
	const struct command *cmd;
	int used = 0, rc;

	/* `pigeonctl help [GROUP COMMAND]` is `--help`. */
	if (cl->nwords > 0 && strcmp(cl->words[0], "help") == 0) {
		cl->a.help = true;
		cl->words++;
		cl->nwords--;
	}
	cmd = find_command(cl, &used);
	if (cl->err[0] != '\0' && cmd != NULL)
		return usage_error(cmd, cl->err);
	if (cl->err[0] != '\0') {
		fprintf(stderr, "pigeonctl: %s\n(pigeonctl --help lists commands and options)\n",
		        cl->err);
		return EXIT_USAGE;
	}
	if (cl->a.version) {
		printf("pigeonctl %s\n", PA_VERSION);
		return EXIT_SUCCESS;
	}
	if (cmd == NULL && cl->a.help &&
	    (cl->nwords == 0 || (cl->nwords == 1 && is_group(cl->words[0])))) {
		usage(stdout);
		return EXIT_SUCCESS;
	}
	if (cmd == NULL && cl->nwords == 0) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (cmd == NULL && cl->nwords == 1 && is_group(cl->words[0])) {
		fprintf(stderr, "pigeonctl: %s needs a command:", cl->words[0]);
		for (size_t i = 0; i < pa_array_size(commands); i++)
			if (commands[i].group != NULL &&
			    strcmp(commands[i].group, cl->words[0]) == 0)
				fprintf(stderr, " %s", commands[i].name);
		fprintf(stderr, "\n(pigeonctl --help lists commands and options)\n");
		return EXIT_USAGE;
	}
	if (cmd == NULL) {
		fprintf(stderr, "pigeonctl: unknown command: %s%s%s\n", cl->words[0],
		        cl->nwords > 1 ? " " : "", cl->nwords > 1 ? cl->words[1] : "");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (cl->a.help) {
		command_usage(stdout, "usage: ", cmd);
		return EXIT_SUCCESS;
	}
	rc = check_args(cmd, cl, used);
	if (rc != EXIT_SUCCESS)
		return rc;
	if (cl->a.dir != NULL && cmd->offline != NULL)
		return cmd->offline(cmd, &cl->a);
	return run_online(cmd, &cl->a);
}

int
main(int argc, char **argv)
{
	struct cmdline cl;
	const char **words;
	int rc;

	if (read_cmdline(argc, argv, &cl) != PA_OK)
		return EXIT_FAILURE;
	words = cl.words; /* run() may step past a leading "help" */
	rc = run(&cl);
	free(words);
	return rc;
}
