/*
 * tls_io.c: the connection's byte queues and the BIO method that lets
 * OpenSSL read its records from one and write them to the other.
 *
 * Why not BIO_s_mem or a BIO pair: the queues are the transport's buffers
 * themselves, so a record is copied once on the way in (from the socket's or
 * the mbuf's bytes) and once on the way out; a queue's memory is released as
 * soon as it is empty, so an idle connection holds none.  The method is
 * created once (tls_shared.c) and only read afterwards.
 */
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "smtp/tls_private.h"

#define QUEUE_MIN_CAP 4096
/*
 * rx never holds more than TLS_RX_MAX (tls_conn_rx() takes no more); tx holds
 * the records of plaintext the engine wrote, which it bounds by its own output
 * high-water mark: 16 MiB only stops a runaway, failing the write.
 */
#define TX_MAX (16u * 1024 * 1024)

void
tls_io_init(struct tls_io *io)
{
	pa_buf_init(&io->rx, QUEUE_MIN_CAP, TLS_RX_MAX);
	pa_buf_init(&io->tx, QUEUE_MIN_CAP, TX_MAX);
}

void
tls_io_free(struct tls_io *io)
{
	pa_buf_free(&io->rx);
	pa_buf_free(&io->tx);
}

/* n octets used; an emptied queue gives its memory back, so an idle connection holds none. */
void
tls_queue_consume(struct pa_buf *q, size_t n)
{
	pa_buf_consume(q, n);
	if (pa_buf_pending(q) == 0)
		pa_buf_free(q);
}

static int
io_read(BIO *b, char *out, int outl)
{
	struct tls_io *io = BIO_get_data(b);
	size_t n;

	BIO_clear_retry_flags(b);
	if (pa_buf_pending(&io->rx) == 0) {
		BIO_set_retry_read(b); /* SSL_ERROR_WANT_READ: the host feeds more */
		return -1;
	}
	n = pa_buf_pending(&io->rx);
	if (n > (size_t)outl)
		n = (size_t)outl;
	memcpy(out, pa_buf_head(&io->rx), n);
	tls_queue_consume(&io->rx, n);
	return (int)n;
}

/* Never a retry: the caller bounds the queue by not writing more plaintext. */
static int
io_write(BIO *b, const char *in, int inl)
{
	struct tls_io *io = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (inl <= 0)
		return 0;
	if (pa_buf_append(&io->tx, in, (size_t)inl) != PA_OK)
		return -1;
	return inl;
}

static long
io_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	/* The host sends the tx queue itself: a flush has nothing to do. */
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int
io_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

BIO_METHOD *
tls_io_method_new(void)
{
	BIO_METHOD *m =
	    BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pigeonair queues");

	if (m == NULL)
		return NULL;
	if (BIO_meth_set_read(m, io_read) != 1 || BIO_meth_set_write(m, io_write) != 1 ||
	    BIO_meth_set_ctrl(m, io_ctrl) != 1 || BIO_meth_set_create(m, io_create) != 1) {
		BIO_meth_free(m);
		return NULL;
	}
	return m;
}

BIO *
tls_io_bio_new(const BIO_METHOD *method, struct tls_io *io)
{
	BIO *b = BIO_new(method);

	if (b != NULL)
		BIO_set_data(b, io);
	return b;
}
