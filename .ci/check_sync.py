"Fail when nbdev_export or nbdev_clean would change a tracked file (the notebooks are the source)."
import subprocess, sys
from pathlib import Path

bin_ = Path(sys.executable).parent
def status(): return subprocess.run(['git', 'status', '--porcelain', '--', 'nbs', 'medseg'], capture_output=True, text=True, check=True).stdout
def diff(): return subprocess.run(['git', 'diff', '--stat', '--', 'nbs', 'medseg'], capture_output=True, text=True).stdout

before = status()
for cmd in ('nbdev_export', 'nbdev_clean'): subprocess.run([str(bin_/cmd)], check=True)
after = status()
if after != before:
    print("nbdev_export/nbdev_clean changed these files; run them and commit the result:\n" + after + diff())
    sys.exit(1)
print("sync-check: notebooks and medseg/ are in sync")
