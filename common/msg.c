/*
 * msg.c - see msg.h.
 */
#include "common/msg.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"

struct msgchan {
	struct bufferevent *bev;
	msg_fn on_msg;
	msg_closed_fn on_closed;
	void *arg;
	bool closed;
};

static void closed(struct msgchan *c, const char *why)
{
	if (c->closed)
		return;
	c->closed = true;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	c->on_closed(c, why, c->arg); /* may free c: touch nothing after */
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct msgchan *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!c->closed) {
		unsigned char hdr[4];
		if (evbuffer_copyout(in, hdr, 4) < 4)
			return;
		uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
			       (uint32_t)hdr[2] << 8 | hdr[3];
		if (len == 0 || len > MSG_MAX) {
			closed(c, "a frame of a bad length");
			return;
		}
		if (evbuffer_get_length(in) < 4 + (size_t)len)
			return;
		evbuffer_drain(in, 4);
		json_error_t je;
		json_t *m = json_loadb((const char *)evbuffer_pullup(in, len), len, 0, &je);
		evbuffer_drain(in, len);
		if (!json_is_object(m) || !json_is_string(json_object_get(m, "t"))) {
			json_decref(m);
			closed(c, "a frame that is not a message");
			return;
		}
		c->on_msg(c, m, c->arg);
		json_decref(m);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct msgchan *c = arg;

	if (what & BEV_EVENT_EOF)
		closed(c, "the peer closed the channel");
	else if (what & BEV_EVENT_ERROR)
		closed(c, "a read or write error on the channel");
}

struct msgchan *msg_open(struct event_base *base, int fd, msg_fn on_msg, msg_closed_fn on_closed,
			 void *arg)
{
	struct msgchan *c = xcalloc(1, sizeof(*c));

	evutil_make_socket_nonblocking(fd);
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev)
		fatal("cannot create a bufferevent");
	c->on_msg = on_msg;
	c->on_closed = on_closed;
	c->arg = arg;
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return c;
}

int msg_send(struct msgchan *c, json_t *m)
{
	if (c->closed || msg_queued(c) > MSG_MAX_QUEUED)
		return -1;
	char *text = json_dumps(m, JSON_COMPACT);
	if (!text)
		return -1; /* not encodable: the sender's fault, not the channel's */
	size_t len = strlen(text);
	if (len > MSG_MAX) {
		free(text);
		return -1;
	}
	unsigned char hdr[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
				(unsigned char)(len >> 8), (unsigned char)len};
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_add(out, hdr, 4);
	evbuffer_add(out, text, len);
	free(text);
	return 0;
}

void msg_flush(struct msgchan *c, int timeout_ms)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	int64_t until = mono_ms() + timeout_ms;

	while (!c->closed && evbuffer_get_length(out) > 0 && mono_ms() < until) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (poll(&p, 1, (int)(until - mono_ms())) <= 0)
			break;
		/* A socket bufferevent keeps its output's front frozen between
		 * its own writes: thaw it for ours, as libevent does. */
		evbuffer_unfreeze(out, 1);
		int n = evbuffer_write(out, fd);
		evbuffer_freeze(out, 1);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			break;
	}
}

size_t msg_queued(const struct msgchan *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

void msg_close(struct msgchan **cp)
{
	struct msgchan *c = *cp;

	if (!c)
		return;
	bufferevent_free(c->bev);
	free(c);
	*cp = NULL;
}
