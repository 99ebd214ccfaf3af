/*
 * sdnotify.h - tell systemd (Type=notify) how the daemon is doing.
 *
 * The documented sd_notify datagram protocol, without libsystemd: one
 * datagram of "KEY=VALUE\n" lines to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@').
 * When $NOTIFY_SOCKET is not set (lbd run by hand, in tests) every call is a
 * no-op that returns 0, so callers never need to ask "under systemd?".
 *
 *   sdnotify_ready("3 frontends, 1 pool")    READY=1 + STATUS=
 *   sdnotify_reloading()                    RELOADING=1 + MONOTONIC_USEC=
 *   sdnotify_ready("reloaded")              back to ready after a reload
 *   sdnotify_stopping("draining 12 conns")  STOPPING=1 + STATUS=
 *
 * Failures are returned, never fatal: a daemon must not die because its
 * supervisor's socket went away.
 */
#ifndef LBD_SDNOTIFY_H
#define LBD_SDNOTIFY_H

/* Sends msg (one or more "KEY=VALUE" lines) as one datagram. Returns 1 if
 * sent, 0 if $NOTIFY_SOCKET is unset or empty, -1 on error (errno set). */
int sdnotify(const char *msg);

/* printf-style sdnotify(). */
int sdnotifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* READY=1, with STATUS=status when status is not NULL. */
int sdnotify_ready(const char *status);
/* RELOADING=1 and MONOTONIC_USEC=now (what systemd >= 253 expects; older
 * ones ignore the extra field). Follow with sdnotify_ready(). */
int sdnotify_reloading(void);
/* STOPPING=1, with STATUS=status when status is not NULL. */
int sdnotify_stopping(const char *status);
/* STATUS=status only: what `systemctl status lbd` shows. */
int sdnotify_status(const char *status);

#endif
