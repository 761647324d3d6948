"""AIM Engine: the boot agent of the unified vLLM/SGLang ROCm container.

Keep this module empty of imports: `aim-engine --help` must start fast.
"""

__version__ = "0.1.0"
