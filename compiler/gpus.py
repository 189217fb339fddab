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


# Node labels that identify each `resources.gpu`, for the GPU model node affinity of the Kubernetes pods.
# A node autoscaler provisions a node for a pending pod only when it can tell, before the node exists, that
# the node will carry the labels the pod requires; a label that appears only after boot (such as the GPU
# Feature Discovery label below) keeps a GPU node pool that scales from zero at zero. So the default label
# follows `kubernetes.spot_provider`, which names the cluster's node provisioner:
# - karpenter: `karpenter.k8s.aws/instance-gpu-name`, a label Karpenter's AWS provider derives from the EC2
#   instance type (lower-case GPU names: t4, a10g, l4, a100, h100, h200), so it schedules against it before
#   launching (aws/karpenter-provider-aws #3075, #7535 for the GFD label it cannot know). A100 40 GB and
#   80 GB share the name `a100`; `karpenter.k8s.aws/instance-gpu-memory` (MiB per GPU) tells them apart.
# - eks (managed node groups with the Cluster Autoscaler) and aks (AKS node pools with its cluster
#   autoscaler): `node.kubernetes.io/instance-type`, the well-known label the autoscaler puts on the template
#   node it builds from a node group's instance type or VM size; AKS's `kubernetes.azure.com/accelerator`
#   only says `nvidia`, not the model.
# - gke: `cloud.google.com/gke-accelerator`, set on GPU node pools and known to the GKE autoscaler and to
#   node auto-provisioning (GKE offers no A10G or RTX 4090).
# - none (plain clusters): `nvidia.com/gpu.product`, set by NVIDIA GPU Feature Discovery (part of the GPU
#   Operator) to the device name NVML reports, spaces replaced by '-'; right for nodes that already exist.
#   One model can appear under several names (SXM and PCIe boards). MIG and time-sliced GPUs carry
#   suffixed names (`-MIG-1g.10gb`, `-SHARED`) and are not matched.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
KARPENTER_GPU_LABEL = "karpenter.k8s.aws/instance-gpu-name"
KARPENTER_GPU_MEMORY_LABEL = "karpenter.k8s.aws/instance-gpu-memory"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
PROVIDER_GPU_LABELS: dict[str, str] = {
    "karpenter": KARPENTER_GPU_LABEL,
    "eks": INSTANCE_TYPE_LABEL,
    "aks": INSTANCE_TYPE_LABEL,
    "gke": GKE_ACCELERATOR_LABEL,
    "none": GPU_PRODUCT_LABEL,
}


def _sizes(family: str, *sizes: str) -> tuple[str, ...]:
    return tuple(f"{family}.{size}" for size in sizes)


# EC2 instance types (one GPU model each) and Azure VM sizes per GPU; both clouds under one label, as an
# AWS node never carries an Azure size and the other way round.
_INSTANCE_TYPES: dict[str, tuple[str, ...]] = {
    "T4": (*_sizes("g4dn", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "metal"),
           "Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3", "Standard_NC16as_T4_v3", "Standard_NC64as_T4_v3"),
    "L4": _sizes("g6", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
    "A10G": _sizes("g5", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
    "A100-40GB": ("p4d.24xlarge", "Standard_ND96asr_v4"),
    "A100-80GB": ("p4de.24xlarge", "Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4",
                  "Standard_NC96ads_A100_v4", "Standard_ND96amsr_A100_v4"),
    "H100-80GB": ("p5.4xlarge", "p5.48xlarge", "Standard_NC40ads_H100_v5", "Standard_NC80adis_H100_v5",
                  "Standard_ND96isr_H100_v5"),
    "H200": ("p5e.48xlarge", "p5en.48xlarge", "Standard_ND96isr_H200_v5"),
}

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
    GKE_ACCELERATOR_LABEL: {
        "T4": ("nvidia-tesla-t4",),
        "L4": ("nvidia-l4",),
        "A100-40GB": ("nvidia-tesla-a100",),
        "A100-80GB": ("nvidia-a100-80gb",),
        "H100-80GB": ("nvidia-h100-80gb", "nvidia-h100-mega-80gb"),
        "H200": ("nvidia-h200-141gb",),
    },
    KARPENTER_GPU_LABEL: {
        "T4": ("t4",),
        "L4": ("l4",),
        "A10G": ("a10g",),
        "A100-40GB": ("a100",),
        "A100-80GB": ("a100",),
        "H100-80GB": ("h100",),
        "H200": ("h200",),
    },
    INSTANCE_TYPE_LABEL: _INSTANCE_TYPES,
}
# Further requirements of a (label, GPU) pair, where the label's value alone names several GPUs.
EXTRA_REQUIREMENTS: dict[tuple[str, str], tuple[tuple[str, tuple[str, ...]], ...]] = {
    (KARPENTER_GPU_LABEL, "A100-40GB"): ((KARPENTER_GPU_MEMORY_LABEL, ("40960",)),),
    (KARPENTER_GPU_LABEL, "A100-80GB"): ((KARPENTER_GPU_MEMORY_LABEL, ("81920",)),),
}


def gpu_product_values(label: str, gpu: str) -> tuple[str, ...]:
    """Values of node label `label` that mark nodes with `gpu`; () when ftc knows none."""
    return GPU_PRODUCT_VALUES.get(label, {}).get(gpu, ())


AUTO_LABEL = "auto"  # `kubernetes.gpu_product_label` value: the label of the spot provider's node provisioner


def gpu_label(label: str, spot_provider: str) -> str:
    """The node label that selects the GPU model: `label`, or the provisioner's one for `auto`."""
    return PROVIDER_GPU_LABELS[spot_provider] if label == AUTO_LABEL else label


def gpu_requirements(label: str, gpu: str, values: tuple[str, ...] | None = None
                     ) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(label, values) requirements a node with `gpu` meets, all together; () when ftc knows no value.

    `values` (the spec's `gpu_product_values`) replaces ftc's table, extra requirements included.
    """
    if values is not None:
        return ((label, tuple(values)),)
    known = gpu_product_values(label, gpu)
    if not known:
        return ()
    return ((label, known), *EXTRA_REQUIREMENTS.get((label, gpu), ()))
