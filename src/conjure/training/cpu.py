"""What the CPU can do, for training decisions and for model cards: CPUs differ by up to 5x in this code's
training speed, mostly by whether they run bf16 natively (AMX or AVX-512 BF16) or emulate it."""

from __future__ import annotations

import platform
from pathlib import Path

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(info: str | None = None) -> set[str]:
    info = _cpuinfo() if info is None else info
    return set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))


def native_bf16(info: str | None = None) -> bool | None:
    """True or False from /proc/cpuinfo's flags; None where there is no such file (not Linux)."""
    info = _cpuinfo() if info is None else info
    if not info:
        return None
    return any(f in cpu_flags(info) for f in NATIVE_BF16_FLAGS)


def cpu_name(info: str | None = None) -> str:
    """The processor's model name, with its native bf16 flags when it has any."""
    info = _cpuinfo() if info is None else info
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                f"{platform.machine()} CPU")
    native = [f for f in NATIVE_BF16_FLAGS if f in cpu_flags(info)]
    return f"{name} ({', '.join(native)})" if native else name
