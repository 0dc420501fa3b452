"Each papermill notebook named on the command line has exactly one cell tagged `parameters`."
import json, sys

bad = 0
for path in sys.argv[1:]:
    cells = json.load(open(path))['cells']
    n = sum('parameters' in c.get('metadata', {}).get('tags', []) for c in cells)
    if n != 1: print(f"{path}: {n} cells tagged 'parameters'; papermill needs exactly one"); bad += 1
    else: print(f"params-check: {path} has one parameters cell")
sys.exit(1 if bad else 0)
