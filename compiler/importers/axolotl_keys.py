"""The Axolotl keys with no ftc home, by what they change: what the importer says of each."""

from __future__ import annotations

# Keys that only steer Axolotl itself (caching, debugging, evaluation tables): noted, nothing to carry.
TOOL_ONLY = {
    "strict": "Axolotl's own key check; ftc always checks every key",
    "dataset_prepared_path": "Axolotl's tokenized-data cache",
    "debug": "Axolotl debug output",
    "local_rank": "set by the launcher",
    "eval_table_size": "Axolotl's sample-prediction table",
    "eval_table_max_new_tokens": "Axolotl's sample-prediction table",
    "model_type": "ftc loads every model with AutoModelForCausalLM",
    "tokenizer_type": "ftc loads every tokenizer with AutoTokenizer",
    "is_llama_derived_model": "a hint older Axolotl versions used",
    "is_mistral_derived_model": "a hint older Axolotl versions used",
    "pad_to_sequence_len": "padding only: the loss ignores padding",
    "eval_sample_packing": "how evaluation batches are packed",
    "ddp_find_unused_parameters": "a DDP setting ftc chooses for the method",
    "experimental_skip_move_to_device": "a loading detail",
    "use_kernels": "a kernel-loading detail",
    "gradient_checkpointing_kwargs": "ftc picks the checkpointing variant for the method",
    "flash_attn_cross_entropy": "a fused kernel: speed only",
    "flash_attn_rms_norm": "a fused kernel: speed only",
    "flash_attn_fuse_qkv": "a fused kernel: speed only",
    "flash_attn_fuse_mlp": "a fused kernel: speed only",
    "wandb_watch": "W&B gradient logging",
    "wandb_name": "W&B run name (ftc names the run after metadata.name)",
    "wandb_run_id": "W&B run id",
    "wandb_log_model": "W&B model upload",
    "hub_model_id": "ftc does not upload to the Hub",
    "hub_strategy": "ftc does not upload to the Hub",
}
# Keys that change how (not what) the model trains, with no ftc setting: warned.
WARNED = {
    "fsdp": "no home yet for FSDP: ftc shards with DeepSpeed ZeRO (performance.deepspeed.stage 3 shards "
            "parameters, gradients and optimizer states as FSDP full_shard does)",
    "fsdp_config": "no home yet for FSDP settings (see fsdp)",
    "fsdp_version": "no home yet for FSDP (see fsdp)",
    "xformers_attention": "ftc has no xFormers attention: performance.attention picks flash_attention_2 or sdpa",
    "activation_offloading": "ftc does not offload activations; gradient checkpointing is its activation saver",
    "loss_watchdog_threshold": "ftc does not stop on a loss threshold",
    "loss_watchdog_patience": "ftc does not stop on a loss threshold",
    "lora_fan_in_fan_out": "PEFT sets fan_in_fan_out itself for Conv1D models (GPT-2 style)",
    "peft_init_lora_weights": "ftc initialises LoRA weights as PEFT does by default",
    "model_config": "ftc does not override model config values",
    "model_quantization_config": "ftc loads the checkpoint's weights as stored (no dequantize/requantize setting)",
    "model_quantization_config_kwargs": "ftc loads the checkpoint's weights as stored (see model_quantization_config)",
    "eot_tokens": "ftc ends each turn with the chat template's own tokens",
    "max_packed_sequence_len": "an old Axolotl packing key: ftc packs to data.max_seq_length",
    "chat_template_jinja": "no home yet for a custom chat template text: ftc has chatml, llama2 or the tokenizer's",
    "saves_per_epoch": "ftc checkpoints every N steps (checkpointing.every_steps); per epoch needs the row count",
    "evals_per_epoch": "ftc evaluates every N steps (training.eval_every_steps); per epoch needs the row count",
    "auto_resume_from_checkpoints": "ftc resumes from the newest complete checkpoint by default",
}
# Keys whose settings change what is trained, with no ftc setting: the import stops.
REFUSED = {
    "unfrozen_parameters": "training only some parameters of the base has no ftc method (full trains all of them)",
    "lora_model_dir": "starting from an existing adapter has no home in ftc",
    "tokens": "adding tokens to the vocabulary has no home in ftc (it resizes the embeddings)",
    "peft_layers_to_transform": "adapting only some layers has no home in ftc",
    "loraplus_lr_ratio": "no home for LoRA+ (a different learning rate for LoRA B)",
    "relora_steps": "no home for ReLoRA",
    "gptq": "no home for GPTQ-quantized bases: ftc quantizes with bitsandbytes",
}
