"""The LLaMA-Factory keys with no ftc home, by what they change: what the importer says of each."""

from __future__ import annotations

# Keys that only steer LLaMA-Factory itself (caching, workers, logging): noted, nothing to carry.
TOOL_ONLY = {
    "do_train": "ftc always trains",
    "overwrite_cache": "LLaMA-Factory's tokenized-data cache",
    "preprocessing_num_workers": "tokenization worker count",
    "preprocessing_batch_size": "tokenization batch size",
    "dataloader_num_workers": "data-loader worker count",
    "tokenized_path": "LLaMA-Factory's tokenized-data cache",
    "plot_loss": "ftc always writes metrics and plots the loss",
    "overwrite_output_dir": "ftc resumes in output.dir or starts it",
    "ddp_timeout": "a launcher timeout",
    "per_device_eval_batch_size": "evaluation batch size (ftc uses micro_batch_size)",
    "save_only_model": "ftc saves the optimizer state with each checkpoint, so runs can resume",
    "run_name": "tracker run name (ftc names the run after metadata.name)",
    "cache_dir": "download cache location",
    "create_new_adapter": "only for continuing an adapter",
    "logging_dir": "ftc logs under output.dir",
}
# Keys that change how (not what) the model trains, with no ftc setting: warned.
WARNED = {
    "max_samples": "no home: ftc trains on every row of the file; keep only the first rows in the file to match",
    "mask_history": "ftc trains on every assistant turn, not only the last",
    "use_unsloth": "ftc has no Unsloth kernels (the same model, trained slower)",
    "tf32": "ftc leaves TF32 matmuls at PyTorch's default (off)",
    "save_strategy": "ftc checkpoints every N steps (checkpointing.every_steps)",
    "resume_from_checkpoint": "ftc resumes from the newest complete checkpoint in output.dir "
                              "(checkpointing.resume: auto)",
    "include_num_input_tokens_seen": "ftc logs its own token counts",
    "neftune_noise_alpha": "no home for NEFTune embedding noise",
}
# Keys whose settings change what is trained, with no ftc setting: the import stops.
REFUSED = {
    "adapter_name_or_path": "starting from an existing adapter has no home in ftc",
    "pissa_init": "no home for PiSSA initialisation",
    "loraplus_lr_ratio": "no home for LoRA+ (a different learning rate for LoRA B)",
    "use_galore": "no home for GaLore",
    "use_badam": "no home for BAdam",
    "use_apollo": "no home for APOLLO",
    "use_llama_pro": "no home for LLaMA Pro block expansion",
    "reward_model": "no home for PPO",
    "freeze_trainable_layers": "no home for freeze (partial) fine-tuning",
    "freeze_trainable_modules": "no home for freeze (partial) fine-tuning",
}
