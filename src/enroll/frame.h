/*
 * frame.h — control-plane frames (D41): a u32 big-endian length, then that many bytes of one
 * JSON object that carries a string "type". Used on every QUIC stream of the executor link
 * (control, RPC, session events); tunnel streams carry raw bytes after their first frame.
 *
 * Pure: no I/O. The decoder keeps at most one partial frame (4 + max bytes): a peer cannot make
 * it buffer more, and a length above the cap is a protocol error before any byte is kept.
 */
#ifndef AH_ENROLL_FRAME_H
#define AH_ENROLL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

/* The default cap on one frame's JSON text (1 MiB): larger messages are refused both ways. */
#define FRAME_MAX_DEFAULT (1u << 20)
#define FRAME_HEADER 4

/* Appends one frame for msg to out (out->max still bounds it). msg must be an object with a
 * non-empty string "type": AH_E_INVAL otherwise; AH_E_TOOLARGE when the text is longer than max
 * (0 = FRAME_MAX_DEFAULT); AH_E_NOMEM. On failure out is unchanged. */
int frame_encode(struct ah_buf *out, const json_t *msg, size_t max);

/* Called for each whole frame, in order. msg is lent for the call (json_incref to keep it).
 * A negative return stops decoding and is returned by frame_decode; a positive one stops it
 * after this frame (d->used tells how many bytes were taken: the rest is not framed, e.g. the
 * raw bytes of a tunnel after its opening frame). */
typedef int (*frame_cb)(void *ctx, json_t *msg);

struct frame_decoder {
    size_t max;          /* cap on one frame's JSON text; 0 = FRAME_MAX_DEFAULT */
    unsigned char hdr[FRAME_HEADER];
    size_t hdr_n;        /* header bytes gathered */
    unsigned char *body; /* the frame being gathered (len bytes allocated) */
    size_t len, got;
    size_t used;         /* bytes the last frame_decode call took */
    int error;           /* sticky: once a stream broke framing, nothing after it is trusted */
    char why[160];       /* what was wrong, for the log line */
};

/* Feeds stream bytes (any split: a frame may span calls, several may arrive in one) and calls cb
 * for every frame completed. Returns 0; AH_E_PROTOCOL for a length above the cap, text that is
 * not JSON, or JSON that is not an object with a string "type" (d->why says which); AH_E_NOMEM;
 * or cb's negative return. Errors are sticky. */
int frame_decode(struct frame_decoder *d, const void *data, size_t len, frame_cb cb, void *ctx);

/* True when no partial frame is pending (a stream may end cleanly only then). */
bool frame_decoder_idle(const struct frame_decoder *d);

/* Frees the partial frame; the decoder may be reused from a clean state after it. */
void frame_decoder_clear(struct frame_decoder *d);

#endif
