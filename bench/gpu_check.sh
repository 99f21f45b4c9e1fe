#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and vLLM installed: start a vLLM worker and a
# gateway, run the openai-client end-to-end checks and the overhead benchmark.
#
#   bench/gpu_check.sh MODEL_DIR_OR_ID [SERVED_NAME] [-- extra vllm serve args]
#   e.g. bench/gpu_check.sh /models/Qwen2.5-0.5B-Instruct-AWQ qwen-awq -- --max-model-len 4096
#
# Uses $PYTHON (default: python3) with InferCDN and vLLM installed in it.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: bench/gpu_check.sh MODEL_DIR_OR_ID [SERVED_NAME] [-- vllm args]}
NAME=${2:-gpu-check}
shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = "--" ] && shift
PY=${PYTHON:-python3}
WORKER_PORT=${WORKER_PORT:-18081}
GATEWAY_PORT=${GATEWAY_PORT:-18080}
LOGS=$(mktemp -d)
VLLM_ARGS=()
for arg in "$@"; do VLLM_ARGS+=("--vllm-arg=$arg"); done

cleanup() { kill "${GATEWAY_PID:-}" "${WORKER_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_healthy() {  # url, seconds, pid, log
  for _ in $(seq "$2"); do
    curl -fs "$1/health" >/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { echo "exited while starting; see $4"; tail -20 "$4"; return 1; }
    sleep 1
  done
  echo "not healthy after $2 s; see $4"; return 1
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "(no nvidia-smi)"
echo "starting a vLLM worker for $MODEL as $NAME (logs in $LOGS)"
$PY -m edge_worker --runtime vllm --model "$MODEL" --served-model-name "$NAME" --port "$WORKER_PORT" \
  "${VLLM_ARGS[@]}" >"$LOGS/worker.log" 2>&1 &
WORKER_PID=$!
wait_healthy "http://127.0.0.1:$WORKER_PORT" 1800 "$WORKER_PID" "$LOGS/worker.log"
$PY -m gateway gateway --port "$GATEWAY_PORT" --worker "http://127.0.0.1:$WORKER_PORT" >"$LOGS/gateway.log" 2>&1 &
GATEWAY_PID=$!
wait_healthy "http://127.0.0.1:$GATEWAY_PORT" 60 "$GATEWAY_PID" "$LOGS/gateway.log"
curl -s "http://127.0.0.1:$GATEWAY_PORT/v1/models"; echo

echo "== end-to-end checks (openai client, through the gateway)"
$PY -m bench.vllm_check --gateway "http://127.0.0.1:$GATEWAY_PORT" --model "$NAME"
echo "== overhead benchmark (part b on the vLLM worker)"
$PY -m bench.overhead --quick --worker-url "http://127.0.0.1:$WORKER_PORT" --model "$NAME"
