# PigeonAir: a thin Makefile over meson.  Every target installs what is
# missing first (tools/setup-deps.sh), so a fresh Debian 12 machine needs
# nothing but `make run` or `make test`.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
PORT       ?= 2525
RUN_DIR    ?= $(BUILD)/run

.PHONY: all deps build build-asan build-fuzz fuzz run test bench format clean deb deb-test

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

# The libFuzzer harnesses (tests/fuzz/) need clang; only they and what they
# link are built there, so the gcc builds never need clang.
$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true

build-fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) fuzz

# Every harness for FUZZ_SECONDS after replaying its corpus; what it finds
# new is kept in $(FUZZ_BUILD)/fuzz-corpus, crashes in $(FUZZ_BUILD)/fuzz-artifacts.
fuzz: build-fuzz
	tests/fuzz/run.py $(FUZZ_BUILD) --seconds $(FUZZ_SECONDS) --keep

# Foreground, zero-config.  As root: the DPDK backend (user-space TCP/IP) on
# a TAP vdev, no NIC and no hugepages needed; the TAP's kernel side gets
# $(DPDK_PEER) and the engine answers on $(DPDK_IP).  Not root: the kernel
# backend on 127.0.0.1:$(PORT).  Spool under $(RUN_DIR) either way.
TAP       ?= pigeon0
DPDK_IP   ?= 198.18.0.2
DPDK_PEER ?= 198.18.0.1
# STARTTLS: give TLS_CERT/TLS_KEY, or a self-signed development pair is made.
TLS_CERT  ?= $(RUN_DIR)/dev-cert.pem
TLS_KEY   ?= $(RUN_DIR)/dev-key.pem
TLS_OPTS   = -o tls.cert=$(TLS_CERT) -o tls.key=$(TLS_KEY)

# ECDSA P-256 for CN=localhost, for development only (docs/tls.md).
$(RUN_DIR)/dev-cert.pem:
	@mkdir -p $(RUN_DIR)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
		-subj /CN=localhost -keyout $(RUN_DIR)/dev-key.pem -out $@ 2>/dev/null
	@chmod 600 $(RUN_DIR)/dev-key.pem

run: build $(TLS_CERT)
	@mkdir -p $(RUN_DIR)
	@if [ "$$(id -u)" -eq 0 ]; then \
		echo "pigeond: DPDK backend on TAP $(TAP): engine $(DPDK_IP):25, kernel side $(DPDK_PEER)/24;"; \
		echo "spool in $(RUN_DIR)/spool; stop with Ctrl-C.  Send it a message with:"; \
		echo "  swaks --server $(DPDK_IP):25 --from you@example.org --to postmaster@localhost"; \
		echo "then list the spool (pigeond stopped) with:"; \
		echo "  $(BUILD)/pigeonctl spool ls --dir $(RUN_DIR)/spool"; \
		( i=0; while ! ip link show $(TAP) >/dev/null 2>&1; do \
			i=$$((i+1)); [ $$i -gt 300 ] && exit 1; sleep 0.1; done; \
		  ip addr replace $(DPDK_PEER)/24 dev $(TAP) && ip link set $(TAP) up ) & \
		exec $(BUILD)/pigeond -o backend=dpdk \
			-o "dpdk.eal=--no-huge --no-pci -m 512 --vdev=net_tap0,iface=$(TAP)" \
			-o dpdk.ip=$(DPDK_IP)/24 -o listen=$(DPDK_IP):25 -o dpdk.idle_sleep_us=50 \
			-o spool.dir=$(RUN_DIR)/spool $(TLS_OPTS); \
	else \
		echo "pigeond: not root, so the kernel backend: the DPDK backend needs root to create"; \
		echo "its TAP device (sudo make run starts it)."; \
		echo "pigeond: listening on 127.0.0.1:$(PORT), spool in $(RUN_DIR)/spool; stop with Ctrl-C."; \
		echo "Send it a message with:"; \
		echo "  swaks --server 127.0.0.1:$(PORT) --from you@example.org --to postmaster@localhost"; \
		echo "(add --tls for STARTTLS; certificate $(TLS_CERT))"; \
		echo "then list the spool (pigeond stopped) with:"; \
		echo "  $(BUILD)/pigeonctl spool ls --dir $(RUN_DIR)/spool"; \
		exec $(BUILD)/pigeond -o listen=127.0.0.1:$(PORT) -o spool.dir=$(RUN_DIR)/spool \
			$(TLS_OPTS); \
	fi

test: build build-asan build-fuzz
	@tests/run.sh $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

# The Debian packages (debian/): pigeonair and pigeonair-loadgen in
# $(DEB_DIR), built by dpkg-buildpackage from the tracked files and checked
# by lintian (tools/make-deb.sh).  deb-test installs them into a fresh Debian
# 12 root and runs pigeond there as the unit does (tools/deb-test.sh).
DEB_DIR ?= build-deb
DEB_TOOLS = debhelper dpkg-dev lintian mmdebstrap
deb:
	@./tools/setup-deps.sh $(DEB_TOOLS)
	tools/make-deb.sh $(DEB_DIR)

deb-test:
	@./tools/setup-deps.sh $(DEB_TOOLS)
	DEB_BUILD_OPTIONS=nocheck tools/make-deb.sh $(DEB_DIR)
	tools/deb-test.sh $(DEB_DIR)

# The benchmark suite (perf/bench.py, docs/benchmarks.md): pigeond on DPDK and
# on kernel sockets, Postfix, smtp-sink and Haraka, one workload, one run.
# Bounded: every run has a duration or a message count and a timeout, and the
# whole suite BENCH_TIMEOUT seconds (the hand-off figures, perf/bench-drain.py, take
# about 6 of its 30 minutes).  BENCH_QUICK=1 make bench: every scenario
# tiny, only to check that the scripts work (docs/ untouched).
BENCH_TIMEOUT ?= 1800
bench: build
	@perf/setup-bench-deps.sh >/dev/null
	timeout --kill-after=60 $(BENCH_TIMEOUT) /usr/bin/python3 perf/bench.py --build $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(DEB_DIR)
