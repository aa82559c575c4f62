/*
 * directory_file.c: the directory.file source, one entry per line.
 *
 *   # comment                      (a '#' that starts a token starts a comment)
 *   user@example.com               a mailbox
 *   user@example.com store-3       a mailbox and the store that holds it
 *   @example.org                   every address of example.org exists
 *   alias@example.com: user@example.com
 *
 * The input is treated as hostile (the parser is a fuzz target): lines are
 * bounded, NUL and control octets are refused, and the first bad line stops
 * the parse with "NAME:LINE: reason".  Nothing is guessed or skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pa.h"
#include "core/read_file.h"
#include "directory/directory.h"

#define LINE_MAX_OCTETS 1024
#define FILE_MAX_OCTETS (8ULL << 30)

struct cursor {
	const char *p, *end;
};

static void
skip_blanks(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
		c->p++;
}

static bool
at_end(const struct cursor *c)
{
	return c->p == c->end || *c->p == '#';
}

/* A token ends at a blank, the end of the line, or (when colon_ends) a ':'. */
static size_t
token(struct cursor *c, bool colon_ends, const char **start)
{
	*start = c->p;
	while (c->p < c->end && *c->p != ' ' && *c->p != '\t' && !(colon_ends && *c->p == ':'))
		c->p++;
	return (size_t)(c->p - *start);
}

static int
parse_line(struct dir_builder *b, const char *line, size_t len, char *err, size_t errlen)
{
	struct cursor c = {line, line + len};
	const char *first, *second = NULL;
	size_t first_len, second_len = 0;
	bool alias = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)line[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			snprintf(err, errlen, "control octet 0x%02x at column %zu", ch, i + 1);
			return PA_ERROR;
		}
	}
	skip_blanks(&c);
	if (at_end(&c))
		return PA_OK;
	first_len = token(&c, true, &first);
	skip_blanks(&c);
	if (c.p < c.end && *c.p == ':') {
		alias = true;
		c.p++;
		skip_blanks(&c);
		if (at_end(&c)) {
			snprintf(err, errlen, "alias '%.*s' has no canonical address",
			         (int)first_len, first);
			return PA_ERROR;
		}
	}
	if (!at_end(&c)) {
		second_len = token(&c, false, &second);
		skip_blanks(&c);
	}
	if (!at_end(&c)) {
		snprintf(err, errlen, "unexpected '%.*s' after the entry",
		         (int)(c.end - c.p > 64 ? 64 : c.end - c.p), c.p);
		return PA_ERROR;
	}
	if (first_len == 0) {
		snprintf(err, errlen, "no address before ':'");
		return PA_ERROR;
	}
	if (first[0] == '@') {
		if (alias || second != NULL) {
			snprintf(err, errlen, "a domain line ('%.*s') takes nothing after it",
			         (int)first_len, first);
			return PA_ERROR;
		}
		return dir_builder_add_catch_all(b, first + 1, first_len - 1, err, errlen);
	}
	if (alias)
		return dir_builder_add_alias(b, first, first_len, second, second_len, err, errlen);
	return dir_builder_add_mailbox(b, first, first_len, second, second_len, err, errlen);
}

int
directory_file_parse(struct dir_builder *b, const char *data, size_t len, const char *name,
                     char *err, size_t errlen)
{
	char why[512];
	size_t pos = 0;
	unsigned long lineno = 0;

	while (pos < len) {
		const char *line = data + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t linelen = nl ? (size_t)(nl - line) : len - pos;

		lineno++;
		pos += linelen + (nl != NULL);
		if (linelen > 0 && line[linelen - 1] == '\r')
			linelen--;
		if (linelen > LINE_MAX_OCTETS) {
			snprintf(err, errlen, "%s:%lu: line longer than %d octets", name, lineno,
			         LINE_MAX_OCTETS);
			return PA_ERROR;
		}
		if (parse_line(b, line, linelen, why, sizeof(why)) != PA_OK) {
			snprintf(err, errlen, "%s:%lu: %s", name, lineno, why);
			return PA_ERROR;
		}
	}
	return PA_OK;
}

int
directory_file_load(struct dir_builder *b, const char *path, char *err, size_t errlen)
{
	char *data;
	size_t len;
	int rc;

	if (pa_read_file(path, FILE_MAX_OCTETS, &data, &len, err, errlen) != PA_OK)
		return PA_ERROR;
	rc = directory_file_parse(b, data, len, path, err, errlen);
	free(data);
	return rc;
}
