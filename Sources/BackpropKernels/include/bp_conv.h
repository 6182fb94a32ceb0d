#ifndef BP_CONV_H
#define BP_CONV_H

#include <stddef.h>

/// Geometry of one 2-d convolution (NCHW, one image): `channels` input planes of
/// `height × width`, a `kernel_h × kernel_w` window moved by `stride_*`, `pad_*` zeros on each
/// side, giving `out_h × out_w` output positions.
typedef struct {
    long channels, height, width;
    long kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
    long out_h, out_w;
} bp_conv_geometry;

/// im2col of one image: writes the `[C·kh·kw, Ho·Wo]` column matrix whose row (c, i, j) holds
/// `x[c, oy·sh − ph + i, ox·sw − pw + j]` at column `oy·Wo + ox` (zero in the padding); row r
/// starts at `cols + r·ld` (ld ≥ Ho·Wo). `padded` is scratch of `C·(H+2ph)·(W+2pw)` floats
/// whose border the caller keeps zero (fill it with zeros once); only its interior is written.
/// Unused (may be NULL) when there is no padding.
void bp_im2col(const bp_conv_geometry *g, const float *x, float *padded, float *cols, size_t ld);

/// col2im of one image, the adjoint of `bp_im2col`: `dx[c, y, x] = Σ` of the column entries
/// that im2col copied from `x[c, y, x]` (overlapping windows add up). Overwrites `dx`
/// (`C·H·W` floats); `cols` (row stride `ld`) is only read. `padded` is scratch of at least
/// `(H+2ph)·(W+2pw)` floats (one zero-bordered plane; unused, may be NULL, without padding);
/// its contents are overwritten. dx, cols and padded must not overlap.
void bp_col2im(const bp_conv_geometry *g, const float *cols, size_t ld, float *padded, float *dx);

/// `bp_col2im` that then sets the image's column entries (the first Ho·Wo of each row) to 0, with
/// plain stores (the same dx, bit for bit). A caller that accumulates the next image's column
/// gradients into the buffer (sgemm β = 1) needs it zeroed only once for a geometry and row
/// stride, not before every image.
void bp_col2im_consume(const bp_conv_geometry *g, float *cols, size_t ld, float *padded, float *dx);

/// Max-pool 2×2 / stride 2 / no padding forward over `planes` planes of `height × width` pooled
/// to `out_height × out_width` (floor): y = each window's maximum, argmax = its index inside its
/// input plane. The first maximum in row-major window order wins, and the first NaN (PyTorch's
/// rule). With `relu` nonzero, y is then set to 0 where it is not > 0 (NaN stays): a ReLU in front
/// of the pooling, folded in (max and ReLU commute; the argmax of such a window is that of the
/// input before the ReLU, whose δ the backward masks out). x must not overlap y or argmax.
void bp_maxpool2x2_forward(const float *x, float *y, int *argmax, long planes, long height, long width, long out_height,
                           long out_width, int relu);

/// Max-pool 2×2 / stride 2 / no padding backward over `planes` planes of `height × width`
/// pooled to `out_height × out_width` (floor): dx[argmax of each window] = dy of the window,
/// every other position 0 (overwrites all of dx). `argmax` holds indices inside each input
/// plane, each inside its own window (as MaxPool2D's forward writes them). With `y` (the pooled
/// output, or NULL) δ is kept only where y > 0 and 0 elsewhere: the backward of a ReLU in front
/// of the pooling, folded in.
void bp_maxpool2x2_backward(const float *dy, const int *argmax, const float *y, float *dx, long planes, long height,
                            long width, long out_height, long out_width);

/// The weights `[out, C, kh, kw]` as the row lowering reads them: `kh` matrices `[out, C·kw]`,
/// `rows[(i·out + o)·C·kw + c·kw + j] = w[o, c, i, j]`.
void bp_row_weights(const float *w, float *rows, long out, long channels, long kernel_h, long kernel_w);

#endif
