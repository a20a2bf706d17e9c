/*
 * internal.h — private to bus/: the struct shared by the writer (ingest.c) and the fan-out
 * (fanout.c).
 */
#ifndef AH_BUS_INTERNAL_H
#define AH_BUS_INTERNAL_H

#include <pthread.h>

#include "bus.h"

#define BUS_BUCKETS 1024
#define BUS_RING 4096        /* recent events kept per watched session (~2 MiB at 400 B each) */
#define BUS_BATCH_MAX 1024   /* ops per store transaction */

struct ingest_item;
struct channel;

struct bus {
    struct store *store;
    /* writer */
    pthread_t writer;
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    struct ingest_item *head, *tail;
    bool stopping;
    struct store_op *batch_ops;         /* BUS_BATCH_MAX, owned by the writer thread */
    struct ingest_item **batch_items;
    /* D50: sessions whose recorder frame failed to store, with the lowest rseq that failed;
     * the writer's alone (ingest.c) */
    struct ingest_mark *marks;
    size_t n_marks, cap_marks;
    /* fan-out */
    pthread_mutex_t mapmu;
    struct channel *buckets[BUS_BUCKETS];
    /* stats (atomics) */
    uint64_t batches, ops, published, store_reads;
    unsigned channels, subscribers;
};

/* fanout.c: called by the writer, in seq order per session, after the batch committed.
 * Takes ownership of json (malloc'd). */
void bus_publish(struct bus *b, const char *tenant, const char *session_id, int64_t seq,
                 char *json, bool terminal);
/* fanout.c: another process sharing the database committed events of a session up to seq
 * (store_watch): when someone here follows it, reads them from the store into the session's
 * ring and wakes its subscribers. session_id NULL (notices may have been lost) wakes every
 * subscriber, who then reads the store as a subscriber behind the ring. */
void bus_remote_committed(struct bus *b, const char *tenant, const char *session_id,
                          int64_t seq);
/* Builds an event from stored JSON text (takes ownership of json); NULL on OOM. */
struct bus_event *bus_event_from(int64_t seq, char *json, bool terminal);

#endif
