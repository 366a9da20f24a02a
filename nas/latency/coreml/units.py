"""Core ML compute units: torch-free, so the command line lists them without importing coremltools."""

COMPUTE_UNITS = ("ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY")
