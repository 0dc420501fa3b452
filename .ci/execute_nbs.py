"""Execute notebooks and keep their outputs, so the docs pages show tables and figures (`make outputs`).

Runs each notebook as `nbdev_test` does (from `nbs/`, the `nbdev_export` cell and `cuda` cells skipped;
`slow` cells run, their outputs are part of the page), stores the outputs (stderr warnings left out)
in the notebook, then the
caller runs `nbdev_clean`. Usage: python .ci/execute_nbs.py [nbs/NAME.ipynb ...] (default: every notebook)."""
import os, sys
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

SKIP_FLAGS = {'cuda', 'notest'}
SMALL_FIGURES = "import matplotlib; matplotlib.rcParams.update({'figure.dpi': 72, 'savefig.dpi': 72})"  # keeps the kept PNGs small

def _skip(cell) -> bool:
    if cell.cell_type != 'code': return True
    if 'nbdev_export' + '(' in cell.source: return True
    first = [l for l in cell.source.splitlines() if l.startswith('#|')]
    return any(f in l.split() for l in first for f in SKIP_FLAGS) or any(l.replace(' ', '') == '#|eval:false' for l in first)

def execute(path:Path):
    nb = read_nb(path)
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs, c.execution_count = [], None
    sh = CaptureShell(path, mpl_format='png')
    sh.run(SMALL_FIGURES)
    cwd = os.getcwd(); os.chdir(path.parent)
    try: sh.run_all(nb, exc_stop=True, preproc=_skip)
    finally: os.chdir(cwd)
    for c in nb.cells:  # library warnings are not results: the pages keep values, tables, figures and prints
        if c.cell_type == 'code': c.outputs = [o for o in c.outputs if o.get('name') != 'stderr']
    write_nb(nb, path)
    print(f"executed {path} ({sum(bool(c.get('outputs')) for c in nb.cells)} cells with outputs)")

if __name__ == '__main__':
    paths = [Path(p) for p in sys.argv[1:]] or sorted(p for p in Path('nbs').glob('*.ipynb') if not p.name.startswith('_'))
    for p in paths: execute(p.resolve())
