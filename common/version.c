/* version.c - see version.h. LBD_VERSION comes from the Makefile. */
#include "common/version.h"

#ifndef LBD_VERSION
#define LBD_VERSION "unknown"
#endif

const char lbd_version[] = LBD_VERSION;
