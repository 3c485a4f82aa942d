# One entry point for people and CI. Every target sets up .venv itself when it is missing.
#   make demo   main job: runs every package's demo into outputs/
#   make test   ruff + the fast pytest suite (what CI runs)
# torch and torchvision come from one index (TORCH_INDEX, PyPI when empty); see README for a
# CPU-only or a specific CUDA build.

PYTHON      ?= python3
TORCH       ?= torch==2.14.1
TORCHVISION ?= torchvision==0.29.1
TORCH_INDEX ?=
VENV        := .venv
PY          := $(VENV)/bin/python
PACKAGES    := $(wildcard packages/*)
STAMP       := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup test test-slow lint format ext bench demo demo-geomkit demo-onet demo-numcc demo-cocoinr demo-npbgpp demo-sfd clean

setup: $(STAMP)

$(STAMP): shared/pyproject.toml $(wildcard packages/*/pyproject.toml) requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)" "$(TORCHVISION)"
	$(PY) -m pip install -q -r requirements-dev.txt -e ./shared $(foreach p,$(PACKAGES),-e ./$(p))
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint
	$(PY) -m geomkit.ext --build
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

ext: $(STAMP)
	$(PY) -m geomkit.ext --build

bench: $(STAMP)
	$(PY) -m tools.bench.run_all

BUNNY := $(wildcard ../shared/data/meshes/bunny.obj)

# Each package's demo leaves summary.json in its folder; the index gathers them.
demo: demo-geomkit demo-onet demo-numcc demo-cocoinr demo-npbgpp demo-sfd
	$(PY) -m geomkit.demo_index outputs

demo-geomkit: $(STAMP)
	$(PY) -m geomkit.demo --out outputs/demo --overwrite $(if $(BUNNY),--mesh $(BUNNY))

# onet end to end in about two minutes on a CPU: procedural classes -> ShapeNet layout -> a small
# image model -> test-split meshes and metrics -> demo page on held-out renders, each beside its
# ground truth (the dataset object it was rendered from) with its IoU and Chamfer-L1. 2048 points
# per object and step: mean IoU 0.77-0.81 over seeds 0-2 (512: 0.66-0.81) in the same time.
# With the authors' checkpoint in ONET_CKPT, also the full model on the real demo images.
ONET_OUT    := outputs/onet
ONET_SMALL  := --set data.path=$(ONET_OUT)/ShapeNet --set training.out_dir=$(ONET_OUT)/train \
               --set data.img_size=32 --set model.c_dim=32 --set model.decoder_kwargs.hidden_size=32
ONET_CKPT   ?= data/onet/onet_img2mesh_3-f786b04a.pt
ONET_IMAGES := $(wildcard ../shared/data/onet/demo/*.jpg)

demo-onet: $(STAMP)
	$(PY) -m onet.synthetic $(ONET_OUT)/meshes --classes sphere,box,torus --per-class 12 \
		--resolution 32 --overwrite
	$(PY) -m onet.build_dataset $(ONET_OUT)/meshes $(ONET_OUT)/ShapeNet --no-fusion --points 4000 \
		--pointcloud-size 4000 --val 0.15 --test 0.25 --overwrite
	rm -rf $(ONET_OUT)/train  # the dataset was just rebuilt: train afresh, do not resume
	$(PY) -m onet.train configs/img/onet.yaml --no-cuda --no-pretrained --max-iterations 200 \
		$(ONET_SMALL) --set training.batch_size=8 --set data.points_subsample=2048 \
		--set training.learning_rate=0.001 --set training.visualize_every=0
	$(PY) -m onet.generate configs/img/onet.yaml --no-cuda --overwrite $(ONET_SMALL) \
		--checkpoint $(ONET_OUT)/train/model.pt
	$(PY) -m onet.eval_meshes configs/img/onet.yaml --overwrite $(ONET_SMALL)
	$(PY) -m onet.demo $$(for c in $(ONET_OUT)/ShapeNet/0*/; do \
		echo $$c$$(head -n1 $$c/test.lst)/img_choy2016/000.jpg; done) \
		--config configs/img/onet.yaml $(ONET_SMALL) --no-cuda --overwrite \
		--set generation.simplify_nfaces=5000 --checkpoint $(ONET_OUT)/train/model.pt \
		--out $(ONET_OUT)/demo_small
ifneq ($(wildcard $(ONET_CKPT)),)
	$(PY) -m onet.demo $(ONET_IMAGES) --checkpoint $(ONET_CKPT) --out $(ONET_OUT)/demo --overwrite
else
	@echo "onet: the authors' checkpoint is not at $(ONET_CKPT) (see packages/onet/README.md;" \
		"ONET_CKPT=PATH to use another): the real-image demo was not run"
endif
	$(PY) -m onet.demo_summary $(ONET_OUT) --eval $(ONET_OUT)/train/generation/eval_meshes.csv

# numcc on a CPU in about two minutes: a generated CO3D-layout dataset (procedural shapes, two
# held-out sequences per category) -> a tiny NU-MCC trained through numcc.main -> metrics of the
# held-out views by Repulsive UDF -> Plotly pages of them. With the authors' checkpoint in
# NUMCC_CKPT, also the authors' web demo on the gudetama sample.
NUMCC_OUT  := outputs/numcc
NUMCC_CKPT ?= data/numcc/udf-ep99.pth
NUMCC_WEB  := ../shared/data/numcc/web/gudetama
NUMCC_RUN  := --co3d_path co3d --exp_name demo --model_size tiny --device cpu --num_workers 0 \
              --co3d_world_size 1.1 --random_shift 0.3 --n_query_udf 50000
NUMCC_PY   := $(abspath $(PY))

demo-numcc: $(STAMP)
	$(PY) -m numcc.synthetic $(NUMCC_OUT)/co3d --sequences 6 --val 2 --overwrite
	rm -rf $(NUMCC_OUT)/experiments  # the dataset was just rebuilt: train afresh, do not resume
	cd $(NUMCC_OUT) && $(NUMCC_PY) -m numcc.main $(NUMCC_RUN) --batch_size 4 --accum_iter 1 \
		--lr 2e-4 --warmup_epochs 0 --epochs 1 --train_epoch_len_multiplier 150 \
		--viz_every 100 --print_every 100
	cd $(NUMCC_OUT) && $(NUMCC_PY) -m numcc.main $(NUMCC_RUN) --run_viz --max_n_viz_obj 3 \
		--n_viz_queries 50000 --resume experiments/demo/checkpoint-last.pth
ifneq ($(wildcard $(NUMCC_CKPT)),)
	$(PY) -m numcc.demo_web --image $(NUMCC_WEB)/im.png --depth $(NUMCC_WEB)/depth.png \
		--seg $(NUMCC_WEB)/seg.png --checkpoint $(NUMCC_CKPT) --output $(NUMCC_OUT)/gudetama \
		--device cpu --overwrite
else
	@echo "numcc: the authors' checkpoint is not at $(NUMCC_CKPT) (NUMCC_CKPT=PATH to use" \
		"another): the gudetama web demo was not run"
endif
	$(PY) -m numcc.demo_summary $(NUMCC_OUT) --exp $(NUMCC_OUT)/experiments/demo

# cocoinr on a CPU in about two minutes (2 min 11 s on 2 cores): a generated VolSDF-layout scene (a snowman,
# 16 views, 8 held out) -> confs/small.conf fitted through cocoinr.exp_runner with a random
# codebook -> val_runner's held-out renders, normals, world-space mesh and metrics -> one page.
demo-cocoinr: $(STAMP)
	$(PY) -m cocoinr.demo --out outputs/cocoinr --overwrite

# NPBG++ and NPBG through the authors' train_net on a generated 40-view scene (300 steps each,
# CPU settings), held-out views scored, an orbit of the NPBG++ fit as PNG frames and a GIF.
demo-npbgpp: $(STAMP)
	$(PY) -m npbgpp.demo --out outputs/npbgpp --overwrite

# sfd on a generated pile of 4 boxes (64 px, 2 min on 2 cores): Geo, Vis, Mat (debug config), --eval,
# --to_mesh, --to_uv, one page.
demo-sfd: $(STAMP)
	$(PY) -m sfd.demo --out outputs/sfd --overwrite

clean:
	rm -rf outputs .pytest_cache .ruff_cache
