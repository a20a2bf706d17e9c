/*
 * fakesrv.c — see fakesrv.h. Deliberately simple: blocking sockets, a thread per connection,
 * requests parsed just enough (request line, headers, Content-Length body).
 */
#include "fakesrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 256

struct conn {
    struct fake_srv *srv;
    int fd;
    int id;
    pthread_t thread;
};

struct fake_srv {
    int lfd;
    int port;
    int wake[2]; /* a pipe that ends the accept loop */
    fake_handler handler;
    void *userdata;
    pthread_t accept_thread;
    pthread_mutex_t mu;
    struct conn *conns[MAX_CONNS];
    int n_conns;
    int requests;
};

bool fake_write(const struct fake_req *req, const char *data, size_t len) {
    while (len) {
        ssize_t n = send(req->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

bool fake_reply(const struct fake_req *req, int status, const char *content_type,
                const char *extra_headers, const char *body) {
    char head[1024];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s%s%s%s\r\n",
                     status, reason(status), blen, content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "",
                     extra_headers ? extra_headers : "");
    return fake_write(req, head, (size_t)n) && (blen == 0 || fake_write(req, body, blen));
}

bool fake_header(const struct fake_req *req, const char *name, char *out, size_t outsz) {
    size_t nl = strlen(name);
    const char *p = req->headers;
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = len - (size_t)(v - p);
            if (vl >= outsz)
                vl = outsz - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
        if (!eol)
            break;
        p = eol + 2;
    }
    return false;
}

/* Reads one request; false at EOF or on junk. buf keeps bytes of the next request. */
static bool read_request(int fd, char *buf, size_t cap, size_t *have, struct fake_req *req) {
    char *end;
    while (!(end = memmem(buf, *have, "\r\n\r\n", 4))) {
        if (*have == cap)
            return false;
        ssize_t n = recv(fd, buf + *have, cap - *have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        *have += (size_t)n;
    }
    size_t head_len = (size_t)(end - buf) + 4;
    char *line_end = memmem(buf, head_len, "\r\n", 2);
    char version[16];
    char line[4096];
    size_t ll = (size_t)(line_end - buf);
    if (ll >= sizeof(line))
        return false;
    memcpy(line, buf, ll);
    line[ll] = '\0';
    if (sscanf(line, "%15s %2047s %15s", req->method, req->path, version) != 3)
        return false;
    size_t hl = head_len - ll - 2 - 2;
    if (hl >= sizeof(req->headers))
        return false;
    memcpy(req->headers, line_end + 2, hl);
    req->headers[hl] = '\0';
    char cl[32];
    size_t body_len = 0;
    if (fake_header(req, "Content-Length", cl, sizeof(cl)))
        body_len = strtoul(cl, NULL, 10);
    req->body = calloc(1, body_len + 1);
    if (!req->body)
        return false;
    size_t from_buf = *have - head_len < body_len ? *have - head_len : body_len;
    memcpy(req->body, buf + head_len, from_buf);
    size_t got = from_buf;
    while (got < body_len) {
        ssize_t n = recv(fd, req->body + got, body_len - got, 0);
        if (n <= 0) {
            free(req->body);
            req->body = NULL;
            return false;
        }
        got += (size_t)n;
    }
    req->body_len = body_len;
    size_t used = head_len + from_buf;
    memmove(buf, buf + used, *have - used);
    *have -= used;
    return true;
}

static void *conn_main(void *arg) {
    struct conn *c = arg;
    char *buf = malloc(65536);
    size_t have = 0;
    while (buf) {
        struct fake_req *req = calloc(1, sizeof(*req));
        if (!req)
            break;
        if (!read_request(c->fd, buf, 65536, &have, req)) {
            free(req->body);
            free(req);
            break;
        }
        req->fd = c->fd;
        req->conn_id = c->id;
        pthread_mutex_lock(&c->srv->mu);
        req->seq = ++c->srv->requests;
        pthread_mutex_unlock(&c->srv->mu);
        int close_it = c->srv->handler(c->srv, req, c->srv->userdata);
        free(req->body);
        free(req);
        if (close_it)
            break;
    }
    free(buf);
    shutdown(c->fd, SHUT_RDWR);
    return NULL;
}

static void *accept_main(void *arg) {
    struct fake_srv *s = arg;
    for (;;) {
        struct pollfd p[2] = {{s->lfd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        struct conn *c = calloc(1, sizeof(*c));
        pthread_mutex_lock(&s->mu);
        if (!c || s->n_conns == MAX_CONNS) {
            pthread_mutex_unlock(&s->mu);
            free(c);
            close(fd);
            continue;
        }
        c->srv = s;
        c->fd = fd;
        c->id = s->n_conns + 1;
        s->conns[s->n_conns++] = c;
        pthread_mutex_unlock(&s->mu);
        pthread_create(&c->thread, NULL, conn_main, c);
    }
    return NULL;
}

int fake_srv_start(fake_handler h, void *userdata, struct fake_srv **ret) {
    struct fake_srv *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->handler = h;
    s->userdata = userdata;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(s->lfd, 64) < 0 || getsockname(s->lfd, (struct sockaddr *)&a, &al) < 0 ||
        pipe(s->wake) < 0) {
        if (s->lfd >= 0)
            close(s->lfd);
        free(s);
        return -1;
    }
    s->port = ntohs(a.sin_port);
    pthread_create(&s->accept_thread, NULL, accept_main, s);
    *ret = s;
    return 0;
}

int fake_srv_port(const struct fake_srv *s) {
    return s->port;
}

void fake_srv_url(const struct fake_srv *s, char *out, size_t outsz) {
    snprintf(out, outsz, "http://127.0.0.1:%d", s->port);
}

int fake_srv_connections(struct fake_srv *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_conns;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int fake_srv_requests(struct fake_srv *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->requests;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void fake_srv_stop(struct fake_srv *s) {
    if (!s)
        return;
    if (write(s->wake[1], "x", 1) < 0) {
        /* the accept loop also ends when the listening socket goes */
    }
    pthread_join(s->accept_thread, NULL);
    close(s->lfd);
    pthread_mutex_lock(&s->mu);
    int n = s->n_conns;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++)
        shutdown(s->conns[i]->fd, SHUT_RDWR);
    for (int i = 0; i < n; i++) {
        pthread_join(s->conns[i]->thread, NULL);
        close(s->conns[i]->fd);
        free(s->conns[i]);
    }
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
