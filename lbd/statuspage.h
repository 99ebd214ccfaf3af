/*
 * statuspage.h - the status page served at GET / (admin.c): lbd/status.html,
 * embedded at build time by the Makefile as one C string, so lbd needs no
 * file at run time and the page no external asset.
 */
#ifndef LBD_STATUSPAGE_H
#define LBD_STATUSPAGE_H

extern const char statuspage_html[];

#endif
