/*
 * bench-sse — many SSE subscribers on one epoll thread, for the fan-out benchmarks.
 *
 *   bench-sse PORT SESSION N SECONDS
 *
 * Opens N event streams of SESSION on 127.0.0.1:PORT (HTTP/1.0, so the body is the raw stream),
 * reads everything for SECONDS, and prints how many subscribers connected, how many frames
 * arrived, and the delivery latency of log events: receive time minus the event's `ts` (when
 * the recorder captured it), as p50 / p99 / max in milliseconds. Idle streams cost the client
 * nothing but a descriptor; the driver (run.py) measures the server's memory meanwhile.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../src/core/core.h"

#define HIST_MS 60000

struct sub {
    int fd;
    char line[8192];
    size_t n;
};

static uint64_t hist[HIST_MS + 1], samples, frames;

static void on_line(const char *line) {
    if (strncmp(line, "id:", 3) == 0)
        frames++;
    if (strncmp(line, "data:", 5) != 0 || !strstr(line, "\"type\":\"log\""))
        return;
    const char *ts = strstr(line, "\"ts\":\"");
    if (!ts)
        return;
    char when[32];
    snprintf(when, sizeof(when), "%.24s", ts + 6);
    int64_t ms;
    if (time_parse(when, &ms) < 0)
        return;
    int64_t lat = time_now_ms() - ms;
    if (lat < 0)
        lat = 0;
    hist[lat > HIST_MS ? HIST_MS : lat]++;
    samples++;
}

static int64_t max_latency(void) {
    for (int i = HIST_MS; i >= 0; i--)
        if (hist[i])
            return i;
    return 0;
}

static int64_t percentile(double p) {
    uint64_t want = (uint64_t)(p * (double)samples), seen = 0;
    for (int i = 0; i <= HIST_MS; i++) {
        seen += hist[i];
        if (seen > want)
            return i;
    }
    return HIST_MS;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench-sse PORT SESSION N SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *sid = argv[2];
    int n = atoi(argv[3]);
    int seconds = atoi(argv[4]);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int ep = epoll_create1(0);
    struct sub *subs = calloc((size_t)n, sizeof(*subs));
    char req[256];
    int reqlen = snprintf(req, sizeof(req),
                          "GET /api/v1/sessions/%s/events?tail=0 HTTP/1.0\r\n"
                          "Accept: text/event-stream\r\n\r\n",
                          sid);
    int connected = 0;
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            write(fd, req, (size_t)reqlen) != reqlen) {
            fprintf(stderr, "subscriber %d: %s\n", i, strerror(errno));
            if (fd >= 0)
                close(fd);
            subs[i].fd = -1;
            continue;
        }
        fcntl(fd, F_SETFL, O_NONBLOCK);
        subs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &subs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        connected++;
    }
    printf("connected %d\n", connected);
    fflush(stdout);
    int64_t end = time_mono_ms() + (int64_t)seconds * 1000;
    struct epoll_event evs[256];
    char buf[65536];
    while (time_mono_ms() < end) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < k; i++) {
            struct sub *s = evs[i].data.ptr;
            ssize_t r;
            while ((r = read(s->fd, buf, sizeof(buf))) > 0)
                for (ssize_t j = 0; j < r; j++) {
                    if (buf[j] == '\n') {
                        s->line[s->n < sizeof(s->line) ? s->n : sizeof(s->line) - 1] = '\0';
                        on_line(s->line);
                        s->n = 0;
                    } else if (s->n + 1 < sizeof(s->line)) {
                        s->line[s->n++] = buf[j];
                    }
                }
            if (r == 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
                close(s->fd);
                s->fd = -1;
            }
        }
    }
    printf("frames %llu\n", (unsigned long long)frames);
    if (samples)
        printf("latency_ms p50 %lld p99 %lld max %lld samples %llu\n", (long long)percentile(0.5),
               (long long)percentile(0.99), (long long)max_latency(),
               (unsigned long long)samples);
    for (int i = 0; i < n; i++)
        if (subs[i].fd >= 0)
            close(subs[i].fd);
    free(subs);
    close(ep);
    return 0;
}
