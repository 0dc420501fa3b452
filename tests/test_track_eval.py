"MOT metrics against motmetrics' own expected values, `track_eval` end to end, bad evaluation input, and the tracking result writers read back."
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

mm = pytest.importorskip('motmetrics')
from conftest import SHARED_DATA
from medseg.core import ConfigError
from medseg.io import DataError
from medseg.track.data import Frame, Instance
from medseg.track.metrics import (MOT_METRICS, format_mot_summary, frames_metrics, iou_distance, majority_table, mot_accumulate,
                                  mot_summary, numpy2_asfarray, read_mot, track_eval, write_ctc_result, write_overlay_animation,
                                  write_slp, write_tracks_csv)

TUD = Path(mm.__file__).parent/'data'
SEQS = ['TUD-Campus', 'TUD-Stadtmitte']
# motmetrics/tests/test_metrics.py::test_motchallenge_files: motchallenge_metrics[:15] per sequence, then OVERALL
EXPECTED = [[0.557659, 0.729730, 0.451253, 0.582173, 0.941441, 8, 1, 6, 1, 13, 150, 7, 7, 0.526462, 0.277201],
            [0.644619, 0.819760, 0.531142, 0.608997, 0.939920, 10, 5, 4, 1, 45, 452, 7, 6, 0.564014, 0.345904],
            [0.624296, 0.799176, 0.512211, 0.602640, 0.940268, 18, 6, 10, 2, 58, 602, 14, 13, 0.555116, 0.330177]]


def test_tud_sequences_match_motmetrics_expected_values():
    accs = [mot_accumulate(TUD/s/'gt.txt', TUD/s/'test.txt') for s in SEQS]
    summary = mot_summary(accs, names=SEQS)
    assert summary.index.tolist() == SEQS + ['OVERALL']
    np.testing.assert_allclose(summary[MOT_METRICS[:15]].to_numpy(float), EXPECTED, atol=1e-3)
    for s, row in zip(SEQS, EXPECTED):  # the CLI's function gives the same
        np.testing.assert_allclose(track_eval(TUD/s/'gt.txt', TUD/s/'test.txt').iloc[0][MOT_METRICS[:15]].to_numpy(float), row, atol=1e-3)
    text = format_mot_summary(summary)
    head, *rows = text.splitlines()
    assert head.split()[:15] == ['IDF1', 'IDP', 'IDR', 'Rcll', 'Prcn', 'GT', 'MT', 'PT', 'ML', 'FP', 'FN', 'IDsw', 'FM', 'MOTA', 'MOTP']
    assert rows[2].split()[:16] == ['OVERALL', '0.624', '0.799', '0.512', '0.603', '0.940', '18', '6', '10', '2', '58', '602', '14', '13', '0.555', '0.330']


@pytest.mark.filterwarnings('ignore:Operation with tuple is deprecated')  # inside motmetrics' own loader, on pandas 3
def test_accumulator_events_equal_motmetrics_own():
    "Our IoU path gives motmetrics' own accumulator events, event for event (its iou_matrix run under the scoped shim)."
    ours = mot_accumulate(TUD/'TUD-Campus'/'gt.txt', TUD/'TUD-Campus'/'test.txt').mot_events
    gt, res = (mm.io.loadtxt(TUD/'TUD-Campus'/f) for f in ('gt.txt', 'test.txt'))
    with numpy2_asfarray(): theirs = mm.utils.compare_to_groundtruth(gt, res, 'iou', distth=0.5).mot_events
    assert not hasattr(np, 'asfarray')
    pd.testing.assert_frame_equal(ours.reset_index(drop=True)[['Type', 'OId', 'HId']].astype(str),
                                  theirs.reset_index(drop=True)[['Type', 'OId', 'HId']].astype(str))
    np.testing.assert_allclose(ours.D.to_numpy(float), theirs.D.to_numpy(float), atol=1e-12)


def test_asfarray_shim_is_removed_after_an_error():
    with pytest.raises(RuntimeError), numpy2_asfarray():
        assert np.asfarray([1, 2]).dtype == np.float64
        raise RuntimeError('boom')
    assert not hasattr(np, 'asfarray')


def test_iou_distance_edge_cases():
    # touching boxes have no overlap; a zero-area box never pairs; identical boxes are at 0
    d = iou_distance([[0, 0, 2, 2]], [[2, 0, 2, 2], [0, 0, 0, 0], [0, 0, 2, 2]])
    np.testing.assert_allclose(d, [[1, 1, 0]])
    assert np.isnan(iou_distance([[0, 0, 2, 2]], [[1, 0, 2, 2]], max_iou=0.5)).all()  # IoU 1/3: distance 2/3


def test_perfect_result_and_empty_result(tmp_path):
    f = TUD/'TUD-Campus'/'gt.txt'
    r = track_eval(f, f).iloc[0]
    assert (r.mota, r.idf1, r.num_switches) == (1, 1, 0) and r.motp == pytest.approx(0, abs=1e-12)
    (tmp_path/'none.txt').write_text('')
    r = track_eval(f, tmp_path/'none.txt').iloc[0]
    assert r.num_misses == len(read_mot(f)) and r.mota == 0 and r.num_false_positives == 0


def crossing(n=10, swap_at=4, video='v'):
    fs = []
    for t in range(n):
        a = Instance(points=[[10 + 5 * t, 20]], gt_id=0, pred_id=0 if t < swap_at else 1, score=0.9)
        b = Instance(points=[[60 - 5 * t, 24]], gt_id=1, pred_id=1 if t < swap_at else 0, score=0.7)
        fs.append(Frame(video, t, (48, 80), [a, b]))
    return fs


def test_points_end_to_end_tracks_csv_equals_frames_metrics(tmp_path):
    "tracks.csv from write_tracks_csv, scored by track_eval against a ground-truth CSV, agrees with frames_metrics."
    fs = crossing()
    res = write_tracks_csv(fs, tmp_path/'tracks.csv')
    gt = tmp_path/'gt.csv'
    pd.DataFrame([(i.gt_id, f.frame_idx, i.anchor()[1], i.anchor()[0]) for f in fs for i in f.instances],
                 columns=['track_id', 't', 'y', 'x']).to_csv(gt, index=False)
    a = track_eval(gt, res, max_dist=2).iloc[0]
    b = frames_metrics(fs).iloc[0]
    for k in ['mota', 'idf1', 'num_switches', 'num_misses', 'num_false_positives', 'mostly_tracked', 'majority_share']:
        assert a[k] == pytest.approx(b[k]), k
    assert a.num_switches == 2 and a.majority_share == pytest.approx(0.6)


def test_noisy_detections_against_separate_ground_truth():
    "Detections with a spurious extra instance, scored against separate ground-truth frames by anchor distance."
    gt = crossing(swap_at=99)
    det = crossing(swap_at=99)
    for t in (0, 1): det[t].instances.append(Instance(points=[[5, 45]], pred_id=7))  # a ghost the tracker kept
    r = frames_metrics(det, gt_frames=gt, max_dist=3).iloc[0]
    assert (r.num_false_positives, r.num_switches, r.num_misses) == (2, 0, 0)
    assert r.mota == pytest.approx(1 - 2 / 20)
    with pytest.raises(ConfigError, match='give max_dist'): frames_metrics(det, gt_frames=gt)


@pytest.mark.parametrize('text, message', [
    ('track_id,y,x\n0,1,2\n', "no column 't'"),
    ('track_id,t,y,x\n0,0,1,2\n0,0,3,4\n', 'frame 0: id 0 appears twice'),
    ('track_id,t,y,x\n0,zero,1,2\n', "line 2 (frame zero): t is 'zero', not a number"),
    ('track_id,t,y,x\n0,0,1,2\n', None),  # valid: the run below works
])
def test_bad_point_csvs(tmp_path, text, message):
    p = tmp_path/'res.csv'; p.write_text(text)
    if message is None: assert track_eval(p, p, max_dist=1).iloc[0].mota == 1; return
    with pytest.raises(DataError) as e: track_eval(p, p, max_dist=1)
    assert str(e.value).startswith(f'{p}: ') and message in str(e.value) and '\n' not in str(e.value)


def test_nan_points_are_not_objects(tmp_path):
    p = tmp_path/'gt.csv'; p.write_text('track_id,t,y,x\n0,0,1,2\n0,1,nan,nan\n0,2,1,2\n')
    acc = mot_accumulate(p, p, kind='points', max_dist=1)
    assert majority_table(acc).loc[0].frames == 2  # frame 1 has no object 0 ...
    assert mot_summary(acc).iloc[0].num_frames == 2  # ... and, with nothing in it, is not a frame of the sequence


def test_bad_track_eval_calls(tmp_path):
    g = TUD/'TUD-Campus'/'gt.txt'
    (tmp_path/'r.json').write_text('{}')
    with pytest.raises(DataError, match=r'r\.json: expected a MOTChallenge text file'): track_eval(g, tmp_path/'r.json')
    with pytest.raises(ConfigError, match=r'in \(0, 1\]'): track_eval(g, g, max_dist=5)
    with pytest.raises(DataError, match='no such file'): track_eval(g, tmp_path/'missing.txt')
    with pytest.raises(ConfigError, match="kind must be 'boxes' or 'points'.*Did you mean 'boxes'"): mot_accumulate(g, g, kind='box')


def test_ctc_result_is_consistent(tmp_path):
    "Every label in the written masks is a track of res_track.txt and lies between its first and last frame; gaps become parent links."
    import tifffile
    frames, masks = [], []
    for t in range(6):
        m = np.zeros((20, 20), np.uint16); insts = []
        for k, (pid, x) in enumerate([(0, 3), (5, 10), (9, 16)]):
            if pid == 5 and t in (2, 3): continue  # a two-frame gap
            m[8:12, x - 1:x + 2] = k + 1
            insts.append(Instance(points=[[x, 10]], pred_id=pid))
        frames.append(Frame('c', t, m.shape, insts)); masks.append(m)
    res = write_ctc_result(frames, masks, tmp_path/'01_RES')
    tracks = {l: (b, e, p) for l, b, e, p in (map(int, line.split()) for line in res.read_text().splitlines())}
    assert tracks == {1: (0, 5, 0), 6: (0, 1, 0), 11: (4, 5, 6), 10: (0, 5, 0)}
    for t in range(6):
        labs = set(np.unique(tifffile.imread(tmp_path/'01_RES'/f'mask{t:03d}.tif'))) - {0}
        assert all(tracks[l][0] <= t <= tracks[l][1] for l in labs)
        assert len(labs) == len(frames[t].instances)


def test_overlay_mp4(tmp_path):
    iio = pytest.importorskip('imageio.v2'); pytest.importorskip('imageio_ffmpeg')
    fs = crossing(n=6)
    imgs = [np.full((47, 81), 40, np.uint8)] * 6  # odd sizes are padded for H.264
    p = write_overlay_animation(fs, imgs, tmp_path/'tracks.mp4', fps=5)
    r = iio.get_reader(p)
    assert r.count_frames() == 6 and r.get_data(0).shape == (48, 82, 3)


def _frames_from_slp(labels):
    "Frames as a reader makes them from SLEAP labels: one Instance per labelled instance, its track's index as gt_id."
    tracks = labels.tracks
    nodes = [n.name for n in labels.skeleton.nodes]
    return [Frame(Path(lf.video.filename).stem, lf.frame_idx, (1024, 1024),
                  [Instance(points=i.numpy(), point_names=nodes, gt_id=tracks.index(i.track) if i.track in tracks else -1)
                   for i in lf.instances]) for lf in labels.labeled_frames]


@pytest.mark.skipif(not (SHARED_DATA/'sleap_flies').is_dir(), reason='../shared/data/sleap_flies is absent')
def test_write_slp_on_real_flies(tmp_path):
    import sleap_io as sio
    src = SHARED_DATA/'sleap_flies'/'two_flies.slp'
    frames = _frames_from_slp(sio.load_slp(str(src), open_videos=False))
    for f in frames:  # a tracker that swaps the two flies from frame 64 on, instances in reverse order
        f.instances = f.instances[::-1]
        for i in f.instances: i.pred_id, i.score = (1 - i.gt_id if f.frame_idx >= 64 else i.gt_id), 0.5
    out = sio.load_slp(str(write_slp(frames, src, tmp_path/'tracked.slp')), open_videos=False)
    assert [t.name for t in out.tracks] == ['track_0', 'track_1']
    back = _frames_from_slp(out)
    for f, g in zip(frames, back):
        assert sorted(i.pred_id for i in f.instances) == sorted(i.gt_id for i in g.instances)
    # the tracked file read back scores exactly as the frames: one switch per fly
    for f, g in zip(frames, back):
        for i in g.instances: i.pred_id = i.gt_id
    gt = _frames_from_slp(sio.load_slp(str(src), open_videos=False))
    r = frames_metrics(back, gt_frames=gt, max_dist=1).iloc[0]
    assert (r.num_switches, r.num_misses, r.num_false_positives) == (2, 0, 0)
    assert frames_metrics(frames).iloc[0].num_switches == 2


@pytest.mark.skipif(not (SHARED_DATA/'sleap_flies').is_dir(), reason='../shared/data/sleap_flies is absent')
def test_write_slp_noisy_detections(tmp_path):
    "Untracked spurious instances keep no track; the real flies get theirs."
    import sleap_io as sio
    src = SHARED_DATA/'sleap_flies'/'two_flies_noisy_detections.slp'
    labels = sio.load_slp(str(src), open_videos=False)
    frames = _frames_from_slp(labels)
    for f in frames:
        for i in f.instances: i.pred_id = i.gt_id  # spurious instances have gt_id -1: left without a track
    out = sio.load_slp(str(write_slp(frames, src, tmp_path/'t.slp')), open_videos=False)
    untracked = sum(i.track is None for lf in out.labeled_frames for i in lf.instances)
    assert untracked == sum(i.gt_id < 0 for f in frames for i in f.instances) > 0

def test_cli_track_eval_prints_the_motchallenge_summary(tmp_path):
    from conftest import BIN, run
    r = run([str(BIN/'medseg'), 'track-eval', str(TUD/'TUD-Campus'/'gt.txt'), str(TUD/'TUD-Campus'/'test.txt')])
    assert r.returncode == 0, r.stderr
    assert 'MOTA' in r.stdout and 'IDF1' in r.stdout and 'IDs' in r.stdout, r.stdout
    mota = track_eval(TUD/'TUD-Campus'/'gt.txt', TUD/'TUD-Campus'/'test.txt').iloc[0]['mota']
    assert f'{mota:.3f}' in r.stdout or f'{100 * mota:.1f}%' in r.stdout, r.stdout
    bad = run([str(BIN/'medseg'), 'track-eval', str(tmp_path/'missing.csv'), str(TUD/'TUD-Campus'/'test.txt')])
    assert bad.returncode == 2 and bad.stderr.startswith('medseg track-eval: ') and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
