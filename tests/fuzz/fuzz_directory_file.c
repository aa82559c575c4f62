/*
 * fuzz_directory_file.c: the directory.file parser (directory/directory_file.c)
 * and the snapshot it builds.
 *
 * The first octet picks case-sensitive local parts or not; the rest is the
 * file, not NUL-terminated.  A file that parses becomes a snapshot, and the
 * first word of every line is looked up in it.  What must hold besides "no
 * crash": a refused file names the line; answers are NUL-terminated; alias
 * chains are resolved when the snapshot is built, so the canonical address an
 * alias answers is never itself an alias.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "directory/directory.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static void
lookup(const struct dir_snapshot *s, const char *addr)
{
	struct dir_answer a;
	enum dir_status st = dir_snapshot_lookup(s, addr, &a);

	CHECK(st <= DIR_UNAVAILABLE);
	if (st != DIR_MAILBOX && st != DIR_ALIAS)
		return;
	CHECK(memchr(a.canonical, '\0', sizeof(a.canonical)) != NULL);
	CHECK(memchr(a.store, '\0', sizeof(a.store)) != NULL);
	if (st == DIR_ALIAS)
		CHECK(dir_snapshot_lookup(s, a.canonical, NULL) != DIR_ALIAS);
}

/* Looks up the first word (up to a blank or ':') of every line. */
static void
lookup_words(const struct dir_snapshot *s, const char *text, size_t len)
{
	char word[300];
	size_t i = 0;

	while (i < len) {
		size_t n = 0;

		while (i < len && (text[i] == ' ' || text[i] == '\t'))
			i++;
		while (i < len && text[i] != ' ' && text[i] != '\t' && text[i] != ':' &&
		       text[i] != '\n' && n < sizeof(word) - 1)
			word[n++] = text[i++];
		word[n] = '\0';
		lookup(s, word);
		while (i < len && text[i++] != '\n')
			;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dir_builder *b;
	struct dir_snapshot *s;
	char err[512] = "";
	char *text;
	size_t len;

	if (size < 1)
		return 0;
	len = size - 1;
	/* An exact-size copy: the parser must not read past len (there is no NUL). */
	text = malloc(len > 0 ? len : 1);
	CHECK(text != NULL);
	memcpy(text, data + 1, len);
	b = dir_builder_new(data[0] & 1, 0);
	CHECK(b != NULL);
	if (directory_file_parse(b, text, len, "fuzz", err, sizeof(err)) != PA_OK) {
		CHECK(strncmp(err, "fuzz:", 5) == 0);
		dir_builder_free(b);
		free(text);
		return 0;
	}
	/* The builder is consumed either way; NULL only with a reason (an alias loop). */
	s = dir_builder_finish(b, err, sizeof(err));
	if (s != NULL) {
		lookup_words(s, text, len);
		dir_snapshot_free(s);
	} else {
		CHECK(err[0] != '\0');
	}
	free(text);
	return 0;
}
