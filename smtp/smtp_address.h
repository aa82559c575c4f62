/*
 * smtp_address.h: parsing of the MAIL FROM / RCPT TO arguments (internal to
 * smtp/).  Pure functions over a NUL-terminated argument that they split in
 * place; no session, no allocation.
 */
#ifndef SMTP_ADDRESS_H
#define SMTP_ADDRESS_H

#include <stdbool.h>
#include <stdint.h>

enum smtp_addr_status {
	SMTP_ADDR_OK,
	SMTP_ADDR_SYNTAX,         /* not "FROM:<...>" / "TO:<...>" */
	SMTP_ADDR_BAD_MAILBOX,    /* what is inside the brackets does not parse */
	SMTP_ADDR_PATH_TOO_LONG,  /* RFC 5321 4.5.3.1.3 */
	SMTP_ADDR_LOCAL_TOO_LONG, /* RFC 5321 4.5.3.1.1 */
	SMTP_ADDR_NON_ASCII,      /* 8-bit address without SMTPUTF8 (RFC 6531) */
	SMTP_ADDR_BAD_PARAM,      /* malformed esmtp-param or bad value */
	SMTP_ADDR_UNKNOWN_PARAM,  /* RFC 5321 4.1.1.11: 555 */
};

#define SMTP_PATH_NULL_OK 0x1       /* MAIL FROM:<> */
#define SMTP_PATH_UTF8 0x2          /* SMTPUTF8 was given on MAIL */
#define SMTP_PATH_POSTMASTER_OK 0x4 /* RCPT TO:<Postmaster>, RFC 5321 4.1.1.3 */

struct smtp_mail_params {
	bool has_size;
	uint64_t size;
	bool body_8bitmime;
	bool smtputf8;
};

/*
 * Splits `arg` ("FROM:<path> params"; keyword is "FROM:" or "TO:") in place:
 * *path is what was inside the angle brackets, *params the rest.
 */
enum smtp_addr_status smtp_path_split(char *arg, const char *keyword, char **path, char **params);

/*
 * Checks a path and sets *mailbox to it without any source route (it points
 * into path).  flags: SMTP_PATH_*.
 */
enum smtp_addr_status smtp_path_check(char *path, unsigned flags, char **mailbox);

/* MAIL parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8). *bad names the culprit. */
enum smtp_addr_status smtp_mail_params_parse(char *params, struct smtp_mail_params *out,
                                             char **bad);

/* RCPT parameters: none is supported, so any well-formed one is unknown. */
enum smtp_addr_status smtp_rcpt_params_parse(char *params, char **bad);

#endif
