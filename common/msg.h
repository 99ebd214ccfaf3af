/*
 * msg.h - JSON messages over a stream socket: the socketpair between lbd and
 * its gate process.
 *
 * A message is a 4-byte big-endian length and that many bytes of one JSON
 * object with a string "t" (its type). Both ends run it on their event loop;
 * nothing blocks. A frame over MSG_MAX, or bytes that are not such an
 * object, close the channel (the peer is broken; the supervisor restarts
 * it). What one end has queued for the other is bounded too: msg_send
 * refuses a message once MSG_MAX_QUEUED bytes wait, so a peer that stopped
 * reading costs memory only up to that.
 */
#ifndef LBD_COMMON_MSG_H
#define LBD_COMMON_MSG_H

#include <jansson.h>
#include <stddef.h>

struct event_base;
struct msgchan;

#define MSG_MAX (4u << 20)
#define MSG_MAX_QUEUED (16u << 20)

/* m is borrowed for the call; its "t" is a string. The callback must not
 * free the channel (on_closed may). */
typedef void (*msg_fn)(struct msgchan *c, json_t *m, void *arg);
/* The channel is closed (EOF, error, or a bad frame: why says which); the
 * callback may free the channel. */
typedef void (*msg_closed_fn)(struct msgchan *c, const char *why, void *arg);

/* Takes over fd (a connected stream socket), made non-blocking here. */
struct msgchan *msg_open(struct event_base *base, int fd, msg_fn on_msg, msg_closed_fn on_closed,
			 void *arg);
/* Queues m (borrowed). Returns 0, or -1 when the channel is closed or full. */
int msg_send(struct msgchan *c, json_t *m);
/* Writes what is queued now, waiting at most timeout_ms: for a last word
 * before the process exits. */
void msg_flush(struct msgchan *c, int timeout_ms);
/* Bytes queued for the peer and not yet written. */
size_t msg_queued(const struct msgchan *c);
void msg_close(struct msgchan **c);

#endif
