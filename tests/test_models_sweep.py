"""Exhaustive model-factory sweep (a few minutes on CPU): every smp architecture x an encoder of every family,
every smp encoder, one timm model per timm module, every torchvision classifier, every Hugging Face image
classifier type, every curated MONAI net, and a multi-task model on every smp architecture.

Big networks are built and run on PyTorch's `meta` device: every layer is constructed and every shape flows
through `forward`, without allocating or computing (a 835M-parameter ResNeXt costs nothing). Networks that
cannot run on `meta` (they call `.item()` while building or copy tensors) are built on the CPU instead;
encoders under `REAL_LIMIT` parameters are also built for real and run on a random batch.
"""
import math, warnings
import pytest, torch

from medseg.config import ConfigError, HeadConfig, ModelConfig
from medseg.models import MONAI_NETS, build_model, list_archs, list_encoders, list_models

pytestmark = pytest.mark.slow
warnings.filterwarnings('ignore')
REAL_LIMIT = 40_000_000  # encoders below this many parameters also run for real on the CPU

def run(cfg:ModelConfig, shape, heads=(), device=None):
    "Build `cfg` on `device` (default: meta, falling back to the CPU) and run a zero batch of `shape`; returns (model, output)."
    for dev in ([device] if device else ['meta', 'cpu']):
        try:
            with torch.device(dev):
                m = build_model(cfg, heads=heads).eval()
                with torch.no_grad(): return m, m(torch.zeros(*shape) if dev == 'meta' else torch.randn(*shape))
        except (ConfigError, RuntimeError, NotImplementedError) as e:
            if dev == 'cpu' or device or not any(s in str(e) for s in ('meta', 'Cannot copy out')): raise
    raise AssertionError('unreachable')

def n_params(m): return sum(p.numel() for p in m.parameters())

# one encoder per smp encoder family (and two timm `tu-` encoders)
REPRESENTATIVE = ['resnet18', 'dpn68', 'vgg11', 'se_resnet50', 'densenet121', 'inceptionv4', 'inceptionresnetv2', 'efficientnet-b0',
                  'mobilenet_v2', 'xception', 'timm-efficientnet-b0', 'timm-skresnet18', 'mit_b0', 'mobileone_s0', 'tu-resnet10t',
                  'tu-convnext_atto']
NOT_DILATABLE = ('vgg11', 'densenet121', 'inceptionv4', 'inceptionresnetv2', 'xception')
# combinations smp itself refuses, with the reason smp gives (medseg passes it on as a ConfigError)
UNSUPPORTED = {**{('DPT', e): 'Only Timm encoders are supported for DPT' for e in REPRESENTATIVE if not e.startswith('tu-')},
               **{(a, e): 'do not support dilated mode' if e in ('vgg11', 'densenet121') else 'does not support dilated mode'
                  for a in ('DeepLabV3', 'DeepLabV3Plus', 'PAN') for e in NOT_DILATABLE},
               ('Linknet', 'mit_b0'): 'is not supported for Linknet', ('UnetPlusPlus', 'mit_b0'): 'is not support encoder_name=mit_b0'}

@pytest.mark.parametrize('encoder', REPRESENTATIVE)
@pytest.mark.parametrize('arch', list_archs())
def test_arch_x_encoder(arch, encoder):
    cfg = ModelConfig(arch=arch, encoder=encoder, in_channels=1, classes=2)
    if (arch, encoder) in UNSUPPORTED:
        with pytest.raises(ConfigError, match=UNSUPPORTED[arch, encoder]): build_model(cfg)
        return
    s = 128 if arch == 'PAN' else 64  # PAN's pyramid pools the 1/32 map: it needs at least 128 px
    _, y = run(cfg, (2, 1, s, s), device='cpu' if encoder.startswith('mit') else None)  # mit_* call .item() while building
    assert y.shape == (2, 2, s, s)

@pytest.mark.parametrize('encoder', list_encoders())
def test_every_encoder(encoder):
    cfg = ModelConfig(arch='Unet', encoder=encoder, in_channels=1, classes=2)
    m, y = run(cfg, (2, 1, 64, 64), device='cpu' if encoder.startswith('mit') else None)
    assert y.shape == (2, 2, 64, 64)
    if n_params(m) < REAL_LIMIT and y.device.type == 'meta':  # small enough: build and run it for real
        m, y = run(cfg, (2, 1, 64, 64), device='cpu')
        assert y.shape == (2, 2, 64, 64) and torch.isfinite(y).all()

@pytest.mark.parametrize('arch', list_archs())
def test_multitask_on_every_arch(arch):
    heads = [HeadConfig(name='lungs', kind='seg', classes=['l', 'r']), HeadConfig(name='tags', kind='cls', classes=list('abc'), multilabel=True),
             HeadConfig(name='age', kind='reg'), HeadConfig(name='csi', kind='zones', zones=6, classes=list('01234'))]
    enc = 'tu-resnet10t' if arch == 'DPT' else 'resnet18'
    s = 128 if arch == 'PAN' else 64
    _, out = run(ModelConfig(arch=arch, encoder=enc, in_channels=1), (2, 1, s, s), heads=heads, device='cpu')
    assert {k: tuple(v.shape) for k, v in out.items()} == {'lungs': (2, 2, s, s), 'tags': (2, 3), 'age': (2, 1), 'csi': (2, 6, 5)}

def _timm_per_module():
    import timm
    return [timm.list_models(module=m)[0] for m in timm.list_modules() if timm.list_models(module=m)]

@pytest.mark.parametrize('name', _timm_per_module())
def test_timm_one_per_module(name):
    import timm
    pc = timm.get_pretrained_cfg(name)
    size = tuple(pc.input_size[1:]) if pc else (224, 224)
    c = 3 if name == 'csatv2' else 1  # csatv2 works on DCT blocks of RGB images and ignores `in_chans`
    _, y = run(ModelConfig(family='timm', arch=name, in_channels=c, classes=3), (2, c, *size))
    assert y.shape == (2, 3)

@pytest.mark.parametrize('name', list_models('torchvision'))
def test_every_torchvision_classifier(name):
    size = 299 if 'inception' in name else 224
    _, y = run(ModelConfig(family='torchvision', arch=name, in_channels=1, classes=3), (2, 1, size, size))
    assert y.shape == (2, 3)

HF_RGB_ONLY = ('clip', 'metaclip_2', 'siglip', 'perceiver', 'pp_lcnet', 'textnet', 'timm_wrapper', 'hgnet_v2')  # no `num_channels` (hgnet_v2: its stem ignores it)

@pytest.mark.parametrize('name', list_models('hf'))
def test_every_hf_classifier_type(name):
    from transformers import AutoConfig
    if name == 'dinat':
        try: import natten  # noqa: F401
        except ImportError: pytest.skip('transformers Dinat needs the natten library (not installed)')
    c = AutoConfig.for_model(name)
    size = getattr(c, 'image_size', None) or getattr(getattr(c, 'vision_config', None), 'image_size', 224)
    size = size if isinstance(size, int) else size[0]
    ch = 3 if name in HF_RGB_ONLY else 1
    _, y = run(ModelConfig(family='hf', arch=name, in_channels=ch, classes=3), (2, ch, size, size))
    assert y.shape == (2, 3)

@pytest.mark.parametrize('name', list(MONAI_NETS))
def test_every_monai_net(name):
    _, y = run(ModelConfig(family='monai', arch=name, in_channels=1, classes=2), (2, 1, 64, 64), device='cpu')
    assert y.shape == (2, 2, 64, 64)
