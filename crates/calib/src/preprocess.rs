//! Images to input tensors: decoding (PNG, JPEG with the `image` crate) and the declared
//! preprocessing of [`Preprocess`]. Deterministic: the same file bytes give the same tensor bits.
//!
//! Steps, in order:
//! 1. decode to 8-bit RGB (or 8-bit luma when `grayscale`, with the `image` crate's fixed
//!    integer weights); 16-bit PNGs are reduced to 8 bits by the decoder;
//! 2. resize ([`Resize`]) with qtool's own bilinear filter in f32: half-pixel centres
//!    (`src = (dst + 0.5) * in / out - 0.5`, clamped to the image), no antialiasing, no rounding
//!    back to 8 bits (like OpenCV's `INTER_LINEAR` and PyTorch's `align_corners=False`; PIL's
//!    antialiased resize differs slightly, especially when shrinking a lot);
//! 3. centre crop (`top = (H - h) / 2`, `left = (W - w) / 2`, rounded down);
//! 4. per value: `(v * scale - mean[c]) / std[c]` in f32, with `c` the channel in the output order;
//! 5. channel order (RGB or BGR), layout (NCHW or NHWC) and a leading batch axis of 1.

use crate::CalibError;
use qtool_tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How to resize before cropping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Keep the decoded size.
    #[default]
    None,
    /// To exactly `[height, width]`.
    Exact { height: usize, width: usize },
    /// The shorter side to `size`, the other to `floor(size * long / short)` (torchvision's
    /// `Resize(int)`).
    ShorterSide { size: usize },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Nchw,
    Nhwc,
}

/// Declared image preprocessing. The output is always f32.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Preprocess {
    pub resize: Resize,
    /// Centre crop to `[height, width]` after resizing.
    pub center_crop: Option<[usize; 2]>,
    /// Factor applied to the 0..=255 values first (default 1/255).
    pub scale: f32,
    /// Per channel in the output channel order (one value applies to all channels). Default 0.
    pub mean: Vec<f32>,
    /// Per channel in the output channel order (one value applies to all channels). Default 1.
    pub std: Vec<f32>,
    pub channel_order: ChannelOrder,
    pub layout: Layout,
    /// One luma channel instead of three.
    pub grayscale: bool,
    /// Add a leading batch axis of 1 (default true).
    pub batch_axis: bool,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            resize: Resize::None,
            center_crop: None,
            scale: 1.0 / 255.0,
            mean: vec![0.0],
            std: vec![1.0],
            channel_order: ChannelOrder::Rgb,
            layout: Layout::Nchw,
            grayscale: false,
            batch_axis: true,
        }
    }
}

/// An image as f32 values, height x width x channels (row-major).
struct Img {
    h: usize,
    w: usize,
    c: usize,
    data: Vec<f32>,
}

/// Bilinear resize with half-pixel centres (see the module docs).
fn resize_bilinear(src: &Img, oh: usize, ow: usize) -> Img {
    if oh == src.h && ow == src.w {
        return Img {
            h: oh,
            w: ow,
            c: src.c,
            data: src.data.clone(),
        };
    }
    let coords = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|d| {
                let s = ((d as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5)
                    .clamp(0.0, (n_in - 1) as f64);
                let i0 = s.floor() as usize;
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, (s - i0 as f64) as f32)
            })
            .collect()
    };
    let ys = coords(src.h, oh);
    let xs = coords(src.w, ow);
    let c = src.c;
    let mut data = vec![0f32; oh * ow * c];
    let at = |y: usize, x: usize, k: usize| src.data[(y * src.w + x) * c + k];
    for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
        for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
            for k in 0..c {
                let top = at(y0, x0, k) * (1.0 - fx) + at(y0, x1, k) * fx;
                let bot = at(y1, x0, k) * (1.0 - fx) + at(y1, x1, k) * fx;
                data[(oy * ow + ox) * c + k] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    Img {
        h: oh,
        w: ow,
        c,
        data,
    }
}

impl Preprocess {
    /// Checks the settings (mean/std lengths, positive sizes, non-zero std).
    pub fn validate(&self) -> Result<(), CalibError> {
        let c = if self.grayscale { 1 } else { 3 };
        let bad = |m: String| Err(CalibError::Settings(format!("image preprocessing: {m}")));
        for (what, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != 1 && v.len() != c {
                return bad(format!("{what} has {} values, expected 1 or {c}", v.len()));
            }
        }
        if self.std.contains(&0.0) {
            return bad("std contains 0".into());
        }
        match self.resize {
            Resize::Exact { height, width } if height == 0 || width == 0 => {
                return bad("resize to an empty size".into());
            }
            Resize::ShorterSide { size: 0 } => return bad("resize to an empty size".into()),
            _ => {}
        }
        if let Some([h, w]) = self.center_crop
            && (h == 0 || w == 0)
        {
            return bad("centre crop to an empty size".into());
        }
        Ok(())
    }

    /// Decodes and preprocesses image bytes; `what` names the image in errors.
    pub fn apply_bytes(&self, bytes: &[u8], what: &str) -> Result<Tensor, CalibError> {
        let err = |msg: String| CalibError::Source {
            path: what.to_string(),
            msg,
        };
        let img =
            image::load_from_memory(bytes).map_err(|e| err(format!("cannot decode image: {e}")))?;
        let src = if self.grayscale {
            let g = img.to_luma8();
            Img {
                h: g.height() as usize,
                w: g.width() as usize,
                c: 1,
                data: g.as_raw().iter().map(|&v| v as f32).collect(),
            }
        } else {
            let g = img.to_rgb8();
            Img {
                h: g.height() as usize,
                w: g.width() as usize,
                c: 3,
                data: g.as_raw().iter().map(|&v| v as f32).collect(),
            }
        };
        if src.h == 0 || src.w == 0 {
            return Err(err("the image is empty".into()));
        }
        let (rh, rw) = match self.resize {
            Resize::None => (src.h, src.w),
            Resize::Exact { height, width } => (height, width),
            Resize::ShorterSide { size } => {
                if src.h <= src.w {
                    (size, (size * src.w / src.h).max(1))
                } else {
                    ((size * src.h / src.w).max(1), size)
                }
            }
        };
        let mut img = resize_bilinear(&src, rh, rw);
        if let Some([ch, cw]) = self.center_crop {
            if ch > img.h || cw > img.w {
                return Err(err(format!(
                    "centre crop {ch}x{cw} is larger than the (resized) image {}x{}",
                    img.h, img.w
                )));
            }
            let (top, left) = ((img.h - ch) / 2, (img.w - cw) / 2);
            let mut data = Vec::with_capacity(ch * cw * img.c);
            for y in top..top + ch {
                let row = (y * img.w + left) * img.c;
                data.extend_from_slice(&img.data[row..row + cw * img.c]);
            }
            img = Img {
                h: ch,
                w: cw,
                c: img.c,
                data,
            };
        }
        let c = img.c;
        let pick = |v: &[f32], k: usize| if v.len() == 1 { v[0] } else { v[k] };
        let (h, w) = (img.h, img.w);
        let mut out = vec![0f32; h * w * c];
        for y in 0..h {
            for x in 0..w {
                for k in 0..c {
                    // k is the output channel; its source channel depends on the order.
                    let src_k = if self.channel_order == ChannelOrder::Bgr && c == 3 {
                        2 - k
                    } else {
                        k
                    };
                    let v = (img.data[(y * w + x) * c + src_k] * self.scale - pick(&self.mean, k))
                        / pick(&self.std, k);
                    let idx = match self.layout {
                        Layout::Nchw => (k * h + y) * w + x,
                        Layout::Nhwc => (y * w + x) * c + k,
                    };
                    out[idx] = v;
                }
            }
        }
        let mut shape = match self.layout {
            Layout::Nchw => vec![c, h, w],
            Layout::Nhwc => vec![h, w, c],
        };
        if self.batch_axis {
            shape.insert(0, 1);
        }
        Tensor::from_vec(&shape, out).map_err(|e| err(e.to_string()))
    }

    /// Reads, decodes and preprocesses an image file.
    pub fn apply_file(&self, path: &Path) -> Result<Tensor, CalibError> {
        let b = std::fs::read(path).map_err(|e| CalibError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        self.apply_bytes(&b, &path.display().to_string())
    }
}
