"""Exit codes of the generated train.py, shared by the runtime and the Kubernetes podFailurePolicy.

The one home of these numbers: bundled into out/ as `ftc_runtime/exitcodes.py` for train.py and the
launcher, and imported by the compiler (as `ftc.runtime.exitcodes`) for the manifests. Kept free of
imports so the compile path can read it without the training stack.
"""

OK = 0
# Bad configuration or data: retrying cannot help, so the Job fails at once (podFailurePolicy FailJob).
CONFIG_ERROR = 3
# The environment cannot run the plan (no CUDA, missing flash-attn, no bf16 on this GPU): fail fast too.
ENVIRONMENT_ERROR = 4
# Stopped by SIGTERM (preemption, drain, deletion) after saving a checkpoint: the run resumes from
# it, so a replacement pod must not use up a retry (podFailurePolicy Ignore). 128 + SIGTERM, as a shell
# would report it.
TERMINATED = 143
