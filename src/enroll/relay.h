/*
 * relay.h — one Unix stream socket joined to one QUIC stream in raw mode, both ways, on the
 * link loop's thread (issue 16 item 5). The recorder link (D17) crosses the executor link this
 * way: on the executor between the recorder's connection and its session's event stream, on the
 * access point between the stream and the supervisor's end of a socketpair. The relay keeps no
 * state of its own beyond bounded buffers, so the recorder's sequence numbers and acks work end
 * to end: whatever a dropped link loses, the recorder resends after it reconnects.
 *
 * Bounds: bytes from the stream wait here only while the socket cannot take them, and the
 * stream's credit is returned as they are written (at most one receive window, 256 KiB); bytes
 * from the socket are read only while the stream's send buffer has room.
 * Ends: EOF on either side is passed on (FIN, or shutdown(SHUT_WR)); a reset stream or a socket
 * error ends both. The relay owns fd from relay_start on and closes it when done.
 */
#ifndef AH_ENROLL_RELAY_H
#define AH_ENROLL_RELAY_H

#include "link.h"

struct relay;
/* Joins fd (non-blocking, taken) and s (switched to raw input by the caller). on_end (may be
 * NULL) is called once when the relay is over, before it is freed. 0 or AH_E_* (fd closed, s
 * reset). */
int relay_start(struct link_loop *l, int fd, struct link_stream *s,
                void (*on_end)(void *arg), void *arg);

#endif
