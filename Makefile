# One entry point per chore; CI runs the same ones (.ci/run calls `make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

# The release tag is pyproject.toml's version (one place; tests/test_shipping.py checks that the
# base Deployment's image carries the same name and tag).
IMG_REPO ?= ghcr.io/route-reflector
IMG_NAME ?= calico-route-reflector-hooks
IMG_VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
IMG := $(IMG_REPO)/$(IMG_NAME):$(IMG_VERSION)
# The image the base manifests name, which `make deploy` replaces with $(IMG).
BASE_IMG := ghcr.io/route-reflector/calico-route-reflector-hooks
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE ?= https://github.com/route-reflector/calico-route-reflector-hooks
KUBECTL ?= kubectl

.PHONY: venv lock image run test browser lua bird promtool lint typecheck bench docker-build docker-push install uninstall deploy undeploy clean

venv: $(STAMP)

# Installs exactly what requirements-test.lock pins (hashes checked), then the project itself
# without resolving anything again; the image installs requirements.lock the same way.
$(STAMP): pyproject.toml requirements-test.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Re-pin after changing dependencies in pyproject.toml (tests/test_shipping.py fails until then).
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links
lock: venv
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile $(LOCK_FLAGS) --output-file requirements.lock pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) --extra test --output-file requirements-test.lock pyproject.toml

image:
	@echo $(IMG)

run: venv
	$(BIN)/python -m hooks serve --host $(HOST) --port $(PORT)

# System packages some tests use (a real part, not a fake): installed with apt-get when missing and
# we are root (CI is), each saying first what it installs; elsewhere those tests are skipped with a
# warning, never silently. Each need has a switch, VAR=1, that skips the install (and its tests
# when the part is missing).
#   $(call system-packages,<what for>,<switch>,<file it provides>,<Debian packages>)
define system-packages
	@if [ -e $(3) ]; then exit 0; fi; \
	if [ "$${$(2):-}" = 1 ]; then echo "$(2)=1: not installing $(4) ($(1))"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages for $(1): $(4)"; \
	  echo "  (apt-get install --no-install-recommends; set $(2)=1 to skip)"; \
	  apt-get install -y -q --no-install-recommends $(4) || \
	    { apt-get update -q && apt-get install -y -q --no-install-recommends $(4); }; \
	else echo "WARNING: $(3) missing and not root: $(1) will be skipped (set $(2)=1 to skip it without this warning)"; fi
endef

CHROMIUM ?= /usr/bin/chromium

browser:
	$(call system-packages,the topology-picture test,RR_SKIP_BROWSER,$(CHROMIUM),chromium fonts-dejavu-core)

# The Argo CD health check (docs/argocd/health.lua) runs in Debian's Lua 5.4, installed the same way.
LUA ?= /usr/bin/lua5.4

lua:
	$(call system-packages,the Argo CD health check tests,RR_SKIP_LUA,$(LUA),lua5.4)

# The BIRD tier (tests/test_bird.py) starts one BIRD 1.6 per node on loopback addresses (no kernel
# protocol: the host routing table is untouched): Debian's bird, installed the same way.
BIRD ?= /usr/sbin/bird

bird:
	$(call system-packages,the BIRD test tier,RR_SKIP_BIRD,$(BIRD),bird)

# The alert tests run Prometheus' promtool (check rules, test rules on synthetic series, check
# metrics on a real scrape): Debian's `prometheus` package carries it (with the server binary,
# which is not started here).
PROMTOOL ?= /usr/bin/promtool

promtool:
	$(call system-packages,the alert tests (promtool),RR_SKIP_PROMTOOL,$(PROMTOOL),prometheus)

test: venv browser lua bird promtool lint
	@if [ ! -x $(CHROMIUM) ]; then export RR_SKIP_BROWSER=1; fi; \
	if [ ! -x $(LUA) ]; then export RR_SKIP_LUA=1; fi; \
	if [ ! -x $(BIRD) ]; then export RR_SKIP_BIRD=1; fi; \
	if [ ! -x $(PROMTOOL) ]; then export RR_SKIP_PROMTOOL=1; fi; \
	$(BIN)/python -m pytest -p no:cacheprovider --cov --cov-report=term:skip-covered

# tests/layers.py: the core reaches no wire, Calico rendering, controller, datastore or client
# code, and the datastores no web app (tests/test_layers.py plants violations to prove it fails).
lint: venv
	$(BIN)/ruff check hooks tests bench
	$(BIN)/ruff format --check hooks tests bench
	$(BIN)/mypy
	$(BIN)/python tests/layers.py

bench: venv
	$(BIN)/python -m bench

docker-build:
	docker build --build-arg VERSION=$(IMG_VERSION) --build-arg REVISION=$(REVISION) \
	  --build-arg SOURCE=$(SOURCE) -t $(IMG) .

docker-push: docker-build
	docker push $(IMG)

install:
	$(KUBECTL) apply -f metacontroller/crd.yaml

uninstall:
	$(KUBECTL) delete --ignore-not-found -f metacontroller/crd.yaml

deploy: install
	$(KUBECTL) wait --for condition=established --timeout=60s crd/routereflectortopologies.route-reflector.dev
	mkdir -p build/deploy
	printf 'resources:\n- ../../metacontroller\nimages:\n- name: %s\n  newName: %s\n  newTag: %s\n' \
	  $(BASE_IMG) $(IMG_REPO)/$(IMG_NAME) $(IMG_VERSION) > build/deploy/kustomization.yaml
	$(KUBECTL) apply -k build/deploy

# Safe order: the topology object goes first, so the node hook can take its labels back (and the
# mesh is not left off); BGPPeers go with their owner. Then the hooks and the CRD.
undeploy:
	$(KUBECTL) delete --ignore-not-found routereflectortopologies.route-reflector.dev --all --wait
	$(KUBECTL) delete --ignore-not-found -k metacontroller/

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .coverage
