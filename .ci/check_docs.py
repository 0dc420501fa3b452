"""What can be proved about the docs without quarto: nbdev's docs processing succeeds for every notebook,
and every processed page renders to HTML (nbconvert, offline).

The processing is `nbdev_proc_nbs` minus its first step: where quarto is missing, that command tries to
download quarto and then runs `pip install -e .[dev]` with whatever `pip` is on PATH. We call the same
steps it runs after that (refresh the quarto yml, build the doc links, the sidebar, `proc_nbs`)."""
import json, subprocess, sys, tempfile
from pathlib import Path

bin_ = Path(sys.executable).parent

def main():
    import shutil; shutil.rmtree("_proc", ignore_errors=True)  # no stale pages from an earlier run
    from nbdev.config import get_config
    from nbdev.quarto import nbdev_sidebar, proc_nbs, refresh_quarto_yml
    import nbdev.doclinks
    nbs = get_config().nbs_path
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    nbdev_sidebar.__wrapped__(path=nbs)
    proc_nbs(nbs, n_workers=2)
    pages = sorted(Path('_proc').glob('*.ipynb'))
    src = sorted(p.name for p in Path('nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))
    missing = set(src) - {p.name for p in pages}
    if missing: sys.exit(f"docs-check: nbdev_proc_nbs produced no page for {sorted(missing)}")
    with tempfile.TemporaryDirectory() as out:
        for p in pages:
            nb = json.loads(p.read_text())
            for c in nb['cells']:  # pandoc/nbconvert want a number on execute_result outputs
                for o in c.get('outputs', []):
                    if o.get('output_type') == 'execute_result' and o.get('execution_count') is None: o['execution_count'] = 1
            fixed = Path(out)/p.name; fixed.write_text(json.dumps(nb))
            r = subprocess.run([str(bin_/'jupyter'), 'nbconvert', '--to', 'html', '--output-dir', out, str(fixed)], capture_output=True, text=True)
            html = Path(out)/(p.stem + '.html')
            if r.returncode or not html.exists() or html.stat().st_size < 1000:
                sys.exit(f"docs-check: {p.name} failed to render:\n{r.stderr[-2000:]}")
    print(f"docs-check: {len(pages)} pages processed and rendered to HTML")

if __name__ == '__main__': main()  # proc_nbs starts worker processes
