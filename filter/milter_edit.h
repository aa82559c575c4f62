/*
 * milter_edit.h: a stored message's header section as a milter sees it, and
 * the header edits (and new body) milters ask for, applied.
 *
 * The message is what the SMTP engine hands over (smtp_session.h): our
 * Received: header first, then the client's header fields, an empty line
 * and the body, CRLF line ends.  A field is a line "name:" and the lines
 * after it that start with a space or tab (RFC 5322 2.2.3); the section
 * ends at the first line that is neither (normally the empty line, which
 * then belongs to the body side).
 *
 * Edits promise: Received: stays first and unchanged; added and inserted
 * fields follow it, in the order the filters sent them; a change names a
 * field by name and occurrence (1-based, counted in the message as
 * received, Received: included) and replaces its value, or deletes the
 * field when the value is empty, or adds the field at the end of the
 * section when there is no such occurrence (libmilter's smfi_chgheader);
 * every other octet is copied as it was.  A value's bare LF folds become
 * CRLF.  Pure functions, no allocation but the output buffer's.
 */
#ifndef PA_MILTER_EDIT_H
#define PA_MILTER_EDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pa_buf;

struct milter_field {
	size_t off, len;             /* the whole field, its CRLF included */
	size_t name_len;             /* name at data + off */
	size_t value_off, value_len; /* after the colon, without the final CRLF */
};

/*
 * The next field at *pos; false at the end of the section, with *pos where
 * the body side starts (at the empty line, when there is one).
 */
bool milter_next_field(const uint8_t *data, size_t size, size_t *pos, struct milter_field *f);

enum milter_edit_kind {
	MILTER_EDIT_ADD = 1, /* SMFIR_ADDHEADER, SMFIR_INSHEADER */
	MILTER_EDIT_CHANGE,  /* SMFIR_CHGHEADER */
};

/*
 * Appends one edit to a list kept in a pa_buf (the list is opaque bytes).
 * PA_ERROR when the buffer's max is reached.
 */
int milter_edit_push(struct pa_buf *edits, enum milter_edit_kind kind, uint32_t index,
                     const char *name, size_t name_len, const char *value, size_t value_len);

/*
 * Writes the message data[0..size) with the edits applied into out (reset
 * first), and with body[0..body_len) after the header section's empty line
 * instead of the message's own body when body is not NULL (SMFIR_REPLBODY;
 * the caller checked its line ends: a final CRLF is added when it has
 * none).  PA_ERROR when out's max is reached or memory is short.
 */
int milter_edit_apply(const uint8_t *data, size_t size, const uint8_t *edits, size_t edits_len,
                      const uint8_t *body, size_t body_len, struct pa_buf *out);

/* Whether every CR of p[0..len) is followed by LF and every LF preceded by CR. */
bool milter_crlf_only(const uint8_t *p, size_t len);

#endif
