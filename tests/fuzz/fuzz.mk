# tests/fuzz/fuzz.mk - libFuzzer harnesses (included by the top Makefile).
#
#   make fuzz          every harness for FUZZ_TIME seconds (default 60), fails on any finding
#   make fuzz-quick    every harness over its checked-in corpus plus FUZZ_QUICK seconds (part of make test)
#   make fuzz-bins     only build them: $(BUILD)/fuzz/fuzz_*
#
# The project's sources are compiled again with clang, instrumented for the
# fuzzer (coverage) and ASan+UBSan, into $(BUILD)/fuzz/obj; each harness links
# them with -fsanitize=fuzzer. Nothing here touches the normal build.

FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FUZZ_QUICK ?= 3
FUZZ_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# -Werror is left out: a clang-only warning in someone's file must not stop the fuzzers.
FUZZ_CFLAGS := $(filter-out -Werror -O2,$(CFLAGS_BASE)) -O1 -gline-tables-only \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(FUZZ_SAN) -DLBD_FUZZ
FUZZ_DIR   := $(BUILD)/fuzz
FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS  := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_OBJS  := $(CORE_SRCS:%.c=$(FUZZ_DIR)/obj/%.o)

# The harnesses themselves use Linux/GNU APIs (accept4, nftw).
$(FUZZ_DIR)/obj/tests/fuzz/%.o: FUZZ_CFLAGS += -D_GNU_SOURCE

# Extra link flags per harness (fuzz_kubeconfig confines the files it may read).
FUZZ_LDFLAGS_fuzz_kubeconfig := -Wl,--wrap=fopen

.PHONY: fuzz fuzz-quick fuzz-bins
fuzz-bins: $(FUZZ_BINS)

$(FUZZ_DIR)/.flags: FORCE
	@mkdir -p $(FUZZ_DIR)
	@echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' | cmp -s - $@ || echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' > $@

$(FUZZ_DIR)/obj/%.o: %.c $(FUZZ_DIR)/.flags
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_DIR)/libcore.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/tests/fuzz/fuzz_%.o $(FUZZ_DIR)/libcore.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer $(FUZZ_LDFLAGS_fuzz_$*) -o $@ $^ $(LDLIBS)

-include $(shell find $(FUZZ_DIR)/obj -name '*.d' 2>/dev/null)

fuzz: fuzz-bins
	tests/fuzz/run.sh --build $(FUZZ_DIR) --time $(FUZZ_TIME)

fuzz-quick: fuzz-bins
	tests/fuzz/run.sh --build $(FUZZ_DIR) --quick $(FUZZ_QUICK)
