"""Taichi kernels: the forward correlation and the two input gradients.

Layouts: inputs and input gradients are channels-last ``(B, H, W, C)`` so that the inner loop over
channels walks contiguous memory; the output is ``(B, PH, PW, oH, oW)``.  The geometry arrives as a
struct of runtime ints, so a kernel is compiled once per dtype, never per shape or parameter set.

The backward is written as gathers: each element of a gradient is owned by one thread, which sums
over every (displacement, kernel tap) that reads it.  No atomics, so results are deterministic.
"""

from ._runtime import ti

GeometryStruct = ti.types.struct(
    kernel_h=ti.i32, kernel_w=ti.i32, dilation_h=ti.i32, dilation_w=ti.i32,
    stride_h=ti.i32, stride_w=ti.i32, origin_h=ti.i32, origin_w=ti.i32,
    patch_h=ti.i32, patch_w=ti.i32, patch_dilation_h=ti.i32, patch_dilation_w=ti.i32,
    first_h=ti.i32, first_w=ti.i32, out_h=ti.i32, out_w=ti.i32,
)

@ti.func
def _output_index(pos: ti.i32, origin: ti.i32, tap: ti.i32, dilation: ti.i32, stride: ti.i32, size: ti.i32):
    """Output coordinate whose kernel tap ``tap`` lands on input coordinate ``pos``, or -1."""
    offset = pos - origin - tap * dilation
    index = -1
    if offset >= 0 and offset % stride == 0 and offset // stride < size:
        index = offset // stride
    return index

@ti.kernel
def forward(
    x1: ti.types.ndarray(ndim=4),
    x2: ti.types.ndarray(ndim=4),
    out: ti.types.ndarray(ndim=5),
    g: GeometryStruct,
    scale: ti.f64,
    acc_t: ti.template(),
    out_t: ti.template(),
):
    height, width, channels = x1.shape[1], x1.shape[2], x1.shape[3]
    for b, ph, pw, h, w in ti.ndrange(x1.shape[0], g.patch_h, g.patch_w, g.out_h, g.out_w):
        shift_h = g.first_h + ph * g.patch_dilation_h
        shift_w = g.first_w + pw * g.patch_dilation_w
        total = ti.cast(0, acc_t)
        for i in range(g.kernel_h):
            y1 = h * g.stride_h + g.origin_h + i * g.dilation_h
            y2 = y1 + shift_h
            if 0 <= y1 < height and 0 <= y2 < height:
                for j in range(g.kernel_w):
                    xa = w * g.stride_w + g.origin_w + j * g.dilation_w
                    xb = xa + shift_w
                    if 0 <= xa < width and 0 <= xb < width:
                        for c in range(channels):
                            total += ti.cast(x1[b, y1, xa, c], acc_t) * ti.cast(x2[b, y2, xb, c], acc_t)
        out[b, ph, pw, h, w] = ti.cast(total * ti.cast(scale, acc_t), out_t)

@ti.kernel
def grad_input1(
    grad_out: ti.types.ndarray(ndim=5),
    x2: ti.types.ndarray(ndim=4),
    grad1: ti.types.ndarray(ndim=4),
    g: GeometryStruct,
    scale: ti.f64,
    acc_t: ti.template(),
):
    """grad1[b, y, x, :] = scale * sum over (ph, pw, i, j) of grad_out[b, ph, pw, h, w] * x2[b, y+su, x+sv, :]."""
    height, width, channels = x2.shape[1], x2.shape[2], x2.shape[3]
    for b, y, x in ti.ndrange(x2.shape[0], height, width):
        for c in range(channels):
            grad1[b, y, x, c] = ti.cast(0, acc_t)
        for ph, i in ti.ndrange(g.patch_h, g.kernel_h):
            y2 = y + g.first_h + ph * g.patch_dilation_h
            h = _output_index(y, g.origin_h, i, g.dilation_h, g.stride_h, g.out_h)
            if 0 <= y2 < height and h >= 0:
                for pw, j in ti.ndrange(g.patch_w, g.kernel_w):
                    x2_ = x + g.first_w + pw * g.patch_dilation_w
                    w = _output_index(x, g.origin_w, j, g.dilation_w, g.stride_w, g.out_w)
                    if 0 <= x2_ < width and w >= 0:
                        weight = ti.cast(grad_out[b, ph, pw, h, w], acc_t) * ti.cast(scale, acc_t)
                        for c in range(channels):
                            grad1[b, y, x, c] += weight * ti.cast(x2[b, y2, x2_, c], acc_t)

@ti.kernel
def grad_input2(
    grad_out: ti.types.ndarray(ndim=5),
    x1: ti.types.ndarray(ndim=4),
    grad2: ti.types.ndarray(ndim=4),
    g: GeometryStruct,
    scale: ti.f64,
    acc_t: ti.template(),
):
    """grad2[b, y, x, :] = scale * sum over (ph, pw, i, j) of grad_out[b, ph, pw, h, w] * x1[b, y-su, x-sv, :]."""
    height, width, channels = x1.shape[1], x1.shape[2], x1.shape[3]
    for b, y, x in ti.ndrange(x1.shape[0], height, width):
        for c in range(channels):
            grad2[b, y, x, c] = ti.cast(0, acc_t)
        for ph, i in ti.ndrange(g.patch_h, g.kernel_h):
            y1 = y - g.first_h - ph * g.patch_dilation_h
            h = _output_index(y1, g.origin_h, i, g.dilation_h, g.stride_h, g.out_h)
            if 0 <= y1 < height and h >= 0:
                for pw, j in ti.ndrange(g.patch_w, g.kernel_w):
                    x1_ = x - g.first_w - pw * g.patch_dilation_w
                    w = _output_index(x1_, g.origin_w, j, g.dilation_w, g.stride_w, g.out_w)
                    if 0 <= x1_ < width and w >= 0:
                        weight = ti.cast(grad_out[b, ph, pw, h, w], acc_t) * ti.cast(scale, acc_t)
                        for c in range(channels):
                            grad2[b, y, x, c] += weight * ti.cast(x1[b, y1, x1_, c], acc_t)
