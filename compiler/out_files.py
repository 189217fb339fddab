"""Names of the files and directories ftc writes into out/ (one place, read by every stage)."""

MANIFEST = "ftc-manifest.json"
RUNTIME_DIR = "ftc_runtime"
# The launcher of multi-process plans (compiler/runtime/launch.py), run as a script.
LAUNCHER_SCRIPT = f"{RUNTIME_DIR}/launch.py"
DEEPSPEED_CONFIG = "ds_config.json"
ACCELERATE_CONFIG = "accelerate_config.yaml"
PLAN = "plan.json"
TRAIN_SCRIPT = "train.py"
K8S_DIR = "k8s"
