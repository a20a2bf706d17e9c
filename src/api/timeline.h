/*
 * timeline.h — private to api/: what the timeline's route files share (timeline.c: the
 * timeline, snapshots and moments; seek.c: read-only views; branch.c: session branches).
 */
#ifndef AH_API_TIMELINE_H
#define AH_API_TIMELINE_H

#include "snapview.h"

#define TL_SNAP_MAX 2000   /* snapshots one timeline lists */
#define TL_MOMENT_MAX 2000 /* moments of each kind one timeline lists */

/* Where the session's offsets start (ms): when it started running, else when it was made. */
int64_t tl_origin_ms(const struct session_row *row);
/* ms → seconds since the origin, never negative. */
double tl_offset(const struct session_row *row, int64_t ms);
/* A JSON number of seconds (ts, fromTs): ≥ 0 and finite into *ret; false with a field error. */
bool tl_seconds(json_t *v, const char *name, double *ret, struct ah_problem *p);

/*
 * The snapshot of row's timeline a request names: by id (fsSnapshotId), else the newest taken
 * at or before `seq` (when > 0), else the newest at or before `ts` seconds (when ≥ 0). *ret is
 * a copy (fs_snapshot_rows_free(ret, 1)). false after answering: 404 for an unknown id or a
 * point before the first snapshot, 5xx for a store failure.
 */
bool tl_pick(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
             const struct session_row *row, const char *id, int64_t seq, double ts,
             struct fs_snapshot_row **ret);

/* The directory of the read-only view of snapshot snap (seek.c); caller frees. */
char *tl_view_path(struct api_ctx *ctx, const char *session_id, const char *snap);

int api_timeline_seek_register(struct router *r, struct api_ctx *ctx);
int api_timeline_branch_register(struct router *r, struct api_ctx *ctx);

#endif
