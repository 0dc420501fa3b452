"papermill runs nbs/train.ipynb end to end, from the repository root and from inside nbs/."
import json, yaml
import pytest
from conftest import BIN, ROOT, run

def _papermill(tmp_path, cwd, nb, out, *params):
    r = run([str(BIN/'papermill'), nb, str(out), *params], cwd=cwd)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text())

def _check_run(run_dir, encoder, epochs):
    names = {p.name for p in run_dir.iterdir()}
    assert {'config.yaml', 'checkpoints', 'metrics.csv', 'summary.json', 'versions.json', 'plots', 'skipped_samples.csv'} <= names, names
    cfg = yaml.safe_load((run_dir/'config.yaml').read_text())
    assert cfg['model']['encoder'] == encoder and cfg['trainer']['max_epochs'] == epochs
    assert (run_dir/'checkpoints'/'last.ckpt').exists()
    assert {'curves.png', 'mask_overlays.png'} <= {p.name for p in (run_dir/'plots').iterdir()}
    summary = json.loads((run_dir/'summary.json').read_text())
    assert summary['epochs'] == epochs and 0 <= summary['best_score'] <= 1

@pytest.mark.parametrize('where', ['root', 'nbs'])
def test_papermill_train(tmp_path, where):
    nb, cwd = ('nbs/train.ipynb', ROOT) if where == 'root' else ('train.ipynb', ROOT/'nbs')
    out = tmp_path/'out.ipynb'
    executed = _papermill(tmp_path, cwd, nb, out, '-p', 'encoder', 'resnet18', '-p', 'epochs', '1',
                          '-p', 'data_dir', str(tmp_path/'data'), '-p', 'out_dir', str(tmp_path/'runs'), '-p', 'run_name', 'pm',
                          '-y', 'overrides: [data.n_images=16, data.im_size=32]')
    assert any('injected-parameters' in c['metadata'].get('tags', []) for c in executed['cells'])
    _check_run(tmp_path/'runs'/'pm', 'resnet18', 1)
    assert (tmp_path/'data'/'manifest.csv').exists()
    # the executed notebook shows the curves and the overlay
    images = [o for c in executed['cells'] for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]
    assert len(images) >= 2
    # the notebook reads as a log: one line per epoch, no progress-bar spam, no library noise
    text = ''.join(''.join(o.get('text', '')) for c in executed['cells'] for o in c.get('outputs', []))
    assert [l.split('  ')[0] for l in text.splitlines() if l.startswith('epoch ')] == ['epoch 1/1'], text[-2000:]
    assert 'it/s' not in text and 'site-packages' not in text, text[-2000:]
    kept = json.loads((tmp_path/'runs'/'pm'/'notebook.ipynb').read_text())  # the executed notebook, kept in the run folder
    assert any('injected-parameters' in c['metadata'].get('tags', []) for c in kept['cells'])
    assert sum('image/png' in o.get('data', {}) for c in kept['cells'] for o in c.get('outputs', [])) >= 2

def test_papermill_relative_paths_resolve_to_project_root(tmp_path):
    "Relative data_dir/out_dir mean the same folders whether papermill runs in the root or in nbs/."
    rel = f'runs/_pytest_{tmp_path.name}'
    try:
        for cwd, nb, name in ((ROOT, 'nbs/train.ipynb', 'a'), (ROOT/'nbs', 'train.ipynb', 'b')):
            _papermill(tmp_path, cwd, nb, tmp_path/f'{name}.ipynb', '-p', 'epochs', '1', '-p', 'data_dir', f'{rel}/data',
                       '-p', 'out_dir', rel, '-p', 'run_name', name, '-y', 'overrides: [data.n_images=16, data.im_size=32]')
        assert (ROOT/rel/'a'/'config.yaml').exists() and (ROOT/rel/'b'/'config.yaml').exists()
        assert not (ROOT/'nbs'/'runs').exists()
    finally:
        import shutil; shutil.rmtree(ROOT/rel, ignore_errors=True)
