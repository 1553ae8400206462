# QuSeC: `make demo` and `make test` set everything up on a fresh Debian machine (as root).
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Debian packages the emulation, the cluster and the browser tests need: command -> package.
APT_DEPS := ovs-vsctl:openvswitch-switch mnexec:mininet ping:iputils-ping ip:iproute2 curl:curl jq:jq \
            chromium:chromium chromedriver:chromium-driver sshd:openssh-server ssh:openssh-client sudo:sudo

.PHONY: help setup system venv ovs test unit demo bench protos clean

help:
	@echo "make demo    bring a QKD network up in Mininet, relay keys across it, tear it down"
	@echo "make test    run the whole test suite (unit, integration, Mininet emulation)"
	@echo "make unit    only the pure unit tests (no root, no processes)"
	@echo "make bench   run every benchmark and record docs/benchmarks.md"
	@echo "make protos  regenerate the gRPC modules from the .proto files"

setup: system venv ovs

# Installs only what is missing, so the second run costs a few `command -v` calls.
system:
	@missing=""; for dep in $(APT_DEPS); do \
	  command -v $${dep%%:*} >/dev/null 2>&1 || missing="$$missing $${dep##*:}"; done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root to install)"; \
	  else echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	fi

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@echo "creating $(VENV) with the qusec package and its emulation and test extras"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q -e '.[emulation,test]' > $(VENV)/pip.log 2>&1 \
	  || { tail -n 30 $(VENV)/pip.log; echo "pip install failed: full log in $(VENV)/pip.log"; exit 1; }
	@touch $@

ovs: venv
	@$(BIN)/python -m mininet_topos.launch.ovs start

test: setup
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

demo: setup
	$(BIN)/qkdnet demo

bench: setup
	$(BIN)/qkdnet bench topology
	$(BIN)/qkdnet bench routing
	$(BIN)/qkdnet bench latency
	$(BIN)/qkdnet bench throughput
	$(BIN)/qkdnet bench setup
	$(BIN)/qkdnet bench scale
	$(BIN)/qkdnet bench control
	$(BIN)/qkdnet bench live-routing
	$(BIN)/qkdnet bench interdomain

# Protos sit at their package path and compile from the repo root with -I., so the generated
# imports work unchanged (tests/unit/test_protos.py runs the same command and compares).
PROTOS := $(sort $(wildcard quseccontroller/proto/*.proto kms_agents/proto/*.proto))
protos: venv
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

clean:
	-$(BIN)/qkdnet clean
	rm -rf $(VENV) .pytest_cache *.egg-info
