#!/bin/sh
# benchmarks/gpu.py on a lent GPU machine (the session's `device` tool runs this from the
# repository root): its python3 already holds CUDA torch, numpy, scipy, Pillow, PyYAML,
# safetensors and tqdm, all that the look-alike weights and the networks need, so the
# package runs from src/ without installing. About 3 minutes on an H200; not yet run.
#   run(command="sh benchmarks/gpu_device.sh", timeout_s=420)
set -e
export PYTHONPATH=src
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 benchmarks/gpu.py --batch-sizes 1 32 256 --iters 10 --warmup 3 "$@"
