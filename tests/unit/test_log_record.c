/*
 * test_log_record.c: a log line read into named fields, and its JSON form
 * (core/log_record.h): the stable names, the first key winning over text
 * from the network, and an object that always parses (jansson), whatever
 * the octets and however short the room.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log_record.h"

#define QID "P019C0A1B2C3D4E00000000001"

static const struct log_field *
field(const struct log_record *rec, const char *name)
{
	for (size_t i = 0; i < rec->nfields; i++)
		if (strcmp(rec->fields[i].name, name) == 0)
			return &rec->fields[i];
	return NULL;
}

static void
assert_field(const struct log_record *rec, const char *name, const char *value, bool number)
{
	const struct log_field *f = field(rec, name);

	if (f == NULL)
		fail_msg("no field %s", name);
	assert_int_equal(f->value_len, strlen(value));
	assert_memory_equal(f->value, value, f->value_len);
	assert_int_equal(f->number, number);
}

static void
parse(struct log_record *rec, const char *text)
{
	memset(rec, 0, sizeof(*rec));
	log_record_parse(rec, text, strlen(text));
	rec->ident = "pigeond";
	rec->pid = 42;
	rec->time_us = 1796659352123456ull;
}

/* The line as JSON, parsed back by jansson; fails the test when it is not one object. */
static json_t *
as_json(const struct log_record *rec, size_t size)
{
	char *out = malloc(size);
	json_error_t error;
	json_t *obj;
	size_t n;

	assert_non_null(out);
	n = log_record_json(rec, "info", out, size);
	assert_true(n <= size);
	assert_true(n >= 2 && out[n - 1] == '\n' && out[n - 2] == '}');
	assert_null(memchr(out, '\n', n - 1)); /* one line */
	obj = json_loadb(out, n, JSON_ALLOW_NUL, &error);
	if (obj == NULL)
		fail_msg("not JSON (%s): %.*s", error.text, (int)n, out);
	assert_true(json_is_object(obj));
	free(out);
	return obj;
}

static void
test_accepted_text(void **state)
{
	struct log_record rec;

	(void)state;
	parse(&rec, QID ": accepted client=198.51.100.7 from=<a@example.org> nrcpt=2 size=4711");
	assert_string_equal(rec.event, "accepted");
	assert_int_equal(rec.queue_id_len, strlen(QID));
	assert_memory_equal(rec.queue_id, QID, rec.queue_id_len);
	assert_field(&rec, "client", "198.51.100.7", false);
	assert_field(&rec, "sender", "a@example.org", false);
	assert_field(&rec, "rcpt_count", "2", true);
	assert_field(&rec, "size", "4711", true);

	json_t *obj = as_json(&rec, 4096);

	assert_string_equal(json_string_value(json_object_get(obj, "time")),
	                    "2026-12-07T16:02:32.123456Z");
	assert_string_equal(json_string_value(json_object_get(obj, "level")), "info");
	assert_int_equal(json_integer_value(json_object_get(obj, "pid")), 42);
	assert_string_equal(json_string_value(json_object_get(obj, "queue_id")), QID);
	assert_int_equal(json_integer_value(json_object_get(obj, "rcpt_count")), 2);
	assert_int_equal(json_integer_value(json_object_get(obj, "size")), 4711);
	assert_string_equal(json_string_value(json_object_get(obj, "sender")), "a@example.org");
	assert_null(json_object_get(obj, "truncated"));
	json_decref(obj);
}

static void
test_events(void **state)
{
	static const struct {
		const char *text, *event;
	} cases[] = {
	    {"refused client=198.51.100.9 reason=relay_denied", "refused"},
	    {"tls handshake failed client=198.51.100.9: no shared cipher", "tls_handshake_failed"},
	    {"hand-off: shard 3 paused (queued 10 bytes)", "hand_off"},
	    {"reloaded configuration (generation 2)", "reloaded_configuration"},
	    {"ready listen=127.0.0.1:2525 backend=kernel workers=1", "ready"},
	    {"stopped", "stopped"},
	    {QID ": to=<b@example.org> relay=lmtp status=sent (250 ok)", "delivery"},
	    {QID ": shard 2 copy handed off completely, deleted", "shard"},
	    {"42 things", "message"},
	    {"", "message"},
	};
	struct log_record rec;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		parse(&rec, cases[i].text);
		if (strcmp(rec.event, cases[i].event) != 0)
			fail_msg("'%s': event '%s', not '%s'", cases[i].text, rec.event,
			         cases[i].event);
	}
}

/* Text after a field, or in parentheses, never replaces it nor takes a record name. */
static void
test_first_key_wins(void **state)
{
	struct log_record rec;

	(void)state;
	parse(&rec, "refused client=198.51.100.9 reason=syntax detail=x reason=forged "
	            "client=1.1.1.1 time=0 event=x msg=y queue_id=z");
	assert_string_equal(rec.event, "refused");
	assert_field(&rec, "reason", "syntax", false);
	assert_field(&rec, "client", "198.51.100.9", false);
	assert_field(&rec, "detail", "x", false);
	assert_null(field(&rec, "time"));
	assert_null(field(&rec, "event"));
	assert_null(field(&rec, "msg"));
	assert_null(field(&rec, "queue_id"));

	parse(&rec, QID ": to=<b@example.org> relay=lmtp status=deferred attempts=3 "
	                "(451 try later status=sent relay=evil)");
	assert_field(&rec, "rcpt", "b@example.org", false);
	assert_field(&rec, "status", "deferred", false);
	assert_field(&rec, "relay", "lmtp", false);
	assert_field(&rec, "attempts", "3", true);
	assert_int_equal(rec.nfields, 4);

	/* Leading zeros are no JSON number. */
	parse(&rec, "ctl mode=0660 n=0");
	assert_field(&rec, "mode", "0660", false);
	assert_field(&rec, "n", "0", true);
}

static void
test_json_escapes(void **state)
{
	const char text[] =
	    "refused client=198.51.100.9 reason=syntax detail=\"q\\\x01\x7f\xc3\xa9\xff"
	    "\xed\xa0\x80\xf0\x9f\x93\xae\n{\"x\":1}";
	struct log_record rec;
	json_t *obj;

	(void)state;
	parse(&rec, text);
	obj = as_json(&rec, 4096);
	/* Valid UTF-8 kept, every other octet as the code point of its value. */
	assert_string_equal(json_string_value(json_object_get(obj, "msg")),
	                    "refused client=198.51.100.9 reason=syntax detail=\"q\\\x01\x7f\xc3\xa9"
	                    "\xc3\xbf\xc3\xad\xc2\xa0\xc2\x80\xf0\x9f\x93\xae\n{\"x\":1}");
	json_decref(obj);
}

/* However small the room and whatever the octets, one whole object and one newline. */
static void
test_json_always_whole(void **state)
{
	char text[1500];
	struct log_record rec;
	unsigned seed = 7;

	(void)state;
	for (unsigned round = 0; round < 400; round++) {
		size_t len = 0, size = 256 + (round * 37) % 1800;

		len +=
		    (size_t)snprintf(text, sizeof(text), QID ": accepted client=%u from=<", round);
		while (len < sizeof(text) - 40) {
			seed = seed * 1103515245u + 12345u;
			text[len++] = (char)(seed >> 16);
		}
		len += (size_t)snprintf(text + len, sizeof(text) - len, "> nrcpt=1 size=%u", round);
		memset(&rec, 0, sizeof(rec));
		log_record_parse(&rec, text, len);
		rec.ident = "pigeond";
		json_t *obj = as_json(&rec, size);

		assert_string_equal(json_string_value(json_object_get(obj, "level")), "info");
		if (size < 1500)
			assert_true(json_is_true(json_object_get(obj, "truncated")));
		json_decref(obj);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accepted_text),     cmocka_unit_test(test_events),
	    cmocka_unit_test(test_first_key_wins),    cmocka_unit_test(test_json_escapes),
	    cmocka_unit_test(test_json_always_whole),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
