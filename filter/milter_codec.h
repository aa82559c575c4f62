/*
 * milter_codec.h: the Sendmail/Postfix milter protocol, version 6, as bytes
 * (sans I/O): the MTA's commands encoded into a pa_buf, the filter's
 * replies decoded from what was read.  No socket, no thread, no clock.
 *
 * Every packet is a 32-bit big-endian length, one command octet and length-1
 * octets of data (libmilter's mfdef.h; Postfix's milter8.c speaks the same).
 * Strings are NUL-terminated inside the data.
 *
 * What the decoder promises, the filter's bytes being untrusted: it never
 * reads past len; a reply is returned only once it is complete; a packet
 * longer than MILTER_REPLY_MAX, with an unknown command octet or with data
 * its command does not allow is PA_ERROR (the caller drops the connection);
 * the strings it returns lie inside the input, hold no NUL, and a header
 * value or reply text it returns cannot end or start another header or
 * reply line (CR and LF only as folding or as the line breaks of a
 * multi-line reply of one code).
 */
#ifndef PA_MILTER_CODEC_H
#define PA_MILTER_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pa_buf;

#define MILTER_VERSION 6
#define MILTER_CHUNK_MAX 65535 /* body octets per SMFIC_BODY (libmilter's MILTER_CHUNK_SIZE) */
#define MILTER_REPLY_MAX (64 * 1024) /* data octets of one reply packet we accept */
#define MILTER_REPLY_TEXT_MAX 1024   /* an SMFIR_REPLYCODE text, all lines */

/* Commands, MTA to filter (mfdef.h SMFIC_*). */
enum milter_command {
	MILTER_CMD_ABORT = 'A',
	MILTER_CMD_BODY = 'B',
	MILTER_CMD_CONNECT = 'C',
	MILTER_CMD_MACRO = 'D',
	MILTER_CMD_BODYEOB = 'E',
	MILTER_CMD_HELO = 'H',
	MILTER_CMD_QUIT_NC = 'K', /* quit, a new connection follows on this socket */
	MILTER_CMD_HEADER = 'L',
	MILTER_CMD_MAIL = 'M',
	MILTER_CMD_EOH = 'N',
	MILTER_CMD_OPTNEG = 'O',
	MILTER_CMD_QUIT = 'Q',
	MILTER_CMD_RCPT = 'R',
	MILTER_CMD_DATA = 'T',
};

/* Replies, filter to MTA (mfdef.h SMFIR_*). */
enum milter_reply_code {
	MILTER_R_ADDRCPT = '+',
	MILTER_R_DELRCPT = '-',
	MILTER_R_ADDRCPT_PAR = '2',
	MILTER_R_SHUTDOWN = '4',
	MILTER_R_ACCEPT = 'a',
	MILTER_R_REPLBODY = 'b',
	MILTER_R_CONTINUE = 'c',
	MILTER_R_DISCARD = 'd',
	MILTER_R_CHGFROM = 'e',
	MILTER_R_CONN_FAIL = 'f',
	MILTER_R_ADDHEADER = 'h',
	MILTER_R_INSHEADER = 'i',
	MILTER_R_SETSYMLIST = 'l',
	MILTER_R_CHGHEADER = 'm',
	MILTER_R_PROGRESS = 'p',
	MILTER_R_QUARANTINE = 'q',
	MILTER_R_REJECT = 'r',
	MILTER_R_SKIP = 's',
	MILTER_R_TEMPFAIL = 't',
	MILTER_R_REPLYCODE = 'y',
	MILTER_R_OPTNEG = 'O',
};

/* Actions the MTA allows the filter (SMFIF_*), offered in SMFIC_OPTNEG. */
#define MILTER_ACT_ADDHDRS 0x01u
#define MILTER_ACT_CHGBODY 0x02u
#define MILTER_ACT_ADDRCPT 0x04u
#define MILTER_ACT_DELRCPT 0x08u
#define MILTER_ACT_CHGHDRS 0x10u
#define MILTER_ACT_QUARANTINE 0x20u
#define MILTER_ACT_CHGFROM 0x40u
#define MILTER_ACT_ADDRCPT_PAR 0x80u
#define MILTER_ACT_SETSYMLIST 0x100u

/* Protocol steps (SMFIP_*): what the filter does not want sent, or will not answer. */
#define MILTER_P_NOCONNECT 0x01u
#define MILTER_P_NOHELO 0x02u
#define MILTER_P_NOMAIL 0x04u
#define MILTER_P_NORCPT 0x08u
#define MILTER_P_NOBODY 0x10u
#define MILTER_P_NOHDRS 0x20u
#define MILTER_P_NOEOH 0x40u
#define MILTER_P_NR_HDR 0x80u
#define MILTER_P_NOUNKNOWN 0x100u
#define MILTER_P_NODATA 0x200u
#define MILTER_P_SKIP 0x400u
#define MILTER_P_RCPT_REJ 0x800u
#define MILTER_P_NR_CONN 0x1000u
#define MILTER_P_NR_HELO 0x2000u
#define MILTER_P_NR_MAIL 0x4000u
#define MILTER_P_NR_RCPT 0x8000u
#define MILTER_P_NR_DATA 0x10000u
#define MILTER_P_NR_UNKN 0x20000u
#define MILTER_P_NR_EOH 0x40000u
#define MILTER_P_NR_BODY 0x80000u
#define MILTER_P_HDR_LEADSPC 0x100000u

/* One decoded reply; the pointers point into the decoder's input. */
struct milter_reply {
	uint8_t code; /* enum milter_reply_code */
	/* SMFIR_OPTNEG */
	uint32_t version, actions, protocol;
	/* SMFIR_INSHEADER, SMFIR_CHGHEADER: 0-based position, 1-based occurrence */
	uint32_t index;
	/* SMFIR_ADDHEADER, SMFIR_INSHEADER, SMFIR_CHGHEADER */
	const char *name, *value;
	size_t name_len, value_len;
	/* SMFIR_REPLYCODE (the whole reply, e.g. "554 5.7.1 Spam"), SMFIR_QUARANTINE (reason) */
	const char *text;
	size_t text_len;
	unsigned reply_code; /* SMFIR_REPLYCODE: 400..599 */
	/* SMFIR_REPLBODY: a chunk of the new body (any octets; checked whole by the caller) */
	const uint8_t *body;
	size_t body_len;
};

/*
 * Decodes the first reply in in[0..len): the number of octets it took
 * (> 0), PA_AGAIN when the packet is not complete yet, PA_ERROR when it is
 * malformed (as the header describes).  Replies for steps we do not
 * offer (ADDRCPT, CHGFROM...) decode with their code and no
 * fields: the caller decides.
 */
int milter_decode(const uint8_t *in, size_t len, struct milter_reply *out);

/*
 * Encoders: each appends one packet to b; PA_ERROR when b's max is reached
 * or memory is short (b keeps what it had).  Strings are NUL-terminated C
 * strings unless a length is given.
 */
int milter_put_optneg(struct pa_buf *b, uint32_t version, uint32_t actions, uint32_t protocol);
/* SMFIC_MACRO for the command `stage`: n name/value pairs (names as "{i}" or "j"). */
int milter_put_macros(struct pa_buf *b, char stage, const char *const *pairs, size_t n);
/*
 * SMFIC_CONNECT: hostname, then family '4', '6' or 'U' (unknown: no port or
 * address follows), port (host order) and address text.
 */
int milter_put_connect(struct pa_buf *b, const char *hostname, char family, uint16_t port,
                       const char *addr);
int milter_put_helo(struct pa_buf *b, const char *helo);
/* SMFIC_MAIL and SMFIC_RCPT: the address without brackets; sent as <addr>. */
int milter_put_mail(struct pa_buf *b, const char *from);
int milter_put_rcpt(struct pa_buf *b, const char *rcpt);
int milter_put_header(struct pa_buf *b, const char *name, size_t name_len, const char *value,
                      size_t value_len);
/* At most MILTER_CHUNK_MAX octets. */
int milter_put_body(struct pa_buf *b, const uint8_t *data, size_t len);
/* SMFIC_DATA, SMFIC_EOH, SMFIC_BODYEOB, SMFIC_ABORT, SMFIC_QUIT, SMFIC_QUIT_NC */
int milter_put_bare(struct pa_buf *b, char cmd);

/* The step a reply to command cmd is not expected for, under the negotiated protocol. */
bool milter_no_reply(char cmd, uint32_t protocol);

#endif
