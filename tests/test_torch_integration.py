"""The op as a PyTorch citizen: opcheck, torch.compile, fake/meta tensors, mixed precision, autocast,
channels_last, ONNX export and the import aliases."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import corr_taichi
from corr_taichi import CorrTaichi, reference
from corr_taichi._geometry import sampler_geometry
from corr_taichi._op import _cpu_layout
from corr_taichi.compat import flownet2, mmcv, spatial_correlation_sampler as scs

from .fresh import run


def inputs(shape=(2, 3, 7, 8), dtype=torch.float64, seed=0, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, dtype=dtype, generator=gen).requires_grad_(requires_grad) for _ in range(2))


GEOMETRIES = [
    sampler_geometry(7, 8, kernel_size=2, patch_size=(3, 4), stride=(1, 2), padding=1, dilation_patch=(2, 1)),
    sampler_geometry(7, 8, patch_size=5),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_opcheck_forward(geometry):
    x1, x2 = inputs(requires_grad=True)
    torch.library.opcheck(torch.ops.corr_taichi.correlation.default, (x1, x2, geometry.as_list(), 0.5))


@pytest.mark.parametrize("geometry", GEOMETRIES)  # the second takes the CPU's row path
def test_opcheck_backward(geometry):
    g = geometry
    x1, x2 = inputs()
    grad = torch.randn(g.output_shape(2), dtype=torch.float64)
    for need in ((True, True), (True, False), (False, True)):
        torch.library.opcheck(torch.ops.corr_taichi.correlation_backward.default,
                              (grad, x1, x2, g.as_list(), 1.0, *need))


API_CASES = {
    "correlation": lambda a, b: corr_taichi.correlation(a, b, kernel_size=3, patch_size=5, stride=2, padding=1),
    "Correlation": corr_taichi.Correlation(patch_size=(3, 5), dilation_patch=2),
    "CorrTaichi": CorrTaichi(max_disp=3, dila_patch=2),
    "spatial_correlation_sampler": scs.SpatialCorrelationSampler(patch_size=3, kernel_size=2),
    "flownet2": flownet2.Correlation(pad_size=3, kernel_size=1, max_displacement=3, stride1=1, stride2=1),
    "mmcv": mmcv.Correlation(max_displacement=2, kernel_size=3, padding=1),
}


@pytest.mark.parametrize("name", API_CASES)
def test_torch_compile_fullgraph(name):
    fn = API_CASES[name]

    def model(a, b):
        return torch.tanh(fn(a * 2, b)).sum()

    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    a, b = inputs(dtype=torch.float32, requires_grad=True)
    out = compiled(a, b)
    grads = torch.autograd.grad(out, (a, b))
    expected = model(a, b)
    expected_grads = torch.autograd.grad(expected, (a, b))
    torch.testing.assert_close(out, expected)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)


def test_torch_compile_inductor():
    torch._dynamo.reset()
    layer = corr_taichi.Correlation(patch_size=5, kernel_size=3, padding=1)
    compiled = torch.compile(lambda a, b: torch.relu(layer(a, b)) * 2, fullgraph=True)
    a, b = inputs(dtype=torch.float32)
    torch.testing.assert_close(compiled(a, b), torch.relu(layer(a, b)) * 2)


def test_fake_and_meta_shapes():
    with FakeTensorMode():
        a = torch.empty(2, 16, 24, 32)
        out = corr_taichi.correlation(a, a, kernel_size=3, patch_size=9, stride=2, padding=1)
        assert out.shape == (2, 9, 9, 12, 16)
        assert CorrTaichi(4, 2)(a, a).shape == (2, 25, 24, 32)
    m = torch.empty(2, 16, 24, 32, device="meta", requires_grad=True)
    out = flownet2.Correlation(20, 1, 20, 1, 2)(m, m)
    assert out.shape == (2, 441, 24, 32) and out.device.type == "meta"
    out.sum().backward()
    assert m.grad.shape == m.shape


@pytest.mark.parametrize("dtype,unit", [(torch.float16, 2.0**-11), (torch.bfloat16, 2.0**-8)])
def test_half_precision_accumulates_in_float32(dtype, unit):
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(1, 1024, 5, 6, generator=gen).to(dtype)
    x2 = torch.randn(1, 1024, 5, 6, generator=gen).to(dtype)
    out = corr_taichi.correlation(x1, x2, patch_size=3, kernel_size=2)
    assert out.dtype == dtype
    exact = reference.correlation(x1.double(), x2.double(), patch_size=3, kernel_size=2)
    # Only the final rounding to the output dtype is allowed: half an ulp, relative (plus float32 noise).
    err = (out.double() - exact).abs()
    assert torch.all(err <= unit * exact.abs() + 1e-3), err.max()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_backward(dtype):
    x1, x2 = (t.to(dtype).requires_grad_() for t in inputs(shape=(1, 64, 6, 7), dtype=torch.float32))
    out = corr_taichi.correlation(x1, x2, patch_size=3, kernel_size=2, padding=1)
    grad = torch.randn_like(out)
    g1, g2 = torch.autograd.grad(out, (x1, x2), grad)
    assert g1.dtype == dtype and g2.dtype == dtype
    a, b = x1.detach().double().requires_grad_(), x2.detach().double().requires_grad_()
    want = reference.correlation(a, b, patch_size=3, kernel_size=2, padding=1)
    e1, e2 = torch.autograd.grad(want, (a, b), grad.double())
    for g, e in ((g1, e1), (g2, e2)):
        torch.testing.assert_close(g.double(), e, rtol=1e-2, atol=1e-2 * e.abs().max().item())


def test_autocast_cpu():
    a, b = inputs(dtype=torch.float32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = corr_taichi.correlation(a, b, patch_size=3)
        assert out.dtype == torch.bfloat16
    g1, g2 = torch.autograd.grad(out.float().sum(), (a, b))
    assert g1.dtype == torch.float32
    e1, e2 = torch.autograd.grad(reference.correlation(a, b, patch_size=3).sum(), (a, b))
    torch.testing.assert_close(g1, e1, rtol=2e-2, atol=5e-2)
    torch.testing.assert_close(g2, e2, rtol=2e-2, atol=5e-2)


def test_channels_last_input_is_used_without_a_copy():
    # the CPU kernels read channels in vectors of 16: a multiple of 16 channels needs no padding
    a, b = inputs(shape=(2, 32, 7, 8), dtype=torch.float32)
    cl = a.contiguous(memory_format=torch.channels_last)
    assert _cpu_layout(cl).data_ptr() == cl.data_ptr()
    torch.testing.assert_close(corr_taichi.correlation(cl, b, patch_size=3),
                               corr_taichi.correlation(a, b, patch_size=3))




@pytest.mark.parametrize(
    "make_layer,shape",
    [
        (lambda: flownet2.Correlation(pad_size=20, kernel_size=1, max_displacement=20, stride1=1, stride2=2),
         (1, 8, 12, 16)),
        (lambda: corr_taichi.Correlation(kernel_size=3, patch_size=5, stride=2, padding=1), (2, 4, 9, 11)),
    ],
    ids=["flownetc", "kernel3-stride2"],
)
def test_onnx_export_runs_in_onnxruntime(tmp_path, make_layer, shape):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import corr_taichi.onnx

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.corr = make_layer()

        def forward(self, a, b):
            return torch.nn.functional.leaky_relu(self.corr(a, b), 0.1)

    model = Model()
    a, b = inputs(shape=shape, dtype=torch.float32)
    path = tmp_path / "model.onnx"
    corr_taichi.onnx.export(model, (a, b), str(path), verbose=False)
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    (got,) = session.run(None, {names[0]: a.numpy(), names[1]: b.numpy()})
    np.testing.assert_allclose(got, model(a, b).detach().numpy(), rtol=1e-5, atol=1e-5)
    import onnx

    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not any("corr" in op.lower() for op in ops), ops


MODEL_FILE = textwrap.dedent(
    """
    # Written the way third-party model code (ptlflow's PWC-Net, FastFlowNet, IRR...) imports it.
    import torch
    from torch import nn
    from spatial_correlation_sampler import SpatialCorrelationSampler
    from correlation_package.correlation import Correlation


    class TinyFlowNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.corr = SpatialCorrelationSampler(kernel_size=1, patch_size=9, stride=1, padding=0, dilation_patch=1)
            self.corr_fn2 = Correlation(pad_size=4, kernel_size=1, max_displacement=4, stride1=1, stride2=1,
                                        corr_multiply=1)

        def forward(self, f1, f2):
            b, c, h, w = f1.shape
            cv = self.corr(f1, f2).view(b, -1, h, w) / c
            return cv, self.corr_fn2(f1, f2)
    """
)


def test_install_aliases_runs_third_party_model_code(tmp_path):
    (tmp_path / "tiny_flownet.py").write_text(MODEL_FILE)
    code = textwrap.dedent(
        """
        import torch, corr_taichi.compat
        corr_taichi.compat.install_aliases()
        from tiny_flownet import TinyFlowNet
        f1, f2 = torch.randn(2, 8, 10, 12), torch.randn(2, 8, 10, 12)
        a, b = TinyFlowNet()(f1, f2)
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
        print(tuple(a.shape), type(TinyFlowNet().corr).__module__)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 81, 10, 12) corr_taichi.compat.spatial_correlation_sampler"


def test_a_first_call_does_not_import_torch_compile_machinery():
    """``torch.library.custom_op``'s wrapper imports ``torch._dynamo`` at an op's first call (1.7 s on the
    development machine); the ops here are registered without it, so an inference script never pays it."""
    result = run("""
        import sys, torch, corr_taichi
        x = torch.randn(1, 3, 5, 6, requires_grad=True)
        corr_taichi.correlation(x, x.detach(), patch_size=3).sum().backward()
        print("torch._dynamo" in sys.modules)
        """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "False\n"


def test_double_backward_is_refused():
    x1 = torch.randn(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(1, 3, 5, 6, dtype=torch.float64)
    (grad,) = torch.autograd.grad(corr_taichi.correlation(x1, x2, patch_size=3).sum(), x1, create_graph=True)
    with pytest.raises(RuntimeError, match="corr_taichi::correlation_backward has no gradient formula"):
        grad.sum().backward()


def _seeded(*shape, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, dtype=torch.float64, generator=gen) * scale).requires_grad_()


@pytest.mark.parametrize("op", ["correlation", "correlation_lookup1d", "volume_lookup1d", "correlation_lookup"])
def test_gradients_where_taichi_cannot_run(monkeypatch, op):
    """In a process where Taichi cannot run (one forked after the runtime started), each op's forward and
    backward are the pure-PyTorch computation's, with the kernels' values and gradients."""
    import corr_taichi._lookup1d as lookup1d
    import corr_taichi._lookup2d as lookup2d
    import corr_taichi._op as core

    calls = {
        "correlation": (lambda a, b: corr_taichi.correlation(a, b, patch_size=3, dilation_patch=2),
                        (_seeded(2, 5, 6, 7, seed=1), _seeded(2, 5, 6, 7, seed=2))),
        "correlation_lookup1d": (lambda a, b, x: corr_taichi.correlation_lookup1d(a, b, x, 2),
                                 (_seeded(1, 4, 3, 6, seed=3), _seeded(1, 4, 3, 8, seed=4),
                                  _seeded(1, 3, 6, seed=5, scale=7))),
        "volume_lookup1d": (lambda v, x: corr_taichi.volume_lookup1d(v, x, 2),
                            (_seeded(1, 3, 6, 8, seed=6), _seeded(1, 3, 6, seed=7, scale=7))),
        "correlation_lookup": (lambda a, b, x: corr_taichi.correlation_lookup(a, b, x, 2),
                               (_seeded(1, 4, 3, 6, seed=8), _seeded(1, 4, 5, 7, seed=9),
                                _seeded(1, 2, 3, 6, seed=10, scale=5))),
    }
    fn, args = calls[op]
    results = []
    for usable in (True, False):
        for module in (core, lookup1d, lookup2d):
            monkeypatch.setattr(module, "usable", lambda: usable)
        out = fn(*args)
        results.append((out, *torch.autograd.grad(out, args, torch.ones_like(out))))
    for kernels, plain in zip(*results):
        torch.testing.assert_close(plain, kernels, rtol=1e-10, atol=1e-12)
