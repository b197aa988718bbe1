#!/usr/bin/env bash
# The GPU benchmark: one command on a JAX GPU machine, under 8 minutes, JSON into OUTDIR.
#
#   tools/gpu_benchmark.sh OUTDIR              # on the GPU machine (JAX with CUDA)
#   tools/gpu_benchmark.sh OUTDIR --cpu-smoke  # anywhere: the same steps at a tiny config
#
# Before: tools/fetch_gpu_wheels.sh fills .whl/ here (Keras, namex, optree for CPython
# 3.12, and this package's wheel); the folder travels with the checkout.
#
# Steps (each benchmark under KERAS_BACKEND=jax, in its own process):
#   1. install .whl/*.whl with pip --no-index into $SITE (default /tmp/ddim-site), put it
#      on PYTHONPATH; the package runs from that wheel unless the wheel differs from the
#      checkout's ddim_keras/, in which case the checkout runs (and env.txt says so);
#   2. env.txt: nvidia-smi, the interpreter, JAX's devices, the versions;
#   3. jax_default.json: python -m ddim_keras.benchmark at the default config (flowers:
#      64 px, batch 64), float32 and bfloat16: training (first step = XLA compile time,
#      then --train-steps timed steps), the compiled sampler (18 images x 20 steps), the
#      example's step-by-step loop, the float32 matmul;
#   4. jax_sampling.json: the compiled sampler alone at a large batch (--num-images),
#      float32 and bfloat16: sampling throughput in image-steps/s;
#   5. jax_float16.json, when time is left: training in float32 and float16;
#   6. summary.json: the best training images/s (each step waited for; the pipelined
#      figure beside it) and sampling image-steps/s, which precision gave them, against
#      the goals (2,700 images/s; 20,000 image-steps/s; not judged with --cpu-smoke),
#      and a warning when a benchmark reports that it ran on no GPU (not with --cpu-smoke).
# Every step's output is also in OUTDIR/*.log. Steps 3-5 run under `timeout`, sized so
# that the whole script ends within BUDGET_S seconds (default 450: 7.5 minutes); a step
# that would not fit is skipped and the summary says so.
#
# Environment: PYTHON (default python3: the interpreter with JAX), WHEELS (default
# <repo>/.whl), SITE, BUDGET_S, TRAIN_STEPS (default 50), SAMPLING_IMAGES (default 512),
# JAX_COMPILATION_CACHE_DIR (default /tmp/ddim-jax-cache: a rerun on the same machine
# compiles less; first_step_s then measures a cache load, which env.txt records).
set -uo pipefail

usage() { echo "usage: $0 OUTDIR [--cpu-smoke]" >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
OUT=$1
MODE=gpu
if [ $# -eq 2 ]; then
    [ "$2" = --cpu-smoke ] || usage
    MODE=cpu-smoke
fi

START=$SECONDS
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
case $PYTHON in  # a relative path must survive the cd below (keep a venv's symlink name)
    */*) PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON") ;;
esac
"$PYTHON" -c "import jax" || { echo "$PYTHON cannot import jax" >&2; exit 1; }
WHEELS=${WHEELS:-$ROOT/.whl}
SITE=${SITE:-/tmp/ddim-site}
BUDGET_S=${BUDGET_S:-450}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export KERAS_BACKEND=jax
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/ddim-jax-cache}
export TF_CPP_MIN_LOG_LEVEL=2
log() { echo "[gpu_benchmark $((SECONDS - START)) s] $*"; }
left() { echo $((BUDGET_S - (SECONDS - START))); }

# -- 1. install -------------------------------------------------------------------------
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    log "installing $(cd "$WHEELS" && echo *.whl) into $SITE"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl || { log "pip install failed"; exit 1; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    log "no wheels in $WHEELS (run tools/fetch_gpu_wheels.sh): using what $PYTHON has"
fi
# The checkout's package when the installed wheel is missing or not the same code.
SOURCE=$("$PYTHON" - "$ROOT" "$SITE" <<'EOF'
import filecmp, os, sys
root, site = sys.argv[1:3]
checkout, wheel = os.path.join(root, "ddim_keras"), os.path.join(site, "ddim_keras")
# Every module, those of the subpackages (ddim_keras/bench/, cli/ ...) included.
names = sorted(os.path.relpath(os.path.join(folder, n), checkout)
               for folder, _, files in os.walk(checkout) for n in files if n.endswith(".py"))
same = os.path.isdir(wheel) and all(
    os.path.isfile(os.path.join(wheel, n)) and filecmp.cmp(os.path.join(checkout, n),
                                                           os.path.join(wheel, n), shallow=False)
    for n in names)
print("wheel" if same or not names else "checkout")
EOF
)
if [ "$SOURCE" = checkout ]; then
    log "the ddim_keras wheel is missing or differs from $ROOT/ddim_keras: using the checkout"
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
cd "$OUT" || exit 1  # not the checkout: PYTHONPATH decides which ddim_keras runs

# -- 2. the machine ---------------------------------------------------------------------
{
    echo "mode: $MODE"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "ddim_keras from: $SOURCE"
    CACHED=$(find "$JAX_COMPILATION_CACHE_DIR" -type f 2>/dev/null | wc -l)
    echo "JAX_COMPILATION_CACHE_DIR: $JAX_COMPILATION_CACHE_DIR ($CACHED entries before the runs)"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    "$PYTHON" - <<'EOF'
import sys
import jax
import keras
import ddim_keras
print("python", sys.version.split()[0], sys.executable)
print("jax", jax.__version__, "devices", jax.devices())
print("keras", keras.__version__, "backend", keras.backend.backend())
print("ddim_keras", ddim_keras.__file__)
try:
    import tensorflow
    print("tensorflow", tensorflow.__version__, "(importable)")
except ImportError:
    print("tensorflow: not importable")
EOF
} > env.txt 2>&1
cat env.txt

# -- 3-5. the benchmarks ----------------------------------------------------------------
if [ "$MODE" = gpu ]; then
    TRAIN_STEPS=${TRAIN_STEPS:-50}
    SAMPLING_IMAGES=${SAMPLING_IMAGES:-512}
    CONFIG=(--preset flowers)
    COMMON=(--repeats 5 --matmul-size 8192)
else
    TRAIN_STEPS=${TRAIN_STEPS:-3}
    SAMPLING_IMAGES=${SAMPLING_IMAGES:-8}
    # 16 px, widths [8, 16], one block, batch 4: seconds on a CPU.
    "$PYTHON" -c "
from ddim_keras.core.config import DiffusionConfig
DiffusionConfig(image_size=16, widths=(8, 16), block_depth=1, batch_size=4, kid=False,
                embedding_dims=8).save('tiny_config.json')" || exit 1
    CONFIG=(--config tiny_config.json)
    COMMON=(--repeats 2 --matmul-size 256 --steps 2)
fi

SKIPPED=()
bench() {  # bench NAME MIN_SECONDS FLAGS...: one benchmark process, within the budget
    local name=$1 need=$2 limit
    shift 2
    limit=$(( $(left) - 15 ))
    if [ "$limit" -lt "$need" ]; then
        log "skipping $name: ${limit} s left of the budget, it needs about ${need} s"
        SKIPPED+=("$name")
        return 0
    fi
    log "$name (time limit ${limit} s)"
    timeout --kill-after=10 "$limit" "$PYTHON" -m ddim_keras.benchmark "${CONFIG[@]}" \
        "${COMMON[@]}" "$@" --output "$name.json" > "$name.log" 2>&1
    local code=$?
    cat "$name.log"
    if [ $code -ne 0 ]; then
        if [ $code -eq 124 ] || [ $code -eq 137 ]; then
            log "$name ran out of its ${limit} s (exit $code)"
        else
            log "$name failed (exit $code)"
        fi
        SKIPPED+=("$name (exit $code)")
    fi
}

bench jax_default 120 --mixed-precision bfloat16 --train-steps "$TRAIN_STEPS"
bench jax_sampling 60 --mixed-precision bfloat16 --skip train,loop,data,matmul \
    --num-images "$SAMPLING_IMAGES"
bench jax_float16 120 --mixed-precision float16 --skip sampling,data,matmul \
    --train-steps "$TRAIN_STEPS"

# -- 6. summary -------------------------------------------------------------------------
log "summary"
"$PYTHON" - "$MODE" "${SKIPPED[@]}" <<'EOF'
import json, os, sys

mode, skipped = sys.argv[1], sys.argv[2:]
GOALS = {"train_images_per_s": 2700.0, "sampling_image_steps_per_s": 20000.0}
results = {}
for name in ("jax_default", "jax_sampling", "jax_float16"):
    if os.path.exists(f"{name}.json"):
        with open(f"{name}.json", encoding="utf-8") as handle:
            results[name] = json.load(handle)

train, sampling = [], []
for name, result in results.items():
    if result.get("train"):
        for entry in (result["train"], result["train"].get("mixed")):
            if entry and "images_per_s" in entry:
                # Judged on the steps each waited for; the pipelined figure (queued steps,
                # a difference of two fit calls) comes along but is noisier.
                train.append((entry["images_per_s"], entry.get("precision", "float32"),
                              entry["pipelined_images_per_s"], name))
    if result.get("sampling"):
        s = result["sampling"]
        sampling.append((s["compiled_image_steps_per_s"], "float32", s["num_images"], name))
        if s.get("mixed"):
            sampling.append((s["mixed"]["image_steps_per_s"], s["mixed"]["precision"],
                             s["num_images"], name))
first = next(iter(results.values()), {})
summary = {"mode": mode, "device": first.get("device"), "versions": first.get("versions"),
           "goals": GOALS, "skipped": skipped, "train": None, "sampling": None}
if train:
    value, precision, pipelined, name = max(train)
    summary["train"] = {"images_per_s": value, "precision": precision,
                        "pipelined_images_per_s": pipelined,
                        "file": f"{name}.json",
                        "meets_goal": value >= GOALS["train_images_per_s"]
                        if mode == "gpu" else None}
if sampling:
    value, precision, images, name = max(sampling)
    summary["sampling"] = {"image_steps_per_s": value, "precision": precision,
                           "num_images": images, "file": f"{name}.json",
                           "meets_goal": value >= GOALS["sampling_image_steps_per_s"]
                           if mode == "gpu" else None}
with open("summary.json", "w", encoding="utf-8") as handle:
    json.dump(summary, handle, indent=2)
def verdict(entry):
    if entry["meets_goal"] is None:
        return "not judged: --cpu-smoke runs a tiny config"
    return "met" if entry["meets_goal"] else "NOT met"


print(f"device: {summary['device']}")
if summary["train"]:
    t = summary["train"]
    print(f"best training: {t['images_per_s']:.1f} images/s ({t['precision']}, each step "
          f"waited for; {t['pipelined_images_per_s']:.1f} pipelined; goal "
          f"{GOALS['train_images_per_s']:.0f}: {verdict(t)})")
if summary["sampling"]:
    s = summary["sampling"]
    print(f"best sampling: {s['image_steps_per_s']:.1f} image-steps/s ({s['precision']}, "
          f"{s['num_images']} images; goal {GOALS['sampling_image_steps_per_s']:.0f}: "
          f"{verdict(s)})")
if skipped:
    print("skipped or failed:", ", ".join(skipped))
# Judged on the device each benchmark reports having run on (env.txt is no guide: its
# own "mode: gpu" line matches any search for "gpu").
not_on_gpu = {name: result.get("device") for name, result in results.items()
              if not str(result.get("device")).startswith("GPU: ")}
if mode == "gpu" and not_on_gpu:
    ran_on = "; ".join(f"{name} on {device}" for name, device in not_on_gpu.items())
    print(f"warning: no GPU: the benchmark ran {ran_on} (see env.txt); "
          "these are CPU numbers")
EOF
log "done: $(cd "$OUT" && echo *.json)"
[ ${#SKIPPED[@]} -eq 0 ] || [ -f jax_default.json ]
