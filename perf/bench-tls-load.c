/*
 * bench-tls-load.c: full STARTTLS handshakes against an SMTP server, as fast
 * as THREADS blocking clients can make them, for SECONDS.
 *
 *   bench-tls-load HOST PORT SECONDS THREADS
 *
 * Each client loops: connect, 220, EHLO, STARTTLS, 220, a full TLS handshake
 * (never a resumption: no session is ever offered), QUIT inside TLS, its
 * 221, then a reset close (no TIME_WAIT to exhaust ports).  Only ECDSA
 * P-256 signatures are offered, so the server signs with its ECDSA key.
 * Prints "handshakes N errors N seconds S" on stdout.  perf/bench-tls.sh
 * drives it; every server under test gets exactly this client.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/pa.h"

struct load {
	struct sockaddr_in addr;
	SSL_CTX *ctx;
	double deadline;
	atomic_ulong handshakes;
	atomic_ulong errors;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads until a final reply line with `code` ("250 "); PA_ERROR on anything else. */
static int
expect(int fd, const char *code)
{
	char buf[4096];
	size_t len = 0;

	for (;;) {
		ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		char *line, *nl;

		if (n <= 0)
			return PA_ERROR;
		len += (size_t)n;
		buf[len] = '\0';
		for (line = buf; (nl = strstr(line, "\r\n")) != NULL; line = nl + 2) {
			if (strncmp(line, code, 3) != 0)
				return PA_ERROR;
			if (line[3] == ' ')
				return PA_OK;
		}
		memmove(buf, line, strlen(line) + 1);
		len = strlen(buf);
		if (len >= sizeof(buf) - 1)
			return PA_ERROR;
	}
}

static int
send_all(int fd, const char *s)
{
	size_t len = strlen(s);

	return send(fd, s, len, MSG_NOSIGNAL) == (ssize_t)len ? PA_OK : PA_ERROR;
}

/* One session; PA_OK when the handshake completed and the server answered QUIT in TLS. */
static int
one(struct load *l)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, rc = PA_ERROR;
	SSL *ssl = NULL;
	char buf[512];

	if (fd == -1)
		return PA_ERROR;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (connect(fd, (struct sockaddr *)&l->addr, sizeof(l->addr)) == -1 ||
	    expect(fd, "220") != PA_OK || send_all(fd, "EHLO load.example\r\n") != PA_OK ||
	    expect(fd, "250") != PA_OK || send_all(fd, "STARTTLS\r\n") != PA_OK ||
	    expect(fd, "220") != PA_OK)
		goto out;
	ssl = SSL_new(l->ctx);
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
		goto out;
	if (SSL_write(ssl, "QUIT\r\n", 6) != 6)
		goto out;
	/* The 221 (after any session ticket, which SSL_read handles). */
	if (SSL_read(ssl, buf, sizeof(buf)) >= 3 && strncmp(buf, "221", 3) == 0)
		rc = PA_OK;
out:
	ERR_clear_error();
	SSL_free(ssl);
	close(fd);
	return rc;
}

static void *
run(void *arg)
{
	struct load *l = arg;

	while (now_s() < l->deadline) {
		if (one(l) == PA_OK)
			atomic_fetch_add(&l->handshakes, 1);
		else
			atomic_fetch_add(&l->errors, 1);
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	struct load l = {0};
	pthread_t threads[256];
	double seconds, start;
	int nthreads;

	if (argc != 5) {
		fprintf(stderr, "usage: bench-tls-load HOST PORT SECONDS THREADS\n");
		return 2;
	}
	seconds = atof(argv[3]);
	nthreads = atoi(argv[4]);
	if (nthreads < 1 || nthreads > 256 || seconds <= 0) {
		fprintf(stderr, "bench-tls-load: 1..256 threads, seconds > 0\n");
		return 2;
	}
	l.addr.sin_family = AF_INET;
	l.addr.sin_port = htons((uint16_t)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &l.addr.sin_addr) != 1) {
		fprintf(stderr, "bench-tls-load: %s is not an IPv4 address\n", argv[1]);
		return 2;
	}
	l.ctx = SSL_CTX_new(TLS_client_method());
	if (l.ctx == NULL || SSL_CTX_set1_sigalgs_list(l.ctx, "ECDSA+SHA256") != 1) {
		fprintf(stderr, "bench-tls-load: SSL_CTX_new/set1_sigalgs_list failed\n");
		return 1;
	}
	/* Full handshakes only: no session is kept, none is offered. */
	SSL_CTX_set_session_cache_mode(l.ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(l.ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_verify(l.ctx, SSL_VERIFY_NONE, NULL);
	start = now_s();
	l.deadline = start + seconds;
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&threads[i], NULL, run, &l) != 0) {
			fprintf(stderr, "bench-tls-load: pthread_create failed\n");
			return 1;
		}
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	printf("handshakes %lu errors %lu seconds %.3f\n", atomic_load(&l.handshakes),
	       atomic_load(&l.errors), now_s() - start);
	SSL_CTX_free(l.ctx);
	return 0;
}
