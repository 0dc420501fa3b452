"""Fail when a notebook's example cells lost their outputs: the docs pages are where users see what medseg does.

An example cell is a code cell without `#|` directives (other than `slow`) that ends in a value (a name, an attribute, an
index, a literal, `df.head()`, `Markdown(...)`) or draws a figure (`plot_metrics`, `show_overlays`,
`view_batch`, `plt.`). Each must keep the output it had when the notebook was executed
(`make outputs` refreshes them)."""
import ast, json, sys
from pathlib import Path

DRAWS = ('plot_metrics(', 'show_overlays(', 'view_batch(', 'plt.')
SHOWS = {'head', 'tail', 'describe', 'Markdown', 'display', 'config_reference', 'to_frame', 'DataFrame'}

def is_example(src:str) -> bool:
    directives = [l[2:].strip() for l in src.splitlines() if l.startswith('#|')]
    if not src.strip() or any(d != 'slow' for d in directives): return False  # exported, hidden or GPU-only cells are not examples
    if "plt.close('all')" in src: return False  # a test that draws and closes its figures shows nothing on purpose
    if any(d in src for d in DRAWS): return True
    try: body = ast.parse(src).body
    except SyntaxError: return False
    last = body[-1] if body else None
    if not isinstance(last, ast.Expr): return False
    v = last.value
    if isinstance(v, (ast.Name, ast.Attribute, ast.Subscript, ast.Dict, ast.List, ast.Tuple, ast.Constant, ast.DictComp, ast.ListComp)):
        return not isinstance(v, ast.Constant) or isinstance(v.value, (int, float, str))
    if isinstance(v, ast.Call):
        f = v.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, 'id', '')
        return name in SHOWS
    return False

def missing(path:Path) -> list[str]:
    nb = json.loads(path.read_text())
    return [c.get('id', '?') for c in nb['cells'] if c['cell_type'] == 'code'
            and is_example(''.join(c['source'])) and not c.get('outputs')]

if __name__ == '__main__':
    paths = [Path(p) for p in sys.argv[1:]] or sorted(p for p in Path('nbs').glob('*.ipynb') if not p.name.startswith('_'))
    bad = {p.name: m for p in paths if (m := missing(p))}
    for name, ids in bad.items(): print(f"outputs-check: {name}: example cells without outputs: {', '.join(ids)}")
    if bad: sys.exit("outputs-check: run `make outputs` (executes the notebooks and keeps their outputs), then commit")
    print(f"outputs-check: every example cell of {len(paths)} notebooks keeps its output")
