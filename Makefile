# Makefile - builds `eph` (one binary), its unit tests and fuzz targets.
#
# GNU Make + pkg-config rather than CMake: the tree is one binary plus tests,
# every dependency ships a .pc file in Debian (http-parser excepted), and a
# plain Makefile is readable by anyone who opens it.
#
#   make                 debug build (ASan + UBSan) -> build/debug/eph
#   make release         optimised build            -> build/release/eph
#   make unit            build and run the Criterion unit tests (debug)
#   make e2e             end-to-end tests (pytest) against build/debug/eph
#   make test            unit + e2e: what CI runs
#   make fuzz            libFuzzer targets with clang -> build/fuzz/
#   make format          clang-format the tree

MODE     ?= debug
BUILD    := build/$(MODE)
CC       ?= cc
PKGS     := libuv jansson libfyaml sqlite3 libcurl openssl libargon2
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS)) -lhttp_parser -lpthread -lm

WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter -Wno-format-zero-length -Wvla
CFLAGS_COMMON := -std=c17 -D_GNU_SOURCE -Isrc $(WARN) $(PKG_CFLAGS) -MMD -MP
ifeq ($(MODE),release)
CFLAGS_MODE := -O2 -g -DNDEBUG
LDFLAGS_MODE :=
else
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
CFLAGS_MODE := -O1 -g -fno-omit-frame-pointer $(SAN)
LDFLAGS_MODE := $(SAN)
endif
ALL_CFLAGS := $(CFLAGS_COMMON) $(CFLAGS_MODE) $(CFLAGS)

SRCS     := $(shell find src -name '*.c' | sort)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/src/main.o
LIB      := $(BUILD)/libeph.a

TEST_SRCS := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all debug release unit e2e test fuzz format clean
all: $(BUILD)/eph

debug:
	$(MAKE) MODE=debug
release:
	$(MAKE) MODE=release

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/eph: $(MAIN_OBJ) $(LIB)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS_MODE) $(PKG_LIBS) -lcriterion

# Runs every unit test binary; ASan/UBSan reports abort the test (halt_on_error).
unit: $(TEST_BINS)
	@set -e; for t in $(TEST_BINS); do echo "== $$t"; \
	  ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $$t --jobs 2 || exit 1; done

e2e: $(BUILD)/eph
	EPH_BIN=$(abspath $(BUILD)/eph) /usr/bin/python3 -m pytest -q tests/e2e $(PYTEST_ARGS)

test: unit e2e

# The library is compiled once with coverage instrumentation
# (fuzzer-no-link), each target links it with libFuzzer's main.
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=build/fuzz/%)
FUZZ_LIB_SRCS := $(filter-out src/main.c src/cli/%,$(SRCS))
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:%.c=build/fuzz/obj/%.o)
FUZZ_LIB := build/fuzz/libeph-fuzz.a
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -Isrc -g -O1 $(PKG_CFLAGS) -MMD -MP
fuzz: $(FUZZ_BINS)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@
$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^
build/fuzz/%: fuzz/%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_LIB) $(PKG_LIBS)

format:
	clang-format -i $$(find src tests/unit fuzz -name '*.[ch]')

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(FUZZ_LIB_OBJS:.o=.d)
