"""The machine a benchmark ran on, printed at the top of every benchmark's output and stored in
its JSON: the CPU model, its SIMD flags that matter to onebit's kernels, the ISA class, and the
kernel family onebit dispatches to."""

from __future__ import annotations

import os
import platform

import onebit.kernels as K

__all__ = ["describe", "header"]

# /proc/cpuinfo flag -> what it gives onebit's kernels
_FLAGS = ("avx2", "fma", "popcnt", "avx512f", "avx512bw", "avx512vl", "avx512_vpopcntdq",
          "avx512_bitalg", "avx512_vnni", "avx512_bf16", "avx_vnni")


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.processor(), platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def describe() -> dict:
    """CPU model, relevant flags, ISA class, onebit's active kernel family, cores."""
    model, flags = _cpuinfo()
    have = [f for f in _FLAGS if f in flags]
    if {"avx512f", "avx512_vpopcntdq"} <= flags:
        cls = "AVX-512 with VPOPCNTDQ" + (" + VNNI" if "avx512_vnni" in flags else "")
    elif "avx2" in flags:
        cls = "AVX2, no AVX-512" if "avx512f" not in flags else "AVX-512 without VPOPCNTDQ"
    else:
        cls = platform.machine()
    return {"cpu": model, "flags": have, "isa_class": cls, "onebit_isa": K.active_isa(),
            "onebit_features": K.cpu_features(), "cores": os.cpu_count()}


def header(info: dict | None = None) -> str:
    """Two lines naming the machine, for the top of a benchmark's output."""
    info = info or describe()
    return (f"CPU: {info['cpu']} ({info['cores']} cores), class: {info['isa_class']}\n"
            f"flags: {' '.join(info['flags']) or '-'}; onebit kernels: {info['onebit_isa']}")
