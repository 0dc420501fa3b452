"Importing medseg stays light: optional and heavy parts load only where used."
from conftest import run
import sys

HEAVY = ['monai', 'wandb', 'mlflow', 'optuna', 'sleap_io', 'motmetrics', 'onnxruntime']

def test_import_is_light():
    code = ("import sys, time; t = time.time(); import medseg, medseg.config, medseg.run; "
            f"print(time.time() - t); print([m for m in {HEAVY!r} if m in sys.modules])")
    r = run([sys.executable, '-c', code])
    assert r.returncode == 0, r.stderr
    secs, loaded = r.stdout.strip().splitlines()
    assert loaded == '[]', loaded
    assert float(secs) < 10

def test_all_modules_import_without_extras():
    code = ("import sys, importlib, pkgutil, medseg; "
            "[importlib.import_module(f'medseg.{m.name}') for m in pkgutil.iter_modules(medseg.__path__)]; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    r = run([sys.executable, '-c', code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '[]'
