#!/usr/bin/env python
"""Tracking speed: frames/s of the sliding-window tracker driven by a small GTR on CPU, split into model time
(the scorer: visual encoder on each new frame's crops, transformer and association head over the window) and
association time (everything else the tracker does: the track queue, per-frame softmax, decay weights, track
scores, the IoU and distance gates, Hungarian assignment), plus the time motmetrics takes to score the result.

A synthetic clip of `--frames` frames with `--objects` moving blobs (`medseg.track.data.synthetic_clip`) is tracked
once with an untrained GTR (speed does not depend on the weights). Each instance goes through the visual encoder
once (`model_scorer` keeps its features while it is in the window). The targets of issue 10: association <= 10 % of
the tracking time, motmetrics evaluation <= 5 % of it. The last line is `ratio: <association time / total time>`.

    python bench/tracker_speed.py                           # 1,000 frames, 20 objects, test_efficientnet encoder, 1 thread
    python bench/tracker_speed.py --motion-only             # no visual encoder
    python bench/tracker_speed.py --frames 30 --objects 5   # a quick correctness run
"""
import argparse, time

import numpy as np
import torch

from medseg.track.config import GTRConfig, TrackerConfig
from medseg.track.data import synthetic_clip
from medseg.track.metrics import frames_metrics
from medseg.track.model import GlobalTrackingTransformer, param_counts
from medseg.track.task import model_scorer
from medseg.track.tracker import Tracker

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--frames', type=int, default=1000); p.add_argument('--objects', type=int, default=20)
    p.add_argument('--size', type=int, default=256, help='frame side in pixels'); p.add_argument('--crop', type=int, default=16)
    p.add_argument('--d-model', type=int, default=32); p.add_argument('--window', type=int, default=8)
    p.add_argument('--encoder', default='test_efficientnet', help='timm model of the visual encoder')
    p.add_argument('--motion-only', action='store_true', help='no visual encoder')
    p.add_argument('--threads', type=int, default=1); p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
    t = time.perf_counter()
    frames = synthetic_clip(n_frames=a.frames, n_objects=a.objects, size=a.size, seed=a.seed, video_id='bench')
    print(f"clip: {a.frames} frames, {a.objects} objects, {a.size} px (drawn in {time.perf_counter() - t:.1f} s)")
    cfg = GTRConfig(d_model=a.d_model, nhead=2, use_vis_feats=not a.motion_only, encoder_cfg={'model_name': a.encoder, 'in_chans': 1})
    model = GlobalTrackingTransformer(cfg).eval()
    print(f"model: {'motion-only' if a.motion_only else a.encoder}, d_model {a.d_model}, {param_counts(model)['total']:,} parameters, "
          f"{a.threads} thread(s), window {a.window}")
    timer = {}
    scorer = model_scorer(model, a.crop, timer=timer)
    t = time.perf_counter()
    Tracker(TrackerConfig(window_size=a.window)).track(frames, scorer)
    total = time.perf_counter() - t
    model_s, enc_s = timer.get('model', 0.), timer.get('encoder', 0.)
    assoc = total - model_s
    t = time.perf_counter(); m = frames_metrics(frames); ev = time.perf_counter() - t
    n = len(frames)
    print(f"tracking: {n / total:.1f} frames/s ({total:.2f} s for {n} frames, {1000 * total / n:.2f} ms/frame)")
    print(f"  model:       {model_s:8.2f} s  ({model_s / total:6.1%})  of which visual encoder {enc_s:.2f} s")
    print(f"  association: {assoc:8.2f} s  ({assoc / total:6.1%})")
    print(f"evaluation (motmetrics): {ev:.2f} s = {ev / total:.1%} of the tracking time (MOTA {m.iloc[-1].mota:.3f} of an untrained model)")
    print(f"ratio: {assoc / total:.4f}")

if __name__ == '__main__': main()
