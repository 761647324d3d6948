"""An `amdsmi` package installed without ROCm's libamd_smi.so: what `import amdsmi` does then.

The real bindings print where they looked (to stdout) and fail with KeyError('libamd_smi.so')
while loading the library, before any function exists.
"""

print("/opt/rocm/lib/libamd_smi.so: cannot open shared object file: No such file or directory")
print("Unable to find libamd_smi.so library try installing amd-smi-lib from your package manager")
raise KeyError("libamd_smi.so")
