"""The resolved spec as frozen dataclasses: every field present, defaults and derived values filled in.

Each field carries its description from the JSON Schema. Nothing here has a default: defaults live in
the schema and derived values in `ftc.resolve`.

Generated from schema/ftc.schema.json by scripts/gen_spec_types.py (make regen); do not edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metadata:
    """Identity of the job."""

    name: str
    """Name of the job, a DNS-1123 label of at most 42 characters. Every generated object is named after it (the
    Kubernetes workload gets a content-hash suffix)."""

    labels: Mapping[str, str]
    """Labels copied onto every Kubernetes object and pod. Keys and values must be valid Kubernetes label keys and
    values."""

    annotations: Mapping[str, str]
    """Annotations copied onto every Kubernetes object."""


@dataclass(frozen=True)
class ObjectStore:
    """Endpoint and region of the object store for s3:// sources; null: from the environment (AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL, AWS_REGION). Credentials come from the environment or the pod identity, never from the spec."""

    endpoint_url: str | None
    """Endpoint of an S3-compatible store (MinIO, R2, ...); null uses AWS (or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL
    from the environment)."""

    region: str | None
    """Bucket region; null takes it from the environment (AWS_REGION)."""


@dataclass(frozen=True)
class Architecture:
    """Shape of the model for `ftc estimate` (a Llama-style block is assumed); when set it is used as given. null: read
    config.json of a local model directory (`ftc estimate` only) or look the name up in the built-in catalog."""

    hidden_size: int
    """Width of the residual stream."""

    num_layers: int
    """Number of transformer blocks."""

    num_attention_heads: int
    """Attention heads per layer."""

    num_key_value_heads: int | None
    """Key/value heads (grouped-query attention); null means equal to `num_attention_heads`."""

    intermediate_size: int
    """Width of the MLP."""

    vocab_size: int
    """Vocabulary size."""

    tie_word_embeddings: bool
    """Whether lm_head shares the embedding matrix."""


@dataclass(frozen=True)
class Model:
    """The base model to fine-tune."""

    name_or_path: str
    """Hugging Face Hub id, local directory, or s3:// / gs:// URI of a directory holding the base model. Only the
    runtime reads it: an object-store model is downloaded once into the cache ($FTC_CACHE_DIR, else $HF_HOME/ftc) and
    loaded from there; relative paths are resolved against the working directory of the training process."""

    revision: str | None
    """Hub revision (branch, tag or commit) to load; null for the default branch."""

    tokenizer: str | None
    """Tokenizer id, directory or s3:// / gs:// URI; null uses `name_or_path`."""

    storage: ObjectStore | None
    """Endpoint and region of the object store for s3:// sources; null: from the environment (AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL, AWS_REGION). Credentials come from the environment or the pod identity, never from the spec."""

    trust_remote_code: bool
    """Allow model code from the Hub to run (transformers `trust_remote_code`)."""

    architecture: Architecture | None
    """Shape of the model for `ftc estimate` (a Llama-style block is assumed); when set it is used as given. null: read
    config.json of a local model directory (`ftc estimate` only) or look the name up in the built-in catalog."""


@dataclass(frozen=True)
class Lora:
    """LoRA settings for `lora`, `qlora` and `dora`; null takes the defaults below for those methods."""

    r: int
    """Rank of the update matrices."""

    alpha: float
    """Scaling numerator: updates are scaled by alpha / r (alpha / sqrt(r) with rslora)."""

    dropout: float
    """Dropout on the LoRA input."""

    target_modules: tuple[str, ...] | Literal["all-linear"]
    """Module names to adapt, or `all-linear` for every linear layer but the output head."""

    bias: str
    """Which biases to train."""

    rslora: bool
    """Rank-stabilised LoRA scaling (alpha / sqrt(r))."""

    modules_to_save: tuple[str, ...]
    """Extra modules trained in full and saved with the adapter (e.g. `embed_tokens`, `lm_head` after adding tokens)."""


@dataclass(frozen=True)
class Quantization:
    """Load the frozen base in 4 or 8 bits with bitsandbytes. `qlora` implies 4-bit nf4 with double quantization when
    null. Only for PEFT methods."""

    bits: int
    """4 or 8."""

    quant_type: str
    """4-bit data type."""

    double_quant: bool
    """Also quantize the quantization constants (saves ~0.4 bit per parameter)."""

    compute_dtype: str
    """dtype of the matmuls on dequantized weights; null follows `training.precision`."""


@dataclass(frozen=True)
class Adapter:
    """Settings for `method.type: adapter` (a PEFT adapter other than LoRA)."""

    kind: str
    """Adapter family."""

    target_modules: tuple[str, ...] | None
    """Modules to adapt; null uses PEFT's default for the model type."""

    feedforward_modules: tuple[str, ...] | None
    """IA3 only: which target modules are feed-forward layers; null uses PEFT's default."""

    r: int
    """Rank for LoHa and LoKr."""

    alpha: float
    """Scaling for LoHa and LoKr."""

    adapter_len: int
    """LLaMA-Adapter: number of adaption prompt tokens."""

    adapter_layers: int
    """LLaMA-Adapter: number of top layers that get adaption prompts."""


@dataclass(frozen=True)
class Prompt:
    """Settings for `prompt_tuning`, `p_tuning` and `prefix_tuning`."""

    num_virtual_tokens: int
    """Number of trainable virtual tokens."""

    init_text: str | None
    """prompt_tuning only: initialise the soft prompt from the embedding of this text; null initialises randomly."""

    encoder_hidden_size: int | None
    """p_tuning only: hidden size of the prompt encoder; null uses the model's hidden size."""

    encoder_type: str
    """p_tuning only: prompt encoder architecture."""

    prefix_projection: bool
    """prefix_tuning only: reparameterise the prefix through an MLP."""


@dataclass(frozen=True)
class Method:
    """How the model is fine-tuned."""

    type: str
    """Fine-tuning method: all weights (`full`), low-rank adapters (`lora`, `dora`), LoRA on a 4-bit base (`qlora`),
    another PEFT adapter (`adapter`, see `method.adapter`), or soft prompts (`prompt_tuning`, `p_tuning`,
    `prefix_tuning`)."""

    lora: Lora | None
    """LoRA settings for `lora`, `qlora` and `dora`; null takes the defaults below for those methods."""

    quantization: Quantization | None
    """Load the frozen base in 4 or 8 bits with bitsandbytes. `qlora` implies 4-bit nf4 with double quantization when
    null. Only for PEFT methods."""

    adapter: Adapter | None
    """Settings for `method.type: adapter` (a PEFT adapter other than LoRA)."""

    prompt: Prompt | None
    """Settings for `prompt_tuning`, `p_tuning` and `prefix_tuning`."""


@dataclass(frozen=True)
class HubDataset:
    """A data set on the Hugging Face Hub instead of a `path`, read with `datasets.load_dataset(id, subset, split=split,
    revision=revision)`. HF_TOKEN gives access to private and gated sets; HF_DATASETS_OFFLINE=1 reads only the local
    Hugging Face cache."""

    id: str
    """Hub id of the data set (`org/name`), or a local directory laid out as a Hub data set repository."""

    subset: str | None
    """Configuration (subset) name; null for the data set's default."""

    split: str
    """Split to read (a slice such as `train[:10%]` works too)."""

    revision: str | None
    """Branch, tag or commit of the data set repository; null for the default branch. A commit pins the data, and with
    it the tokenized-data cache."""


@dataclass(frozen=True)
class Fields:
    """Column names where the rows differ from the format's own (null keeps them). Which fields a format reads: alpaca
    instruction, input, output, system; chat and sharegpt messages, role, content, system, tools; completion prompt,
    completion, system; text text."""

    instruction: str | None
    """alpaca: the instruction column."""

    input: str | None
    """alpaca: the optional input column."""

    output: str | None
    """alpaca: the response column."""

    prompt: str | None
    """completion: the prompt column."""

    completion: str | None
    """completion: the completion column."""

    text: str | None
    """text: the text column."""

    messages: str | None
    """chat: the column holding the list of messages."""

    role: str | None
    """chat: the key of a message's role."""

    content: str | None
    """chat: the key of a message's text."""

    system: str | None
    """A column with a system prompt per row (chat: added as the first message when the conversation has none; alpaca
    and completion: put before the prompt)."""

    tools: str | None
    """chat: the column listing the functions the assistant may call (a list, or its JSON text)."""


@dataclass(frozen=True)
class DataSource:
    """One data source: where its rows are (exactly one of `path` and `hub`) and how they are laid out."""

    path: str | None
    """A local .jsonl, .json, .parquet or .csv file, a directory of such files or one saved with
    `datasets.save_to_disk`, or the same on object storage: an s3:// or gs:// URI of a file or a prefix (s3:// needs
    s3fs, gs:// gcsfs; see `data.storage`). Relative paths are resolved against the working directory. null: read `hub`
    instead."""

    hub: HubDataset | None
    """A data set on the Hugging Face Hub instead of a `path`, read with `datasets.load_dataset(id, subset, split=split,
    revision=revision)`. HF_TOKEN gives access to private and gated sets; HF_DATASETS_OFFLINE=1 reads only the local
    Hugging Face cache."""

    format: str
    """Row layout: `alpaca` (instruction, input, output), `chat` (OpenAI messages: `messages` with role, content and
    tool_calls, optional `tools`), `completion` (prompt, completion), `text` (text) or `sharegpt` (`conversations` with
    from/value; human, gpt, system and tool roles); `fields`, `roles` and `system_prompt` change any part of it. For
    objectives other than SFT: `preference` (prompt, chosen, rejected — text or chat messages), `unpaired` (prompt,
    completion, label true/false) and `prompt` (prompt, and the reference answer for GRPO)."""

    chat_template: str | None
    """chat formats only: null uses the tokenizer's chat template; `chatml` or `llama2` a built-in template; otherwise a
    Jinja template file (.jinja or .j2), bundled into the output. The template must render a conversation prefix as a
    prefix of the whole conversation (checked when compiling with a local tokenizer, else when the run starts)."""

    fields: Fields | None
    """Column names where the rows differ from the format's own (null keeps them). Which fields a format reads: alpaca
    instruction, input, output, system; chat and sharegpt messages, role, content, system, tools; completion prompt,
    completion, system; text text."""

    roles: Mapping[str, str] | None
    """chat formats only: role values of the data mapped to the roles ftc trains with (system, user, assistant, tool),
    added to the format's own mapping (sharegpt maps human, gpt, observation and function_call)."""

    system_prompt: str | None
    """A fixed system prompt for rows without one of their own (no system column value, no system message); not for
    format text."""

    weight: float | None
    """Mixtures only (data.train and each entry of data.mixture): this source's share of the training examples, relative
    to the other weights."""

    rows: int | None
    """Mixtures only, instead of weights: the number of training examples drawn from this source (a seeded sample; a
    smaller source is repeated)."""


@dataclass(frozen=True)
class Validation:
    """Validation data: a `fraction` of the training rows held out, or a separate source at `path` (same kinds as
    data.train.path) or `hub`. null disables evaluation."""

    fraction: float | None
    """Share of the training rows held out for validation."""

    path: str | None
    """A separate validation source (same kinds as data.train.path)."""

    hub: HubDataset | None
    """A data set on the Hugging Face Hub instead of a `path`, read with `datasets.load_dataset(id, subset, split=split,
    revision=revision)`. HF_TOKEN gives access to private and gated sets; HF_DATASETS_OFFLINE=1 reads only the local
    Hugging Face cache."""

    format: str | None
    """Row layout of `path` or `hub`; null: same as the training data."""


@dataclass(frozen=True)
class Data:
    """Training and validation data."""

    train: DataSource
    """One data source: where its rows are (exactly one of `path` and `hub`) and how they are laid out."""

    mixture: tuple[DataSource, ...] | None
    """Further sources mixed with data.train into the training set, each with its own format and mapping; give
    data.train and every entry a `weight` (drawn in those proportions, by training.seed) or a `rows` count."""

    validation: Validation | None
    """Validation data: a `fraction` of the training rows held out, or a separate source at `path` (same kinds as
    data.train.path) or `hub`. null disables evaluation."""

    storage: ObjectStore | None
    """Endpoint and region of the object store for s3:// sources; null: from the environment (AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL, AWS_REGION). Credentials come from the environment or the pod identity, never from the spec."""

    max_seq_length: int
    """Longest tokenized example (or packed sequence); what happens to longer rows is data.too_long."""

    too_long: str
    """Rows longer than max_seq_length: `skip` them (counted, with their line numbers) or `truncate` them at the end,
    which keeps the whole prompt and cuts the response (a row whose prompt alone is too long is still skipped). skip is
    the default because a cut response trains the model on an answer that stops mid-way without its end token; `ftc
    validate` reports too-long rows so they can be fixed or max_seq_length raised."""

    packing: bool
    """Pack several examples into one sequence (without attention across example boundaries)."""

    train_on_inputs: bool
    """Also compute the loss on prompts/instructions, not only on responses."""

    num_examples: int | None
    """Number of training rows, for lints and estimates when the data is not readable at compile time."""

    avg_tokens_per_example: int | None
    """Average tokens per training row, for the time and cost estimate when the data is not readable at compile time
    (with data.num_examples). null: `ftc estimate` counts a local file, else assumes 512 tokens (at most max_seq_length)
    and says so."""


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when the metric has not improved by `min_delta` for `patience` evaluations; null disables it. Needs
    validation data."""

    patience: int
    """Evaluations without improvement before stopping."""

    metric: str
    """Metric to watch, as reported by the trainer."""

    min_delta: float
    """Smallest change that counts as an improvement."""


@dataclass(frozen=True)
class Training:
    """Optimisation settings."""

    epochs: float
    """Passes over the training data (fractions allowed). Ignored when `max_steps` is set."""

    max_steps: int | None
    """Stop after this many optimizer steps; null trains for `epochs`."""

    learning_rate: float
    """Peak learning rate; null resolves to 3e-4 for PEFT methods and 1e-5 for full fine-tuning."""

    micro_batch_size: int
    """Examples per GPU per forward pass."""

    gradient_accumulation_steps: int
    """Micro-batches accumulated per optimizer step. Global batch = micro_batch_size × gradient_accumulation_steps ×
    GPUs."""

    global_batch_size: int | None
    """Optional cross-check: when set, it must equal micro_batch_size × gradient_accumulation_steps × nodes ×
    gpus_per_node, or compilation fails."""

    optimizer: str
    """Optimizer."""

    lr_scheduler: str
    """Learning-rate schedule after warmup."""

    warmup_ratio: float
    """Share of the steps spent warming up the learning rate."""

    weight_decay: float
    """Decoupled weight decay."""

    max_grad_norm: float
    """Gradient clipping norm; 0 disables clipping."""

    precision: str
    """Training precision: bf16 or fp16 mixed precision, fp32, or bf16-pure: weights, gradients and optimizer states all
    in bf16, with no fp32 master copy (about half the memory of mixed precision for full fine-tuning: 8 instead of 16
    bytes per parameter with AdamW). Accuracy caveat: bf16 keeps 8 significant bits, so updates smaller than about 1/256
    of a weight are lost to rounding; with the small learning rates of full fine-tuning (1e-5) many updates vanish, and
    the loss can plateau higher than in mixed precision. Not with DeepSpeed (it keeps fp32 master weights)."""

    gradient_checkpointing: bool
    """Recompute activations in the backward pass to save memory (~30 % slower)."""

    seed: int
    """Random seed for data order, initialisation and dropout."""

    eval_every_steps: int
    """Evaluate every N optimizer steps (when there is validation data)."""

    logging_steps: int
    """Log metrics every N optimizer steps."""

    early_stopping: EarlyStopping | None
    """Stop when the metric has not improved by `min_delta` for `patience` evaluations; null disables it. Needs
    validation data."""


@dataclass(frozen=True)
class DeepSpeed:
    """DeepSpeed ZeRO; null disables DeepSpeed."""

    stage: int
    """ZeRO stage: 0 off, 1 optimizer states, 2 + gradients, 3 + parameters partitioned across GPUs."""

    offload_optimizer: str
    """Keep optimizer states in CPU memory (stages 1-3)."""

    offload_params: str
    """Keep parameters in CPU memory (stage 3 only)."""


@dataclass(frozen=True)
class Performance:
    """Speed and memory levers."""

    attention: str
    """Attention kernel. `auto` picks flash_attention_2 when installed and usable, else sdpa, and logs its choice."""

    deepspeed: DeepSpeed | None
    """DeepSpeed ZeRO; null disables DeepSpeed."""

    liger_kernel: bool
    """Use Liger fused kernels (RMSNorm, RoPE, SwiGLU, fused cross-entropy) when installed."""

    torch_compile: bool
    """Compile the model with torch.compile."""


@dataclass(frozen=True)
class Storage:
    """Remote copy of the checkpoints, uploaded in the background as they complete (marker file last), plus the final
    results; null keeps checkpoints local only. Credentials come from the environment or the pod identity, never from
    the spec."""

    uri: str
    """Destination prefix: checkpoint-N/ directories, final/ and metrics.json go under it. s3:// needs s3fs, gs://
    gcsfs."""

    endpoint_url: str | None
    """Endpoint of an S3-compatible store (MinIO, R2, ...); null uses AWS."""

    region: str | None
    """Bucket region; null takes it from the environment."""


@dataclass(frozen=True)
class Checkpointing:
    """Checkpoints and resumption."""

    every_steps: int
    """Save a checkpoint every N optimizer steps."""

    keep_last: int
    """Number of most recent complete checkpoints kept, in output.dir and in storage (the newest complete one is never
    deleted)."""

    storage: Storage | None
    """Remote copy of the checkpoints, uploaded in the background as they complete (marker file last), plus the final
    results; null keeps checkpoints local only. Credentials come from the environment or the pod identity, never from
    the spec."""

    resume: str
    """`auto` resumes from the newest complete checkpoint (local or remote, downloading it when needed); `never` starts
    fresh and refuses an output.dir or storage URI that already holds checkpoints."""


@dataclass(frozen=True)
class Wandb:
    """Weights & Biases settings (the API key comes from the WANDB_API_KEY secret)."""

    project: str
    """W&B project."""

    entity: str | None
    """W&B team or user; null uses the key's default."""


@dataclass(frozen=True)
class Mlflow:
    """MLflow settings."""

    tracking_uri: str
    """MLflow tracking server or local directory."""

    experiment: str | None
    """Experiment name; null uses `metadata.name`."""


@dataclass(frozen=True)
class Monitoring:
    """Experiment tracking."""

    report_to: tuple[str, ...]
    """Trackers to report to."""

    wandb: Wandb | None
    """Weights & Biases settings (the API key comes from the WANDB_API_KEY secret)."""

    mlflow: Mlflow | None
    """MLflow settings."""


@dataclass(frozen=True)
class Output:
    """Where results go."""

    dir: str
    """Directory for checkpoints, the final model and metrics."""

    save: str
    """What to save at the end: the adapter only, the adapter merged into the base weights, or both. Full fine-tuning
    always saves the whole model."""


@dataclass(frozen=True)
class Resources:
    """Compute the job runs on."""

    nodes: int
    """Number of machines."""

    gpus_per_node: int
    """GPUs per machine (one training process each)."""

    gpu: str
    """GPU model, for precision checks, estimates and node affinity."""

    spot: bool
    """Run on spot/preemptible capacity."""

    cpu: str | None
    """CPU request per pod as a Kubernetes quantity; null sets none."""

    memory: str | None
    """Memory request and limit per pod as a Kubernetes quantity; null sets none."""


@dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration."""

    key: str | None
    """Taint key; null with operator Exists tolerates every taint."""

    operator: str
    """Equal or Exists."""

    value: str | None
    """Taint value (with Equal)."""

    effect: str | None
    """Taint effect; null matches all effects."""

    toleration_seconds: int | None
    """NoExecute only: how long the pod stays bound after the taint appears; null: forever."""


@dataclass(frozen=True)
class SecretRef:
    """A key of a Secret."""

    name: str
    """Secret name."""

    key: str
    """Key inside the Secret."""


@dataclass(frozen=True)
class Volume:
    """A PersistentVolumeClaim mounted into the trainer container."""

    name: str
    """Volume name in the pod (a DNS label, unique; not one of ftc's own volumes)."""

    claim: str
    """Name of the PersistentVolumeClaim, in the namespace of the workload."""

    mount_path: str
    """Where the volume appears in the container; a relative path resolves against /workspace."""

    read_only: bool
    """Mount read-only (the default, right for data and models); false lets output.dir lie on the volume, so checkpoints
    and results outlive the pod."""

    sub_path: str | None
    """Directory inside the volume to mount instead of its root; null mounts the root."""


@dataclass(frozen=True)
class WorkloadIdentity:
    """Cloud identity of the pods (e.g. for S3/GCS/Azure Blob access of data, models and checkpointing.storage): the
    pods use the ServiceAccount `service_account` (or `metadata.name` when that is null), which must be annotated for
    IRSA (aws), GKE Workload Identity (gcp) or Azure Workload Identity (azure); with `create_service_account` ftc emits
    it so annotated. null: no cloud identity."""

    provider: str
    """aws: IAM Roles for Service Accounts (EKS); gcp: GKE Workload Identity; azure: Azure AD Workload Identity
    (AKS)."""

    identity: str
    """aws: the IAM role ARN; gcp: the Google service account e-mail; azure: the client ID of the managed identity or
    application."""


@dataclass(frozen=True)
class Kubernetes:
    """Kubernetes manifests under `k8s/`; null (the default) generates none."""

    version: str
    """Kubernetes minor version of the target cluster; decides which API fields are emitted."""

    namespace: str
    """Namespace of every object."""

    image: str
    """Training image: must contain the packages of the generated requirements.txt. Prefer a digest or a fixed tag."""

    target: str
    """Workload kind: a batch/v1 Job (one node) or a multi-node engine."""

    service_account: str | None
    """ServiceAccount of the pods (e.g. one bound to a cloud identity for object storage); it must exist unless
    `create_service_account` is true. null uses the namespace default (or `metadata.name` with `workload_identity`)."""

    create_service_account: bool
    """Emit the ServiceAccount (`k8s/serviceaccount.yaml`, annotated for `workload_identity` when set) instead of
    referencing an existing one. It carries only labels that do not change between runs and annotations that keep Argo
    CD and Flux from pruning it when one run's objects are removed."""

    spot_provider: str
    """How spot capacity is selected when `resources.spot` is true."""

    node_selector: Mapping[str, str]
    """Extra node selector labels."""

    tolerations: tuple[Toleration, ...]
    """Extra tolerations (a toleration for `nvidia.com/gpu` is always added)."""

    env: Mapping[str, str]
    """Plain environment variables for the training container (use `secrets` for credentials)."""

    secrets: Mapping[str, SecretRef]
    """Environment variables read from Kubernetes Secrets (secretKeyRef), e.g. HF_TOKEN or WANDB_API_KEY."""

    queue: str | None
    """Kueue LocalQueue to submit to; null for none."""

    cache_pvc: str | None
    """PersistentVolumeClaim mounted as the Hugging Face cache; null uses an emptyDir."""

    volumes: tuple[Volume, ...]
    """PersistentVolumeClaims mounted into the trainer, read-only unless `read_only` is false: where the pod finds data,
    models and tokenizers that are local paths in the spec (any PersistentVolume works: a disk, NFS, or a CSI driver
    such as an object-store mount). Relative paths of the spec resolve against /workspace, the working directory of the
    pod."""

    image_paths: tuple[str, ...]
    """Absolute directories or files baked into the training image (e.g. a model copied in at build time): data, model
    and tokenizer paths under them count as reachable in the pod. They may not lie under a directory ftc mounts a volume
    on (/workspace, /home/ftc, /tmp, /cache/...), which would hide them."""

    grace_period_seconds: int
    """Time between SIGTERM and SIGKILL; the runtime saves a checkpoint in it."""

    unreachable_toleration_seconds: int | None
    """How long a pod stays bound to a node that became unreachable or not ready before it is evicted and replaced
    (tolerations for node.kubernetes.io/unreachable and not-ready with this tolerationSeconds); null keeps the cluster
    default (300 s). A lower value restarts training sooner after a node is lost."""

    training_runtime: str
    """target trainjob: name of the Kubeflow Trainer ClusterTrainingRuntime (a torch runtime) the TrainJob runs on; its
    JobSet template decides restarts and the failure policy."""

    gpu_product_label: str | None
    """Node label that names the GPU model; the pods get a required node affinity for the values of `resources.gpu`
    under it (`gpu_product_values`, or ftc's table for the labels it knows). `auto` (the default): the label that
    `spot_provider`'s node provisioner sets before a node exists, so that a GPU node pool can scale up from zero:
    karpenter.k8s.aws/instance-gpu-name (karpenter), node.kubernetes.io/instance-type (eks managed node groups, aks),
    cloud.google.com/gke-accelerator (gke), nvidia.com/gpu.product of NVIDIA GPU Feature Discovery (none: existing nodes
    labelled by the GPU Operator). null: no GPU model affinity; any node with a free `nvidia.com/gpu` runs the pods."""

    gpu_product_values: tuple[str, ...] | None
    """Values of `gpu_product_label` that mark nodes with `resources.gpu`; null uses ftc's table for the labels it knows
    (another label needs this list)."""

    workload_identity: WorkloadIdentity | None
    """Cloud identity of the pods (e.g. for S3/GCS/Azure Blob access of data, models and checkpointing.storage): the
    pods use the ServiceAccount `service_account` (or `metadata.name` when that is null), which must be annotated for
    IRSA (aws), GKE Workload Identity (gcp) or Azure Workload Identity (azure); with `create_service_account` ftc emits
    it so annotated. null: no cloud identity."""


@dataclass(frozen=True)
class Reference:
    """The frozen reference model of dpo and kto (and grpo with beta > 0). With a PEFT method it is the base with the
    adapter disabled (or the starting adapter of `init_from`), no second copy; with full fine-tuning a second copy of
    the model."""

    precompute_log_probs: bool
    """Compute the reference log-probabilities of every training row once before training, so no reference model is held
    in memory while training (dpo and kto)."""


@dataclass(frozen=True)
class Reward:
    """One reward function of GRPO; the rewards of a completion are summed with their weights."""

    type: str
    """`exact_match`: 1 when the completion (stripped) equals the row's reference answer (`answer_field`), else 0;
    `regex`: 1 when `pattern` matches the completion, else 0; `length`: minus the share by which the completion exceeds
    `max_chars` characters (0 within it); `file`: the function `function` of the Python file `path`, called as TRL calls
    reward functions (prompts, completions and the row's other columns as keyword arguments) and returning one number
    per completion."""

    weight: float
    """Weight of this reward in the sum."""

    pattern: str | None
    """Regular expression of `regex` (Python syntax, searched anywhere in the completion)."""

    max_chars: int | None
    """Length in characters above which `length` penalises a completion."""

    path: str | None
    """Python file of `file`, relative to the directory ftc runs in; it is copied into the output (rewards/) and the
    Kubernetes ConfigMap."""

    function: str
    """Name of the reward function in `path`."""


@dataclass(frozen=True)
class Grpo:
    """Generation and rewards of `grpo`."""

    num_generations: int
    """Completions sampled per prompt (the group whose rewards are compared); the rows per optimizer step
    (training.micro_batch_size × gradient_accumulation_steps × GPUs) must be a multiple of it."""

    max_new_tokens: int
    """Longest completion generated, in tokens."""

    temperature: float
    """Sampling temperature of the completions."""

    answer_field: str
    """Column of the prompt rows holding the reference answer (`exact_match`)."""

    rewards: tuple[Reward, ...]
    """The reward functions, summed with their weights."""


@dataclass(frozen=True)
class Objective:
    """What training optimises, independent of `method` (which weights train). null or `sft`: supervised fine-tuning on
    the data (the default). `dpo`, `orpo`, `simpo`: preference pairs (data format `preference`); `kto`: rows labelled
    desirable or not (format `unpaired`, or `preference` split into such rows); `reward`: a reward model (a sequence
    classifier) trained on preference pairs; `grpo`: reinforcement learning on prompts (format `prompt`) with the
    rewards of `grpo.rewards`. Trained with TRL's trainers."""

    type: str
    """The objective."""

    beta: float
    """Strength of the preference term: the KL penalty β of DPO and KTO (usual range 0.01 to 1), the weight λ of ORPO's
    odds-ratio term, the reward scale β of SimPO (usual range 1 to 10, 2 in the SimPO paper) and the KL coefficient of
    GRPO (0 needs no reference model)."""

    loss_type: str | None
    """Loss variant of TRL's trainer: for dpo `sigmoid` (the default), `hinge`, `ipo`, `robust`, `bco_pair`,
    `sppo_hard`, `nca_pair`, `exo_pair`, `apo_zero`, `apo_down`, `discopop`, `sigmoid_norm`; for kto `kto` or
    `apo_zero_unpaired`. null: the trainer's default."""

    simpo_gamma: float
    """Target reward margin γ of SimPO."""

    init_from: str | None
    """Start from a previous run's result instead of the bare base model: a saved adapter (a directory with
    adapter_config.json, trained on model.name_or_path, which then keeps training and is also the reference model) or a
    whole model (full fine-tuning or merged), as a local directory or an s3:// or gs:// prefix. The usual recipe is SFT,
    then DPO from its output.dir/final."""

    reference: Reference
    """The frozen reference model of dpo and kto (and grpo with beta > 0). With a PEFT method it is the base with the
    adapter disabled (or the starting adapter of `init_from`), no second copy; with full fine-tuning a second copy of
    the model."""

    grpo: Grpo
    """Generation and rewards of `grpo`."""


@dataclass(frozen=True)
class Spec:
    """One fine-tuning job for an LLM, compiled by `ftc compile` into train.py, DeepSpeed and accelerate configs and
    Kubernetes manifests. Defaults are declared in this schema and nowhere else."""

    apiVersion: str  # noqa: N815 - the spec's own key
    """Spec format version. Always `ftc/v1`."""

    kind: str
    """Spec kind. Always `FineTune`."""

    metadata: Metadata
    """Identity of the job."""

    model: Model
    """The base model to fine-tune."""

    method: Method
    """How the model is fine-tuned."""

    data: Data
    """Training and validation data."""

    training: Training
    """Optimisation settings."""

    performance: Performance
    """Speed and memory levers."""

    checkpointing: Checkpointing
    """Checkpoints and resumption."""

    monitoring: Monitoring
    """Experiment tracking."""

    output: Output
    """Where results go."""

    resources: Resources
    """Compute the job runs on."""

    kubernetes: Kubernetes | None
    """Kubernetes manifests under `k8s/`; null (the default) generates none."""

    objective: Objective | None
    """What training optimises, independent of `method` (which weights train). null or `sft`: supervised fine-tuning on
    the data (the default). `dpo`, `orpo`, `simpo`: preference pairs (data format `preference`); `kto`: rows labelled
    desirable or not (format `unpaired`, or `preference` split into such rows); `reward`: a reward model (a sequence
    classifier) trained on preference pairs; `grpo`: reinforcement learning on prompts (format `prompt`) with the
    rewards of `grpo.rewards`. Trained with TRL's trainers."""
