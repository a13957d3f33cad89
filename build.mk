# tzmk's build and test entry points: `make -f build.mk help`.
#
# Variables follow the Microkit SDK's own example Makefiles: MICROKIT_SDK is the unpacked SDK,
# MICROKIT_BOARD and MICROKIT_CONFIG select board/<board>/<config>/ inside it, BUILD_DIR holds every
# product. Nothing here builds the SDK itself (docs/microkit-sdk.md says how to get one).

MICROKIT_SDK ?= /opt/microkit-sdk-2.3.0
MICROKIT_BOARD ?= qemu_virt_aarch64_el1
MICROKIT_CONFIG ?= debug
BUILD_DIR ?= build
CARGO ?= cargo
# Where cargo puts what it builds, as cargo itself says (CARGO_TARGET_DIR, build.target-dir in a
# config file, or ./target): every path to a cargo product below starts here, never at a guessed
# `target/`. Evaluated once, on first use.
CARGO_TARGET_DIR_OF = $(shell $(CARGO) metadata --format-version 1 --no-deps --offline 2>/dev/null | \
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR = $(eval TARGET_DIR := $$(or $$(CARGO_TARGET_DIR_OF),$$(error cargo metadata names no target directory: run `$(CARGO) metadata --format-version 1 --no-deps` to see why)))$(TARGET_DIR)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.PHONY: help setup test lint unit audit picture check-picture demo fresh sim pds image qemu-sel4 check-sdk bench-sim bench-ports fuzz-setup fuzz-smoke miri fuzz bench-payload bench-monitor bench-payload-qemu check-monitor-bin

# Debian packages the test layers use; installed by `setup` when running as root (CI), otherwise
# named in a message.
APT_PACKAGES := graphviz binutils-aarch64-linux-gnu qemu-user
RUST_TARGETS := aarch64-unknown-none aarch64-unknown-none-softfloat aarch64-unknown-linux-musl

help:
	@echo "tzmk: an seL4 Microkit secure world for Arm TrustZone"
	@echo
	@echo "  make -f build.mk test      every test layer that can run on this machine (what CI runs)"
	@echo "  make -f build.mk audit     tzmk audit of system.xml: isolation rules and each PD's authority"
	@echo "  make -f build.mk picture   regenerate docs/system.dot and docs/system.svg from system.xml"
	@echo "  make -f build.mk setup     install the rustup targets and (as root) the Debian packages"
	@echo "  make -f build.mk demo      the README's main job: the secure world in the host simulator"
	@echo "  make -f build.mk sim       run system.xml in the host simulator until Ctrl-C"
	@echo "  make -f build.mk pds       build every PD for seL4 (aarch64-unknown-none) and check the images"
	@echo "  make -f build.mk fuzz-smoke  a bounded run of comm-pd's fuzz target (fuzz: ten minutes)"
	@echo "  make -f build.mk miri      the ring crate's tests under Miri (undefined behaviour in its shared-memory access)"
	@echo "  make -f build.mk bench-ports ports against a Unix socket, a pipe, memcpy and eventfd (a table)"
	@echo "  make -f build.mk bench-sim the simulator's notification and pp round trips against the host floor"
	@echo "  make -f build.mk bench-monitor  the EL3 monitor's SMC costs under QEMU -icount beside TF-A's (MONITOR_BIN=...)"
	@echo "  make -f build.mk bench-system   the whole system under QEMU -icount: notification, round trips, transfers against a pipe (SDK)"
	@echo "  make -f build.mk bench-rt       the in-seL4 cyclictest: rt-task's lateness under Linux loads, MTTCG and -icount (SDK)"
	@echo "  make -f build.mk bench-payload-qemu  the bench payload under QEMU's own PSCI (no monitor): proves the payload"
	@echo
	@echo "The Linux guest of qemu-linux (tests/linux/README.md; downloads Debian's arm64 kernel once):"
	@echo "  make -f build.mk linux-kernel     $(BUILD_DIR)/linux/Image and VERSION, headers for modules"
	@echo "  make -f build.mk linux-initramfs  $(BUILD_DIR)/linux/initramfs.cpio: the Rust /init and tzmk_probe.ko"
	@echo "  make -f build.mk linux-smoke      boot them under QEMU's own PSCI (no monitor): /init must PASS"
	@echo
	@echo "The EL3 monitor (monitor/README.md, docs/monitor.md):"
	@echo "  make -f build.mk monitor    $(BUILD_DIR)/monitor.bin, the secure flash image (-bios)"
	@echo "  make -f build.mk monitor-sha256  the Armv8 SHA-256 block function's known answers under qemu-aarch64"
	@echo "  make -f build.mk qemu-linux the monitor with Debian's kernel on cores 1-3, no secure image"
	@echo "  make -f build.mk qemu       with the SDK: seL4 and its PDs on core 0, Linux on cores 1-3"
	@echo "  make -f build.mk qemu-boot  trusted boot stops a bad manifest or a tampered image (the secure one with the SDK)"
	@echo "  make -f build.mk keys       the development platform key and UDS under $(BUILD_DIR)/keys (made once; every boot target makes them)"
	@echo "  make -f build.mk run        with the SDK: the same, interactive: a shell with tzctl and tzmk.ko (poweroff quits)"
	@echo "  make -f build.mk run-test   make run as a user uses it: boot, tzctl list, tzctl echo, poweroff"
	@echo "  make -f build.mk scaffold   tzmk new-pd on a copy of the repository: builds, audits, answers in the simulator (and on QEMU with the SDK)"
	@echo
	@echo "With the Microkit SDK:"
	@echo "  make -f build.mk image     run the microkit tool: $(BUILD_DIR)/loader.img and report.txt"
	@echo "  make -f build.mk qemu-sel4 boot the image on QEMU and check every PD prints its ready line"
	@echo
	@echo "Targets that need the Microkit SDK read MICROKIT_SDK (now $(MICROKIT_SDK)),"
	@echo "MICROKIT_BOARD (now $(MICROKIT_BOARD)) and MICROKIT_CONFIG (now $(MICROKIT_CONFIG))."

setup:
	@rustup target add $(RUST_TARGETS) >/dev/null
	@missing=""; for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "setup: installing$$missing"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	    else \
	        echo "setup: not root, cannot install:$$missing (tests that need them will say SKIPPED)"; \
	    fi; \
	fi
	@# The verifier outside this project that tzmk's attestation tokens must satisfy (tools/verify-psa-token.py).
	@python3 -c 'import pycose, cbor2' 2>/dev/null || { echo "setup: installing pycose and cbor2 (PyPI)"; \
	    python3 -m pip install -q --disable-pip-version-check pycose cbor2 || echo "setup: pip could not install pycose (the token cross-check will say SKIPPED)"; }

test: setup lint unit audit check-picture pds monitor monitor-sha256 demo fresh fuzz-smoke miri qemu-linux qemu-sel4 qemu qemu-boot run-test scaffold system-bench
	@echo "== make -f build.mk test: every layer passed"

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -q -- -D warnings

unit:
	$(CARGO) test --workspace --locked -q

audit:
	$(CARGO) run --release --locked -q -p tzmk -- audit system.xml

# docs/system.dot is checked against system.xml by tests/picture.rs; here it is rendered, which
# proves Graphviz accepts it.
picture:
	$(CARGO) run --release --locked -q -p tzmk -- audit -q --dot docs/system.dot system.xml
	dot -Tsvg docs/system.dot -o docs/system.svg

check-picture:
	@mkdir -p $(BUILD_DIR)
	@if command -v dot >/dev/null; then \
	    dot -Tsvg docs/system.dot -o $(BUILD_DIR)/system.svg && echo "picture: $(BUILD_DIR)/system.svg rendered"; \
	else \
	    echo "SKIPPED: no Graphviz dot; docs/system.dot not rendered"; \
	fi

demo:
	$(CARGO) run --release --locked -q -p tzmk -- demo --count 200

# After a build, building again must compile nothing (the first build here is for what `demo` did
# not build): a build script that declares a dependency
# on a file that does not exist (or on none at all) makes cargo rebuild its crate, and every crate
# above it, on every `cargo run`. Names each crate cargo would not take as fresh.
fresh:
	@$(CARGO) build --release --locked -q -p tzmk -p tzctl
	@stale=$$($(CARGO) build --release --locked -p tzmk -p tzctl --message-format=json 2>/dev/null | \
	    sed -n 's/.*"reason":"compiler-artifact".*"package_id":"\([^"]*\)".*"fresh":false.*/\1/p' | sort -u); \
	if [ -n "$$stale" ]; then echo "fresh: an unchanged workspace rebuilt:" $$stale >&2; exit 1; fi; \
	echo "fresh: a second build of tzmk and tzctl compiled nothing"

sim:
	$(CARGO) run --release --locked -q -p tzmk -- sim system.xml

# The fuzz target of comm-pd's port engine (comm-pd/fuzz). cargo-fuzz needs a nightly compiler for
# its sanitizers: a dated one, so that a run is reproducible; the workspace itself stays on stable.
FUZZ_TOOLCHAIN := nightly-2026-05-20
CARGO_FUZZ_VERSION := 0.13.1
FUZZ_SECONDS ?= 30

fuzz-setup:
	@rustup toolchain list | grep -q '^$(FUZZ_TOOLCHAIN)' || rustup toolchain install $(FUZZ_TOOLCHAIN) --profile minimal
	@cargo fuzz --version 2>/dev/null | grep -q '$(CARGO_FUZZ_VERSION)' || cargo install --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION)

# A bounded run (FUZZ_SECONDS per target) from an empty corpus of each target: comm-pd's port
# engine (`engine`) and the attestation request path (`attestation`: comm-pd's parser, then
# attestation-pd's runtime log). A crash, or an input that runs over 10 s (a hang), fails the
# build and leaves its input in comm-pd/fuzz/artifacts/TARGET/.
fuzz-smoke: fuzz-setup
	@mkdir -p $(BUILD_DIR)
	@set -e; cd comm-pd/fuzz; for name in engine attestation; do \
	    log=$(abspath $(BUILD_DIR))/fuzz-$$name.log; \
	    if cargo +$(FUZZ_TOOLCHAIN) fuzz run $$name -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 >"$$log" 2>&1; then \
	        echo "fuzz-smoke: $$name, $(FUZZ_SECONDS) s: $$(grep -E '^Done' "$$log")"; \
	    else \
	        tail -n 60 "$$log"; \
	        echo "fuzz-smoke: $$name failed; the input is in comm-pd/fuzz/artifacts/$$name/" >&2; exit 1; \
	    fi; \
	done

fuzz:
	$(MAKE) -f build.mk fuzz-smoke FUZZ_SECONDS=600

# Miri over tzmk-ring's tests, on the fuzz layer's nightly: undefined behaviour in the ring's
# volatile and atomic access of shared memory, on every path the unit and property tests take.
# Fewer proptest cases (MIRI_PROPTEST_CASES; Miri runs each ~1000x slower) keep it to minutes; the
# signalling model is pure logic and skipped under Miri (cfg(miri)). The tests are single-threaded,
# so Miri's weak-memory emulation has nothing to explore; it is off because it panics (a Miri bug,
# cf. rust-lang/miri#5185) when the tests' hostile byte writes hit an index word last written
# atomically, which is what a hostile peer does and is no undefined behaviour without a race.
MIRI_PROPTEST_CASES ?= 16

miri:
	@rustup toolchain list | grep -q '^$(FUZZ_TOOLCHAIN)' || rustup toolchain install $(FUZZ_TOOLCHAIN) --profile minimal
	@installed=$$(rustup component list --toolchain $(FUZZ_TOOLCHAIN) --installed); \
	for c in miri rust-src; do \
	    grep -q "^$$c" <<<"$$installed" || rustup component add --toolchain $(FUZZ_TOOLCHAIN) $$c; \
	done
	PROPTEST_CASES=$(MIRI_PROPTEST_CASES) MIRIFLAGS="-Zmiri-env-forward=PROPTEST_CASES -Zmiri-disable-weak-memory-emulation" \
	    cargo +$(FUZZ_TOOLCHAIN) miri test --locked -q -p tzmk-ring

bench-ports:
	$(CARGO) bench --locked -q -p tzctl --bench ports

bench-sim:
	$(CARGO) bench --locked -q -p tzmk-sim --bench round_trips

# PDs for seL4. The SDK's debug configuration needs the runtime's `debug` feature (the kernel
# prints, and its invocation labels differ: docs/sel4-abi.md).
space := $() $()
comma := ,
# Every PD of system.xml: its program_image NAME.elf is the crate NAME (`tzmk new-pd` keeps it so).
PD_CRATES := $(patsubst %.elf,%,$(shell sed -n 's/.*<program_image path="\([^"]*\)".*/\1/p' system.xml))
PD_DIR := $(BUILD_DIR)/pds/$(MICROKIT_CONFIG)
PD_FEATURES := $(if $(filter debug,$(MICROKIT_CONFIG)),--features $(subst $(space),$(comma),$(addsuffix /debug,$(PD_CRATES))))

pds:
	$(CARGO) build --release --locked --target aarch64-unknown-none $(addprefix -p ,$(PD_CRATES)) $(PD_FEATURES)
	@mkdir -p $(PD_DIR)
	@for pd in $(PD_CRATES); do cp $(TARGET_DIR)/aarch64-unknown-none/release/$$pd $(PD_DIR)/$$pd.elf; done
	TZMK_PD_DIR=$(abspath $(PD_DIR)) $(CARGO) test --locked -q -p tzmk-tests --test pd_images
	@echo "pds: $(PD_DIR)/{$(subst $(space),$(comma),$(addsuffix .elf,$(PD_CRATES)))} checked"

HAVE_SDK = $(wildcard $(MICROKIT_SDK)/bin/microkit)
SDK_BOARD_DIR = $(MICROKIT_SDK)/board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)

check-sdk:
	@if [ ! -x "$(MICROKIT_SDK)/bin/microkit" ]; then \
	    echo "error: no Microkit SDK at MICROKIT_SDK=$(MICROKIT_SDK): set MICROKIT_SDK to an unpacked Microkit 2.3.0 SDK with board MICROKIT_BOARD=$(MICROKIT_BOARD), config MICROKIT_CONFIG=$(MICROKIT_CONFIG) (docs/microkit-sdk.md)" >&2; exit 1; fi
	@if [ ! -d "$(SDK_BOARD_DIR)" ]; then \
	    echo "error: the SDK has no board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG): check MICROKIT_BOARD=$(MICROKIT_BOARD) and MICROKIT_CONFIG=$(MICROKIT_CONFIG)" >&2; exit 1; fi

image: check-sdk pds
	MICROKIT_SDK=$(MICROKIT_SDK) MICROKIT_BOARD=$(MICROKIT_BOARD) $(CARGO) test --locked -q -p tzmk-tests --test sdk_constants -- --ignored
	$(MICROKIT_SDK)/bin/microkit system.xml --search-path $(PD_DIR) --board $(MICROKIT_BOARD) \
	    --config $(MICROKIT_CONFIG) -o $(BUILD_DIR)/loader.img -r $(BUILD_DIR)/report.txt
	@echo "image: $(BUILD_DIR)/loader.img, report $(BUILD_DIR)/report.txt"

# Boots loader.img on QEMU (no monitor yet: the board runs seL4 at EL1 under QEMU's own EL2) and
# checks every PD of system.xml prints its ready line. PDs print only with the debug kernel.
qemu-sel4:
	@if [ -z "$(HAVE_SDK)" ]; then echo "SKIPPED: no Microkit SDK at MICROKIT_SDK=$(MICROKIT_SDK): qemu-sel4 not run"; \
	else $(MAKE) -f build.mk --no-print-directory image MICROKIT_CONFIG=debug && \
	    TZMK_LOADER_IMG=$(abspath $(BUILD_DIR))/loader.img $(CARGO) test --locked -q -p tzmk-tests --test qemu_sel4 -- --ignored --nocapture; fi

# ---- Linux guest (issue 5): Debian's arm64 kernel, the test module, the Rust /init -------------
# Everything the normal world of `qemu-linux` needs except the monitor and the DTB
# (tests/linux/README.md). Outputs in $(LINUX_DIR): Image and VERSION (linux-kernel),
# initramfs.cpio (linux-initramfs: /init and /tzmk_probe.ko). linux-smoke boots them under QEMU's
# own PSCI firmware, without the monitor.
.PHONY: linux-setup linux-kernel linux-module linux-driver linux-init linux-initramfs linux-smoke

LINUX_DIR := $(BUILD_DIR)/linux
LINUX_CROSS := aarch64-linux-gnu-
LINUX_APT_PACKAGES := gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross cpio qemu-system-arm sparse
# apt with a private state directory: downloads arm64 (and amd64) packages without touching the
# system's configuration, lists or dpkg database.
LINUX_APT_DIR = $(abspath $(LINUX_DIR))/apt
LINUX_APT = -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o APT::Architectures::=amd64 \
    -o Dir::State::Lists=$(LINUX_APT_DIR)/lists -o Dir::Cache=$(LINUX_APT_DIR)/cache \
    -o Dir::State::Status=/dev/null -o APT::Sandbox::User=root
LINUX_HEADERS = $(abspath $(LINUX_DIR))/root/usr/src/linux-headers-$$(cat $(LINUX_DIR)/VERSION)
LINUX_INIT = $(TARGET_DIR)/aarch64-unknown-linux-musl/release/tzmk-init

linux-setup:
	@rustup target add aarch64-unknown-linux-musl >/dev/null
	@missing=""; for p in $(LINUX_APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then echo "error: linux-setup needs root to install:$$missing" >&2; exit 1; fi; \
	    echo "linux-setup: installing$$missing"; \
	    apt-get -o DPkg::Lock::Timeout=900 update -qq && DEBIAN_FRONTEND=noninteractive \
	        apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

linux-kernel: $(LINUX_DIR)/VERSION

# Resolves Debian's current arm64 kernel through the linux-image-arm64 metapackage (security
# updates replace the ABI version), downloads it once (VERSION is written last: its presence means
# everything below is there) and unpacks the Image and the headers for out-of-tree modules.
$(LINUX_DIR)/VERSION:
	@rm -rf $(LINUX_DIR)/root $(LINUX_DIR)/debs $(LINUX_DIR)/Image
	@mkdir -p $(LINUX_APT_DIR)/lists/partial $(LINUX_APT_DIR)/cache/archives/partial $(LINUX_DIR)/debs $(LINUX_DIR)/root
	apt-get $(LINUX_APT) update -qq
	@show() { apt-cache $(LINUX_APT) show --no-all-versions "$$1"; }; \
	release=$$(show linux-image-arm64 | sed -n 's/^Depends: .*linux-image-\([^ ,]*-arm64\) (.*/\1/p'); \
	if [ -z "$$release" ]; then echo "error: linux-image-arm64 (arm64) names no linux-image-<ver>-arm64 in Debian's index: see apt-cache $(LINUX_APT) show linux-image-arm64" >&2; exit 1; fi; \
	abi=$${release%-arm64}; \
	version=$$(show linux-image-$$release-unsigned | sed -n 's/^Version: //p'); \
	kbuild=$$(show linux-headers-$$release | sed -n 's/^Depends: .*\(linux-kbuild-[0-9.]*\).*/\1/p'); \
	if [ -z "$$version" ] || [ -z "$$kbuild" ]; then echo "error: no linux-image-$$release-unsigned or no linux-kbuild dependency of linux-headers-$$release in Debian's index" >&2; exit 1; fi; \
	echo "linux-kernel: Debian $$version, linux $$release ($$kbuild)"; \
	cd $(LINUX_DIR)/debs && apt-get $(LINUX_APT) download -q=2 \
	    linux-image-$$release-unsigned=$$version linux-headers-$$release=$$version \
	    linux-headers-$$abi-common=$$version $$kbuild:amd64=$$version; \
	cd ../root && for deb in ../debs/linux-headers-*.deb ../debs/linux-kbuild-*.deb; do dpkg-deb -x "$$deb" .; done; \
	dpkg-deb --fsys-tarfile ../debs/linux-image-$$release-unsigned_*.deb | tar -x ./boot/vmlinuz-$$release; \
	sed -i "s|^include /usr/src/|include $$PWD/usr/src/|" usr/src/linux-headers-$$release/Makefile; \
	grep -q "^include $$PWD/usr/src/linux-headers-$$abi-common/Makefile" usr/src/linux-headers-$$release/Makefile || \
	    { echo "error: linux-headers-$$release/Makefile no longer includes the common headers' Makefile by absolute path: see tests/linux/README.md" >&2; exit 1; }; \
	cd .. && mv root/boot/vmlinuz-$$release Image; \
	if [ "$$(od -An -tx1 -j56 -N4 Image | tr -d ' ')" != 41524d64 ]; then echo "error: $(LINUX_DIR)/Image (vmlinuz-$$release) is not an uncompressed arm64 Image" >&2; exit 1; fi; \
	echo "$$version" > DEBIAN_VERSION; echo "$$release" > VERSION.tmp && mv VERSION.tmp VERSION
	@echo "linux-kernel: $(LINUX_DIR)/Image, $$(cat $(LINUX_DIR)/VERSION)"

# tzmk_probe.ko, built out of tree in $(LINUX_DIR)/module (kbuild writes its objects beside the
# sources) with the driver's SMC and DT code (linux-side/driver/tzmk_firmware.h), the driver's
# tzmk_abi.h and the probe's own constants (tzmk_probe.h).
linux-module: linux-setup linux-kernel
	@rm -rf $(LINUX_DIR)/module && mkdir -p $(LINUX_DIR)/module
	cp tests/linux/tzmk-probe/Kbuild tests/linux/tzmk-probe/tzmk_probe.c linux-side/driver/tzmk_firmware.h $(LINUX_DIR)/module/
	$(CARGO) run -q --locked -p tzmk-abi-header > $(LINUX_DIR)/module/tzmk_abi.h
	$(CARGO) run -q --locked -p tzmk-linux-guest --bin tzmk-probe-header > $(LINUX_DIR)/module/tzmk_probe.h
	nice -n 10 $(MAKE) --no-print-directory -s -C $(LINUX_HEADERS) M=$(abspath $(LINUX_DIR))/module \
	    ARCH=arm64 CROSS_COMPILE=$(LINUX_CROSS) modules
	@echo "linux-module: $(LINUX_DIR)/module/tzmk_probe.ko"

# tzmk.ko (linux-side/driver), built out of tree like tzmk_probe.ko with tzmk_abi.h generated from
# pds/interface and pds/ring, with W=1 and sparse (C=1): any warning fails the build. Then the
# static test client /tzmk-check against the same header.
LINUX_DRIVER_DIR := $(LINUX_DIR)/driver
linux-driver: linux-setup linux-kernel
	@rm -rf $(LINUX_DRIVER_DIR) && mkdir -p $(LINUX_DRIVER_DIR)
	cp linux-side/driver/Kbuild linux-side/driver/tzmk.c linux-side/driver/tzmk_firmware.h $(LINUX_DRIVER_DIR)/
	$(CARGO) run -q --locked -p tzmk-abi-header > $(LINUX_DRIVER_DIR)/tzmk_abi.h
	@log=$(abspath $(LINUX_DRIVER_DIR))/build.log; \
	if command -v sparse >/dev/null; then check="C=1"; else check=""; echo "SKIPPED: no sparse (Debian package sparse): tzmk.ko built without C=1"; fi; \
	nice -n 10 $(MAKE) --no-print-directory -s -C $(LINUX_HEADERS) M=$(abspath $(LINUX_DRIVER_DIR)) \
	    ARCH=arm64 CROSS_COMPILE=$(LINUX_CROSS) W=1 $$check modules >"$$log" 2>&1 || { cat "$$log"; exit 1; }; \
	cat "$$log"; \
	if grep -q 'warning:\|error:' "$$log"; then echo "linux-driver: tzmk.ko built with warnings (W=1 $$check): see above" >&2; exit 1; fi; \
	echo "linux-driver: $(LINUX_DRIVER_DIR)/tzmk.ko (W=1 $$check, no warnings)"
	$(LINUX_CROSS)gcc -static -O2 -Wall -Wextra -Werror -I$(LINUX_DRIVER_DIR) \
	    -o $(LINUX_DRIVER_DIR)/tzmk-check linux-side/driver/test/tzmk-check.c
	@echo "linux-driver: $(LINUX_DRIVER_DIR)/tzmk-check"

linux-init: linux-setup
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=$(LINUX_CROSS)gcc nice -n 10 $(CARGO) build --release --locked \
	    --target aarch64-unknown-linux-musl -p tzmk-linux-guest --bin tzmk-init --bin tzmk-hostile --bin tzmk-bench --bin tzmk-rtbench

# newc archive of /init and /tzmk_probe.ko (stripped), owned by root. No device nodes: the kernel's
# built-in initramfs provides /dev/console, and /init mounts devtmpfs.
linux-initramfs: linux-module linux-driver linux-init linux-tzctl
	@rm -rf $(LINUX_DIR)/initramfs && mkdir -p $(LINUX_DIR)/initramfs/bin
	$(LINUX_CROSS)strip -o $(LINUX_DIR)/initramfs/bin/tzctl $(LINUX_TZCTL)
	$(LINUX_CROSS)strip -o $(LINUX_DIR)/initramfs/bin/tzmk-hostile $(dir $(LINUX_INIT))tzmk-hostile
	$(LINUX_CROSS)strip -o $(LINUX_DIR)/initramfs/bin/tzmk-bench $(dir $(LINUX_INIT))tzmk-bench
	$(LINUX_CROSS)strip -o $(LINUX_DIR)/initramfs/bin/tzmk-rtbench $(dir $(LINUX_INIT))tzmk-rtbench
	$(LINUX_CROSS)strip -o $(LINUX_DIR)/initramfs/init $(LINUX_INIT)
	$(LINUX_CROSS)strip --strip-debug -o $(LINUX_DIR)/initramfs/tzmk_probe.ko $(LINUX_DIR)/module/tzmk_probe.ko
	$(LINUX_CROSS)strip --strip-debug -o $(LINUX_DIR)/initramfs/tzmk.ko $(LINUX_DRIVER_DIR)/tzmk.ko
	$(LINUX_CROSS)strip -o $(LINUX_DIR)/initramfs/tzmk-check $(LINUX_DRIVER_DIR)/tzmk-check
	cd $(LINUX_DIR)/initramfs && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet > ../initramfs.cpio
	@echo "linux-initramfs: $(LINUX_DIR)/initramfs.cpio (/init, /tzmk_probe.ko, /tzmk.ko, /tzmk-check, /bin/tzctl, /bin/tzmk-hostile, /bin/tzmk-bench, /bin/tzmk-rtbench)"

# Without the monitor: QEMU's own PSCI (virtualization=on makes its conduit smc; Linux starts at
# EL2). Its SMCCC is 1.0, so the kernel has no SMCCC 1.1 conduit and the module must report "no
# tzmk monitor"; /init must still see 3 CPUs, sleep, print PASS and power off (QEMU exits).
LINUX_SMOKE_TIMEOUT ?= 300
linux-smoke: linux-setup linux-kernel linux-initramfs
	@log=$(abspath $(LINUX_DIR))/smoke.log; \
	timeout $(LINUX_SMOKE_TIMEOUT) qemu-system-aarch64 -M virt,virtualization=on -cpu cortex-a53 -smp 3 -m 1G \
	    -nographic -nic none -no-reboot -kernel $(LINUX_DIR)/Image -initrd $(LINUX_DIR)/initramfs.cpio \
	    -append "console=ttyAMA0 panic=-1 tzmk.expect=absent" </dev/null >"$$log.raw" 2>&1 || status=$$?; \
	tr -d '\r' <"$$log.raw" >"$$log"; rm -f "$$log.raw"; \
	grep '^tzmk-init: ' "$$log" || true; \
	if [ -n "$${status:-}" ]; then echo "linux-smoke: QEMU exited with $$status (124: timed out after $(LINUX_SMOKE_TIMEOUT) s); the console is in $$log" >&2; exit 1; fi; \
	if [ "$$(grep -c '^tzmk-init: \(PASS\|FAIL\)' "$$log")" != 1 ] || ! grep -qx 'tzmk-init: PASS' "$$log"; then \
	    echo "linux-smoke: no single tzmk-init: PASS line; the console is in $$log" >&2; exit 1; fi; \
	grep -q 'tzmk_probe: no tzmk monitor' "$$log" || { echo "linux-smoke: tzmk_probe did not report \"no tzmk monitor\"; the console is in $$log" >&2; exit 1; }; \
	echo "linux-smoke: PASS ($$(cat $(LINUX_DIR)/VERSION), QEMU's own firmware)"

# ---- The interactive guest (make run; linux-side/guest/) --------------------------------------
# busybox from Debian's busybox-static (arm64), fetched with the same private apt state as the
# kernel; tzctl as a static musl binary; linux-side/guest/init as /init.
.PHONY: linux-busybox linux-tzctl run-initramfs run-images run run-qemu run-test
LINUX_BUSYBOX := $(LINUX_DIR)/busybox
LINUX_TZCTL = $(TARGET_DIR)/aarch64-unknown-linux-musl/release/tzctl

linux-busybox: $(LINUX_BUSYBOX)

$(LINUX_BUSYBOX): $(LINUX_DIR)/VERSION
	@rm -rf $(LINUX_DIR)/busybox-root && mkdir -p $(LINUX_DIR)/busybox-root $(LINUX_DIR)/debs
	cd $(LINUX_DIR)/debs && rm -f busybox-static_*.deb && apt-get $(LINUX_APT) download -q=2 busybox-static
	dpkg-deb -x $(LINUX_DIR)/debs/busybox-static_*.deb $(LINUX_DIR)/busybox-root
	@if [ "$$(od -An -tx1 -j18 -N2 $(LINUX_DIR)/busybox-root/bin/busybox | tr -d ' ')" != b700 ]; then \
	    echo "error: Debian's busybox-static did not give an AArch64 bin/busybox" >&2; exit 1; fi
	cp $(LINUX_DIR)/busybox-root/bin/busybox $@
	@echo "linux-busybox: $@ ($$(cat $(LINUX_DIR)/debs/busybox-static_*.deb | wc -c) B package)"

linux-tzctl: linux-setup
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=$(LINUX_CROSS)gcc nice -n 10 $(CARGO) build --release --locked \
	    --target aarch64-unknown-linux-musl -p tzctl --bin tzctl

# The run initramfs: /init (linux-side/guest/init), busybox, tzctl, tzmk.ko.
RUN_INITRAMFS := $(LINUX_DIR)/run-initramfs.cpio
run-initramfs: linux-busybox linux-tzctl linux-driver
	@rm -rf $(LINUX_DIR)/run-root && mkdir -p $(LINUX_DIR)/run-root/bin $(LINUX_DIR)/run-root/lib
	cp linux-side/guest/init $(LINUX_DIR)/run-root/init
	cp $(LINUX_BUSYBOX) $(LINUX_DIR)/run-root/bin/busybox
	$(LINUX_CROSS)strip -o $(LINUX_DIR)/run-root/bin/tzctl $(LINUX_TZCTL)
	$(LINUX_CROSS)strip --strip-debug -o $(LINUX_DIR)/run-root/lib/tzmk.ko $(LINUX_DRIVER_DIR)/tzmk.ko
	cd $(LINUX_DIR)/run-root && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet > ../run-initramfs.cpio
	$(CARGO) run --release --locked -q -p tzmk -- dtb system.xml --initrd $(RUN_INITRAMFS) \
	    --bootargs "$(LINUX_BOOTARGS) quiet" -o $(LINUX_DIR)/tzmk-run.dtb
	@echo "run-initramfs: $(RUN_INITRAMFS) (/init, busybox, tzctl, tzmk.ko)"

# Every image of the real system for make run, then QEMU with this terminal as the console.
run-images:
	@if [ -z "$(HAVE_SDK)" ]; then echo "error: run needs a Microkit SDK at MICROKIT_SDK=$(MICROKIT_SDK) (docs/microkit-sdk.md)" >&2; exit 1; fi
	$(MAKE) -f build.mk --no-print-directory image MICROKIT_CONFIG=debug
	$(MAKE) -f build.mk --no-print-directory monitor run-initramfs keys
	$(call flash-image,run,$(BUILD_DIR)/loader.img,$(LINUX_DIR)/Image,$(LINUX_DIR)/tzmk-run.dtb,$(RUN_INITRAMFS))

RUN_QEMU = $(CARGO) run --release --locked -q -p tzmk -- run --monitor $(BUILD_DIR)/flash-run.bin --loader $(BUILD_DIR)/loader.img \
    --kernel $(LINUX_DIR)/Image --dtb $(LINUX_DIR)/tzmk-run.dtb --initramfs $(RUN_INITRAMFS) \
    --secure-log $(BUILD_DIR)/run-secure-uart.log
run-qemu:
	$(RUN_QEMU)

run: run-images
	@$(MAKE) -f build.mk --no-print-directory run-qemu

# make run as a user uses it (tests/qemu_run.rs): boot, type tzctl list and tzctl echo, poweroff.
run-test:
	@if [ -z "$(HAVE_SDK)" ]; then echo "SKIPPED: no Microkit SDK at MICROKIT_SDK=$(MICROKIT_SDK): run-test not run"; \
	else $(MAKE) -f build.mk --no-print-directory run-images && \
	    TZMK_RUN="$(MAKE) -f build.mk --no-print-directory -s run-qemu MICROKIT_SDK=$(MICROKIT_SDK)" \
	    $(CARGO) test --locked -q -p tzmk-tests --test qemu_run -- --ignored --nocapture; fi

# ---- Extending tzmk: `tzmk new-pd` end to end (tests/scaffold.rs, docs/adding-a-pd.md) --------
# On a copy of the repository in $(SCAFFOLD_DIR)/repo (its cargo products in $(SCAFFOLD_DIR)/target):
# refusals, then `tzmk new-pd hello`, its host tests, every PD for seL4 with the image checks, the
# audit, tzctl in the copy's simulator. With the SDK, the copy's loader.img then boots beside this
# repository's Linux, monitor and run initramfs (new-pd changes none of them), signed like make
# run's, and a user types `tzctl echo hello` on the console (tests/qemu_run.rs).
.PHONY: scaffold
SCAFFOLD_DIR := $(BUILD_DIR)/scaffold
SCAFFOLD_LOADER = $(SCAFFOLD_DIR)/repo/build/loader.img
scaffold:
	TZMK_SCAFFOLD_DIR=$(abspath $(SCAFFOLD_DIR)) $(CARGO) test --locked -q -p tzmk-tests --test scaffold -- --ignored --nocapture
	@if [ -z "$(HAVE_SDK)" ]; then echo "SKIPPED: no Microkit SDK at MICROKIT_SDK=$(MICROKIT_SDK): the scaffolded PD is not booted on QEMU"; \
	else CARGO_TARGET_DIR=$(abspath $(SCAFFOLD_DIR))/target $(MAKE) -C $(SCAFFOLD_DIR)/repo -f build.mk --no-print-directory \
	        image MICROKIT_CONFIG=debug MICROKIT_SDK=$(MICROKIT_SDK) BUILD_DIR=build && \
	    $(MAKE) -f build.mk --no-print-directory monitor run-initramfs keys && \
	    $(MAKE) -f build.mk --no-print-directory scaffold-flash && \
	    TZMK_RUN="$(TZMK_TOOL) run --monitor $(abspath $(BUILD_DIR))/flash-scaffold.bin --loader $(abspath $(SCAFFOLD_LOADER)) \
	        --kernel $(abspath $(LINUX_DIR))/Image --dtb $(abspath $(LINUX_DIR))/tzmk-run.dtb --initramfs $(abspath $(RUN_INITRAMFS)) \
	        --secure-log $(abspath $(BUILD_DIR))/scaffold-secure-uart.log" TZMK_RUN_PORT=hello \
	    $(CARGO) test --locked -q -p tzmk-tests --test qemu_run -- --ignored --nocapture; fi

.PHONY: scaffold-flash
scaffold-flash:
	$(call flash-image,scaffold,$(SCAFFOLD_LOADER),$(LINUX_DIR)/Image,$(LINUX_DIR)/tzmk-run.dtb,$(RUN_INITRAMFS))

# ---- The EL3 monitor's bench (docs/monitor-bench.md) -------------------------------------------
# A bare-metal normal-world payload times SMCs on the virtual counter under QEMU -icount; the
# runner (monitor/bench-payload/benches/monitor.rs) boots it with the monitor's flash image and
# prints the table beside TF-A's figures. BENCH_PAYLOAD_BASE is where the payload is linked (and
# where the monitor must enter it at NS-EL1): 2 MiB aligned in the normal world's RAM.
# bench-monitor runs it twice: with no secure image (notify_secure refuses, NO_SECURE_WORLD), and
# with bench-secure at the platform's secure entry, a secure image that enables the GIC's Group 0,
# makes `go` and idles in wfi, so that notify_secure takes the monitor's real path.
.PHONY: bench-secure
BENCH_TARGET := aarch64-unknown-none-softfloat
BENCH_PAYLOAD_BASE ?= 0xc0200000
BENCH_PAYLOAD := $(BUILD_DIR)/bench-payload.elf
BENCH_SECURE := $(BUILD_DIR)/bench-secure.elf
BENCH_CPU ?= cortex-a53
MONITOR_BIN ?= $(BUILD_DIR)/monitor.bin
BENCH_RUN = PAYLOAD=$(abspath $(BENCH_PAYLOAD)) TZMK_BENCH_CPU=$(BENCH_CPU) \
    $(CARGO) bench --locked -q -p tzmk-bench-payload --bench monitor

bench-payload:
	TZMK_BENCH_PAYLOAD_BASE=$(BENCH_PAYLOAD_BASE) $(CARGO) build --release --locked --target $(BENCH_TARGET) -p tzmk-bench-payload --bin bench-payload
	@mkdir -p $(BUILD_DIR)
	@cp $(TARGET_DIR)/$(BENCH_TARGET)/release/bench-payload $(BENCH_PAYLOAD)
	@echo "bench-payload: $(BENCH_PAYLOAD), linked at $(BENCH_PAYLOAD_BASE)"

# Linked at the platform's secure entry (not a setting: the monitor enters a secure image only
# there), then checked: entry, first word, footprint, wfi and no wfe (tests/images.rs).
bench-secure:
	$(CARGO) build --release --locked --target $(BENCH_TARGET) -p tzmk-bench-payload --bin bench-secure
	@mkdir -p $(BUILD_DIR)
	@cp $(TARGET_DIR)/$(BENCH_TARGET)/release/bench-secure $(BENCH_SECURE)
	TZMK_BENCH_SECURE=$(abspath $(BENCH_SECURE)) $(CARGO) test --locked -q -p tzmk-bench-payload --test images
	@echo "bench-secure: $(BENCH_SECURE), linked at the secure entry, checked"

check-monitor-bin:
	@if [ ! -f "$(MONITOR_BIN)" ]; then \
	    echo "error: bench-monitor: no monitor image at MONITOR_BIN=$(MONITOR_BIN): build the EL3 monitor's flash image (QEMU -bios) or set MONITOR_BIN to it" >&2; exit 1; fi

# The secure UART of the run without a secure image goes to bench-monitor-secure.log, the run
# with bench-secure's to bench-monitor-secure.bench-secure.log.
# Each run boots a flash image whose manifest signs what it loads (trusted boot stage 1): the
# payload's bytes as QEMU's ELF loader places them (objcopy -O binary) as the kernel, and as the DTB
# 8 zero bytes, what RAM holds at the DTB's address (the payload reads none); the second run's also
# signs bench-secure's bytes as the secure image. The reset figures include stage 1.
BENCH_NO_DTB := $(BUILD_DIR)/bench-no.dtb
bench-monitor: check-monitor-bin bench-payload bench-secure keys
	$(LINUX_CROSS)objcopy -O binary $(BENCH_PAYLOAD) $(BUILD_DIR)/bench-payload.bin
	$(LINUX_CROSS)objcopy -O binary $(BENCH_SECURE) $(BUILD_DIR)/bench-secure.bin
	@head -c 8 /dev/zero > $(BENCH_NO_DTB)
	$(call flash-image,bench-payload,,$(BUILD_DIR)/bench-payload.bin,$(BENCH_NO_DTB),)
	$(call flash-image,bench-secure,$(BUILD_DIR)/bench-secure.bin,$(BUILD_DIR)/bench-payload.bin,$(BENCH_NO_DTB),)
	MONITOR_BIN=$(abspath $(BUILD_DIR))/flash-bench-payload.bin MONITOR_BIN_SECURE=$(abspath $(BUILD_DIR))/flash-bench-secure.bin \
	    SECURE=$(abspath $(BENCH_SECURE)) TZMK_BENCH_SECURE_LOG=$(abspath $(BUILD_DIR))/bench-monitor-secure.log $(BENCH_RUN)

# The payload without a monitor: QEMU starts it at EL2 and answers its SMCs in C, so every figure
# is 0.0. Proves the payload and the runner, measures nothing of a monitor.
bench-payload-qemu: bench-payload
	TZMK_BENCH_WITHOUT_MONITOR=1 $(BENCH_RUN)

# ---- Trusted boot: the development key and UDS, signed manifests, flash images -------------------
# docs/trusted-boot.md. The platform key and the UDS are made once, on first use, under
# $(BUILD_DIR)/keys (never committed: build/ is ignored). Each boot configuration below signs a
# manifest of exactly the images it boots, at the platform's [boot] addresses, and composes the
# secure flash image QEMU takes as flash0's pflash drive: $(BUILD_DIR)/flash-NAME.bin (each test
# run boots its own copy: the monitor writes it). A product key (offline or in an
# HSM) replaces PLATFORM_KEY: docs/trusted-boot.md, "Product keys".
.PHONY: keys
PLATFORM_FILE := monitor/platform/qemu-virt.toml
KEYS_DIR := $(BUILD_DIR)/keys
PLATFORM_KEY ?= $(KEYS_DIR)/platform.ed25519
DEV_UDS ?= $(KEYS_DIR)/uds.bin
# The manifest's security version and the provisioning block's floor (anti-rollback).
SECURITY_VERSION ?= 1
SECURITY_FLOOR ?= 1
TZMK_TOOL = $(CARGO) run --release --locked -q -p tzmk --
# [boot] addresses, read from the platform description (never restated here).
boot_address = $(or $(shell sed -n 's/^$(1) *= *\(0x[0-9a-fA-F_]*\).*/\1/p' $(PLATFORM_FILE)),$(error $(PLATFORM_FILE) has no [boot] $(1)))
SECURE_ENTRY_AT = $(call boot_address,secure_entry)
KERNEL_AT = $(call boot_address,linux_kernel)
DTB_AT = $(call boot_address,linux_dtb)
INITRD_AT = $(call boot_address,linux_initrd)

keys: $(PLATFORM_KEY) $(DEV_UDS)

$(PLATFORM_KEY):
	@mkdir -p $(dir $@) && chmod 700 $(dir $@)
	$(TZMK_TOOL) sign --keygen --key $@

$(DEV_UDS):
	@mkdir -p $(dir $@) && chmod 700 $(dir $@)
	@umask 077 && head -c 32 /dev/urandom > $@.tmp && mv $@.tmp $@
	@echo "keys: $@ (a development UDS, 32 random bytes, mode 0600)"

# $(call manifest,OUTPUT,SECURITY_VERSION,SECURE_IMAGE or empty,KERNEL,DTB,INITRAMFS): the signed
# manifest of exactly these images.
define manifest
	$(TZMK_TOOL) sign --key $(PLATFORM_KEY) --security-version $(2) \
	    $(if $(3),--image secure:loader.img=$(3)@$(SECURE_ENTRY_AT)) \
	    --image kernel:image=$(4)@$(KERNEL_AT) --image dtb:linux.dtb=$(5)@$(DTB_AT) \
	    $(if $(6),--image initramfs:initramfs.cpio=$(6)@$(INITRD_AT)) -o $(1)
endef

# $(call flash-image,NAME,SECURE_IMAGE or empty,KERNEL,DTB,INITRAMFS): the manifest of exactly
# these images ($(BUILD_DIR)/manifest-NAME.bin) and the flash image ($(BUILD_DIR)/flash-NAME.bin:
# the whole 64 MiB flash, which QEMU takes as flash0's drive and writes).
define flash-image
	$(call manifest,$(BUILD_DIR)/manifest-$(1).bin,$(SECURITY_VERSION),$(2),$(3),$(4),$(5))
	$(TZMK_TOOL) flash --monitor $(MONITOR_BIN) --uds $(DEV_UDS) --platform-key $(PLATFORM_KEY).pub \
	    --manifest $(BUILD_DIR)/manifest-$(1).bin --security-floor $(SECURITY_FLOOR) -o $(BUILD_DIR)/flash-$(1).bin
endef

# ---- The EL3 monitor (monitor/, docs/monitor.md) ------------------------------------------------
# Built for the soft-float target: the monitor never touches an FP/SIMD register, so neither
# world's needs saving. Its partition (cores, GIC groups, addresses) is generated from
# monitor/platform/qemu-virt.toml and system.xml by its build script.
.PHONY: monitor linux-dtbs qemu-linux qemu
MONITOR_TARGET := aarch64-unknown-none-softfloat
MONITOR_ELF = $(TARGET_DIR)/$(MONITOR_TARGET)/release/tzmk-monitor
# The one symbol of the monitor allowed FP/SIMD instructions (the FP/SIMD check below).
MONITOR_SIMD_SYMBOL := tzmk_sha256_armv8_blocks
LINUX_BOOTARGS := console=ttyAMA0 panic=-1
# TZMK_MONITOR_BIN is the secure flash image (the monitor, the provisioning block, the manifest).
QEMU_LINUX_RUN = TZMK_LINUX_DIR=$(abspath $(LINUX_DIR)) $(CARGO) test --locked -q -p tzmk-tests --test qemu_linux

monitor:
	$(CARGO) build --release --locked --target $(MONITOR_TARGET) -p tzmk-monitor
	@command -v $(LINUX_CROSS)objcopy >/dev/null || { echo "error: monitor: no $(LINUX_CROSS)objcopy (Debian package binutils-aarch64-linux-gnu; make -f build.mk setup installs it)" >&2; exit 1; }
	@mkdir -p $(BUILD_DIR)
	$(LINUX_CROSS)objcopy -O binary $(MONITOR_ELF) $(MONITOR_BIN)
	@# No FP/SIMD instruction (a mnemonic f..., a first operand q/d/s/h/b/v, a v register anywhere)
	@# outside one symbol's range: $(MONITOR_SIMD_SYMBOL) (monitor/sha256/src/armv8.S), the SHA-256
	@# block function with the Armv8 instructions that trusted boot stage 1 runs on core 0 before any
	@# world (docs/trusted-boot.md). Everything below its start and from its end (nm's address and
	@# size) is disassembled and checked; sha2's own Armv8 backend must stay unselected.
	@# Without the symbol (a monitor that never calls it) every instruction is checked.
	@range=$$($(LINUX_CROSS)nm -S --defined-only $(MONITOR_ELF) | awk '$$4 == "$(MONITOR_SIMD_SYMBOL)" { print "0x" $$1, "0x" $$2 }'); \
	if [ "$$(grep -c . <<< "$$range")" -gt 1 ]; then echo "error: monitor: more than one $(MONITOR_SIMD_SYMBOL) in $(MONITOR_ELF) (nm -S: $$range)" >&2; exit 1; fi; \
	if [ -n "$$range" ]; then read -r start size <<< "$$range"; else start=0; size=0; fi; end=$$((start + size)); \
	simd=$$({ if [ -n "$$range" ]; then $(LINUX_CROSS)objdump -d --no-show-raw-insn --stop-address=$$start $(MONITOR_ELF); fi; \
	          $(LINUX_CROSS)objdump -d --no-show-raw-insn --start-address=$$end $(MONITOR_ELF); } | \
	    awk -F'\t' 'NF>=3 && ($$2 ~ /^f/ || $$3 ~ /^\{?[qdsbhv][0-9]+[,.]/ || $$3 ~ /(^|[ ,{])v[0-9]+\./)'); \
	if [ -n "$$simd" ]; then echo "error: monitor: FP/SIMD instructions in $(MONITOR_ELF) outside $(MONITOR_SIMD_SYMBOL):" >&2; echo "$$simd" | head -n 5 >&2; exit 1; fi
	@echo "monitor: $(MONITOR_BIN), $$(stat -c %s $(MONITOR_BIN)) bytes (.text $$($(LINUX_CROSS)size -A $(MONITOR_ELF) | awk '$$1==".text"{print $$2}') B)"

# The monitor's one piece of FP/SIMD code, the Armv8 SHA-256 block function (monitor/sha256/),
# against FIPS 180-4's known answers and random messages: built for aarch64-unknown-linux-musl
# (linked by rust-lld) and run on an emulated Cortex-A53, the CPU every boot uses, by qemu-user.
.PHONY: monitor-sha256
monitor-sha256:
	@if ! command -v qemu-aarch64 >/dev/null; then \
	    echo "SKIPPED: no qemu-aarch64 (Debian package qemu-user; make -f build.mk setup installs it): the Armv8 SHA-256 block function's known answers not run"; \
	else CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
	    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER="qemu-aarch64 -cpu cortex-a53" \
	    $(CARGO) test --locked -q -p tzmk-sha256 --target aarch64-unknown-linux-musl; fi

# Linux's DTBs, generated from the platform description and system.xml; tzmk.expect tells /init
# what the SiP service must answer (tests/linux/README.md).
linux-dtbs: linux-initramfs
	$(CARGO) run --release --locked -q -p tzmk -- dtb system.xml --initrd $(LINUX_DIR)/initramfs.cpio \
	    --bootargs "$(LINUX_BOOTARGS) tzmk.expect=standalone" -o $(LINUX_DIR)/tzmk-standalone.dtb
	$(CARGO) run --release --locked -q -p tzmk -- dtb system.xml --initrd $(LINUX_DIR)/initramfs.cpio \
	    --bootargs "$(LINUX_BOOTARGS) tzmk.expect=full" -o $(LINUX_DIR)/tzmk-full.dtb
	$(CARGO) run --release --locked -q -p tzmk -- dtb system.xml --initrd $(LINUX_DIR)/initramfs.cpio \
	    --bootargs "$(LINUX_BOOTARGS) tzmk.expect=bench" -o $(LINUX_DIR)/tzmk-bench.dtb

# No SDK needed: the monitor boots Debian's kernel on cores 1-3 with no secure image.
# Standalone: the manifest names no secure image, so the monitor itself checks Linux's images.
qemu-linux: linux-setup linux-kernel linux-dtbs monitor keys
	$(call flash-image,standalone,,$(LINUX_DIR)/Image,$(LINUX_DIR)/tzmk-standalone.dtb,$(LINUX_DIR)/initramfs.cpio)
	TZMK_MONITOR_BIN=$(abspath $(BUILD_DIR))/flash-standalone.bin TZMK_DTB=tzmk-standalone.dtb \
	    $(QEMU_LINUX_RUN) standalone -- --ignored --nocapture

# The whole system: seL4 and the PDs of system.xml on core 0 (Microkit's debug image), Linux on
# cores 1-3, under the monitor.
qemu:
	@if [ -z "$(HAVE_SDK)" ]; then echo "SKIPPED: no Microkit SDK at MICROKIT_SDK=$(MICROKIT_SDK): qemu (seL4 beside Linux) not run"; \
	else $(MAKE) -f build.mk --no-print-directory image MICROKIT_CONFIG=debug && \
	    $(MAKE) -f build.mk --no-print-directory linux-setup linux-kernel linux-dtbs monitor keys && \
	    $(MAKE) -f build.mk --no-print-directory flash-full && \
	    TZMK_MONITOR_BIN=$(abspath $(BUILD_DIR))/flash-full.bin TZMK_DTB=tzmk-full.dtb \
	    TZMK_UPDATE_MANIFEST=$(abspath $(BUILD_DIR))/manifest-full-update.bin \
	    TZMK_LOADER_IMG=$(abspath $(BUILD_DIR))/loader.img $(QEMU_LINUX_RUN) -- --ignored --nocapture --test-threads=1 \
	        --exact full_system reset_during_update; fi

# Trusted boot refusing to boot (tests/qemu_boot.rs): a garbled and a blank manifest, a tampered
# kernel with no secure image, and (with the SDK) a tampered loader.img: one stop line on the
# secure UART, nothing on UART0.
.PHONY: qemu-boot
QEMU_BOOT_RUN = TZMK_LINUX_DIR=$(abspath $(LINUX_DIR)) TZMK_FLASH_STANDALONE=$(abspath $(BUILD_DIR))/flash-standalone.bin \
    $(CARGO) test --locked -q -p tzmk-tests --test qemu_boot
qemu-boot: linux-setup linux-kernel linux-dtbs monitor keys
	$(call flash-image,standalone,,$(LINUX_DIR)/Image,$(LINUX_DIR)/tzmk-standalone.dtb,$(LINUX_DIR)/initramfs.cpio)
	@if [ -z "$(HAVE_SDK)" ]; then \
	    echo "SKIPPED: no Microkit SDK at MICROKIT_SDK=$(MICROKIT_SDK): the tampered secure image is not booted"; \
	    $(QEMU_BOOT_RUN) -- --ignored --nocapture --skip tampered_secure_image --skip tampered_kernel_with_a_secure_world; \
	else $(MAKE) -f build.mk --no-print-directory image MICROKIT_CONFIG=debug && \
	    $(MAKE) -f build.mk --no-print-directory flash-full && \
	    TZMK_FLASH_FULL=$(abspath $(BUILD_DIR))/flash-full.bin TZMK_LOADER_IMG=$(abspath $(BUILD_DIR))/loader.img \
	    $(QEMU_BOOT_RUN) -- --ignored --nocapture; fi

# The whole system's flash image: loader.img, Linux's Image, tzmk-full.dtb, initramfs.cpio; and
# its signed update for tests/qemu_linux.rs (docs/trusted-boot.md, "Signed updates"): the same
# images at security version UPDATE_VERSION ($(BUILD_DIR)/manifest-full-update.bin).
UPDATE_VERSION ?= 2
.PHONY: flash-full
flash-full:
	$(call flash-image,full,$(BUILD_DIR)/loader.img,$(LINUX_DIR)/Image,$(LINUX_DIR)/tzmk-full.dtb,$(LINUX_DIR)/initramfs.cpio)
	$(call manifest,$(BUILD_DIR)/manifest-full-update.bin,$(UPDATE_VERSION),$(BUILD_DIR)/loader.img,$(LINUX_DIR)/Image,$(LINUX_DIR)/tzmk-full.dtb,$(LINUX_DIR)/initramfs.cpio)

# ---- The system bench (docs/system-bench.md) ----------------------------------------------------
# The whole system under QEMU -icount shift=0,sleep=off: notification legs, 64 B round trips
# (read/write, mmap, a pipe) and 4 KiB / 64 KiB transfers (a port, a pipe), a markdown table.
# seL4 and the PDs in the SDK's release configuration (no kernel printing) unless
# SYSTEM_BENCH_CONFIG=debug. It runs bench-monitor first: its notify_secure with a secure world
# running (EL3 instructions) splits the normal -> secure leg. Not part of `make test`.
.PHONY: bench-system system-bench
SYSTEM_BENCH_CONFIG ?= release
# In `make test`, with the SDK: the bench must run to its end and print its table (it checks its
# own counts and stamps; nothing is asserted on a figure).
system-bench:
	@if [ -z "$(HAVE_SDK)" ]; then echo "SKIPPED: no Microkit SDK at MICROKIT_SDK=$(MICROKIT_SDK): bench-system not run"; \
	else $(MAKE) -f build.mk --no-print-directory bench-system; fi

bench-system:
	@if [ -z "$(HAVE_SDK)" ]; then echo "error: bench-system needs the Microkit SDK: no SDK at MICROKIT_SDK=$(MICROKIT_SDK) (docs/microkit-sdk.md)" >&2; exit 1; fi
	$(MAKE) -f build.mk --no-print-directory image MICROKIT_CONFIG=$(SYSTEM_BENCH_CONFIG)
	$(MAKE) -f build.mk --no-print-directory linux-setup linux-kernel linux-dtbs monitor keys
	$(call flash-image,bench,$(BUILD_DIR)/loader.img,$(LINUX_DIR)/Image,$(LINUX_DIR)/tzmk-bench.dtb,$(LINUX_DIR)/initramfs.cpio)
	@# Only notify_secure's figure is needed here: the update requests' bound is bench-monitor's own
	@# check (docs/monitor-bench.md, "Update requests"), reported, not enforced, in this run.
	TZMK_BENCH_UPDATE_BOUND=report $(MAKE) -f build.mk --no-print-directory bench-monitor > $(BUILD_DIR)/bench-monitor.log 2>&1 || { cat $(BUILD_DIR)/bench-monitor.log; exit 1; }
	@el3=$$(sed -n 's/.*call=notify_secure .*instructions_per_call=\([0-9.]*\) last_x0=0x0$$/\1/p' $(BUILD_DIR)/bench-monitor.log | head -n 1); \
	if [ -z "$$el3" ]; then echo "error: bench-system: no notify_secure (secure world running) in $(BUILD_DIR)/bench-monitor.log" >&2; exit 1; fi; \
	echo "bench-system: notify_secure with a secure world running: $$el3 EL3 instructions (bench-monitor, $(BUILD_DIR)/bench-monitor.log)"; \
	TZMK_MONITOR_BIN=$(abspath $(BUILD_DIR))/flash-bench.bin TZMK_LINUX_DIR=$(abspath $(LINUX_DIR)) TZMK_DTB=tzmk-bench.dtb \
	    TZMK_LOADER_IMG=$(abspath $(BUILD_DIR))/loader.img TZMK_BENCH_EL3=$$el3 \
	    $(CARGO) bench --locked -q -p tzmk-tests --bench system

# ---- The in-seL4 cyclictest (docs/realtime.md, "The cyclictest") ---------------------------------
# The whole system booted once per QEMU mode (RT_BENCH_MODES: mttcg, icount with -icount
# shift=RT_BENCH_SHIFT,sleep=off) with tzmk.expect=rtbench: /init runs /bin/tzmk-rtbench, which
# puts Linux through each scenario (idle, CPU, memory, interrupts, a port flood, the hostile
# GIC/SMC/PSCI storms) for RT_BENCH_RELEASES periods of rt-task's 1 ms grid each; the runner
# (tests/rt_bench.rs) prints the table and whether the claim holds, never asserting it. seL4 and
# the PDs in the SDK's release configuration (no kernel printing) unless RT_BENCH_CONFIG=debug.
# Each mode boots its own DTB (the kernel command line carries the releases and scenarios) and
# flash image. Under -icount the GIC storm is left out by default: every MMIO access there ends
# a translation block, and 2 s of its grid did not finish in 9 minutes of host time.
# Not part of `make test`: 100,000 releases are 100 s of grid per scenario and mode.
.PHONY: bench-rt
RT_BENCH_RELEASES ?= 100000
RT_BENCH_MODES ?= mttcg icount
RT_BENCH_SHIFT ?= 2
RT_BENCH_CONFIG ?= release
# Empty: the load on every Linux core. RT_BENCH_CPUS=1: on Linux's cpu 0 only.
RT_BENCH_CPUS ?=
# Per mode: releases per scenario and the scenarios (comma-separated, idle first for the ratios;
# empty: all).
RT_BENCH_MTTCG_RELEASES ?= $(RT_BENCH_RELEASES)
RT_BENCH_ICOUNT_RELEASES ?= $(RT_BENCH_RELEASES)
RT_BENCH_MTTCG_SCENARIOS ?=
RT_BENCH_ICOUNT_SCENARIOS ?= idle,cpu,memory,interrupts,port-flood,hostile-smc,hostile-psci
rt_bench_bootargs = $(LINUX_BOOTARGS) tzmk.expect=rtbench tzmk.rt_releases=$(1)$(if $(RT_BENCH_CPUS), tzmk.rt_cpus=$(RT_BENCH_CPUS))$(if $(2), tzmk.rt_scenarios=$(2))
bench-rt:
	@if [ -z "$(HAVE_SDK)" ]; then echo "error: bench-rt needs the Microkit SDK: no SDK at MICROKIT_SDK=$(MICROKIT_SDK) (docs/microkit-sdk.md)" >&2; exit 1; fi
	$(MAKE) -f build.mk --no-print-directory image MICROKIT_CONFIG=$(RT_BENCH_CONFIG)
	$(MAKE) -f build.mk --no-print-directory linux-setup linux-kernel linux-initramfs monitor keys
	$(CARGO) run --release --locked -q -p tzmk -- dtb system.xml --initrd $(LINUX_DIR)/initramfs.cpio \
	    --bootargs "$(call rt_bench_bootargs,$(RT_BENCH_MTTCG_RELEASES),$(RT_BENCH_MTTCG_SCENARIOS))" -o $(LINUX_DIR)/tzmk-rtbench-mttcg.dtb
	$(CARGO) run --release --locked -q -p tzmk -- dtb system.xml --initrd $(LINUX_DIR)/initramfs.cpio \
	    --bootargs "$(call rt_bench_bootargs,$(RT_BENCH_ICOUNT_RELEASES),$(RT_BENCH_ICOUNT_SCENARIOS))" -o $(LINUX_DIR)/tzmk-rtbench-icount.dtb
	$(call flash-image,rtbench-mttcg,$(BUILD_DIR)/loader.img,$(LINUX_DIR)/Image,$(LINUX_DIR)/tzmk-rtbench-mttcg.dtb,$(LINUX_DIR)/initramfs.cpio)
	$(call flash-image,rtbench-icount,$(BUILD_DIR)/loader.img,$(LINUX_DIR)/Image,$(LINUX_DIR)/tzmk-rtbench-icount.dtb,$(LINUX_DIR)/initramfs.cpio)
	TZMK_RT_BENCH_FLASH_MTTCG=$(abspath $(BUILD_DIR))/flash-rtbench-mttcg.bin TZMK_RT_BENCH_FLASH_ICOUNT=$(abspath $(BUILD_DIR))/flash-rtbench-icount.bin \
	    TZMK_LINUX_DIR=$(abspath $(LINUX_DIR)) TZMK_LOADER_IMG=$(abspath $(BUILD_DIR))/loader.img \
	    TZMK_RT_BENCH_RELEASES_MTTCG=$(RT_BENCH_MTTCG_RELEASES) TZMK_RT_BENCH_RELEASES_ICOUNT=$(RT_BENCH_ICOUNT_RELEASES) \
	    TZMK_RT_BENCH_MODES="$(RT_BENCH_MODES)" TZMK_RT_BENCH_SHIFT=$(RT_BENCH_SHIFT) \
	    $(CARGO) bench --locked -q -p tzmk-tests --bench rt
