"""The CPU's two paths: the row path (vectors along rows, for few channels) and the channel-vector
kernels, each forced on every configuration of the core tests and on shapes that cross the row
path's vector, window and channel-tile boundaries, against the float64 oracle and reference."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import corr_taichi
from corr_taichi import _dispatch, _geometry, _op, _row_path, reference
from corr_taichi._runtime import current_arch_name

from . import oracle
from .cases import randn
from .test_core import CONFIGS, FIXED

pytestmark = pytest.mark.skipif(
    current_arch_name() not in (None, "x64", "arm64"), reason="the row path is the CPU backend's"
)


@pytest.fixture
def row_calls(op_plans):
    """``row_calls()``: which passes of the test's op calls ran on the row path, in order."""
    return lambda: ["backward" if p.backward else "forward" for p in op_plans if p.path == "row"]


def _takes_rows(g, shape, backward=False):
    return _dispatch.plan(g, shape, "x64", backward).path == "row"


def _row_passes(cfg, shape):
    """The passes that the row path should take for this call."""
    g = _geometry.sampler_geometry(shape[2], shape[3], **cfg)
    return [name for name, backward in (("forward", False), ("backward", True)) if _takes_rows(g, shape, backward)]


def _forward_and_grads(x1, x2, grad_seed, **cfg):
    out = corr_taichi.correlation(x1, x2, **cfg)
    grad_out = randn(*out.shape, dtype=out.dtype, seed=grad_seed)
    return out, grad_out, torch.autograd.grad(out, (x1, x2), grad_out)


@pytest.mark.parametrize("forced", [True, False], ids=["rows", "channel-vectors"])
@pytest.mark.parametrize("cfg,shape", FIXED + CONFIGS)
def test_each_cpu_path_matches_oracle_and_reference(force_paths, cfg, shape, forced, row_calls):
    force_paths(row_path=forced)
    seed = sum(shape) + len(str(cfg))
    x1 = randn(*shape, seed=seed, requires_grad=True)
    x2 = randn(*shape, seed=seed + 1, requires_grad=True)
    out, grad_out, grads = _forward_and_grads(x1, x2, seed + 2, **cfg)
    np.testing.assert_allclose(out.detach().numpy(), oracle.sampler(x1.detach().numpy(), x2.detach().numpy(), **cfg),
                               rtol=1e-12, atol=1e-12)
    expected = torch.autograd.grad(reference.correlation(x1, x2, **cfg), (x1, x2), grad_out)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert row_calls() == _row_passes(cfg, shape)
    assert not row_calls() or forced


ROW_CASES = [
    (dict(patch_size=9), (2, 32, 7, 37)),  # PWC-like; rows of 3 vectors, the last one partly padding
    (dict(patch_size=(3, 21), padding=(1, 5)), (1, 5, 6, 40)),  # a patch row over two windows
    (dict(patch_size=(2, 17), padding=(0, 3)), (2, 17, 8, 16)),  # 17 channels: 3 channel tiles
    (dict(patch_size=(3, 9)), (1, 20, 5, 24)),  # 20 channels: 2 tiles of 16 (9 displacements per window)
    (dict(patch_size=(4, 6), stride=(2, 1), dilation_patch=(3, 1)), (2, 3, 9, 17)),  # row stride, dilated rows
    (dict(patch_size=(5, 7), stride=(2, 1), dilation_patch=(4, 1), padding=(2, 0)), (1, 3, 11, 20)),  # shared rows
    (dict(kernel_size=3, patch_size=7, padding=1), (1, 9, 6, 33)),  # several taps: per-pixel products
    (dict(kernel_size=(3, 2), patch_size=5, stride=(1, 2), padding=1), (1, 4, 7, 20)),  # products at a stride
    (dict(kernel_size=3, patch_size=5, stride=(1, 2), padding=1), (1, 4, 7, 40)),  # ... in the backward too
    (dict(patch_size=(1, 35)), (1, 3, 3, 5)),  # patch much wider than the image
    (dict(patch_size=5, padding=(0, 20)), (1, 2, 4, 3)),  # output much wider than the image
    (dict(patch_size=5, kernel_size=(1, 3)), (2, 3, 1, 20)),  # H = 1
    (dict(patch_size=5), (1, 2, 5, 1)),  # W = 1
    # rows of whole vectors (16 or 32 columns)
    (dict(patch_size=9), (2, 32, 7, 32)),
    (dict(patch_size=(3, 21), padding=(1, 5)), (1, 5, 6, 16)),
    (dict(patch_size=(1, 35)), (1, 3, 3, 16)),  # patch much wider than the image
    (dict(patch_size=(2, 31)), (1, 3, 4, 32)),  # a second window whose last slot is one past the patch
    (dict(patch_size=5, padding=(0, 20)), (1, 2, 4, 16)),  # output much wider than the image
    (dict(kernel_size=3, patch_size=7, padding=1), (1, 9, 6, 32)),  # per-pixel products
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg,shape", ROW_CASES)
def test_row_path_boundaries(force_paths, cfg, shape, dtype, row_calls):
    force_paths(row_path=True)
    x1 = randn(*shape, dtype=dtype, seed=3, requires_grad=True)
    x2 = randn(*shape, dtype=dtype, seed=4, requires_grad=True)
    out, grad_out, grads = _forward_and_grads(x1, x2, 5, **cfg)
    assert row_calls() == _row_passes(cfg, shape) and "forward" in row_calls()
    r1, r2 = (x.detach().double().requires_grad_() for x in (x1, x2))
    expected = reference.correlation(r1, r2, **cfg)
    expected_grads = torch.autograd.grad(expected, (r1, r2), grad_out.double())
    tol = dict(rtol=1e-12, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.double(), expected, **tol)
    for got, want in zip(grads, expected_grads):
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("layout", ["channels_last", "strided view", "expanded"])
@pytest.mark.parametrize("cfg,shape", ROW_CASES[:3])
def test_row_path_takes_any_strides(force_paths, cfg, shape, layout, row_calls):
    """Channels-last inputs, views with gaps between columns and stride-0 channels give the same result as
    contiguous inputs (the padded copies are made from any layout)."""
    force_paths(row_path=True)
    x1, x2 = randn(*shape, seed=6), randn(*shape, seed=7)
    if layout == "channels_last":
        v1, v2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    elif layout == "strided view":
        v1, v2 = (torch.repeat_interleave(x, 2, dim=3)[..., ::2] for x in (x1, x2))
    else:
        x1, x2 = x1[:, :1].expand(shape), x2[:, :1].expand(shape)  # one channel, repeated
        v1, v2 = x1, x2
    assert not v1.is_contiguous()
    v1, v2 = v1.requires_grad_(), v2.requires_grad_()
    out, grad_out, grads = _forward_and_grads(v1, v2, 8, **cfg)
    r1, r2 = (x.detach().clone().requires_grad_() for x in (x1, x2))
    expected = reference.correlation(r1, r2, **cfg)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-11)
    for got, want in zip(grads, torch.autograd.grad(expected, (r1, r2), grad_out)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-11)
    assert row_calls() == ["forward", "backward"]


def _spied_copy(name: str, dtype: torch.dtype, monkeypatch) -> list:
    """Records each launch of the CPU kernel ``name`` for ``dtype`` (of :func:`correlation_kernels`)."""
    from corr_taichi._runtime import TAICHI_DTYPES, ensure_runtime
    ensure_runtime(torch.device("cpu"))
    kernels = _op._kernels.correlation_kernels(TAICHI_DTYPES[dtype])
    calls, real = [], getattr(kernels, name)
    monkeypatch.setattr(kernels, name, lambda *args: calls.append(1) or real(*args))
    return calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,by_kernel", [((2, 1, 3, 16), True), ((1, 16, 2, 32), True), ((2, 17, 3, 48), True),
                                             ((1, 40, 1, 16), True), ((1, 5, 4, 12), True), ((1, 3, 3, 5), False)])
def test_channel_vector_layout_of_nchw_inputs(shape, by_kernel, dtype, monkeypatch):
    """NCHW inputs whose planes (H x W) are whole vectors go to the channel-vector layout through the
    Taichi transpose (16 x 16 blocks transposed in registers, channels zero-padded), others through a
    torch copy: the same values as permuting and padding."""
    calls = _spied_copy("transpose", dtype, monkeypatch)
    x = randn(*shape, dtype=dtype, seed=shape[1])
    padded = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, -shape[1] % 16))
    want = padded.permute(0, 2, 3, 1).reshape(shape[0], shape[2], shape[3], -1, 16)
    assert torch.equal(_op._cpu_layout(x), want) and calls == ([1] if by_kernel else [])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,by_kernel", [((2, 441, 48), True), ((1, 16, 32), True), ((1, 3, 16), True),
                                             ((2, 5, 12), False)])
def test_pixel_major_output_gradient(shape, by_kernel, dtype, monkeypatch):
    """The channel-vector gradient kernels read the output gradient (B, P, N) as (B, N, P) rows padded to
    whole vectors: the Taichi transpose where N is whole vectors, a torch copy otherwise; the same values."""
    calls = _spied_copy("transpose", dtype, monkeypatch)
    grad = randn(*shape, dtype=dtype, seed=shape[1])
    want = torch.nn.functional.pad(grad.transpose(1, 2), (0, -shape[1] % 16)).reshape(-1)
    assert torch.equal(_op._pixel_major(grad), want) and calls == ([1] if by_kernel else [])


@pytest.mark.parametrize("cfg,shape", [
    (dict(patch_size=7, dilation_patch=2), (2, 40, 5, 32)),
    (dict(kernel_size=3, patch_size=5, stride=2, padding=1), (1, 17, 6, 16)),
    (dict(patch_size=5, dilation_patch=2), (2, 9, 4, 12)),  # planes, not rows, of whole vectors
])
def test_channel_vectors_on_planes_of_whole_vectors(force_paths, cfg, shape, row_calls):
    """End to end on the channel-vector kernels with inputs (and output gradients) laid out by the Taichi
    transpose above."""
    force_paths(row_path=False)
    x1 = randn(*shape, seed=21, requires_grad=True)
    x2 = randn(*shape, seed=22, requires_grad=True)
    out, grad_out, grads = _forward_and_grads(x1, x2, 23, **cfg)
    np.testing.assert_allclose(out.detach().numpy(), oracle.sampler(x1.detach().numpy(), x2.detach().numpy(), **cfg),
                               rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, torch.autograd.grad(reference.correlation(x1, x2, **cfg), (x1, x2), grad_out)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert row_calls() == []


def _misaligned(x: torch.Tensor, memory_format=torch.contiguous_format) -> torch.Tensor:
    """A copy of ``x`` in ``memory_format`` that starts one element past a whole vector (a view at an
    odd offset into a larger buffer)."""
    buffer = torch.empty(x.numel() + 1, dtype=x.dtype)
    dense = x.contiguous(memory_format=memory_format)
    view = buffer[1:].as_strided(x.shape, dense.stride())
    view.copy_(x)
    assert view.data_ptr() % 64 != 0
    return view


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("forced", [True, False], ids=["rows", "channel-vectors"])
def test_views_that_start_inside_a_vector(force_paths, forced, layout, dtype):
    """Inputs and output gradient that start inside a vector: the kernels' vector loads assume whole-vector
    alignment (a misaligned view once crashed the process), so such tensors are copied first."""
    force_paths(row_path=forced)
    cfg, shape = dict(patch_size=5), (2, 16, 5, 32)  # rows and channels of whole vectors: read in place
    x1, x2 = randn(*shape, dtype=dtype, seed=11), randn(*shape, dtype=dtype, seed=12)
    v1, v2 = (_misaligned(x, layout).requires_grad_() for x in (x1, x2))
    out = corr_taichi.correlation(v1, v2, **cfg)
    grad_out = _misaligned(randn(*out.shape, dtype=dtype, seed=13))
    grads = torch.autograd.grad(out, (v1, v2), grad_out)
    r1, r2 = (x.double().requires_grad_() for x in (x1, x2))
    expected = reference.correlation(r1, r2, **cfg)
    tol = dict(rtol=1e-12, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.double(), expected, **tol)
    for got, want in zip(grads, torch.autograd.grad(expected, (r1, r2), grad_out.double())):
        torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_row_path_half_precision(force_paths, dtype, row_calls):
    """Half inputs are padded into float32 copies, accumulated in float32, and give gradients of
    their own dtype."""
    force_paths(row_path=True)
    cfg, shape = ROW_CASES[0]
    x1, x2 = (randn(*shape, dtype=torch.float32, seed=s).to(dtype).requires_grad_() for s in (14, 15))
    out, grad_out, grads = _forward_and_grads(x1, x2, 16, **cfg)
    assert row_calls() == ["forward", "backward"] and out.dtype == dtype
    r1, r2 = (x.detach().double().requires_grad_() for x in (x1, x2))
    expected = reference.correlation(r1, r2, **cfg)
    unit = 2.0**-11 if dtype == torch.float16 else 2.0**-8
    assert torch.all((out.double() - expected).abs() <= unit * expected.abs() + 1e-3)
    for got, want in zip(grads, torch.autograd.grad(expected, (r1, r2), grad_out.double())):
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=1e-2 * want.abs().max().item())


STEREO_CASES = [
    (dict(max_disp=20), (2, 5, 4, 37)),  # displacements right to left, over two windows
    (dict(max_disp=4, both_directions=True), (1, 3, 5, 20)),
    (dict(max_disp=3, padding=(0, 2)), (1, 17, 3, 16)),
    (dict(max_disp=40), (1, 2, 3, 9)),  # disparities beyond the image
    (dict(max_disp=20), (2, 5, 4, 32)),  # right to left, rows of whole vectors
    (dict(max_disp=6, kernel_size=3, padding=1), (1, 4, 6, 33)),  # several taps: per-pixel products
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg,shape", STEREO_CASES)
def test_row_path_right_to_left(force_paths, cfg, shape, dtype, row_calls):
    """``correlation1d`` (patch dilation -1 along the row) on the row path, against the loop oracle and
    the reference's gradients."""
    force_paths(row_path=True)
    x1 = randn(*shape, dtype=dtype, seed=11, requires_grad=True)
    x2 = randn(*shape, dtype=dtype, seed=12, requires_grad=True)
    out = corr_taichi.correlation1d(x1, x2, **cfg)
    assert row_calls() == ["forward"]
    tol = dict(rtol=1e-12, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    expected = oracle.correlation1d(x1.detach().double().numpy(), x2.detach().double().numpy(), **cfg)
    np.testing.assert_allclose(out.detach().double().numpy(), expected, **tol)
    grad_out = randn(*out.shape, dtype=dtype, seed=13)
    grads = torch.autograd.grad(out, (x1, x2), grad_out)
    r1, r2 = (x.detach().double().requires_grad_() for x in (x1, x2))
    want = torch.autograd.grad(reference.correlation1d(r1, r2, **cfg), (r1, r2), grad_out.double())
    for got, w in zip(grads, want):
        torch.testing.assert_close(got.double(), w, **tol)
    assert row_calls() == ["forward", "backward"]


def test_row_path_with_partners_right_of_the_output(force_paths, row_calls):
    """A geometry whose first partner column lies right of the output column (no public API makes one
    with stride-1 rows, but the layout handles it): input2 is then read from a later whole vector."""
    force_paths(row_path=True)
    g = _geometry.Geometry(kernel_h=1, kernel_w=1, dilation_h=1, dilation_w=1, stride_h=1, stride_w=1,
                           origin_h=1, origin_w=3, patch_h=3, patch_w=5, patch_dilation_h=2, patch_dilation_w=1,
                           first_h=-2, first_w=18, out_h=5, out_w=21)
    x1 = randn(2, 6, 7, 45, seed=8, requires_grad=True)
    x2 = randn(2, 6, 7, 45, seed=9, requires_grad=True)
    out = _op.correlation_op(x1, x2, g.as_list(), 0.5)
    expected = reference.correlation_from_geometry(x1, x2, g, 0.5)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad_out = randn(*out.shape, seed=10)
    got = torch.autograd.grad(out, (x1, x2), grad_out)
    want = torch.autograd.grad(expected, (x1, x2), grad_out)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert row_calls() == ["forward", "backward"]


@pytest.mark.parametrize("shape,cfg,forward,backward", [
    ((4, 32, 96, 128), dict(patch_size=9), True, True),  # PWC-Net level 2
    # several taps: per-pixel products
    ((4, 64, 48, 64), dict(kernel_size=3, patch_size=9, stride=2, padding=1), True, True),
    ((4, 64, 48, 64), dict(kernel_size=3, patch_size=9, padding=1), True, True),
    ((4, 128, 48, 64), dict(patch_size=(1, 41)), True, True),
    ((4, 32, 48, 64), dict(patch_size=(1, 41)), True, True),  # one-row patches: backward faster too
    ((4, 256, 48, 64), dict(patch_size=21, dilation_patch=2), False, False),  # FlowNetC: dilated patch rows
    ((4, 128, 48, 64), dict(patch_size=(41, 1)), True, False),  # one displacement per patch row: nor here
    ((4, 32, 96, 128), dict(patch_size=3), True, True),
    ((4, 64, 48, 64), dict(patch_size=2), True, True),
    ((4, 32, 48, 64), dict(patch_size=3, stride=2), False, False),  # column stride
    ((4, 129, 48, 64), dict(patch_size=9), True, False),  # many channels: the forward only
    ((4, 257, 48, 64), dict(patch_size=9), False, False),  # more
])
def test_which_calls_take_the_row_path(shape, cfg, forward, backward):
    g = _geometry.sampler_geometry(shape[2], shape[3], **cfg)
    assert _takes_rows(g, shape) is forward
    assert _takes_rows(g, shape, backward=True) is backward


def test_row_layout_padding_is_zero_outside_the_image():
    """The padded copies hold the input where the layout says and zeros elsewhere."""
    g = _geometry.sampler_geometry(5, 20, patch_size=(3, 7), padding=(0, 2))
    layout = _row_path.RowLayout.of(g)
    x = randn(1, 3, 5, 20, seed=1)
    x2p = layout.whole_vector_input2(x, torch.float64, channels=8)
    assert x2p.shape[1] == 8 and x2p.shape[-1] == 2 * _row_path.LANES
    torch.testing.assert_close(x2p[:, :3, :, :20], x)
    x2p[:, :3, :, :20] = 0
    assert x2p.eq(0).all()
    x1p = layout.padded_input1(x, g, torch.float64)
    assert x1p.shape[1] == 3 and x1p.shape[-1] == layout.out_vectors * _row_path.LANES
    columns = torch.arange(g.out_w) + g.origin_w  # input1 column of each output column
    inside = (columns >= 0) & (columns < 20)
    placed = x1p[..., :g.out_w]
    torch.testing.assert_close(placed[..., inside], x[..., columns[inside]])
    placed[..., inside] = 0
    assert x1p.eq(0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("width", [32, 20], ids=["taichi", "torch"])  # rows of whole vectors: the Taichi copy
@pytest.mark.parametrize("shift,lo,hi,columns,channels", [
    (-4, 4, 36, 48, 3), (-4, 5, 36, 48, 3), (-4, 4, 35, 48, 3), (-4, 7, 31, 48, 5), (3, 0, 13, 16, 3),
    (19, 2, 9, 16, 2), (-21, 21, 40, 64, 3),
])
def test_shifted_copy(shift, lo, hi, columns, channels, width, dtype):
    """``out[:, c, :, X] = x[:, c, :, X + shift]`` for ``lo <= X < hi`` and ``x``'s channels, zero elsewhere,
    also where ``[lo, hi)`` cuts inside ``x``'s row (then the end vectors are masked lane by lane)."""
    from corr_taichi._runtime import ensure_runtime
    ensure_runtime(torch.device("cpu"))
    x = randn(2, 3, 4, width, dtype=dtype, seed=21)
    hi = min(hi, width - shift)
    out = _row_path._shifted(x, dtype, shift, lo, hi, columns, channels)
    want = torch.zeros(2, channels, 4, columns, dtype=dtype)
    kept = min(3, channels)
    for column in range(lo, hi):
        want[:, :kept, :, column] = x[:, :kept, :, column + shift]
    assert out.shape == want.shape and out.is_contiguous()
    assert torch.equal(out, want)


def test_forced_channel_vectors_never_take_the_row_path(force_paths):
    force_paths(row_path=False)
    g = _geometry.sampler_geometry(96, 128, patch_size=9)
    assert not _takes_rows(g, (4, 32, 96, 128))
    assert not _takes_rows(g, (4, 32, 96, 128), backward=True)


@pytest.mark.parametrize("channels,cfg", [(32, dict(patch_size=9)), (32, dict(kernel_size=3, patch_size=5)),
                                          (256, dict(patch_size=5, dilation_patch=2))])
def test_no_tensor_that_requires_grad_reaches_a_kernel(channels, cfg, monkeypatch):
    """Taichi gives every tensor argument that requires grad a zero ``.grad`` of its size, at every
    launch: the op must hand the kernels detached tensors (row path and channel vectors, channels_last
    inputs that the channel-vector kernels read in place included)."""
    flags = []

    def spying(kernels):
        def wrap(kernel):
            def launch(*args):
                flags.extend(a.requires_grad for a in args if isinstance(a, torch.Tensor))
                return kernel(*args)
            return launch
        return SimpleNamespace(**{name: wrap(k) for name, k in vars(kernels).items()})

    row_kernels_for, kernel_for = _row_path._kernels_for, _op._kernel_for
    copies_for = _op._kernels.correlation_kernels

    def spied_kernel_for(*args):
        kernel, layout = kernel_for(*args)
        return spying(SimpleNamespace(k=kernel)).k, layout

    monkeypatch.setattr(_row_path, "_kernels_for", lambda dtype: spying(row_kernels_for(dtype)))
    monkeypatch.setattr(_op, "_kernel_for", spied_kernel_for)
    monkeypatch.setattr(_op._kernels, "correlation_kernels", lambda dtype: spying(copies_for(dtype)))  # the copies
    for layout in (torch.contiguous_format, torch.channels_last):
        x1, x2 = (randn(2, channels, 6, 32, seed=s).contiguous(memory_format=layout).requires_grad_() for s in (1, 2))
        out = corr_taichi.correlation(x1, x2, **cfg)
        torch.autograd.grad(out, (x1, x2), torch.ones_like(out))
    assert flags and not any(flags)
