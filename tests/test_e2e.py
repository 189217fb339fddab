"""End to end, as a user runs it: `ftc compile examples/tiny-cpu.yaml`, then `python out/train.py` on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Tiny

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_tiny_cpu_example_trains_saves_and_reloads(tiny: Tiny, tmp_path: Path) -> None:
    # The example's relative paths (.ftc-demo/...) are resolved against the working directory.
    demo = tmp_path / ".ftc-demo"
    demo.mkdir()
    (demo / "tiny-llama").symlink_to(tiny.model_dir)
    (demo / "data").symlink_to(tiny.data_dir)
    ftc = Path(sys.executable).parent / "ftc"
    compiled = subprocess.run([str(ftc), "compile", str(ROOT / "examples" / "tiny-cpu.yaml"), "-o", "out"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert compiled.returncode == 0, compiled.stderr

    # out/ is self-contained: run it in an interpreter where importing ftc fails.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run_argv = [sys.executable, "-c",
                "import runpy, sys; sys.modules['ftc'] = None; sys.argv = ['out/train.py']; "
                "runpy.run_path('out/train.py', run_name='__main__')"]
    trained = subprocess.run(run_argv, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert trained.returncode == 0, trained.stderr[-4000:]

    output = demo / "output"
    metrics = json.loads((output / "metrics.json").read_text())
    history = [entry["eval_loss"] for entry in metrics["eval_loss_history"]]
    assert len(history) >= 3
    assert history[-1] < history[0] - 0.3, f"eval loss did not fall: {history}"
    assert metrics["global_step"] > 0 and metrics["attention_implementation"] == "sdpa"
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert metrics["content_hash"] == plan["derived"]["content_hash"]
    assert (output / "final" / "adapter_config.json").is_file()
    assert (output / "merged" / "config.json").is_file()

    # The saved adapter reloads onto the base and generates.
    reload = (
        "import sys, torch\n"
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "base = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
        "model = PeftModel.from_pretrained(base, sys.argv[2])\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[2])\n"
        "ids = tok('### Instruction:\\nReverse the word: abc\\n\\n### Response:\\n', return_tensors='pt')\n"
        "out = model.generate(**ids, max_new_tokens=4, do_sample=False)\n"
        "assert out.shape[1] > ids['input_ids'].shape[1]\n"
        "print('reloaded', sum(p.numel() for n, p in model.named_parameters() if 'lora_' in n))\n"
    )
    reloaded = subprocess.run([sys.executable, "-c", reload, str(tiny.model_dir), str(output / "final")],
                              capture_output=True, text=True, timeout=120, env=env)
    assert reloaded.returncode == 0, reloaded.stderr[-4000:]
    assert int(reloaded.stdout.split()[-1]) > 0

