"Importing medseg stays light: optional and heavy parts load only where used."
from conftest import run
import sys

HEAVY = ['monai', 'wandb', 'mlflow', 'clearml', 'optuna', 'sleap_io', 'motmetrics', 'onnxruntime']

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

def test_config_and_heads_import_no_torch():
    "The bottom of the import graph (core, heads, config) needs neither torch nor Lightning, and imports nothing above it."
    code = ("import sys, medseg.core, medseg.heads, medseg.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning') or m in "
            "('medseg.losses', 'medseg.models', 'medseg.task', 'medseg.run', 'medseg.data')))")
    r = run([sys.executable, '-c', code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '[]', r.stdout

def test_no_import_cycle_inside_medseg():
    "Every medseg module's own `from medseg...` / `from .` imports form a graph without cycles."
    import ast, pathlib, medseg
    root = pathlib.Path(medseg.__file__).parent
    mods = {p.relative_to(root).with_suffix('').as_posix().replace('/', '.').removesuffix('.__init__'): p
            for p in root.rglob('*.py') if p.name != '_modidx.py'}
    graph = {}
    for m, p in mods.items():
        pkg = m if p.name == '__init__.py' else m.rpartition('.')[0]
        deps = set()
        for n in ast.walk(ast.parse(p.read_text())):
            if not isinstance(n, ast.ImportFrom): continue
            if n.level:  # relative: `from .x import y` inside package `pkg`
                base = pkg.split('.') if pkg else []
                base = base[:len(base) - (n.level - 1)] if n.level > 1 else base
                tgt = '.'.join(base + ([n.module] if n.module else []))
            elif (n.module or '').split('.')[0] == 'medseg': tgt = n.module.removeprefix('medseg').lstrip('.')
            else: continue
            deps |= {t for t in (tgt, *(f'{tgt}.{a.name}'.lstrip('.') for a in n.names)) if t in mods and t != m}
        graph[m] = deps
    seen, stack = set(), []
    def visit(m):
        if m in stack: raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(m):] + [m])}")
        if m in seen: return
        stack.append(m); [visit(d) for d in graph[m]]; stack.pop(); seen.add(m)
    for m in graph: visit(m)
    assert 'core' in graph['heads'] and {'core', 'heads'} <= graph['config'] and 'config' in graph['run']
    assert {'core', 'heads', 'config'} <= set(graph) and 'config' not in graph['heads'] and 'losses' not in graph['config']
