"""Representative `Plan` objects and file bundles for the Kubernetes renderer tests.

Plans are made by the real planner from complete resolved specs (every field of every dataclass of
`ftc.plan`), so the renderer is tested on exactly what the pipeline hands it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ftc import plan as plan_stage
from ftc.plan import Plan
from specs import deep_merge

IMAGE = "ghcr.io/acme/ftc-train:2026.11"
VERSIONS = ("1.25", "1.26", "1.28", "1.29", "1.32")


def base_spec() -> dict[str, Any]:
    """A complete resolved spec: LoRA on one A10G, Kubernetes target job."""
    return {
        "apiVersion": "ftc/v1",
        "kind": "FineTune",
        "metadata": {"name": "llama2-7b-lora", "labels": {}, "annotations": {}},
        "model": {
            "name_or_path": "meta-llama/Llama-2-7b-hf",
            "revision": None,
            "tokenizer": None,
            "storage": None,
            "trust_remote_code": False,
            "architecture": None,
        },
        "method": {
            "type": "lora",
            "lora": {
                "r": 8, "alpha": 16.0, "dropout": 0.05,
                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                "bias": "none", "rslora": False, "modules_to_save": [],
            },
            "quantization": None,
            "adapter": None,
            "prompt": None,
        },
        "data": {
            "train": {"path": "s3://acme-ml/data/alpaca.jsonl", "hub": None, "format": "alpaca", "chat_template": None,
                      "fields": None, "roles": None, "system_prompt": None, "weight": None, "rows": None},
            "mixture": None,
            "validation": {"fraction": 0.1, "path": None, "hub": None, "format": None},
            "storage": None,
            "max_seq_length": 2048,
            "too_long": "skip",
            "packing": True,
            "train_on_inputs": False,
            "num_examples": 52000,
            "avg_tokens_per_example": None,
        },
        "training": {
            "epochs": 3.0,
            "max_steps": None,
            "learning_rate": 3e-4,
            "micro_batch_size": 4,
            "gradient_accumulation_steps": 4,
            "global_batch_size": None,
            "optimizer": "adamw_torch",
            "lr_scheduler": "cosine",
            "warmup_ratio": 0.03,
            "weight_decay": 0.0,
            "max_grad_norm": 1.0,
            "precision": "bf16",
            "gradient_checkpointing": True,
            "seed": 42,
            "eval_every_steps": 100,
            "logging_steps": 10,
            "early_stopping": {"patience": 3, "metric": "eval_loss", "min_delta": 0.0},
        },
        "performance": {"attention": "sdpa", "deepspeed": None, "liger_kernel": False,
                        "torch_compile": False},
        "checkpointing": {
            "every_steps": 500,
            "keep_last": 3,
            "storage": {"uri": "s3://acme-ml/ftc/llama2-7b-lora", "endpoint_url": None,
                        "region": "us-east-1"},
            "resume": "auto",
        },
        "monitoring": {"report_to": ["tensorboard"], "wandb": None, "mlflow": None},
        "output": {"dir": "/workspace/output", "save": "adapter"},
        "resources": {"nodes": 1, "gpus_per_node": 1, "gpu": "A10G", "spot": False, "cpu": None,
                      "memory": None},
        "kubernetes": {
            "version": "1.29",
            "namespace": "default",
            "image": IMAGE,
            "target": "job",
            "service_account": None,
            "create_service_account": False,
            "spot_provider": "none",
            "node_selector": {},
            "tolerations": [],
            "env": {},
            "secrets": {},
            "queue": None,
            "cache_pvc": None,
            "volumes": [],
            "image_paths": [],
            "grace_period_seconds": 120,
            "unreachable_toleration_seconds": None,
            "training_runtime": "torch-distributed",
            "gpu_product_label": "nvidia.com/gpu.product",
            "gpu_product_values": None,
            "workload_identity": None,
        },
    }


def make_plan(overrides: dict[str, Any] | None = None, *, content_hash: str | None = None) -> Plan:
    """The real planner's plan of `base_spec()` with `overrides` merged in."""
    spec = deep_merge(base_spec(), overrides or {})
    plan = plan_stage.make_plan(spec)
    if content_hash is None:
        return plan
    derived = dataclasses.replace(plan.derived, content_hash=content_hash,
                                  workload_name=f"{spec['metadata']['name']}-{content_hash[:10]}")
    return dataclasses.replace(plan, derived=derived)


# Named variations covering what the renderer branches on.
CASES: dict[str, dict[str, Any]] = {
    "minimal": {},
    "four-gpus": {"resources": {"gpus_per_node": 4, "gpu": "A100-80GB", "cpu": "32", "memory": "256Gi"}},
    "deepspeed": {"resources": {"gpus_per_node": 2}, "performance": {"deepspeed": {
        "stage": 2, "offload_optimizer": "cpu", "offload_params": "none"}}},
    "spot-eks": {"resources": {"spot": True}, "kubernetes": {"spot_provider": "eks"}},
    "spot-karpenter": {"resources": {"spot": True}, "kubernetes": {"spot_provider": "karpenter"}},
    "spot-gke": {"resources": {"spot": True}, "kubernetes": {"spot_provider": "gke"}},
    "spot-aks": {"resources": {"spot": True}, "kubernetes": {"spot_provider": "aks"}},
    "secrets-env-tolerations": {"kubernetes": {
        "env": {"NCCL_DEBUG": "WARN", "AWS_REGION": "us-east-1", "TOKENIZERS_PARALLELISM": "false"},
        "secrets": {"HF_TOKEN": {"name": "hf-token", "key": "token"},
                    "WANDB_API_KEY": {"name": "wandb", "key": "api-key"}},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule",
             "toleration_seconds": None},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "value": None,
             "effect": "NoExecute", "toleration_seconds": 300},
            {"key": None, "operator": "Exists", "value": None, "effect": None, "toleration_seconds": None},
        ],
        "node_selector": {"node.kubernetes.io/instance-type": "g5.2xlarge", "team": "nlp"},
    }, "monitoring": {"report_to": ["wandb"], "wandb": {"project": "llm", "entity": None}}},
    "queue": {"kubernetes": {"queue": "gpu-queue", "namespace": "ml-training"}},
    "cache-pvc": {"kubernetes": {"cache_pvc": "hf-cache"}, "checkpointing": {"storage": None},
                  "output": {"dir": "/cache/huggingface/runs/llama2"}},
    "service-account": {"kubernetes": {"service_account": "ftc-trainer", "grace_period_seconds": 300}},
    "labels-annotations": {"metadata": {
        "labels": {"team": "nlp", "example.com/cost-center": "ml-42", "flag": "true"},
        "annotations": {"owner": "nlp-team@example.com", "example.com/ticket": "ML-1234"},
    }},
    "own-output-volume": {"output": {"dir": "/data/out"}},
    "data-volumes": {
        "data": {"train": {"path": "/data/alpaca/train.jsonl"}, "validation": {"fraction": None,
                                                                              "path": "/data/alpaca/val.jsonl"}},
        "model": {"name_or_path": "/models/llama-2-7b", "tokenizer": "/opt/tokenizers/llama"},
        "kubernetes": {"volumes": [
            {"name": "data", "claim": "training-data", "mount_path": "/data", "read_only": True, "sub_path": None},
            {"name": "models", "claim": "models", "mount_path": "/models", "read_only": True,
             "sub_path": "llama"},
            {"name": "results", "claim": "results", "mount_path": "results", "read_only": False, "sub_path": None},
        ], "image_paths": ["/opt/tokenizers"]},
        "output": {"dir": "results/run1"}, "checkpointing": {"storage": None}},
    "relative-output": {"output": {"dir": "results/run1"}, "checkpointing": {"storage": None}},
}


def make_bundle(plan: Plan) -> dict[str, str]:
    """Files the trainer needs, with content that stresses exact copying (tabs, trailing spaces,
    unicode, YAML-looking lines, CRLF, an empty file, no final newline)."""
    bundle = {
        "train.py": "#!/usr/bin/env python\n# Generated by ftc\nPLAN = {'name': 'x: y', 'tab': '\\t'}\n"
                    "def main():\n\tprint('héllo ✓ --- {{ x }}')  \n\nmain()\n",
        "plan.json": json.dumps(plan.to_dict(), indent=2, sort_keys=True) + "\n",
        "accelerate_config.yaml": "---\ncompute_environment: LOCAL_MACHINE\nnum_processes: 1\n",
        "requirements.txt": "torch>=2.6\ntransformers==5.24.0\n",
        "ftc_runtime/__init__.py": "",
        "ftc_runtime/data.py": "import json\r\nx = '''\n---\nkey: value\n# not a comment\n'''\n",
        "ftc_runtime/exitcodes.py": "OK = 0\nCONFIG_ERROR = 3\nENVIRONMENT_ERROR = 4",
    }
    if plan.spec.performance.deepspeed is not None:
        bundle["ds_config.json"] = json.dumps({"zero_optimization": {"stage": 2}}, indent=2) + "\n"
    return bundle


HOSTILE = (
    'double "quotes" and \'single\'',
    "line one\nline two\n",
    "---\nkind: Secret\n...\n",
    "{{ .Values.x }} ${HOME} $(HOME) $$(ESCAPED) $",
    "key: value # not a comment",
    "&anchor *alias !!python/object:os.system",
    "!!python/object/apply:os.system ['rm -rf /']",
    "; rm -rf / && echo `id` | cat > /tmp/x < /dev/null 2>&1 &",
    "   leading and trailing spaces   ",
    "trailing space on line \nand tab\there",
    "yes",
    "y",
    "0o17",
    "1e3",
    "null",
    "",
    "unicode ✓ ü \u2028 separator",
    "crlf\r\nline",
    "@at `backtick` %percent |pipe >gt",
)
