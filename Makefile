# PigeonAir: a thin Makefile over meson.  Every target installs what is
# missing first (tools/setup-deps.sh), so a fresh Debian 12 machine needs
# nothing but `make run` or `make test`.

BUILD      ?= build
ASAN_BUILD ?= build-asan
PORT       ?= 2525
RUN_DIR    ?= $(BUILD)/run

.PHONY: all deps build build-asan run test bench format clean

all: build

deps:
	@./tools/setup-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Dsanitize=true -Dbuildtype=debug

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

build-asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# Foreground, zero-config: kernel backend on 127.0.0.1:$(PORT), spool under $(RUN_DIR).
run: build
	@mkdir -p $(RUN_DIR)
	@echo "pigeond: listening on 127.0.0.1:$(PORT), spool in $(RUN_DIR)/spool; stop with Ctrl-C."
	@echo "Send it a message with:"
	@echo "  swaks --server 127.0.0.1:$(PORT) --from you@example.org --to postmaster@localhost"
	@echo "then list the spool (pigeond stopped) with:"
	@echo "  $(BUILD)/pigeonctl spool ls --dir $(RUN_DIR)/spool"
	exec $(BUILD)/pigeond -o listen=127.0.0.1:$(PORT) -o spool.dir=$(RUN_DIR)/spool

test: build build-asan
	@tests/run.sh $(BUILD) $(ASAN_BUILD)

bench: build
	perf/bench-sink.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
