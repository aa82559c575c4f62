/*
 * pigeonctl.c: the operator tool.
 *
 * `pigeonctl GROUP COMMAND [options]`; every command is one row of the
 * command table, so commands that talk to a running pigeond over its control
 * socket (status, stats, pause, ...) slot in next to the offline spool ones.
 *
 * What it promises: exit 0 on success, 1 when the command failed, 2 on a usage
 * error, with the reason on stderr; `spool` commands only read the spool
 * (pigeond must be stopped) and `spool show` writes the stored bytes
 * unchanged; text output never passes control characters from the spool to
 * the terminal, and --json output is built with jansson, one compact object
 * per line.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/pa.h"
#include "spool/spool.h"

#define EXIT_USAGE 2
#define ERR_MAX 1024

struct command {
	const char *group;
	const char *name;
	const char *args;
	const char *help;
	int (*run)(const struct command *cmd, int argc, char **argv); /* argv[0] is the name */
};

static int cmd_spool_ls(const struct command *cmd, int argc, char **argv);
static int cmd_spool_show(const struct command *cmd, int argc, char **argv);

static const struct command commands[] = {
    {"spool", "ls", "--dir DIR [--json]",
     "list every message copy of a stopped spool, one per line", cmd_spool_ls},
    {"spool", "show", "--dir DIR [--shard N] QUEUE-ID",
     "write the stored message (Received: header and content) to stdout", cmd_spool_show},
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: pigeonctl GROUP COMMAND [options]\n\ncommands:\n");
	for (size_t i = 0; i < pa_array_size(commands); i++)
		fprintf(f, "  pigeonctl %s %s %s\n      %s\n", commands[i].group, commands[i].name,
		        commands[i].args, commands[i].help);
}

static int
usage_error(const struct command *cmd, const char *what)
{
	fprintf(stderr, "pigeonctl %s %s: %s\nusage: pigeonctl %s %s %s\n", cmd->group, cmd->name,
	        what, cmd->group, cmd->name, cmd->args);
	return EXIT_USAGE;
}

/* Options shared by the spool commands. */
struct spool_args {
	const char *dir;
	bool json;
	long shard; /* -1: every shard */
	const char *queue_id;
};

/* Parses argv into a; allowed lists the options this command takes. */
static int
parse_spool_args(const struct command *cmd, int argc, char **argv, const char *allowed,
                 struct spool_args *a)
{
	static const struct option opts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"json", no_argument, NULL, 'j'},
	    {"shard", required_argument, NULL, 's'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	*a = (struct spool_args){NULL, false, -1, NULL};
	opterr = 0;
	optind = 0; /* GNU getopt: start afresh */
	while ((c = getopt_long(argc, argv, "-", opts, NULL)) != -1) {
		char *end;

		if (c != 1 && (c == '?' || c == ':' || strchr(allowed, c) == NULL))
			return usage_error(cmd, "unknown option or missing argument");
		switch (c) {
		case 1: /* a positional argument, in order */
			if (a->queue_id != NULL || strchr(allowed, 'q') == NULL)
				return usage_error(cmd, "unexpected argument");
			a->queue_id = optarg;
			break;
		case 'd':
			a->dir = optarg;
			break;
		case 'j':
			a->json = true;
			break;
		case 's':
			a->shard = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || a->shard < 0 ||
			    a->shard >= SPOOL_MAX_SHARDS)
				return usage_error(cmd, "--shard takes a shard number");
			break;
		}
	}
	if (a->dir == NULL)
		return usage_error(cmd, "--dir is required");
	if (strchr(allowed, 'q') != NULL && a->queue_id == NULL)
		return usage_error(cmd, "a queue id is required");
	return EXIT_SUCCESS;
}

/* ISO 8601 UTC with microseconds: arrival times sort as text and need no time zone. */
static void
format_time(uint64_t us, char out[32])
{
	time_t secs = (time_t)(us / 1000000u);
	struct tm tm;
	char base[24];

	if (gmtime_r(&secs, &tm) == NULL ||
	    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(out, 32, "?");
		return;
	}
	snprintf(out, 32, "%s.%06uZ", base, (unsigned)(us % 1000000u));
}

/* Spool strings come from SMTP clients: never let them drive the terminal. */
static void
print_safe(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static bool
utf8_valid(const char *p, size_t n)
{
	json_t *t = json_stringn(p, n);

	json_decref(t);
	return t != NULL;
}

/*
 * jansson refuses invalid UTF-8, and a hostile client can put any bytes in an
 * address: keep the valid sequences, replace every other byte with U+FFFD.
 */
static json_t *
json_lossy(const char *s)
{
	json_t *j = json_string(s);
	size_t len = strlen(s), o = 0;
	char *copy;

	if (j != NULL)
		return j;
	copy = malloc(len * 3 + 1);
	if (copy == NULL)
		return NULL;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80                 ? 1
		           : c >= 0xc2 && c <= 0xdf ? 2
		           : (c & 0xf0) == 0xe0     ? 3
		           : c >= 0xf0 && c <= 0xf4 ? 4
		                                    : 0;

		if (n != 0 && i + n <= len && utf8_valid(s + i, n)) {
			memcpy(copy + o, s + i, n);
			o += n;
			i += n;
		} else {
			memcpy(copy + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	j = json_stringn(copy, o);
	free(copy);
	return j;
}

static int
ls_json(const struct spool_entry *e)
{
	json_t *rcpt = json_array(), *obj;
	char arrival[32];
	int rc;

	for (size_t i = 0; rcpt != NULL && i < e->nrcpt; i++)
		if (json_array_append_new(rcpt, json_lossy(e->rcpts[i])) != 0) {
			json_decref(rcpt);
			rcpt = NULL;
		}
	if (rcpt == NULL)
		return PA_ERROR;
	format_time(e->arrival_us, arrival);
	obj = json_pack("{s:s, s:I, s:I, s:o, s:o, s:s, s:I, s:o, s:o}", "id", e->queue_id, "shard",
	                (json_int_t)e->shard, "size", (json_int_t)e->size, "from",
	                json_lossy(e->mail_from), "rcpt", rcpt, "arrival", arrival, "arrival_us",
	                (json_int_t)e->arrival_us, "client", json_lossy(e->client_addr), "helo",
	                json_lossy(e->helo));
	if (obj == NULL)
		return PA_ERROR;
	rc = json_dumpf(obj, stdout, JSON_COMPACT) == 0 && putchar('\n') != EOF ? PA_OK : PA_ERROR;
	json_decref(obj);
	return rc;
}

static int
ls_text(const struct spool_entry *e)
{
	char arrival[32];

	format_time(e->arrival_us, arrival);
	printf("%-24s %5u %10zu %s <", e->queue_id, e->shard, e->size, arrival);
	print_safe(e->mail_from);
	printf(">");
	for (size_t i = 0; i < e->nrcpt; i++) {
		printf("%s<", i == 0 ? " " : ",");
		print_safe(e->rcpts[i]);
		printf(">");
	}
	return putchar('\n') == EOF ? PA_ERROR : PA_OK;
}

static int
ls_entry(const struct spool_entry *e, void *arg)
{
	const struct spool_args *a = arg;

	return a->json ? ls_json(e) : ls_text(e);
}

static int
cmd_spool_ls(const struct command *cmd, int argc, char **argv)
{
	struct spool_args a;
	char err[ERR_MAX] = "";
	int rc = parse_spool_args(cmd, argc, argv, "dj", &a);

	if (rc != EXIT_SUCCESS)
		return rc;
	if (!a.json)
		printf("%-24s %5s %10s %-27s %s %s\n", "QUEUE-ID", "SHARD", "SIZE", "ARRIVAL",
		       "FROM", "RECIPIENTS");
	rc = spool_scan(a.dir, ls_entry, &a, err, sizeof(err));
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
cmd_spool_show(const struct command *cmd, int argc, char **argv)
{
	struct spool_args a;
	struct show s = {false, false};
	char err[ERR_MAX] = "";
	int rc = parse_spool_args(cmd, argc, argv, "dsq", &a);

	if (rc != EXIT_SUCCESS)
		return rc;
	rc = spool_scan_id(a.dir, a.queue_id, (int)a.shard, show_entry, &s, err, sizeof(err));
	if (rc == PA_ERROR) {
		fprintf(stderr, "pigeonctl spool show: %s\n", err[0] != '\0' ? err : "read failed");
		return EXIT_FAILURE;
	}
	if (s.write_failed || fflush(stdout) == EOF || ferror(stdout)) {
		perror("pigeonctl spool show: writing stdout");
		return EXIT_FAILURE;
	}
	if (!s.found) {
		if (a.shard >= 0)
			fprintf(stderr, "pigeonctl spool show: no message %s in shard %ld of %s\n",
			        a.queue_id, a.shard, a.dir);
		else
			fprintf(stderr, "pigeonctl spool show: no message %s in %s\n", a.queue_id,
			        a.dir);
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
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
	if (argc < 3) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < pa_array_size(commands); i++)
		if (strcmp(argv[1], commands[i].group) == 0 &&
		    strcmp(argv[2], commands[i].name) == 0)
			return commands[i].run(&commands[i], argc - 2, argv + 2);
	fprintf(stderr, "pigeonctl: unknown command: %s %s\n", argv[1], argv[2]);
	usage(stderr);
	return EXIT_USAGE;
}
