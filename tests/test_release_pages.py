"""Quantized loading drops the checkpoint's mapped float pages from the process's resident
memory once their codes exist (weights.release_pages): an 8B checkpoint read through the map
otherwise stays resident (bench/big_model.py measured 18 GiB of peak RSS for int4)."""

import subprocess
import sys

CHILD = r"""
import sys, torch
from pathlib import Path
from safetensors.torch import save_file
from lightpipe.weights import read_safetensors, release_pages

def rss_file_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024

path = Path(sys.argv[1])
save_file({"a": torch.randn(4096, 2048), "b": torch.randn(2048, 2048)}, str(path))  # 48 MB
tensors = read_safetensors(path)
sums = {name: float(t.double().sum()) for name, t in tensors.items()}  # every page touched
before = rss_file_mb()
for tensor in tensors.values():
    release_pages(tensor)
after = rss_file_mb()
again = {name: float(t.double().sum()) for name, t in tensors.items()}  # read back from the file
release_pages(torch.ones(1000))  # not a mapped tensor: left alone
print(before, after, sums == again)
"""


def test_release_pages_drops_mapped_pages_and_keeps_values(tmp_path):
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "w.safetensors")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, after, same = done.stdout.split()
    assert float(before) - float(after) > 40, (before, after)  # MB left the resident set
    assert same == "True"
