# loopfast - build, test and run.  `make run` runs the main job (the
# benchmark), `make check` builds and runs every test.
CC      ?= gcc
PREFIX  ?= /usr/local
BUILD   := build
WARN    := -Wall -Wextra -Werror
CFLAGS  ?= -O2 -g
override CFLAGS += $(WARN) -std=gnu11 -pthread -D_GNU_SOURCE -Iinclude
# -fexceptions: pthread_cleanup_push becomes an unwinding cleanup, not a
# setjmp, so a thread cancelled in a sleep unwinds through loopfast as
# through libc, also under the sanitizers (docs/design.md, 6.2).
LIB_CFLAGS := -fPIC -fvisibility=hidden -fexceptions
LDLIBS  := -pthread -ldl

LIB_SRC  := $(wildcard src/*.c)
LIB_OBJ  := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRC))
TOOL_SRC := $(wildcard tools/*.c)
TEST_SRC := $(wildcard tests/*.c)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC)) \
            $(patsubst fuzz/%.c,$(BUILD)/tests/%_replay,$(FUZZ_SRC))
# Tests that drive real programs (redis, nginx...) are shell scripts.
TEST_SCRIPTS := $(wildcard tests/prog_*.sh)

EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))

all: $(BUILD)/libloopfast.so $(BUILD)/libloopfast.a $(BUILD)/loopfast $(BUILD)/bench_idle $(BUILD)/bench_idle_rtt $(BUILD)/bench_memory $(BUILD)/bench_setup_conns $(BUILD)/bench_epoll_scale \
     $(BUILD)/bench_line_bounce $(BUILD)/bench_thread_pairs $(BUILD)/bench_kept_rtt $(BUILD)/bench_conns_bulk $(EXAMPLES)

$(BUILD)/obj/%.o: src/%.c src/*.h include/loopfast.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LIB_CFLAGS) -c -o $@ $<

$(BUILD)/libloopfast.so: $(LIB_OBJ) src/loopfast.map
	$(CC) -shared -Wl,--version-script=src/loopfast.map -Wl,-soname,libloopfast.so \
	    -o $@ $(LIB_OBJ) $(LDLIBS)

$(BUILD)/libloopfast.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $(LIB_OBJ)

# The CLI carries the whole library so that its benchmark's sockets take the
# fast path without LD_PRELOAD.
$(BUILD)/loopfast: $(TOOL_SRC) tools/*.h $(BUILD)/libloopfast.a
	$(CC) $(CFLAGS) -Itools -Isrc -o $@ $(TOOL_SRC) \
	    -Wl,--whole-archive $(BUILD)/libloopfast.a -Wl,--no-whole-archive $(LDLIBS) -lm

$(BUILD)/bench_%: bench/%.c bench/*.h $(BUILD)/libloopfast.so
	$(CC) $(CFLAGS) -o $@ $< -L$(BUILD) -Wl,-rpath,'$$ORIGIN' -lloopfast $(LDLIBS)

$(BUILD)/examples/%: examples/%.c include/loopfast.h $(BUILD)/libloopfast.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -L$(BUILD) -Wl,-rpath,'$$ORIGIN/..' -lloopfast

# unit_* tests reach internal functions: they link the static archive.
# Every other test links the shared library, as a user's program would.
$(BUILD)/tests/unit_%: tests/unit_%.c tests/*.h $(BUILD)/libloopfast.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -o $@ $< \
	    -Wl,--whole-archive $(BUILD)/libloopfast.a -Wl,--no-whole-archive $(LDLIBS)

# Each fuzz target's corpus replays in make check, without libFuzzer.
$(BUILD)/tests/fuzz_%_replay: fuzz/fuzz_%.c fuzz/replay.c $(BUILD)/libloopfast.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -DCORPUS_DIR='"$(CURDIR)/fuzz/corpus/$*"' -o $@ $< fuzz/replay.c \
	    -Wl,--whole-archive $(BUILD)/libloopfast.a -Wl,--no-whole-archive $(LDLIBS)

# -fexceptions: a test's pthread_cleanup_push is then the unwinding kind, as
# in C++ programs, which runs only if every frame of a cancelled thread can
# be unwound (tests/thread_cancel.c).
$(BUILD)/tests/%: tests/%.c tests/*.h $(BUILD)/libloopfast.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fexceptions -o $@ $< -L$(BUILD) -Wl,-rpath,'$$ORIGIN/..' -lloopfast $(LDLIBS)

tests: $(TESTS)

# Debian packages the tests drive; installed only when missing and root.
TEST_PACKAGES := redis-server redis-tools nginx-light curl memcached iperf3 sockperf python3 iproute2 \
                 pkgconf man-db postgresql haproxy openssh-server openssh-client wrk apache2-utils \
                 socat busybox strace apache2-bin git nodejs lighttpd netcat-openbsd mini-httpd \
                 squid mosquitto mosquitto-clients
deps:
	@tests/install-deps.sh $(TEST_PACKAGES)

check: all tests deps
	@tests/run.sh $(TESTS) $(TEST_SCRIPTS)

run: all
	$(BUILD)/loopfast bench

# The C tests again, built with sanitizers into their own build directory.
# (The prog_* scripts drive real servers through build/loopfast: not here.)
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=all
check-asan:
	$(MAKE) BUILD=$(BUILD)/asan CFLAGS="$(SAN_FLAGS) -fsanitize=address,undefined" tests
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    LOOPFAST_SOAK_SECONDS=5 tests/run.sh $(BUILD)/asan/tests/*

check-tsan:
	$(MAKE) BUILD=$(BUILD)/tsan CC=clang CFLAGS="$(SAN_FLAGS) -fsanitize=thread" tests
	TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0 LOOPFAST_SOAK_SECONDS=5 \
	    tests/run.sh $(BUILD)/tsan/tests/*

# libFuzzer with ASan and UBSan, FUZZ_SECONDS per target; what it finds is
# kept in fuzz/corpus/NAME and replayed by make check.
FUZZ_SECONDS ?= 60
# The parts under fuzzing, without the interposed calls (the sanitizers'
# runtime intercepts those names itself).
FUZZ_LIB := $(LIB_SRC)   # shm.c needs the rest (ownfd, trim, ...); the CLI links it all too
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
fuzz:
	@tests/install-deps.sh clang libclang-rt-14-dev
	@mkdir -p $(BUILD)/fuzz
	@for f in $(FUZZ_SRC); do \
	    n=$$(basename $$f .c); n=$${n#fuzz_}; mkdir -p fuzz/corpus/$$n; \
	    clang $(FUZZ_CFLAGS) -Wall -Wextra -Werror -std=gnu11 -D_GNU_SOURCE -Iinclude -Isrc \
	        -o $(BUILD)/fuzz/$$n $$f $(FUZZ_LIB) -pthread -ldl || exit 1; \
	    echo "fuzzing $$n for $(FUZZ_SECONDS) s"; \
	    if ! $(BUILD)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	            fuzz/corpus/$$n >$(BUILD)/fuzz/$$n.log 2>&1; then \
	        grep -E "ERROR|SUMMARY|Test unit written" $(BUILD)/fuzz/$$n.log; exit 1; fi; \
	    grep -E "^Done|number_of_executed_units" $(BUILD)/fuzz/$$n.log; \
	done

# Tests whose timing valgrind does not disturb, under memcheck (not those
# that run themselves again with a variable set: /proc/self/exe is valgrind's).
VALGRIND_TESTS := api_errors sendfile_ring short_connections hostile_refused raw_close read_across_switch unit_ring epoll_kernel_turn flags_shared connect_write_accept echo_v4 optin_one_sided readiness \
                  sockopts descriptors msg_flags flow_control own_fds fd_numbers mmsg_rw2 \
                  epoll_states peer_reset shutdown_local fork_split accept_threads_fds link_share request_path \
                  unit_verdict peer_fds holder_exit shell_inherit exec_unproved vfork_exec \
                  fexecve_inherit hand_off io_uring_peer rcvlowat vfork_child_fds stdio_writer \
                  epoll_add_while_waiting sigio_async stdin_inetd shutdown_late_bytes zerocopy_send peek_offset tcp_inq rx_timestamp shutdown_forked \
                  short_close_lazy stalled_reader raw_clone thread_quick close_blocked reset_writes shutdown_answered held_consent sendfile_turn poll_switch_other_thread stdout_moment \
                  hand_off_switched fdopen_switched recvmsg_control tcp_ulp hand_off_round_trip inetd_upload errno_kept exec_plain_image brief_timeout listener_passed stdout_after_switch tcp_info_state reset_after_shutdown linger_time dead_peer_eof \
                  error_after_partial half_closed_killed
check-valgrind: tests
	@tests/install-deps.sh valgrind
	LOOPFAST_MAX_FDS=1048576 \
	LOOPFAST_TEST_WRAPPER="valgrind -q --error-exitcode=9 --suppressions=tests/valgrind.supp" \
	    tests/run.sh $(addprefix $(BUILD)/tests/,$(VALGRIND_TESTS))

# The long soak (make check runs 20 s of it).
SOAK_SECONDS ?= 300
soak: tests
	LOOPFAST_SOAK_SECONDS=$(SOAK_SECONDS) LOOPFAST_TEST_TIMEOUT=$$(($(SOAK_SECONDS) + 60)) \
	    tests/run.sh $(BUILD)/tests/soak

# docs/latency.png and docs/throughput.png from `loopfast bench --sizes --json`.
plots: all
	@tests/install-deps.sh gnuplot-nox python3
	bench/plots.sh

clean:
	rm -rf $(BUILD)

# make install PREFIX=/usr/local [DESTDIR=/staging]; make uninstall likewise.
MANPAGES := man/loopfast.1 man/loopfast.7 man/loopfast_ioctl.3 man/loopfast_fd_is_fast.3
DEST := $(DESTDIR)$(PREFIX)
install: all
	install -D -m 755 $(BUILD)/libloopfast.so $(DEST)/lib/libloopfast.so
	install -D -m 644 $(BUILD)/libloopfast.a $(DEST)/lib/libloopfast.a
	install -D -m 755 $(BUILD)/loopfast $(DEST)/bin/loopfast
	install -D -m 644 include/loopfast.h $(DEST)/include/loopfast.h
	install -D -m 644 include/loopfast/winsock.h $(DEST)/include/loopfast/winsock.h
	@mkdir -p $(DEST)/lib/pkgconfig
	sed 's|@PREFIX@|$(PREFIX)|' loopfast.pc.in > $(DEST)/lib/pkgconfig/loopfast.pc
	for m in $(MANPAGES); do \
	    s=$${m##*.}; install -D -m 644 $$m $(DEST)/share/man/man$$s/$$(basename $$m) || exit 1; \
	done

uninstall:
	rm -f $(DEST)/lib/libloopfast.so $(DEST)/lib/libloopfast.a $(DEST)/bin/loopfast \
	    $(DEST)/include/loopfast.h $(DEST)/include/loopfast/winsock.h \
	    $(DEST)/lib/pkgconfig/loopfast.pc
	-rmdir $(DEST)/include/loopfast 2>/dev/null
	for m in $(MANPAGES); do s=$${m##*.}; rm -f $(DEST)/share/man/man$$s/$$(basename $$m); done

.PHONY: all tests deps check run clean install uninstall plots soak check-asan check-tsan fuzz \
        check-valgrind
