"""What this host runs on, for announcements: CPU, memory, and an NVIDIA GPU if any."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from routing.announce import Hardware


async def detect() -> Hardware:
    cpu, memory = _cpu_model(), _memory_bytes()
    gpu, gpu_memory = await _nvidia_gpu()
    return Hardware(cpu=cpu, cores=os.cpu_count() or 0, memory_bytes=memory, gpu=gpu, gpu_memory_bytes=gpu_memory)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


async def _nvidia_gpu() -> tuple[str, int]:
    """The first GPU's name and memory from ``nvidia-smi``; ("", 0) without one."""
    if shutil.which("nvidia-smi") is None:
        return "", 0
    try:
        process = await asyncio.create_subprocess_exec(
            "nvidia-smi",
            "--query-gpu=name,memory.total",
            "--format=csv,noheader,nounits",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 10)
        name, mib = out.decode().splitlines()[0].rsplit(",", 1)
        return name.strip(), int(mib.strip()) * 2**20
    except (OSError, TimeoutError, ValueError, IndexError):
        return "", 0
