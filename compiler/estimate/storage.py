"""Disk a run needs and how long a checkpoint takes to save and upload: for the SIGTERM grace period and the
pods' ephemeral storage.

A checkpoint, per method (bytes per parameter P of the model, T of what trains):

- full fine-tuning: the model weights (16-bit under DeepSpeed, which saves the gathered 16-bit model,
  else the training dtype: fp32 under autocast) plus the optimizer's states of every trained parameter
  (AdamW: two fp32 moments) plus, under DeepSpeed, its fp32 master copy. ZeRO (stage 1 and up) splits the
  optimizer states and master copies across the ranks: each node writes its share, node 0 also the
  weights. Without ZeRO the main process writes it all. A 7B model under ZeRO-3 with AdamW:
  2 + 4 + 8 = 14 bytes × 6.7 B ≈ 94 GB.
- PEFT methods: the trainable parameters (fp32 under autocast, the compute dtype otherwise) and their
  optimizer states, written by the main process.

The final results: the full model (full fine-tuning, as in its checkpoint) or the adapter, plus the merged
model in the compute dtype when `output.save` merges. The Hugging Face cache holds the base model's
16-bit weights when it is an emptyDir (without `kubernetes.cache_pvc`).

Times use the bandwidths below, per node (the nodes save and upload their shares at once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..plan import Plan
from .memory import _opt_state_bytes
from .models import Architecture
from .params import base_counts
from .workload import from_plan

# Write rate of the disk behind an emptyDir: the node's root volume, by default an AWS gp3 volume at its
# baseline of 125 MiB/s (GKE's and AKS's default node disks are in the same range); local NVMe is far faster.
DISK_BYTES_PER_S = 125 * 2**20
# Upload rate to object storage from one node: the runtime uploads a checkpoint's files one after another
# through fsspec (s3fs, gcsfs), which sustains about 100 MiB/s per stream within a region.
UPLOAD_BYTES_PER_S = 100 * 2**20
# Ephemeral storage besides checkpoints and models: tokenized data, temporary files, compiled kernels
# (Triton, torch inductor, DeepSpeed ops), logs.
SCRATCH_BYTES = 10 * 2**30
# Margin on the sum, for files the formulas leave out (tokenizer, configs, RNG and scheduler states).
HEADROOM = 1.25
# The ephemeral-storage request when the model's size is unknown at compile time (a local model without
# `model.architecture`): room for a few checkpoints of a PEFT run on a 7B model and its cached weights.
UNKNOWN_MODEL_DISK_GIB = 50
# The ephemeral-storage limit is this multiple of the request: room for an estimate on the low side, while
# a runaway writer is still evicted before it fills the node's disk.
LIMIT_FACTOR = 2


@dataclass(frozen=True)
class StorageNeeds:
    """Bytes of a run's files and the time to write them, per node where it says so."""

    checkpoint_bytes: float  # one checkpoint, all nodes together
    node_checkpoint_bytes: float  # node 0's share of one checkpoint (the largest)
    final_bytes: float  # results written at the end by node 0 (model or adapter, merged model)
    cache_bytes: float  # the base model in the Hugging Face cache (0 on a PVC)
    keep: int  # checkpoints on disk at once: keep_last, plus the one being written
    uploads: bool  # checkpointing.storage is set: a SIGTERM checkpoint is uploaded before the exit

    @property
    def save_seconds(self) -> float:
        """Time node 0 takes to write its share of one checkpoint."""
        return self.node_checkpoint_bytes / DISK_BYTES_PER_S

    @property
    def upload_seconds(self) -> float:
        """Time node 0 takes to upload its share of one checkpoint (0 without storage)."""
        return self.node_checkpoint_bytes / UPLOAD_BYTES_PER_S if self.uploads else 0.0

    @property
    def sigterm_seconds(self) -> float:
        """What a SIGTERM checkpoint takes: written locally, then (with storage) uploaded before the exit."""
        return self.save_seconds + self.upload_seconds

    @property
    def pod_bytes(self) -> float:
        """Ephemeral storage of node 0's pod with checkpoints and results on emptyDirs, with headroom."""
        used = self.node_checkpoint_bytes * self.keep + self.final_bytes + self.cache_bytes + SCRATCH_BYTES
        return used * HEADROOM


def storage_needs(plan: Plan, arch: Architecture) -> StorageNeeds:
    """The storage needs of a plan on `arch`."""
    spec = plan.spec
    w = from_plan(plan, arch)
    params = float(base_counts(arch).total)
    trained = float(w.trainable.params)
    compute = float(w.compute_bytes)
    deepspeed = w.mode == "deepspeed"
    master = 4.0 if w.mode in ("autocast", "fp32", "deepspeed") else compute
    states = _opt_state_bytes(w, master) * trained + (4.0 * trained if deepspeed else 0.0)
    if w.method == "full":
        weights = (compute if deepspeed else master) * params
    else:
        weights = (4.0 if w.mode in ("autocast", "fp32") else compute) * trained
    nodes = spec.resources.nodes
    sharded = w.zero_stage is not None and w.zero_stage >= 1
    node_share = weights + (states / nodes if sharded else states)
    final = weights
    if w.method != "full" and spec.output.save in ("merged", "both"):
        final += compute * params
    k8s = spec.kubernetes
    on_pvc = k8s is not None and k8s.cache_pvc is not None
    return StorageNeeds(
        checkpoint_bytes=weights + states,
        node_checkpoint_bytes=node_share,
        final_bytes=final,
        cache_bytes=0.0 if on_pvc else 2.0 * params,
        keep=spec.checkpointing.keep_last + 1,
        uploads=spec.checkpointing.storage is not None,
    )


def whole_gib(size: float) -> int:
    """`size` bytes in whole GiB, rounded up (at least 1)."""
    return max(1, math.ceil(size / 2**30))


def gib_quantity(size: float) -> str:
    """A Kubernetes quantity of whole GiB, rounded up."""
    return f"{whole_gib(size)}Gi"


def storage_line(needs: StorageNeeds) -> str:
    """One line for `ftc estimate`: checkpoint size, SIGTERM save time and the disk of a pod."""
    gb = 1e9
    share = ("" if needs.node_checkpoint_bytes == needs.checkpoint_bytes
             else f", {needs.node_checkpoint_bytes / gb:.1f} GB on node 0")
    upload = f" + {needs.upload_seconds:.0f} s upload" if needs.uploads else ""
    return (f"checkpoint {needs.checkpoint_bytes / gb:.1f} GB{share} ({needs.save_seconds:.0f} s save{upload} at "
            f"{DISK_BYTES_PER_S / 2**20:.0f} MiB/s disk, {UPLOAD_BYTES_PER_S / 2**20:.0f} MiB/s network); "
            f"final results {needs.final_bytes / gb:.1f} GB; local disk {gib_quantity(needs.pod_bytes)} "
            f"({needs.keep} checkpoints, results, cache and scratch, +{HEADROOM - 1:.0%})")
