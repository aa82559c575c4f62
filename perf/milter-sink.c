/*
 * milter-sink.c: the smallest useful milter, for benchmarks (perf/bench-milter.py):
 * it negotiates version 6 asking for no reply to any step but end of message
 * (as rspamd does), reads and drops everything, and answers every end of
 * message with SMFIR_CONTINUE (after one added header with --add-header:
 * the path of a filter's edits, a copy of the message), at once or after
 * --delay-ms (each message on its own timer: a slow answer to one never
 * holds another connection).  One thread, one poll(2) loop, no allocation
 * per message.
 *
 *   milter-sink --listen 127.0.0.1:PORT [--delay-ms N] [--max-conns N] [--add-header]
 *
 * Prints "milter-sink: listening" when ready; SIGTERM ends it, printing the
 * number of messages it answered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "filter/milter_codec.h"

#define IN_MAX (1 << 17)
/* No reply to any step but end of message, as rspamd asks. */
#define NR_ALL                                                                                     \
	(MILTER_P_NR_CONN | MILTER_P_NR_HELO | MILTER_P_NR_MAIL | MILTER_P_NR_RCPT |               \
	 MILTER_P_NR_DATA | MILTER_P_NR_UNKN | MILTER_P_NR_EOH | MILTER_P_NR_BODY |                \
	 MILTER_P_NR_HDR)

struct conn {
	int fd;
	size_t len;
	uint64_t due_ms; /* an end of message to answer then; 0: none */
	uint8_t in[IN_MAX];
};

static volatile sig_atomic_t stop;
static unsigned long long answered;
static int add_header; /* --add-header: one SMFIR_ADDHEADER before each SMFIR_CONTINUE */

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int
send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pfd = {.fd = fd, .events = POLLOUT};

				poll(&pfd, 1, 1000);
				continue;
			}
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
answer_eom(int fd)
{
	static const char hdr[] = "X-Milter-Sink\0seen";
	uint8_t out[64];
	size_t n = 0;

	if (add_header) {
		put32(out, (uint32_t)sizeof(hdr) + 1);
		out[4] = MILTER_R_ADDHEADER;
		memcpy(out + 5, hdr, sizeof(hdr));
		n = 5 + sizeof(hdr);
	}
	put32(out + n, 1);
	out[n + 4] = MILTER_R_CONTINUE;
	n += 5;
	answered++;
	return send_all(fd, out, n);
}

/* Handles the complete packets in c->in; -1 when the connection must close. */
static int
consume(struct conn *c, unsigned delay_ms)
{
	size_t off = 0;

	while (c->len - off >= 5) {
		const uint8_t *p = c->in + off;
		uint32_t plen =
		    (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];

		if (plen == 0 || plen > IN_MAX - 4)
			return -1;
		if (c->len - off < 4 + (size_t)plen)
			break;
		switch (p[4]) {
		case MILTER_CMD_OPTNEG: {
			uint8_t out[17];

			put32(out, 13);
			out[4] = MILTER_R_OPTNEG;
			put32(out + 5, MILTER_VERSION);
			put32(out + 9, MILTER_ACT_ADDHDRS);
			put32(out + 13, NR_ALL);
			if (send_all(c->fd, out, sizeof(out)) == -1)
				return -1;
			break;
		}
		case MILTER_CMD_BODYEOB:
			if (delay_ms == 0) {
				if (answer_eom(c->fd) == -1)
					return -1;
			} else {
				c->due_ms = now_ms() + delay_ms;
			}
			break;
		case MILTER_CMD_QUIT:
			return -1;
		default: /* everything else: no reply negotiated */
			break;
		}
		off += 4 + plen;
	}
	memmove(c->in, c->in + off, c->len - off);
	c->len -= off;
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"delay-ms", required_argument, NULL, 'd'},
	    {"max-conns", required_argument, NULL, 'm'},
	    {"add-header", no_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	char host[64] = "127.0.0.1", *colon;
	unsigned delay_ms = 0, max_conns = 1024, nconns = 0;
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct pollfd *pfd;
	struct conn **conns;
	int opt, lfd;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			snprintf(host, sizeof(host), "%s", optarg);
			colon = strrchr(host, ':');
			if (colon == NULL)
				goto usage;
			*colon = '\0';
			sin.sin_port = htons((uint16_t)atoi(colon + 1));
			break;
		case 'd':
			delay_ms = (unsigned)atoi(optarg);
			break;
		case 'm':
			max_conns = (unsigned)atoi(optarg);
			break;
		case 'a':
			add_header = 1;
			break;
		default:
			goto usage;
		}
	}
	if (sin.sin_port == 0 || inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		goto usage;
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (lfd == -1 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) == -1 ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 || listen(lfd, 1024) == -1) {
		fprintf(stderr, "milter-sink: socket/bind/listen failed: %s\n", strerror(errno));
		return 1;
	}
	pfd = calloc(max_conns + 1, sizeof(*pfd));
	conns = calloc(max_conns, sizeof(*conns));
	if (pfd == NULL || conns == NULL)
		return 1;
	printf("milter-sink: listening\n");
	fflush(stdout);
	while (!stop) {
		uint64_t now = now_ms(), next = 0;
		int timeout = 1000;

		pfd[0] = (struct pollfd){.fd = lfd, .events = nconns < max_conns ? POLLIN : 0};
		for (unsigned i = 0; i < nconns; i++) {
			pfd[i + 1] = (struct pollfd){.fd = conns[i]->fd, .events = POLLIN};
			if (conns[i]->due_ms != 0 && (next == 0 || conns[i]->due_ms < next))
				next = conns[i]->due_ms;
		}
		if (next != 0)
			timeout = next > now ? (int)(next - now) : 0;
		if (poll(pfd, nconns + 1, timeout) == -1 && errno != EINTR)
			break;
		now = now_ms();
		for (unsigned i = nconns; i-- > 0;) {
			struct conn *c = conns[i];
			int dead = 0;

			if (c->due_ms != 0 && c->due_ms <= now) {
				c->due_ms = 0;
				dead = answer_eom(c->fd) == -1;
			}
			if (!dead && (pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) {
				ssize_t n = recv(c->fd, c->in + c->len, IN_MAX - c->len, 0);

				if (n <= 0 && !(n == -1 && (errno == EAGAIN || errno == EINTR)))
					dead = 1;
				else if (n > 0) {
					c->len += (size_t)n;
					dead = consume(c, delay_ms) == -1;
				}
			}
			if (dead) {
				close(c->fd);
				free(c);
				conns[i] = conns[--nconns];
			}
		}
		if (pfd[0].revents & POLLIN) {
			int fd;

			while (nconns < max_conns && (fd = accept(lfd, NULL, NULL)) != -1) {
				struct conn *c = malloc(sizeof(*c));

				if (c == NULL) {
					close(fd);
					break;
				}
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
				c->fd = fd;
				c->len = 0;
				c->due_ms = 0;
				conns[nconns++] = c;
			}
		}
	}
	printf("milter-sink: answered %llu messages\n", answered);
	return 0;
usage:
	fprintf(stderr, "usage: milter-sink --listen ADDR:PORT [--delay-ms N] [--max-conns N] "
	                "[--add-header]\n");
	return 2;
}
