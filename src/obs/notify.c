/*
 * notify.c — the systemd service protocol (Type=notify, libsystemd's sd_notify): READY=1 once the
 * server answers, STOPPING=1 when it begins to stop, and WATCHDOG=1 from a small thread every
 * half WatchdogSec while the server says it is healthy, so systemd restarts one that hangs.
 * Everything is a no-op when not started by systemd (no NOTIFY_SOCKET / WATCHDOG_USEC).
 */
#include <pthread.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "obs.h"

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running, stop;
    uint64_t usec;
    bool (*healthy)(void *);
    void *ctx;
} wd = {.mu = PTHREAD_MUTEX_INITIALIZER};

void obs_notify_ready(void) {
    sd_notify(0, "READY=1\nSTATUS=serving");
}

void obs_notify_stopping(void) {
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

static void *watchdog_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&wd.mu);
    while (!wd.stop) {
        pthread_mutex_unlock(&wd.mu);
        if (wd.healthy(wd.ctx)) /* an unhealthy server stays silent: systemd restarts it */
            sd_notify(0, "WATCHDOG=1");
        pthread_mutex_lock(&wd.mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (wd.usec / 2) * 1000;
        until.tv_sec += (time_t)(ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        while (!wd.stop && pthread_cond_timedwait(&wd.cv, &wd.mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&wd.mu);
    return NULL;
}

int obs_watchdog_start(bool (*healthy)(void *ctx), void *ctx) {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wd.cv, &ca);
    pthread_condattr_destroy(&ca);
    wd.usec = usec;
    wd.healthy = healthy;
    wd.ctx = ctx;
    wd.stop = false;
    if (pthread_create(&wd.thread, NULL, watchdog_main, NULL) != 0)
        return AH_E_NOMEM;
    wd.running = true;
    return 0;
}

void obs_watchdog_stop(void) {
    if (!wd.running)
        return;
    pthread_mutex_lock(&wd.mu);
    wd.stop = true;
    pthread_cond_signal(&wd.cv);
    pthread_mutex_unlock(&wd.mu);
    pthread_join(wd.thread, NULL);
    pthread_cond_destroy(&wd.cv);
    wd.running = false;
}
