# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv on first use (torch and torchvision pinned: they are the only pair that
# installs here) and reinstall only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := runs/demo

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test,track]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vidssl synth out=$(DEMO)/synth
	$(BIN)/vidssl index $(DEMO)/synth/videos
	$(BIN)/python tools/bench_loader.py data=$(DEMO)/synth/videos seconds=5 rss_samples=1000 out=$(DEMO)/bench_loader.json
	$(BIN)/vidssl train $(DEMO)/synth/videos method=fti encoder=resnet18 steps=20 batch_size=8 image_size=64 decode_size=72 workers=2 proj_hidden=256 lr=0.05 warmup_steps=5 log_every=5 out=$(DEMO)/fti
	$(BIN)/vidssl export $(DEMO)/fti out=$(DEMO)/fti/encoder_torchvision.pth format=torchvision

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
