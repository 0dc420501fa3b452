"""Sliding-window prediction (`predict.sliding_window`): images larger than the model was trained on are predicted at their own
size, window by window, and come out better than the same images squeezed to the training size."""
import json

import numpy as np
import pandas as pd
from PIL import Image
from conftest import BIN, run

from medseg.synthetic import make_synthetic


def dice(a, b): return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)

def mosaics(folder, n=2, k=3, size=32, seed=7):
    "`n` images of `k` x `k` synthetic images of `size` pixels each (the scale the model trained at), with their masks."
    man = pd.read_csv(make_synthetic(folder/'parts', n=n * k * k, size=size, seed=seed))
    read = lambda p: np.asarray(Image.open(folder/'parts'/p))
    (folder/'images').mkdir(); truth = {}
    for m in range(n):
        rows = man.iloc[m * k * k:(m + 1) * k * k]
        tile = lambda col: np.block([[read(rows.iloc[r * k + c][col]) for c in range(k)] for r in range(k)])
        Image.fromarray(tile('image')).save(folder/'images'/f'field{m}.png')
        truth[f'field{m}'] = tile('mask') > 0
    return truth

def test_large_images_window_by_window(tmp_path, tiny):
    medseg = str(BIN/'medseg')
    r = run([medseg, 'fit', *tiny, 'paths.run_name=sw', 'trainer.max_epochs=10', 'data.n_images=64'], env={'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    truth = mosaics(tmp_path/'big')
    scores = {}
    for windows in ('false', 'true'):
        r = run([medseg, 'predict', *tiny, 'paths.run_name=sw', f"data.predict_dir={tmp_path/'big'/'images'}",
                 f'predict.sliding_window.enable={windows}', 'predict.sliding_window.overlap=0.5'], env={'OMP_NUM_THREADS': '1'})
        assert r.returncode == 0, r.stderr[-3000:]
        out = tmp_path/'runs'/'sw'/'predictions'
        masks = {f: np.asarray(Image.open(out/'mask'/f'{f}.png')) > 0 for f in truth}
        assert {f: m.shape for f, m in masks.items()} == {f: (96, 96) for f in truth}  # each at its own size
        scores[windows] = np.mean([dice(masks[f], truth[f]) for f in truth])
    assert (out/'plots').is_dir() and any((out/'plots').glob('*.png'))  # figures of the large images too
    own = json.loads((tmp_path/'runs'/'sw'/'summary.json').read_text())['test']['test_mask_dice']  # on 32-pixel test images
    # window by window the large images are segmented as well as the model segments images of its own size; squeezed 3x, far worse
    assert scores['true'] > own - 0.1 and scores['true'] > scores['false'] + 0.1, (scores, own)

def test_only_seg_heads(tmp_path, tiny):
    "A model with other heads than seg heads is refused in one line: windows give no image-level answer."
    cfg = tmp_path/'mt.yaml'
    cfg.write_text("heads:\n  - {name: mask, kind: seg}\n  - {name: tags, kind: cls, classes: [round, elongated], multilabel: true}\n")
    r = run([str(BIN/'medseg'), 'fit', '-c', str(cfg), *tiny, 'paths.run_name=mt', 'trainer.max_epochs=1'], env={'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    r = run([str(BIN/'medseg'), 'predict', '-c', str(cfg), *tiny, 'paths.run_name=mt', 'predict.sliding_window.enable=true'])
    assert r.returncode == 2 and "predict.sliding_window: only seg heads are predicted window by window; head 'tags' is a cls head" in r.stderr, r.stderr[-2000:]
