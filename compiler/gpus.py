"""The GPU catalog: the facts about each `resources.gpu` value that checks and estimates need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    architecture: str
    bf16: bool  # native bfloat16 (Ampere and newer)
    flash_attention_2: bool  # FlashAttention 2 supports Ampere, Ada and Hopper only
    max_per_node: int  # most GPUs of this model in one machine offered by the major clouds
    # Peak dense (no sparsity) tensor-core TFLOPS for 16-bit matmuls with fp32 accumulation (fp16 on T4), and
    # fp32 without TF32, from NVIDIA's data sheets (A10G, an AWS-only part: Baseten's A10 vs A10G comparison).
    # `ftc estimate` multiplies them by an achievable fraction (see ftc.estimate.throughput).
    tflops_16bit: float = 0.0
    tflops_fp32: float = 0.0
    nvlink: bool = False  # GPUs of a machine talk over NVLink (SXM boards), not only PCIe


GPUS: dict[str, Gpu] = {
    g.name: g
    for g in (
        Gpu("T4", 15.0, "turing", bf16=False, flash_attention_2=False, max_per_node=8,
            tflops_16bit=65.0, tflops_fp32=8.1),
        Gpu("L4", 22.5, "ada", bf16=True, flash_attention_2=True, max_per_node=8,
            tflops_16bit=121.0, tflops_fp32=30.3),
        Gpu("A10G", 22.5, "ampere", bf16=True, flash_attention_2=True, max_per_node=8,
            tflops_16bit=70.0, tflops_fp32=35.0),
        Gpu("RTX4090", 24.0, "ada", bf16=True, flash_attention_2=True, max_per_node=8,
            tflops_16bit=165.2, tflops_fp32=82.6),
        Gpu("A100-40GB", 40.0, "ampere", bf16=True, flash_attention_2=True, max_per_node=16,
            tflops_16bit=312.0, tflops_fp32=19.5, nvlink=True),
        Gpu("A100-80GB", 80.0, "ampere", bf16=True, flash_attention_2=True, max_per_node=8,
            tflops_16bit=312.0, tflops_fp32=19.5, nvlink=True),
        Gpu("H100-80GB", 80.0, "hopper", bf16=True, flash_attention_2=True, max_per_node=8,
            tflops_16bit=989.4, tflops_fp32=66.9, nvlink=True),
        Gpu("H200", 141.0, "hopper", bf16=True, flash_attention_2=True, max_per_node=8,
            tflops_16bit=989.4, tflops_fp32=66.9, nvlink=True),
    )
}


# Node label values that identify each `resources.gpu`, for the GPU product node affinity of the
# Kubernetes pods (`kubernetes.gpu_product_label`), per label that ftc knows:
# - `nvidia.com/gpu.product`: set by NVIDIA GPU Feature Discovery (part of the GPU Operator) to the
#   device name NVML reports, spaces replaced by '-'; one model can appear under several names (SXM
#   and PCIe boards). MIG and time-sliced GPUs carry suffixed names (`-MIG-1g.10gb`, `-SHARED`) and
#   are not matched.
# - `cloud.google.com/gke-accelerator`: set by GKE on its GPU node pools (GKE offers no A10G or RTX 4090).
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_PRODUCT_VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    GPU_PRODUCT_LABEL: {
        "T4": ("Tesla-T4",),
        "L4": ("NVIDIA-L4",),
        "A10G": ("NVIDIA-A10G",),
        "RTX4090": ("NVIDIA-GeForce-RTX-4090",),
        "A100-40GB": ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"),
        "A100-80GB": ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"),
        "H100-80GB": ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"),
        "H200": ("NVIDIA-H200", "NVIDIA-H200-NVL"),
    },
    "cloud.google.com/gke-accelerator": {
        "T4": ("nvidia-tesla-t4",),
        "L4": ("nvidia-l4",),
        "A100-40GB": ("nvidia-tesla-a100",),
        "A100-80GB": ("nvidia-a100-80gb",),
        "H100-80GB": ("nvidia-h100-80gb", "nvidia-h100-mega-80gb"),
        "H200": ("nvidia-h200-141gb",),
    },
}


def gpu_product_values(label: str, gpu: str) -> tuple[str, ...]:
    """Values of node label `label` that mark nodes with `gpu`; () when ftc knows none."""
    return GPU_PRODUCT_VALUES.get(label, {}).get(gpu, ())
