"""What can be proved about the docs without quarto: nbdev's docs processing succeeds for every notebook,
every processed page renders to HTML (nbconvert, offline), and every tutorial page (`nbs/9*_tutorial_*`)
and the landing page hold their figures in that HTML.

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
    figures = 0
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
            if p.name == 'index.ipynb' or (p.name[:1] == '9' and '_tutorial_' in p.name):
                figs = sum('image/png' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', []))
                shown = html.read_text().count('src="data:image/png;base64,')
                if not figs or shown < figs:
                    sys.exit(f"docs-check: {p.name}: the page shows {shown} of its {figs} figures (a tutorial page needs at least one)")
                figures += shown
    print(f"docs-check: {len(pages)} pages processed and rendered to HTML; the landing and tutorial pages show {figures} figures")

if __name__ == '__main__': main()  # proc_nbs starts worker processes
