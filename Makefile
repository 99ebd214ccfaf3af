# lbd - one plain Makefile. See README.md: `make run`, `make test`.
#
#   make deps        install the Debian packages the build, tests and demo need (as root)
#   make / all       build/lbd and build/lbctl
#   make run         deps + build + the local demo VIP on 127.0.0.1:6443
#   make test        deps + build + unit + integration tests (SAN=1: under ASan+UBSan)
#   make unit        unit tests only;  make integration  integration tests only
#   make fuzz        every libFuzzer harness for FUZZ_TIME s (default 60); tests/fuzz/fuzz.mk
#   make bench       lbd against HAProxy, side by side: bench/RESULTS.md
#   make deb         the Debian package: $(BUILD)/lbd_VERSION_ARCH.deb (scripts/mkdeb.sh)
#   make install     PREFIX=/usr/local DESTDIR= SYSCONFDIR=/etc (scripts/install.sh)
#   make format      clang-format the C sources;  make format-check  fails on a diff
#   make clean

CC       ?= cc
PY       ?= /usr/bin/python3
SAN      ?=
BUILD    ?= build

# A plain `make` (or `make all`) compiles on every core; goals that run
# tests stay serial (they measure time) and parallelise their own builds.
ifeq ($(filter-out all build-tests fuzz-bins,$(or $(MAKECMDGOALS),all)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
endif

PKGS     := libevent openssl yaml-0.1 jansson libcurl
CFLAGS_BASE := -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-unused-parameter -fno-strict-aliasing -I. -pthread
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -levent_openssl -levent_pthreads -lpthread -lm

ifeq ($(SAN),1)
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SAN),thread)
  SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else
  SANFLAGS :=
endif
CFLAGS   := $(CFLAGS_BASE) $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS  += $(SANFLAGS)

# Debian packages: build, tests, demo, bench.
DEPS_PKGS := build-essential pkg-config libevent-dev libssl-dev libyaml-dev libjansson-dev \
	libcurl4-openssl-dev check openssl curl python3 python3-yaml python3-prometheus-client \
	nginx-light haproxy clang-format iproute2 procps psmisc wrk iperf3 valgrind \
	etcd-server etcd-client clang libclang-rt-14-dev llvm
# The package and the keepalived pair: make deb, lintian, systemd-analyze, test_pair.
DEPS_PKGS += dpkg-dev lintian man-db systemd keepalived bash-completion adduser
# The status page in a browser, the alert rules: test_status_page, test_monitoring.
DEPS_PKGS += chromium prometheus

# Layers (docs/architecture.md): liblow.a is everything below lbd/ and lbctl/;
# the gate's and the orchestrator's tests link it alone, which proves that
# nothing there reaches up into lbd/.
LOW_SRCS  := $(wildcard common/*.c config/*.c kube/*.c gate/*.c upgrade/*.c)
LBD_SRCS  := $(filter-out lbd/main.c,$(wildcard lbd/*.c))
CORE_SRCS := $(LOW_SRCS) $(LBD_SRCS)
LBCTL_SRCS := $(wildcard lbctl/*.c)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
ALL_C := $(CORE_SRCS) lbd/main.c $(LBCTL_SRCS) $(UNIT_SRCS) $(wildcard tests/unit/*.h)

LOW_OBJS   := $(LOW_SRCS:%.c=$(BUILD)/obj/%.o)
LBD_OBJS   := $(LBD_SRCS:%.c=$(BUILD)/obj/%.o)
LBCTL_OBJS := $(LBCTL_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test build-tests unit integration format format-check clean bench
# Keep the objects of test binaries: they are not throwaway intermediates.
.SECONDARY:
all: $(BUILD)/lbd $(BUILD)/lbctl

# The status page (GET /, lbd/statuspage.h): lbd/status.html as a C string.
LBD_OBJS   += $(BUILD)/obj/gen/statuspage.o
$(BUILD)/gen/statuspage.c: lbd/status.html
	@mkdir -p $(dir $@)
	@{ echo '/* Generated from lbd/status.html by the Makefile: do not edit. */'; \
	  echo '#include "lbd/statuspage.h"'; echo 'const char statuspage_html[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; \
	  echo ';'; } > $@
$(BUILD)/obj/gen/statuspage.o: $(BUILD)/gen/statuspage.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The version: the package's, and the commit when built from git. Only
# common/version.o depends on it (through a stamp that changes with it).
VERSION := $(shell dpkg-parsechangelog -l packaging/debian/changelog -S Version 2>/dev/null || echo 0)
COMMIT  := $(shell git describe --always --dirty 2>/dev/null)
VERSION_TEXT := $(VERSION)$(if $(COMMIT), ($(COMMIT)))
$(BUILD)/.version: FORCE
	@mkdir -p $(BUILD)
	@echo '$(VERSION_TEXT)' | cmp -s - $@ || echo '$(VERSION_TEXT)' > $@
$(BUILD)/obj/common/version.o: $(BUILD)/.version
$(BUILD)/obj/common/version.o: CFLAGS += -DLBD_VERSION='"$(VERSION_TEXT)"'

# Rebuild everything when the flags change (SAN=1 after a plain build, say).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CFLAGS) $(LDFLAGS)' > $@
# Phony: with .SECONDARY and no prerequisites every target is secondary, and
# a plain "FORCE:" (no file, no recipe) is then never remade, so the two
# stamps above were never refreshed (a new commit or SAN=1 changed nothing).
.PHONY: FORCE
FORCE:

$(BUILD)/obj/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/liblow.a: $(LOW_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/liblbd.a: $(LBD_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/lbd: $(BUILD)/obj/lbd/main.o $(BUILD)/liblbd.a $(BUILD)/liblow.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/lbctl: $(LBCTL_OBJS) $(BUILD)/liblow.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Suites of lbd/ modules link liblbd.a; every other suite links liblow.a alone.
LBD_UNITS := $(patsubst %,$(BUILD)/tests/%,$(shell grep -l '^\#include "lbd/' $(UNIT_SRCS) \
	2>/dev/null | sed 's,tests/unit/,,; s,\.c$$,,'))
$(LBD_UNITS): $(BUILD)/liblbd.a

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/liblow.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(filter %/liblbd.a,$^) $(BUILD)/liblow.a \
		$(LDLIBS) $(shell pkg-config --libs check)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

include tests/fuzz/fuzz.mk

deps:
	@missing=$$(for p in $(DEPS_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all packages present"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "deps: missing packages; run as root:"; \
		echo "  apt-get install -y $$missing"; exit 1; fi; \
	echo "deps: installing $$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
		|| { echo "deps: apt-get install failed"; exit 1; }; \
	for s in nginx haproxy keepalived prometheus; do systemctl disable --now $$s >/dev/null 2>&1 || true; done

run: deps all
	@$(PY) scripts/demo.py --build $(BUILD)

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; CK_DEFAULT_TIMEOUT=60 $$t; done

# Two test files at a time (LBD_TEST_JOBS=1: one after another): they mostly
# wait on timers, see tests/integration/run.py.
integration: all
	LBD_BUILD=$(BUILD) SAN=$(SAN) $(PY) tests/integration/run.py

# Compile on every core; the unit suites one after another.
NPROC := $(shell nproc 2>/dev/null || echo 2)
build-tests: all $(UNIT_BINS)

test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) build-tests fuzz-bins
	@$(MAKE) --no-print-directory format-check fuzz-quick unit integration
	@echo "make test: all passed"

# Side by side with HAProxy on this machine; writes bench/RESULTS.md.
bench: deps all
	$(PY) bench/run.py --build $(BUILD)

PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
.PHONY: deb install
deb:
	@BUILD=$(BUILD) sh scripts/mkdeb.sh

install: all
	BUILD=$(BUILD) PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) SYSCONFDIR=$(SYSCONFDIR) \
		sh scripts/install.sh

format:
	clang-format -i $(ALL_C) $(wildcard */*.h)

format-check:
	@out=$$(for f in $(ALL_C) $(wildcard */*.h); do clang-format --dry-run -Werror $$f 2>&1 >/dev/null | head -3; done); \
	if [ -n "$$out" ]; then echo "$$out"; echo "format-check: run 'make format'"; exit 1; fi

clean:
	rm -rf $(BUILD)
