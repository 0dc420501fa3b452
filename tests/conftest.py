import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_DATA = ROOT.parent/'shared'/'data'

def run(cmd, cwd=ROOT, timeout=600, **kw):
    "Run a command, returning the CompletedProcess (text output)."
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', **kw.pop('env', {})}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw)

@pytest.fixture
def tiny(tmp_path):
    "Overrides for a seconds-long run in `tmp_path`."
    return [f'data.data_dir={tmp_path}/data', 'data.n_images=16', 'data.im_size=32', f'paths.out_dir={tmp_path}/runs']
