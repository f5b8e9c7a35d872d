#!/usr/bin/env bash
# The GPU comparisons, compiled, in one run of at most 8.5 minutes on one H200 (the step limits below; a rerun
# is faster, with inductor's caches warm), so that it can run twice in 15:
#   (a) configs/shakespeare_gpt_gpu.yaml against nanoGPT's own train.py (compile=True, the same config),
#       both cut to STEPS steps (default 2000, schedule squeezed alike): time per step, validation losses;
#   (b) ResNet-9 of configs/cifar10_resnet.yaml on synthetic CIFAR-sized data, compiled and channels-last,
#       against the same network in a plain PyTorch loop: images per second.
#   bash bench/gpu.sh TEXT NANOGPT [LOGS]           TEXT: Tiny Shakespeare's input.txt; NANOGPT: a nanoGPT checkout
#   bash bench/gpu.sh --smoke TEXT NANOGPT [LOGS]   the same script on a CPU with tiny models: checks it (minutes)
#   bash bench/gpu.sh --readme DATA [LOGS]          the README's other GPU figures (kNN, results table, loader);
#                                                   DATA holds mnist/ and tinyshakespeare/
# Each step has its own time limit, most important first, so a slow step cannot starve the rest; a step's
# whole output stays in LOGS/NAME.log.
set -u
mode=compare
case "${1:-}" in --smoke | --readme) mode=${1#--}; shift ;; esac
export PYTHONUNBUFFERED=1
step() {  # step NAME SECONDS COMMAND...: run, keep the log, never stop the script
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date +%T), limit ${limit}s)"
    timeout "$limit" "$@" >"$logs/$name.log" 2>&1
    echo "exit $? after $SECONDS s in all"
    grep -v -E "Warning|warn\(|^\s*$" "$logs/$name.log" | tail -n 25
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
python -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, \
'cpu capability', torch.backends.cpu.get_cpu_capability())"
if [ "$mode" = readme ]; then
    data=${1:?usage: bash bench/gpu.sh --readme DATA [LOGS]}
    logs=${2:-gpu-logs}
    mkdir -p "$logs"
    step knn 75 python bench/knn.py --device cuda --rounds 3 --chunk-mb 4096
    step results 90 python bench/results.py --accelerator gpu --shared "$data" --workdir /tmp/gpu-results \
        --only mnist_mlp mnist_cnn mnist_vit mnist_knn
    step cifar_loader 40 python bench/cifar_loader.py --device cuda --rounds 3
    exit 0
fi
text=${1:?usage: bash bench/gpu.sh [--smoke] TEXT NANOGPT [LOGS]}
nanogpt=${2:?usage: bash bench/gpu.sh [--smoke] TEXT NANOGPT [LOGS]}
logs=${3:-gpu-logs}
mkdir -p "$logs"
if [ "$mode" = smoke ]; then
    step gpt_vs_nanogpt 600 python bench/shakespeare.py --path "$text" --against-nanogpt "$nanogpt" --accelerator cpu \
        --compile true --smoke
    step resnet_vs_plain 600 python bench/cifar_gpu.py --smoke --compile --channels-last
else
    step gpt_vs_nanogpt 300 python bench/shakespeare.py --path "$text" --against-nanogpt "$nanogpt" --accelerator gpu \
        --steps "gpt=${STEPS:-2000}"
    step resnet_vs_plain 200 python bench/cifar_gpu.py --accelerator gpu --precision bf16-mixed --epochs 3 --compile \
        --channels-last
fi
