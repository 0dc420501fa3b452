"Real nuclei (DSB 2018): the field cut into spatially split tiles, `configs/nuclei_dsb2018.yaml` trained on them, judged on the test tiles."
import json, time

import pandas as pd
import pytest
from conftest import BIN, ROOT, SHARED_DATA, run

from medseg.data.layouts import write_tiles

NUCLEI = SHARED_DATA/'nuclei_dsb2018'


@pytest.mark.realdata
@pytest.mark.skipif(not NUCLEI.exists(), reason=f'real data not found at {NUCLEI} (only in the project\'s shared workspace)')
def test_nuclei_config_reaches_test_dice_090_on_held_out_tiles(tmp_path):
    "The tiles as the config's header writes them; the test tiles (bottom quarter of the field) never overlap a training or val tile."
    tiles = write_tiles(NUCLEI/'img2d.tif', {'nuclei': NUCLEI/'mask2d.tif'}, tmp_path/'tiles', size=128, stride=32)
    assert tiles.split.value_counts().to_dict() == {'train': 65, 'val': 4, 'test': 4}
    test_rows = tiles[tiles.split == 'test'].y
    assert test_rows.min() >= tiles[tiles.split != 'test'].y.max() + 128  # test pixels are disjoint from the rest
    t0 = time.time()
    r = run([str(BIN/'medseg'), 'fit', '-c', str(ROOT/'configs'/'nuclei_dsb2018.yaml'), f'data.data_dir={tmp_path/"tiles"}',
             f'paths.out_dir={tmp_path/"runs"}'], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path/'runs'/'nuclei_dsb2018'
    test = json.loads((run_dir/'summary.json').read_text())['test']
    print(f"nuclei: test Dice {test['test_nuclei_dice']:.4f}, IoU {test['test_nuclei_iou']:.4f}, {time.time() - t0:.0f} s")
    assert test['test_nuclei_dice'] >= 0.90, test
    scores = pd.read_csv(run_dir/'test_metrics.csv').set_index('metric')['value']
    assert scores['test_nuclei_dice'] == pytest.approx(test['test_nuclei_dice'])
