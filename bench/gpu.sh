#!/usr/bin/env bash
# Every GPU figure in the README, in one run of about 9 minutes on one H200 (the README says which
# card gave each number). DATA is a copy of the real-data folder: mnist/ and tinyshakespeare/.
#   bash bench/gpu.sh DATA LOGS
# Each step has its own time limit, most important first, so a slow step cannot starve the rest.
set -u
data=${1:?usage: bash bench/gpu.sh DATA LOGS}
logs=${2:-gpu-logs}
mkdir -p "$logs"
export PYTHONUNBUFFERED=1
step() {  # step NAME SECONDS COMMAND...: run, keep the log, never stop the script
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date +%T), limit ${limit}s)"
    timeout "$limit" "$@" >"$logs/$name.log" 2>&1
    echo "exit $? after $SECONDS s in all"
    grep -v -E "Warning|warn\(|^\s*$" "$logs/$name.log" | tail -n 25
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
step shakespeare_gpt 330 python bench/shakespeare.py --path "$data/tinyshakespeare/input.txt" --accelerator gpu --models gpt
step knn 75 python bench/knn.py --device cuda --rounds 3 --chunk-mb 4096
step cifar_resnet 100 python bench/cifar_gpu.py --accelerator gpu --precision bf16-mixed --epochs 3
step results 90 python bench/results.py --accelerator gpu --full --precision bf16-mixed --shared "$data" \
    --workdir /tmp/gpu-results --readme - --only mnist_mlp mnist_cnn mnist_vit mnist_knn
step cifar_loader 40 python bench/cifar_loader.py --device cuda --rounds 3
