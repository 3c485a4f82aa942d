#!/usr/bin/env bash
# One-shot GPU check for the device tool's nvidia-h200 machine (bare image, no network):
#   1. installs the carried wheels (.whl/*.whl: the packages geomkit/numcc/onet import that the
#      image lacks) into /tmp/site and puts them, shared/src, packages/*/src and the repository
#      root on PYTHONPATH (no pip install of the repo's own packages);
#   2. builds geomkit's extension with its CUDA side (TORCH_CUDA_ARCH_LIST=9.0) and prints the
#      per-op status table;
#   3. runs the kernel tests (knn, fps, chamfer, ball_query, rasterize, splat, ext,
#      kernel_sources; -m "not slow"; their `device` parameter includes cuda when a GPU is
#      visible) and every other test file carrying the `gpu` marker (-m "gpu and not slow");
#   4. runs the CUDA benchmarks (knn, chamfer, fps, numcc_decoder, numcc_end_to_end, rasterize,
#      splat; each
#      `python -m tools.bench.bm_X --device cuda`, time-bounded) which write their
#      <name>-cuda sections of BENCHMARKS.md (placed after the matching -cpu sections);
#   4b. times numcc.demo_web on ../shared/data's gudetama (carried in .whl/data) with a
#      fabricated paper-size checkpoint (the realdata test, on cuda);
#   5. prints nvidia-smi -L, versions and the seconds each phase took.
# The whole run keeps to a budget (GPU_CHECK_BUDGET, 420 s): each phase gets a timeout capped
# by what is left, and a benchmark that no longer fits is skipped (and said so).
#
# Device tool call (from the repository root; .whl also holds data/meshes/bunny.obj, the
# Stanford bunny of ../shared/data that bm_rasterize times):
#   run(command="bash tools/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Files back in $OUT (7): gpu_check.log (everything), ext_build.txt (compiler output), numcc_demo_gpu.txt,
# pytest_gpu.txt, bench_gpu.txt, BENCHMARKS.md (with the new -cuda sections), summary.txt.
# Exit status 0 only when nothing failed or was skipped for time. A shorter rerun of a part:
#   GPU_CHECK_TESTS="knn splat" GPU_CHECK_BENCHES="knn" GPU_CHECK_BUDGET=240 bash tools/gpu_check.sh
#
# Trying it on a machine without a GPU (the CUDA steps then skip): see the GPU_CHECK_*
# variables below, e.g.
#   OUT=/tmp/gpucheck_out GPU_CHECK_PYTHON=.venv/bin/python GPU_CHECK_SITE=/tmp/site_test \
#   GPU_CHECK_PIP_EXTRA="--python-version 3.12" GPU_CHECK_SITE_ON_PATH=0 \
#   GPU_CHECK_BENCH_DEVICE=cpu GPU_CHECK_BENCH_ARGS=--quick bash tools/gpu_check.sh

set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD

OUT=${OUT:-/tmp/gpu_check_out}
PY=${GPU_CHECK_PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/site}
PIP_EXTRA=${GPU_CHECK_PIP_EXTRA:-}                # e.g. "--python-version 3.12" off the device
SITE_ON_PATH=${GPU_CHECK_SITE_ON_PATH:-1}
BUDGET=${GPU_CHECK_BUDGET:-420}                    # seconds for the whole script
BENCH_DEVICE=${GPU_CHECK_BENCH_DEVICE:-cuda}
BENCH_ARGS=${GPU_CHECK_BENCH_ARGS:-}               # e.g. --quick (no BENCHMARKS.md update)
BENCH_TIMEOUT=${GPU_CHECK_BENCH_TIMEOUT:-120}      # per benchmark module
BENCHES=${GPU_CHECK_BENCHES:-"knn chamfer fps numcc_decoder numcc_end_to_end rasterize splat"}
WORKERS=${GPU_CHECK_PYTEST_WORKERS:-8}             # pytest-xdist workers; 0: none
KERNEL_TESTS=${GPU_CHECK_TESTS:-"knn fps chamfer ball_query rasterize splat ext kernel_sources"}

mkdir -p "$OUT"
T0=$(date +%s)
PHASES=()   # "name seconds status"
FAILS=""    # what went wrong, for the exit status and the summary

left() { echo $((BUDGET - ($(date +%s) - T0))); }
# cap WANT RESERVE [FLOOR]: WANT seconds, or what the budget leaves after RESERVE if that is
# less, but at least FLOOR (default 1: `timeout 0` would mean no limit at all).
cap() {
    local want=$1 rest=$(($(left) - $2)) floor=${3:-1}
    ((rest < want)) && want=$rest
    ((want < floor)) && want=$floor
    echo "$want"
}
banner() { printf '\n======== %s (t=%ss, %ss of the budget left) ========\n' "$1" $(($(date +%s) - T0)) "$(left)"; }
record() { PHASES+=("$1 $(($(date +%s) - $2)) $3"); }

main() {
    local t start rc

    # ---- 0. machine -----------------------------------------------------------------------
    banner "machine"
    start=$(date +%s)
    if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
        export PATH=/usr/local/cuda/bin:$PATH
    fi
    nvidia-smi -L 2>&1 || echo "nvidia-smi: not available"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null
    echo "nproc $(nproc); $(command -v nvcc || echo 'no nvcc on PATH')"
    command -v nvcc >/dev/null && nvcc --version | tail -2
    c++ --version 2>/dev/null | head -1 || echo "no c++ compiler"
    "$PY" - <<'EOF'
import os, sys, sysconfig
import torch
inc = sysconfig.get_paths()["include"]
print(f"python {sys.version.split()[0]} at {sys.executable}; Python.h present: "
      f"{os.path.exists(os.path.join(inc, 'Python.h'))}")
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); cuda available: "
      f"{torch.cuda.is_available()}"
      + (f"; {torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}"
         if torch.cuda.is_available() else ""))
EOF
    HAVE_CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
    record machine "$start" ok

    # ---- 1. carried wheels and the repository on PYTHONPATH ---------------------------------
    banner "1. wheels from .whl and PYTHONPATH"
    start=$(date +%s)
    rc=0
    if compgen -G ".whl/*.whl" >/dev/null; then
        ls -1 .whl/*.whl
        # shellcheck disable=SC2086
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" $PIP_EXTRA .whl/*.whl || rc=$?
        echo "pip install into $SITE: rc=$rc"
    else
        echo "no .whl/*.whl here: was the call made with carry=['.whl']?"
        rc=1
    fi
    local path="$REPO/shared/src"
    for src in "$REPO"/packages/*/src; do path="$path:$src"; done
    path="$path:$REPO"
    [ "$SITE_ON_PATH" = 1 ] && path="$SITE:$path"
    export PYTHONPATH="$path${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
    echo "PYTHONPATH=$PYTHONPATH"
    "$PY" - <<'EOF' || rc=$?
import importlib, importlib.metadata as md
bad = []
for module, dist in [("geomkit", None), ("geomkit.ops", None), ("numcc", None), ("onet", None),
                     ("pykdtree.kdtree", "pykdtree"), ("trimesh", "trimesh"), ("rtree", "rtree"),
                     ("lpips", "lpips"), ("plotly", "plotly"), ("pyfqmr", "pyfqmr"),
                     ("efficientnet_pytorch", "efficientnet_pytorch"), ("timm", "timm"),
                     ("scipy", "scipy"), ("skimage", "scikit-image"), ("cv2", None)]:
    try:
        m = importlib.import_module(module)
        version = md.version(dist) if dist else getattr(m, "__version__", "")
        print(f"  import {module:22s} ok {version}  ({getattr(m, '__file__', '')})")
    except Exception as err:  # report all, fail after
        bad.append(module)
        print(f"  import {module:22s} FAILED: {type(err).__name__}: {err}")
raise SystemExit(1 if bad else 0)
EOF
    ((rc != 0)) && FAILS+=" wheels"
    record wheels "$start" "rc=$rc"

    # ---- 2. geomkit's extension (CPU + CUDA) -------------------------------------------------
    banner "2. python -m geomkit.ext --build"
    start=$(date +%s)
    export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST-9.0}   # Hopper only: the shortest build
    export MAX_JOBS=${MAX_JOBS:-$(nproc)}
    echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"
    t=$(cap 300 150 60)
    GEOMKIT_EXT_VERBOSE=1 timeout "$t" "$PY" -m geomkit.ext --build >"$OUT/ext_build.txt" 2>&1
    rc=$?
    echo "build rc=$rc in $(($(date +%s) - start)) s (limit ${t} s; compiler output in ext_build.txt)"
    if ((rc != 0)); then
        tail -40 "$OUT/ext_build.txt"
        # A build killed by timeout leaves torch's lock file, on which every later load would wait.
        rm -f "$("$PY" -c 'from geomkit.ext import geomkit_extension as g; print(g().build_dir())')/lock"
    fi
    # The status table (python -m geomkit.ext's), from the cached build; time-bounded, since
    # after a failed build loading it tries to build again.
    local table
    table=$(timeout "$(cap 120 150 30)" "$PY" -c "
from geomkit.ext import geomkit_extension, report
e = geomkit_extension()
print('\n'.join(report(e)))
print('CUDA_KERNELS=%d' % all(e.has_kernel(op, 'cuda') for op in e.ops))" 2>&1)
    grep -v '^CUDA_KERNELS=' <<<"$table"
    EXT_OK=$(sed -n 's/^CUDA_KERNELS=//p' <<<"$table")
    EXT_OK=${EXT_OK:-0}
    echo "all ops have a compiled CUDA kernel: $EXT_OK"
    [ "$EXT_OK" = 1 ] || FAILS+=" ext_cuda"
    record ext_build "$start" "rc=$rc,cuda_kernels=$EXT_OK"

    # ---- 3. tests -----------------------------------------------------------------------------
    banner "3. pytest: kernel tests + gpu-marked tests"
    start=$(date +%s)
    # A CUDA test that silently ran the pure-PyTorch reference would compare it with itself: make
    # the fallback warning an error. Not -x: one call should show every failure (up to 25).
    local files=() extra=() args=(-v -rfEs -p no:cacheprovider --durations=15 --maxfail=25
        -W error::geomkit.ext.KernelFallbackWarning)
    for name in $KERNEL_TESTS; do files+=("tests/geomkit/test_$name.py"); done
    while IFS= read -r f; do
        [[ " ${files[*]} " == *" $f "* ]] || extra+=("$f")
    done < <(grep -rlE 'mark\.gpu\b' tests --include='test_*.py' | sort)
    local threads=${OMP_NUM_THREADS:-}
    if ((WORKERS > 0)) && "$PY" -c "import xdist" 2>/dev/null; then
        args+=(-n "$WORKERS")
        threads=${OMP_NUM_THREADS:-2}   # per xdist worker: 8 x 2 threads on 16 cores
    fi
    "$PY" -c "import pytest_timeout" 2>/dev/null && args+=(--timeout=150)
    echo "kernel test files: ${files[*]}"
    echo "other files with gpu-marked tests: ${extra[*]:-none}"
    t=$(cap 240 150 60)
    OMP_NUM_THREADS=${threads:-$(nproc)} timeout "$t" \
        "$PY" -m pytest "${args[@]}" -m "not slow" "${files[@]}" 2>&1 | tee "$OUT/pytest_gpu.txt"
    rc=$?
    if ((${#extra[@]})); then
        t=$(cap 120 150 30)
        OMP_NUM_THREADS=${threads:-$(nproc)} timeout "$t" \
            "$PY" -m pytest "${args[@]}" -m "gpu and not slow" "${extra[@]}" 2>&1 |
            tee -a "$OUT/pytest_gpu.txt"
        rc=$((rc | $?))
    fi
    ((rc != 0)) && FAILS+=" pytest"
    # Test ids that ran on the GPU: a `device` parameter naming cuda, or a test_cuda* test outside
    # test_ext/test_kernel_sources (whose test_cuda* tests check the build, not the GPU).
    local ids='tests/[^ ]*::([^ ]*\[[^] ]*cuda[^] ]*\]|test_cuda[^ ]*)' passed failed
    passed=$(grep -E 'PASSED' "$OUT/pytest_gpu.txt" | grep -oE "$ids" |
        grep -vE 'test_(ext|kernel_sources)\.py::test_cuda' | sort -u)
    failed=$(grep -E 'FAILED|ERROR' "$OUT/pytest_gpu.txt" | grep -oE "$ids" |
        grep -vE 'test_(ext|kernel_sources)\.py::test_cuda' | sort -u)
    echo "tests that ran on cuda: $(grep -c . <<<"$passed") passed, $(grep -c . <<<"$failed") failed or errored; passed per file:"
    [ -n "$passed" ] && sed 's/::.*//' <<<"$passed" | sort | uniq -c
    [ -n "$failed" ] && printf 'failed on cuda:\n%s\n' "$failed"
    record pytest "$start" "rc=$rc,cuda_passed=$(grep -c . <<<"$passed"),cuda_failed=$(grep -c . <<<"$failed")"

    # ---- 4. benchmarks --------------------------------------------------------------------------
    banner "4. benchmarks on $BENCH_DEVICE: $BENCHES"
    start=$(date +%s)
    : >"$OUT/bench_gpu.txt"
    local sections="knn chamfer fps numcc-decoder rasterize splat"
    if [ "$BENCH_DEVICE" = cuda ] && [ "$HAVE_CUDA" != 1 ]; then
        echo "no CUDA device: benchmarks skipped" | tee -a "$OUT/bench_gpu.txt"
        record benchmarks "$start" skipped
    elif [ "$BENCH_DEVICE" = cuda ] && [ "$EXT_OK" != 1 ]; then
        echo "the CUDA kernels did not build: benchmarks skipped (they would time the references)" |
            tee -a "$OUT/bench_gpu.txt"
        record benchmarks "$start" skipped
    else
        # Empty <name>-cuda sections right after the -cpu ones, so write_section fills them there.
        "$PY" - "$BENCH_DEVICE" $sections <<'EOF'
import sys
from pathlib import Path
path, device = Path("BENCHMARKS.md"), sys.argv[1]
text = path.read_text()
for name in sys.argv[2:]:
    cpu_end, new = f"<!-- /bench:{name}-cpu -->", f"{name}-{device}"
    if device != "cpu" and cpu_end in text and f"<!-- bench:{new} -->" not in text:
        text = text.replace(cpu_end, f"{cpu_end}\n\n<!-- bench:{new} -->\n<!-- /bench:{new} -->", 1)
path.write_text(text)
EOF
        local b bstart brc summary=""
        for b in $BENCHES; do
            t=$(cap "$BENCH_TIMEOUT" 10 0)
            if ((t < 20)); then
                echo "== tools.bench.bm_$b: skipped, $(left) s left in the budget" | tee -a "$OUT/bench_gpu.txt"
                summary+=" bm_$b=skipped"
                FAILS+=" bm_$b(skipped)"
                continue
            fi
            echo "== tools.bench.bm_$b on $BENCH_DEVICE (timeout ${t} s)" | tee -a "$OUT/bench_gpu.txt"
            bstart=$(date +%s)
            # shellcheck disable=SC2086
            GEOMKIT_SHARED_DATA="$REPO/.whl/data" timeout "$t" \
                "$PY" -m "tools.bench.bm_$b" --device "$BENCH_DEVICE" $BENCH_ARGS 2>&1 |
                tee -a "$OUT/bench_gpu.txt"
            brc=$?
            echo "== bm_$b: rc=$brc in $(($(date +%s) - bstart)) s" | tee -a "$OUT/bench_gpu.txt"
            ((brc != 0)) && FAILS+=" bm_$b"
            cp BENCHMARKS.md "$OUT/BENCHMARKS.md"   # in case the call is cut short
            summary+=" bm_$b=rc$brc/$(($(date +%s) - bstart))s"
        done
        # Drop the placeholders of benchmarks that did not finish.
        "$PY" - "$BENCH_DEVICE" $sections <<'EOF'
import sys
from pathlib import Path
path, device = Path("BENCHMARKS.md"), sys.argv[1]
text = path.read_text()
for name in sys.argv[2:]:
    new = f"{name}-{device}"
    text = text.replace(f"\n\n<!-- bench:{new} -->\n<!-- /bench:{new} -->", "")
path.write_text(text)
EOF
        record benchmarks "$start" "${summary# }"
    fi
    cp BENCHMARKS.md "$OUT/BENCHMARKS.md"

    # ---- 4b. numcc's web demo, paper-size official-layout checkpoint, on the GPU -----------------
    banner "4b. numcc.demo_web on gudetama, base model"
    start=$(date +%s)
    t=$(cap 120 10 0)
    if ((t >= 30)); then
        GEOMKIT_SHARED_DATA="$REPO/.whl/data" timeout "$t" "$PY" -m pytest -q -s -p no:cacheprovider \
            tests/numcc/test_demos.py -k official_layout 2>&1 | tee "$OUT/numcc_demo_gpu.txt"
        rc=$?
        ((rc != 0)) && FAILS+=" numcc_demo"
        record numcc_demo "$start" "rc=$rc"
    else
        FAILS+=" numcc_demo(skipped)"
    fi

    # ---- 5. summary -----------------------------------------------------------------------------
    banner "5. summary"
    {
        nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
        "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
        echo "pytest: $(grep -E '^=+ .* in [0-9.]+s.* =+$' "$OUT/pytest_gpu.txt" | tr -s '=' | tr '\n' ' ')"
        echo "BENCHMARKS.md -cuda sections: $(grep -oE '<!-- bench:[a-z-]+-cuda' BENCHMARKS.md | sed 's/.*bench://' | tr '\n' ' ')"
        echo "phase seconds status"
        printf '%s\n' "${PHASES[@]}"
        echo "total $(($(date +%s) - T0)) s (budget $BUDGET s)"
        echo "problems:${FAILS:- none}"
    } | tee "$OUT/summary.txt"
    [ -z "$FAILS" ]
}

main 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
