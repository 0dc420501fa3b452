#!/usr/bin/env python
"""Data loading throughput: medseg's training loader against a naive per-sample PIL + torchvision pipeline.

Both loaders read the same 256 x 256 PNG images and masks, apply a flip, an affine warp (rotation,
translation, scale), brightness/contrast jitter and a mean/std normalisation to the image (the geometric
part to the mask too), and batch them with the same DataLoader settings and worker count. Each batch is
then moved to the training device (the GPU when there is one) and, for medseg, made float there by
`dm.finish` (its batches travel as uint8). The script prints images/s for each and ends with
`ratio: <medseg/naive>`.

A second measurement shows the caches where decoding dominates (large 16-bit PNGs, light augmentation):
the data time of the first and later epochs with `cache: true` (memory) and with `cache_dir` (.npy files).

    python bench/data_throughput.py                 # defaults: 256 images, 2 workers, batch 32
    python bench/data_throughput.py --workers 0 --n 128
"""
import argparse, os, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from medseg.config import DataConfig
from medseg.data import MedDataModule, image_tensor, normalize_input
from medseg.synthetic import draw_blobs, make_synthetic

AUGS = [{'HorizontalFlip': {'p': 0.5}},
        {'Affine': {'rotate': (-15, 15), 'translate_percent': (-0.1, 0.1), 'scale': (0.9, 1.1), 'p': 1.0}},
        {'RandomBrightnessContrast': {'brightness_limit': 0.2, 'contrast_limit': 0.2, 'p': 1.0}}]
MEAN, STD = [0.5], [0.25]


class NaiveDataset(Dataset):
    "What a first version usually looks like: PIL per sample, torchvision v2 transforms on image + mask."
    def __init__(self, root, rows):
        from torchvision.transforms import v2
        self.root, self.rows = Path(root), rows
        self.geo_color = v2.Compose([v2.RandomHorizontalFlip(0.5),
                                     v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1)),
                                     v2.ColorJitter(brightness=0.2, contrast=0.2)])
        self.to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    def __len__(self): return len(self.rows)
    def __getitem__(self, i):
        from torchvision import tv_tensors
        img_path, mask_path = self.rows[i]
        img = Image.open(self.root/img_path).convert('L')
        mask = tv_tensors.Mask(torch.from_numpy((np.array(Image.open(self.root/mask_path)) > 127).astype(np.uint8))[None])
        img, mask = self.geo_color(img, mask)
        return {'image': self.to_tensor(img), 'mask': mask.float(), 'id': str(img_path)}


def time_loader(dl, epochs, finish=None):
    "Images per second over `epochs` full passes, after one warm-up epoch (worker start-up excluded); `finish` runs on each batch."
    it = iter(dl); next(it)
    for _ in it: pass  # finish the warm-up epoch (persistent workers stay up)
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for b in dl:
            if finish: b = finish(b)
            n += len(b['image'])
    if DEVICE.type == 'cuda': torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


DEVICE = torch.device('cuda' if torch.cuda.is_available() else 'cpu')

def to_device(b:dict) -> dict:
    "The batch's tensors on the training device (a no-op on a CPU machine)."
    return {k: v.to(DEVICE, non_blocking=True) if torch.is_tensor(v) else v for k, v in b.items()}


def medseg_loader(root, workers, batch, cache=False, cache_dir=None):
    cfg = DataConfig(data_dir=root, im_size=256, batch_size=batch, num_workers=workers, train_augs=AUGS, mean=MEAN, std=STD,
                     split_ratios=[1.0, 0.0], check_data='exists', cache=cache, cache_dir=cache_dir)
    return MedDataModule(cfg, None, in_channels=1, seed=0)  # only the train split is used


def throughput(root, workers, batch, epochs):
    "Images/s of the naive loader and medseg's loader without and with each cache (best of two interleaved runs)."
    import pandas as pd
    rows = pd.read_csv(root/'manifest.csv')
    dms = {'medseg': medseg_loader(root, workers, batch), 'cached': medseg_loader(root, workers, batch, cache=True),
           'disk': medseg_loader(root, workers, batch, cache_dir=root.parent/'decoded')}  # the disk cache fills in the warm-up epoch
    loaders = {k: dm.train_dataloader() for k, dm in dms.items()}
    b = dms['medseg'].finish(next(iter(loaders['medseg'])))  # uint8 batches, made float + normalised here (on the GPU in training)
    assert b['image'].shape == (batch, 1, 256, 256) and b['mask'].shape == (batch, 1, 256, 256) and b['image'].dtype == b['mask'].dtype == torch.float32
    naive_ds = NaiveDataset(root, list(zip(rows.image, rows['mask'])))
    naive = DataLoader(naive_ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    nb = next(iter(naive)); assert nb['image'].shape == b['image'].shape and nb['mask'].shape == b['mask'].shape
    results = {}
    for name in ['naive', 'medseg', 'bytes', 'cached', 'disk'] * 2:
        if name == 'naive': dl, finish = naive, to_device
        elif name == 'bytes': dl, finish = loaders['medseg'], None  # the loader alone
        else: dl, finish = loaders[name], (lambda b, dm=dms[name]: dm.finish(to_device(b)))
        results[name] = max(results.get(name, 0), time_loader(dl, epochs, finish))
    return results


def stage_times(root, n=64):
    "Milliseconds per sample, in this process: decoding (shared by both) and the augmentation + tensor stage of each."
    import pandas as pd, cv2
    from medseg.data import MedDataset
    cv2.setNumThreads(1)
    ds = medseg_loader(root, 0, 32).dataset('train'); n = min(n, len(ds))
    rows = pd.read_csv(root/'manifest.csv').head(n)
    nv = NaiveDataset(root, list(zip(rows.image, rows['mask'])))
    dec = [ds.decode(i) for i in range(n)]
    pil = [(Image.open(root/a).convert('L'), Image.open(root/m)) for a, m in zip(rows.image, rows['mask'])]
    for im, mk in pil: im.load(); mk.load()
    from torchvision import tv_tensors
    def ours(i):
        o = ds.tfm(image=dec[i]['image'], mask=dec[i]['masks'][0])  # then the float conversion that `finish` does after the transfer
        normalize_input(image_tensor(o['image'], ds.cfg), MEAN, STD); torch.from_numpy(o['mask'][None]).float()
    def theirs(i):
        im, mk = pil[i]
        mask = tv_tensors.Mask(torch.from_numpy((np.array(mk) > 127).astype(np.uint8))[None])
        im, mask = nv.geo_color(im, mask); nv.to_tensor(im); mask.float()
    def decode_(i): ds._cache.clear(); ds.decode(i)
    out = {}
    for name, f in (('decode', decode_), ('medseg', ours), ('naive', theirs)):
        best = 1e9
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(n): f(i)
            best = min(best, (time.perf_counter() - t0) / n * 1e3)
        out[name] = best
    return out


def make_big(root, n, size, seed=0):
    "16-bit PNGs with masks: slow to decode, so decoding dominates a light pipeline."
    import pandas as pd
    (root/'images').mkdir(parents=True); (root/'masks').mkdir()
    rng, rows = np.random.default_rng(seed), []
    for i in range(n):
        img, lab = draw_blobs(rng, 128)
        big = np.asarray(Image.fromarray((img * 65535).astype(np.uint16)).resize((size, size), Image.BILINEAR)).astype(np.uint16)
        big = (big + rng.integers(0, 2000, big.shape)).astype(np.uint16)  # sensor noise: PNG compresses poorly, decodes slowly
        Image.fromarray(big).save(root/f'images/{i:04d}.png')
        Image.fromarray(((np.asarray(Image.fromarray(lab).resize((size, size), Image.NEAREST)) > 0) * 255).astype(np.uint8)).save(root/f'masks/{i:04d}.png')
        rows.append({'image': f'images/{i:04d}.png', 'mask': f'masks/{i:04d}.png', 'split': 'train'})
    pd.DataFrame(rows).to_csv(root/'manifest.csv', index=False)


def cache_epochs(root, workers, batch, epochs=3, cache_dir=None):
    "Data time per epoch with the memory cache on, or with `cache_dir` (epoch 1 decodes; later epochs only augment)."
    cfg = DataConfig(data_dir=root, im_size=128, batch_size=batch, num_workers=workers, train_augs=[{'HorizontalFlip': {'p': 0.5}}],
                     split_ratios=[1.0, 0.0], check_data='exists', cache=cache_dir is None, cache_max_gb=2, cache_dir=cache_dir)
    t0 = time.perf_counter()
    dm = MedDataModule(cfg, None, seed=0); dl = dm.train_dataloader()
    setup = time.perf_counter() - t0
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for b in dl: pass
        times.append(time.perf_counter() - t0)
    times[0] += setup  # with workers the cache is filled in setup: count it as epoch 1's data time
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=256, help='images in the throughput set')
    p.add_argument('--workers', type=int, default=2, help='DataLoader workers (the same for both loaders)')
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--epochs', type=int, default=2, help='timed epochs per measurement')
    p.add_argument('--cache-n', type=int, default=48, help='images in the cache experiment')
    p.add_argument('--cache-size', type=int, default=1024, help='side of the cache experiment images')
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, torch {torch.__version__}, "
          f"batches delivered to {torch.cuda.get_device_name() if DEVICE.type == 'cuda' else 'cpu'}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter(); make_synthetic(tmp/'tp', n=a.n, size=256, seed=0)
        print(f"made {a.n} 256x256 PNG images + masks in {time.perf_counter() - t0:.1f}s; workers={a.workers}, batch={a.batch}")
        r = throughput(tmp/'tp', a.workers, a.batch, a.epochs)
        print(f"naive (PIL + torchvision v2):     {r['naive']:.0f} images/s")
        print(f"medseg (MedDataModule):           {r['medseg']:.0f} images/s   (decodes every epoch, like naive; float conversion on {DEVICE.type})")
        print(f"medseg, uint8 batches as loaded:  {r['bytes']:.0f} images/s   (the loader alone: no copy, no float conversion)")
        print(f"medseg with cache: true:          {r['cached']:.0f} images/s   (decoded once, kept in memory)")
        print(f"medseg with cache_dir:            {r['disk']:.0f} images/s   (decoded once, read back from .npy files)")
        st = stage_times(tmp/'tp')
        print(f"per sample, one process: PNG decode {st['decode']:.2f} ms (the same PIL decode in both); "
              f"augment + to tensor: medseg {st['medseg']:.2f} ms, naive {st['naive']:.2f} ms ({st['naive'] / st['medseg']:.1f}x)")
        make_big(tmp/'big', a.cache_n, a.cache_size)
        for w in sorted({0, a.workers}):
            for what, cdir in (('cache: true', None), ('cache_dir', tmp/f'decoded-big-{w}')):
                t = cache_epochs(tmp/'big', w, 8, cache_dir=cdir)
                print(f"{what}, {a.cache_n} {a.cache_size}px 16-bit PNGs, workers={w}: epoch data time " + ', '.join(f'{x:.2f}s' for x in t)
                      + f"; epoch 1 / epoch 2 = {t[0] / t[1]:.1f}x")
        print(f"ratio, loader alone: {r['bytes'] / r['naive']:.2f}")
        print(f"ratio with cache: {r['cached'] / r['naive']:.2f}")
        print(f"ratio with cache_dir: {r['disk'] / r['naive']:.2f}")
        print(f"ratio: {r['medseg'] / r['naive']:.2f}")


if __name__ == '__main__':
    sys.exit(main())
