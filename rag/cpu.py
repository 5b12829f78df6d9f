"""Which engine runs the bundled e5-small on this CPU, decided from its instruction-set flags.

The choice follows what the hardware can do, not one machine's timings:

- native bf16 matmuls (`amx_bf16` or `avx512_bf16`): torch in bfloat16 (5-10x the fp32 matmul rate);
- otherwise, with int8 dot products (`avx512_vnni` / `avx_vnni`, or AVX2's 8-bit multiply-add): torch
  dynamic int8 with per-channel weight scales, about twice the fp32 rate for the same work. Judged by
  retrieval under AVX2 kernels (the weaker int8 path): JaQuAD dense hit@1 0.745 -> 0.760, hit@5
  0.925 -> 0.9225, within the 0.5-point bar (docs/benchmarks.md); per-tensor scales had lost 1.0;
- otherwise: float32.

Vectors from the bf16 and fp32 engines match to cosine 0.9999 and share one index name; int8 vectors
do not (median cosine 0.971 to fp32), so an int8 index records its own embedder name and is searched
by the int8 engine only.

`ONEDNN_MAX_CPU_ISA` / `FBGEMM_ENABLE_INSTRUCTIONS` / `MKL_ENABLE_INSTRUCTIONS` cap what the kernels use (to emulate a smaller
CPU); the flags are capped the same way so the choice matches the kernels that will run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

BF16_FLAGS = ("amx_bf16", "avx512_bf16")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
# Flags that a cap at AVX2 removes (what an AVX2-only CPU lacks).
_ABOVE_AVX2 = ("avx512", "amx", "avx_vnni")

ENGINES = ("bf16", "int8", "fp32")
# int8 is picked by "auto" because it meets the retrieval-quality bar (hit@1 and hit@5 within 0.5
# points of fp32 on JaQuAD, measured under AVX2 kernels) with per-channel weight scales.
INT8_AUTO = True


@dataclass(frozen=True)
class EngineChoice:
    engine: str          # "bf16", "int8" or "fp32": how documents (and torch-embedded questions) run
    reason: str          # one line for people: which flags decided it
    flags: tuple[str, ...]  # the deciding flags that were present

    def describe(self) -> str:
        return f"engine {self.engine}: {self.reason}"


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The `flags` line of /proc/cpuinfo (first processor) as a set."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def read_cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_cpu_flags(f.read())
    except OSError:
        return frozenset()


def isa_cap(env: Mapping[str, str]) -> str | None:
    """"avx2" when the environment caps the kernels at AVX2 (oneDNN or fbgemm), else None."""
    for key in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS", "MKL_ENABLE_INSTRUCTIONS"):
        if env.get(key, "").strip().upper() == "AVX2":
            return "avx2"
    return None


def cap_flags(flags: Iterable[str], cap: str | None) -> frozenset[str]:
    flags = frozenset(flags)
    if cap == "avx2":
        return frozenset(f for f in flags if not f.startswith(_ABOVE_AVX2))
    return flags


def choose_engine(flags: Iterable[str], cap: str | None = None, int8_auto: bool = INT8_AUTO) -> EngineChoice:
    """Pure: CPU flags (as in /proc/cpuinfo) -> the engine for the bundled e5-small."""
    flags = cap_flags(flags, cap)
    capped = f" (kernels capped at {cap.upper()})" if cap else ""
    bf16 = tuple(f for f in BF16_FLAGS if f in flags)
    if bf16:
        return EngineChoice("bf16", f"the CPU multiplies bf16 natively ({', '.join(bf16)}){capped}", bf16)
    int8 = tuple(f for f in VNNI_FLAGS if f in flags) or (("avx2",) if "avx2" in flags else ())
    if int8 and int8_auto:
        return EngineChoice("int8", f"no native bf16; int8 dot products with {', '.join(int8)}{capped}", int8)
    if int8:
        return EngineChoice("fp32", f"no native bf16 on this CPU{capped}; int8 ({', '.join(int8)}) not "
                                    "chosen automatically (RAG_ENGINE=int8 to choose it)", int8)
    return EngineChoice("fp32", f"no bf16, VNNI or AVX2 on this CPU{capped}: float32", ())


def detect_engine(env: Mapping[str, str] | None = None, cpuinfo_path: str = "/proc/cpuinfo") -> EngineChoice:
    import os

    env = os.environ if env is None else env
    return choose_engine(read_cpu_flags(cpuinfo_path), isa_cap(env))


def flags_summary(flags: Iterable[str]) -> str:
    """The flags that matter here, for benchmark headers: e.g. `avx2 fma avx512f avx512_vnni ...`."""
    keep = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    flags = frozenset(flags)
    return " ".join(f for f in keep if f in flags) or "(none of avx2/avx512/amx)"


def engine_for_index(index_int8: bool | None, choice: EngineChoice) -> EngineChoice:
    """Pure: keep an existing index's vectors comparable. `index_int8`: None (no index yet), True (the
    index holds int8 vectors), False (float vectors: bf16 and fp32 mix harmlessly, cosine 0.9999)."""
    if index_int8 is None:
        return choice
    if index_int8:
        if choice.engine == "int8":
            return choice
        return EngineChoice("int8", f"the index holds int8 vectors, so questions and new posts use int8 too "
                                    f"(this CPU alone would pick {choice.engine}; --rebuild to re-embed)", choice.flags)
    if choice.engine == "int8":
        return EngineChoice("fp32", "the index holds float vectors, so they stay float "
                                    f"(this CPU alone would pick int8: {choice.reason}; --rebuild to re-embed)",
                            choice.flags)
    return choice
