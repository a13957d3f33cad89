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

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.PHONY: help setup test lint unit audit picture check-picture

# Debian packages the test layers use; installed by `setup` when running as root (CI), otherwise
# named in a message.
APT_PACKAGES := graphviz
RUST_TARGETS := aarch64-unknown-none aarch64-unknown-linux-musl

help:
	@echo "tzmk: an seL4 Microkit secure world for Arm TrustZone"
	@echo
	@echo "  make -f build.mk test      every test layer that can run on this machine (what CI runs)"
	@echo "  make -f build.mk audit     tzmk audit of system.xml: isolation rules and each PD's authority"
	@echo "  make -f build.mk picture   regenerate docs/system.dot and docs/system.svg from system.xml"
	@echo "  make -f build.mk setup     install the rustup targets and (as root) the Debian packages"
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

test: setup lint unit audit check-picture
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
