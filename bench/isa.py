"""Running a benchmark as an AVX2-only CPU would (most laptops and CI runners): what each library that picks its
kernels by CPU feature is told to leave out. PyTorch, oneDNN and MKL are capped at AVX2; numpy's AVX-512 kernels are
switched off. Python's own code (regular expressions, str methods) has no such kernels."""

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
