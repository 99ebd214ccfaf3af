/*
 * version.h - which build this is: lbd --version, lbctl --version,
 * GET /v1/status "version". The Makefile stamps it from
 * packaging/debian/changelog and `git describe` (version.c alone is
 * recompiled when it changes).
 */
#ifndef LBD_COMMON_VERSION_H
#define LBD_COMMON_VERSION_H

extern const char lbd_version[]; /* "0.1.0-1 (g1a2b3c4)" */

#endif
