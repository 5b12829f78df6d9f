from rag.cpu import (EngineChoice, cap_flags, choose_engine, engine_for_index, flags_summary, isa_cap,
                     parse_cpu_flags)

# Hand-written flag sets of real CPU families (abridged /proc/cpuinfo `flags` lines).
SAPPHIRE_RAPIDS = "fpu sse2 avx fma avx2 avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile"
COOPER_LAKE = "fpu sse2 avx fma avx2 avx512f avx512bw avx512_vnni avx512_bf16"
CASCADE_LAKE = "fpu sse2 avx fma avx2 avx512f avx512bw avx512_vnni"
ALDER_LAKE = "fpu sse2 avx fma avx2 avx_vnni"
EPYC_ROME = "fpu sse2 avx fma avx2 sha_ni"          # the AVX2-only 2-core EPYC of the issue
SANDY_BRIDGE = "fpu sse2 sse4_2 avx"


def flags(s: str) -> frozenset[str]:
    return frozenset(s.split())


def test_bf16_cpus_run_bf16():
    for cpu in (SAPPHIRE_RAPIDS, COOPER_LAKE):
        c = choose_engine(flags(cpu))
        assert c.engine == "bf16" and "avx512_bf16" in c.flags


def test_vnni_and_avx2_cpus_without_bf16_run_int8():
    c = choose_engine(flags(EPYC_ROME))
    assert (c.engine, c.flags) == ("int8", ("avx2",)) and "int8 dot products with avx2" in c.reason
    assert (choose_engine(flags(CASCADE_LAKE)).engine, choose_engine(flags(CASCADE_LAKE)).flags) == \
        ("int8", ("avx512_vnni",))
    assert choose_engine(flags(ALDER_LAKE)).flags == ("avx_vnni",)
    # the switch that kept int8 opt-in while it failed the quality bar
    c = choose_engine(flags(EPYC_ROME), int8_auto=False)
    assert c.engine == "fp32" and "RAG_ENGINE=int8" in c.reason


def test_old_cpus_run_fp32():
    assert choose_engine(flags(SANDY_BRIDGE)).engine == "fp32"
    assert choose_engine(frozenset()).engine == "fp32"


def test_avx2_cap_turns_an_amx_host_into_an_avx2_one():
    assert cap_flags(flags(SAPPHIRE_RAPIDS), "avx2") == flags("fpu sse2 avx fma avx2")
    c = choose_engine(flags(SAPPHIRE_RAPIDS), "avx2")
    assert (c.engine, c.flags) == ("int8", ("avx2",)) and "capped at AVX2" in c.reason
    assert isa_cap({"ONEDNN_MAX_CPU_ISA": "avx2"}) == "avx2"
    assert isa_cap({"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}) == "avx2"
    assert isa_cap({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}) is None
    assert isa_cap({}) is None


def test_parse_cpuinfo():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 fma\nbugs\t\t: sysret_ss_attrs\n" \
           "processor\t: 1\nflags\t\t: fpu avx2 fma\n"
    assert parse_cpu_flags(text) == flags("fpu avx2 fma")
    assert parse_cpu_flags("Features\t: fp asimd\n") == flags("fp asimd")   # arm64
    assert parse_cpu_flags("") == frozenset()
    assert flags_summary(flags(EPYC_ROME)) == "avx2 fma"


def test_the_index_decides_between_int8_and_float():
    avx2 = choose_engine(flags(EPYC_ROME), int8_auto=True)
    amx = choose_engine(flags(SAPPHIRE_RAPIDS))
    assert engine_for_index(None, avx2) is avx2
    # a float index stays float on an int8 CPU; an int8 index stays int8 on a bf16 CPU
    kept = engine_for_index(False, avx2)
    assert kept.engine == "fp32" and "float" in kept.reason
    assert engine_for_index(False, amx) is amx
    assert engine_for_index(True, amx).engine == "int8"
    assert engine_for_index(True, avx2) is avx2
    assert isinstance(kept, EngineChoice)
