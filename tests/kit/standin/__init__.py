"""Stand-ins for what CI cannot reach: the CUDA base image, ComfyUI, custom nodes, torch."""
