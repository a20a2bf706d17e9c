/*
 * fakesrv.h — a tiny HTTP/1.1 server for client tests: it answers with whatever a test's
 * handler writes, including things the real server does not do on demand (429 + Retry-After,
 * 503, slow answers, SSE streams that drop mid-frame).
 *
 * One thread accepts on 127.0.0.1:<ephemeral>; each connection gets its own thread, which reads
 * requests (keep-alive) and calls the handler. Everything a handler needs is in struct fake_req.
 */
#ifndef AH_TEST_FAKESRV_H
#define AH_TEST_FAKESRV_H

#include <stdbool.h>
#include <stddef.h>

struct fake_srv;

struct fake_req {
    char method[16];
    char path[2048];
    char headers[16384]; /* raw header lines, "\r\n" separated */
    char *body;          /* NUL-terminated, may be empty */
    size_t body_len;
    int conn_id; /* 1, 2, … in accept order */
    int seq;     /* request number over the server's life, 1-based */
    int fd;      /* for handlers that stream by hand */
};

/* Writes a reply on the request's connection; returns false once the peer is gone.
 * Returns from the handler: 0 keeps the connection alive, 1 closes it. */
typedef int (*fake_handler)(struct fake_srv *srv, const struct fake_req *req, void *userdata);

int fake_srv_start(fake_handler h, void *userdata, struct fake_srv **ret);
int fake_srv_port(const struct fake_srv *srv);
/* Connections accepted and requests handled so far. */
int fake_srv_connections(struct fake_srv *srv);
int fake_srv_requests(struct fake_srv *srv);
/* Stops accepting, shuts every connection down and joins the threads. */
void fake_srv_stop(struct fake_srv *srv);

/* A header's value (copied into out, trimmed) or false when absent. */
bool fake_header(const struct fake_req *req, const char *name, char *out, size_t outsz);
/* Writes raw bytes; false when the peer is gone. */
bool fake_write(const struct fake_req *req, const char *data, size_t len);
/* A complete reply with Content-Length. extra_headers: "Name: v\r\n…" or NULL. */
bool fake_reply(const struct fake_req *req, int status, const char *content_type,
                const char *extra_headers, const char *body);
/* "http://127.0.0.1:<port>" into out. */
void fake_srv_url(const struct fake_srv *srv, char *out, size_t outsz);

#endif
