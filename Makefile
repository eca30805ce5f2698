# One entry point per chore; CI runs the same ones (.ci/run calls `make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

IMG_REPO ?= ghcr.io/route-reflector
IMG_NAME ?= calico-route-reflector-hooks
IMG_VERSION ?= 0.1.0
IMG := $(IMG_REPO)/$(IMG_NAME):$(IMG_VERSION)
KUBECTL ?= kubectl

.PHONY: venv run test lint typecheck bench docker-build docker-push install uninstall deploy undeploy clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: venv
	$(BIN)/python -m hooks serve --host $(HOST) --port $(PORT)

test: venv
	$(BIN)/python -m pytest -p no:cacheprovider --cov --cov-report=term:skip-covered

lint: venv
	$(BIN)/ruff check hooks tests bench
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m bench

docker-build:
	docker build -t $(IMG) .

docker-push: docker-build
	docker push $(IMG)

install:
	$(KUBECTL) apply -f metacontroller/crd.yaml

uninstall:
	$(KUBECTL) delete --ignore-not-found -f metacontroller/crd.yaml

deploy:
	rm -rf build/deploy && mkdir -p build/deploy && cp -r metacontroller/. build/deploy/
	cd build/deploy && $(KUBECTL) kustomize edit set image route-reflector-hooks=$(IMG) 2>/dev/null || \
	  (cd build/deploy && printf 'images:\n- name: route-reflector-hooks\n  newName: %s\n  newTag: %s\n' $(IMG_REPO)/$(IMG_NAME) $(IMG_VERSION) >> kustomization.yaml)
	$(KUBECTL) apply -k build/deploy

undeploy:
	$(KUBECTL) delete --ignore-not-found -k metacontroller/

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .coverage
